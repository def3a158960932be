from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from indexer import DataError, GeneCatalog, Settings

GENE_INFO_HEADER = (
    "#tax_id\tGeneID\tSymbol\tLocusTag\tSynonyms\tdbXrefs\tchromosome\tmap_location\tdescription\t"
    "type_of_gene\tSymbol_from_nomenclature_authority\tFull_name_from_nomenclature_authority\t"
    "Nomenclature_status\tOther_designations\tModification_date\tFeature_type"
)
SUMMARY_HEADER = (
    "entrez_id\tsymbol\tSynonyms\tfull_name\ttype_of_gene\tReview_status\trefseq_accession_used\tsummary"
)
HCOP_HEADER = (
    "human_entrez_gene\thuman_ensembl_gene\thgnc_id\thuman_name\thuman_symbol\thuman_chr\thuman_assert_ids\t"
    "mouse_entrez_gene\tmouse_ensembl_gene\tmgi_id\tmouse_name\tmouse_symbol\tmouse_chr\tmouse_assert_ids\tsupport"
)


def _info_row(
    tax: str, gid: int, sym: str, syn: str, xref: str, desc: str, auth: str = "-", auth_name: str = "-"
):
    return "\t".join(
        [
            tax,
            str(gid),
            sym,
            "-",
            syn,
            xref,
            "1",
            "-",
            desc,
            "protein-coding",
            auth,
            auth_name,
            "O",
            "-",
            "2020",
            "-",
        ]
    )


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def make_data_dir(root: Path) -> Path:
    """A tiny data folder in the real layout: 4 human genes, 4 mouse genes, 3 orthologs."""
    _write(
        root / "gene_text" / "Homo_sapiens.gene_info.gz",
        [
            GENE_INFO_HEADER,
            _info_row(
                "9606", 6010, "RHO", "CSNBAD1|OPN2|RP4", "MIM:180380|Ensembl:ENSG00000163914", "rhodopsin"
            ),
            _info_row(
                "9606", 2597, "GAPDH", "G3PD|GAPD", "Ensembl:ENSG00000111640", "glyceraldehyde-3-phosphate"
            ),
            _info_row(
                "9606",
                4512,
                "COX1",
                "COI|MTCO1",
                "-",
                "cytochrome c oxidase subunit I",
                "MT-CO1",
                "mitochondrially encoded cytochrome c oxidase I",
            ),
            # OPN2 is a synonym of RHO; here it is also a synonym of another gene -> ambiguous, and GAPD is
            # a synonym of GAPDH but also the official symbol of this made-up gene -> must not override.
            _info_row("9606", 9999, "GAPD", "OPN2", "-", "made-up gene"),
            _info_row("9606", 8888, "NONAME", "-", "-", "-"),
            _info_row("63221", 7777, "ND6", "-", "-", "Neanderthal gene"),
        ],
    )
    _write(
        root / "gene_text" / "refseq_summaries_human_by_symbol.tsv.gz",
        [
            SUMMARY_HEADER,
            "6010\tRHO\tOPN2\trhodopsin\tprotein-coding\tREVIEWED\tNM_000539.3\tRhodopsin is found in rods.",
            "2597\tGAPDH\tGAPD\tglyceraldehyde-3-phosphate dehydrogenase\tprotein-coding\tREVIEWED\tNM_1\t"
            "GAPDH catalyses a glycolysis step.",
            "5000\tNEWGENE\t-\tnew gene\tprotein-coding\tREVIEWED\tNM_2\tA gene newer than gene_info.",
            "19663\tRBPMS\t-\tRNA binding protein\tprotein-coding\tREVIEWED\tNM_3\tRBPMS binds RNA.",
        ],
    )
    _write(
        root / "gene_text" / "Mus_musculus.gene_info.gz",
        [
            GENE_INFO_HEADER,
            _info_row("10090", 19663, "Rbpms", "-", "Ensembl:ENSMUSG00000031586", "RNA binding protein"),
            _info_row("10090", 212541, "Rho", "Opn2", "Ensembl:ENSMUSG00000030324", "rhodopsin"),
            _info_row(
                "10090", 14433, "Gapdh", "Gapd", "Ensembl:ENSMUSG00000057666", "glyceraldehyde dehydrogenase"
            ),
            _info_row(
                "10090",
                17708,
                "COX1",
                "CoxI",
                "-",
                "cytochrome c oxidase subunit I",
                "mt-Co1",
                "cytochrome c oxidase I, mitochondrial",
            ),
            _info_row("10090", 11111, "Orphan", "-", "-", "orphan gene"),
        ],
    )
    _write(
        root / "gene_text" / "refseq_summaries_mouse_by_symbol.tsv.gz",
        [
            SUMMARY_HEADER,
            "14433\tGapdh\tGapd\tglyceraldehyde dehydrogenase\tprotein-coding\tVALIDATED\tNM_4\tMouse own.",
        ],
    )
    _write(
        root / "orthologs" / "human_mouse_hcop_fifteen_column.txt.gz",
        [
            HCOP_HEADER,
            "6010\tENSG00000163914\tHGNC:1\trhodopsin\tRHO\t3\t-\t212541\tENSMUSG00000030324\tMGI:1\trhodopsin\tRho\t6\t-\t"
            "HGNC,NCBI,Ensembl",
            "2597\tENSG00000111640\tHGNC:2\tgapdh\tGAPDH\t12\t-\t14433\tENSMUSG00000057666\tMGI:2\tgapdh\tGapdh\t6\t-\t"
            "HGNC,NCBI",
            # a weak ortholog with a summary and a strong one: the strong one wins.
            "2597\t-\t-\tgapdh\tGAPDH\t12\t-\t19663\t-\t-\t-\tRbpms\t8\t-\tOrthoDB",
            "19663\t-\t-\trbpms\tRBPMS\t8\t-\t19663\t-\t-\t-\tRbpms\t8\t-\tHGNC,NCBI,Ensembl,OMA",
        ],
    )
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def test_resolve_symbols_case_ids_and_synonyms(tiny: Path) -> None:
    human = GeneCatalog.load("human", data_dir=tiny)
    got = human.resolve(
        ["RHO", "Rho", "rho", "ENSG00000163914", "ENSG00000163914.12", "6010", "MTCO1", "MT-CO1", "COX1", "x"]
    )
    assert got.dtype == object
    assert got.tolist() == ["RHO", "RHO", "RHO", "RHO", "RHO", "RHO", "MT-CO1", "MT-CO1", "MT-CO1", ""]


def test_ambiguous_synonym_and_official_symbol_are_not_overridden(tiny: Path) -> None:
    human = GeneCatalog.load("human", data_dir=tiny)
    # GAPD is GAPDH's synonym but the official symbol of gene 9999; OPN2 names two genes.
    assert human.resolve(["GAPD", "OPN2", "G3PD"]).tolist() == ["GAPD", "", "GAPDH"]


def test_other_taxa_in_gene_info_are_ignored(tiny: Path) -> None:
    human = GeneCatalog.load("human", data_dir=tiny)
    assert "ND6" not in human
    assert human.resolve(["ND6"]).tolist() == [""]


def test_human_gene_text_rule(tiny: Path) -> None:
    human = GeneCatalog.load("human", data_dir=tiny)
    rho = human.gene_text("RHO")
    assert rho is not None
    assert rho.text == "RHO: rhodopsin. Rhodopsin is found in rods."
    assert rho.source == "own_summary"
    assert rho.entrez_id == 6010
    mito = human.gene_text("MT-CO1")
    assert mito is not None
    assert mito.text == "MT-CO1: mitochondrially encoded cytochrome c oxidase I."
    assert mito.source == "full_name"
    assert human.gene_text("NONAME") is None
    assert human.gene_text("not a gene") is None
    newer = human.gene_text("NEWGENE")
    assert newer is not None
    assert newer.text == "NEWGENE: new gene. A gene newer than gene_info."
    assert "NONAME" not in human.symbols()
    assert human.symbols() == sorted(human.symbols())


def test_mouse_own_ortholog_and_full_name(tiny: Path) -> None:
    mouse = GeneCatalog.load("mouse", data_dir=tiny)
    texts = mouse.gene_texts(["Gapdh", "Rho", "Rbpms", "Orphan", "mt-Co1", "nope"])
    gapdh, rho, rbpms, orphan, mito, nope = texts
    assert gapdh is not None
    assert gapdh.source == "own_summary"
    assert gapdh.text.endswith("Mouse own.")
    assert rho is not None
    assert rho.source == "ortholog_summary"
    assert rho.text == "Rho: rhodopsin. Rhodopsin is found in rods."
    # Rbpms has a weak GAPDH ortholog and a strong RBPMS ortholog.
    assert rbpms is not None
    assert rbpms.text == "Rbpms: RNA binding protein. RBPMS binds RNA."
    assert orphan is not None
    assert orphan.source == "full_name"
    assert orphan.text == "Orphan: orphan gene."
    assert mito is not None
    assert mito.symbol == "mt-Co1"
    assert nope is None
    assert mouse.resolve(["rbpms", "ENSMUSG00000031586.3", "COX1", "OPN2"]).tolist() == [
        "Rbpms",
        "Rbpms",
        "mt-Co1",
        "Rho",
    ]


def test_load_is_cached(tiny: Path) -> None:
    first = GeneCatalog.load("human", data_dir=tiny)
    assert GeneCatalog.load("human", data_dir=tiny / "." / "gene_text" / "..") is first


def test_suggest(tiny: Path) -> None:
    human = GeneCatalog.load("human", data_dir=tiny)
    assert human.suggest("gapdh")[0] == "GAPDH"
    assert "RHO" in human.suggest("CSNBAD1")
    assert "GAPDH" in human.suggest("GAPDHH")


def test_missing_files_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist; run `cellvec genes fetch --species human`"):
        GeneCatalog.load("human", data_dir=tmp_path / "nowhere")
    (tmp_path / "gene_text").mkdir()
    with pytest.raises(DataError, match=r"Homo_sapiens\.gene_info\.gz' is missing .*CELLVEC_DATA_DIR"):
        GeneCatalog.load("human", data_dir=tmp_path)


def test_malformed_gene_info(tmp_path: Path) -> None:
    _write(tmp_path / "gene_text" / "Homo_sapiens.gene_info.gz", ["a\tb", "1\t2"])
    _write(tmp_path / "gene_text" / "refseq_summaries_human_by_symbol.tsv.gz", [SUMMARY_HEADER])
    with pytest.raises(DataError, match="lacks the gene_info columns"):
        GeneCatalog.load("human", data_dir=tmp_path)


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="session")
def real_human() -> GeneCatalog:
    return GeneCatalog.load("human", data_dir=Settings().data_dir)


@pytest.fixture(scope="session")
def real_mouse() -> GeneCatalog:
    return GeneCatalog.load("mouse", data_dir=Settings().data_dir)


@pytest.mark.slow
def test_real_human_catalog(real_human: GeneCatalog) -> None:
    got = real_human.resolve(["Rho", "MT-ATP6", "ENSG00000121410.3", "7157", "p53", "NOT_A_GENE_X"])
    assert got.tolist() == ["RHO", "MT-ATP6", "A1BG", "TP53", "TP53", ""]
    rho = real_human.gene_text("RHO")
    assert rho is not None
    assert rho.source == "own_summary"
    assert rho.text.startswith("RHO: rhodopsin. ")
    mito = real_human.gene_text("MT-CO1")
    assert mito is not None
    assert mito.source == "full_name"
    assert len(real_human.symbols()) > 40_000


@pytest.mark.slow
def test_real_mouse_rgc_markers(real_mouse: GeneCatalog) -> None:
    markers = ["Rbpms", "Pou4f1", "Opn4", "Spp1", "Tbr1", "Cartpt", "Foxp2", "Eomes", "Tusc5", "Irx4"]
    symbols = real_mouse.resolve(markers)
    assert symbols[8] == "Trarg1"  # Tusc5 is the outdated symbol
    assert (symbols != "").all()
    texts = real_mouse.gene_texts(symbols.tolist())
    assert all(t is not None for t in texts)
    sources = {t.symbol: t.source for t in texts if t is not None}
    assert sources["Cartpt"] == "own_summary"
    assert sources["Rbpms"] == "ortholog_summary"
    assert all(t.text.startswith(f"{t.symbol}: ") for t in texts if t is not None)
    rbpms = texts[0]
    assert rbpms is not None
    assert "RNA binding protein" in rbpms.text


@pytest.mark.slow
def test_real_resolve_of_many_lower_cased_names(real_human: GeneCatalog) -> None:
    # Its speed is a benchmark figure, not a test: a timed assertion would fail on a loaded machine.
    names = [s.lower() for s in real_human.symbols()[:30_000]]
    got = real_human.resolve(names)
    assert np.mean(got != "") > 0.95


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_a_catalog_read_back_from_the_cache_answers_as_the_files_do(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, species: str
) -> None:
    """The parsed catalog is cached (names apart from texts); a later process reads it instead of the files."""
    monkeypatch.setenv("CELLVEC_CACHE_DIR", str(tmp_path / "cache"))
    fresh = GeneCatalog._build(species, tiny)  # type: ignore[arg-type]
    cached_files = sorted(p.name.split("-")[0] + p.suffixes[0] for p in (tmp_path / "cache" / "catalogs").iterdir())
    assert cached_files == [f"{species}.genes", f"{species}.names"]
    reads: list[str] = []
    import indexer.genes._catalog as catalog_module

    monkeypatch.setattr(catalog_module, "read_genes", lambda *a: reads.append("files"))
    again = GeneCatalog._build(species, tiny)  # type: ignore[arg-type]
    assert reads == []
    assert again._genes_loaded is None  # entries (texts) are read only when asked for
    names = ["RHO", "rho", "ENSG00000163914.12", "6010", "COX1", "Rbpms", "rbpms", "Gapdh", "OPN2", "x"]
    assert again.resolve(names).tolist() == fresh.resolve(names).tolist()
    assert again._genes_loaded is None  # resolving names (all species inference needs) reads no text
    assert again.gene_texts(fresh.all_symbols()) == fresh.gene_texts(fresh.all_symbols())
    assert again.sources(fresh.all_symbols()).tolist() == fresh.sources(fresh.all_symbols()).tolist()
    assert again.suggest("gapdh") == fresh.suggest("gapdh")
    assert len(again) == len(fresh)


def test_changed_data_files_are_read_again(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    monkeypatch.setenv("CELLVEC_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    GeneCatalog._build("human", data)
    info = data / "gene_text" / "Homo_sapiens.gene_info.gz"
    st = info.stat()
    os.utime(info, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a newer download of the same file
    GeneCatalog._build("human", data)
    assert len(list((tmp_path / "cache" / "catalogs").glob("human-*.names.json"))) == 2


def test_map_var_names_uses_a_species_call_it_is_given(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """annotate decides the query's species once; mapping its genes must not infer it a second time."""
    import anndata as ad
    import scipy.sparse as sp

    import indexer.genes._ids as ids
    from indexer.genes import map_var_names, resolve_species

    names = ["RHO", "gapdh", "ENSG00000163914", "nope"]
    adata = ad.AnnData(sp.csr_matrix(np.ones((2, len(names)), dtype=np.float32)))
    adata.var_names = names
    call = resolve_species(names, "human", data_dir=tiny)
    inferred = map_var_names(adata, species="human", data_dir=tiny)

    def no_second_inference(*args: object, **kwargs: object) -> None:
        msg = "resolve_species was called again"
        raise AssertionError(msg)

    monkeypatch.setattr(ids, "resolve_species", no_second_inference)
    given = map_var_names(adata, species="human", data_dir=tiny, species_call=call)
    assert given.symbols.tolist() == inferred.symbols.tolist() == ["RHO", "GAPDH", "", ""]  # one row per symbol
    assert given.species_call == call


def test_lookups_of_many_names_are_memoised_under_the_data_stamp(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset's names are resolved once per data files; new files or a small lookup compute afresh."""
    import os
    import shutil

    import indexer.genes._catalog as catalog_module

    monkeypatch.setenv("CELLVEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(catalog_module, "_MEMO_MIN", 5)
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    names = ["RHO", "rho", "ENSG00000163914.12", "6010", "OPN2", "nope"]
    first = GeneCatalog._build("human", data)
    expected = first.resolve(names).tolist()
    sources = first.sources(expected).tolist()
    digests = first.text_digests(expected).tolist()
    memo = tmp_path / "cache" / "catalogs" / "memo"
    assert len(list(memo.glob("*.npy"))) == 3
    calls: list[int] = []
    monkeypatch.setattr(GeneCatalog, "_resolve", lambda self, n: calls.append(len(n)) or np.array([""] * len(n)))
    again = GeneCatalog._build("human", data)
    assert again.resolve(names).tolist() == expected  # memoised: _resolve is not called
    assert again.sources(expected).tolist() == sources
    assert again.text_digests(expected).tolist() == digests
    assert digests[0] == hashlib.sha256(first.gene_text("RHO").text.encode()).hexdigest()  # type: ignore[union-attr]
    assert calls == []
    assert again.resolve(names[:3]).tolist() == ["", "", ""]  # below _MEMO_MIN: computed (by the stand-in)
    info = data / "gene_text" / "Homo_sapiens.gene_info.gz"
    st = info.stat()
    os.utime(info, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a newer download: the memo no longer applies
    GeneCatalog._build("human", data).resolve(names)
    assert calls == [3, len(names)]


def test_memoised_lookups_are_pruned_oldest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import indexer.genes._catalog as catalog_module

    monkeypatch.setattr(catalog_module, "_MEMO_KEEP", 3)
    for i in range(5):
        catalog_module._write_memo(tmp_path / f"{i}.npy", np.array([str(i)]))
        os.utime(tmp_path / f"{i}.npy", ns=(i * 10**9, i * 10**9))
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["2.npy", "3.npy", "4.npy"]
