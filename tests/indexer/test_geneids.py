from __future__ import annotations

import gzip
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from indexer import GeneCatalog, InputError, Settings, SpeciesMismatchError
from indexer.genes import coverage_report, detect_id_kind, infer_species, map_var_names
from schemas import CoverageReport

DATA = Settings().data_dir
RGC_MARKERS = ["Rbpms", "Pou4f1", "Opn4", "Spp1", "Tbr1", "Cartpt", "Foxp2", "Eomes", "Tusc5", "Irx4"]


def _adata(names: list[str], x: np.ndarray | None = None, **var: list[str]) -> ad.AnnData:
    rng = np.random.default_rng(0)
    if x is None:
        x = rng.poisson(1.0, size=(30, len(names))).astype(np.float32)
    return ad.AnnData(
        X=sparse.csr_matrix(x),
        var=pd.DataFrame(var, index=pd.Index(names, dtype=str)),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])]),
    )


def test_detect_id_kind() -> None:
    assert detect_id_kind(["ENSG00000121410.5", "ENSG00000175899", "RHO"]) == "ensembl"
    assert detect_id_kind(["ENSMUSG00000031586"]) == "ensembl"
    assert detect_id_kind(["6010", "2597", "RHO"]) == "entrez"
    assert detect_id_kind(["RHO", "GAPDH", "6010"]) == "symbol"
    assert detect_id_kind([]) == "symbol"


def test_infer_species() -> None:
    assert infer_species(["ENSMUSG00000031586.2", "ENSMUSG00000030324"], data_dir=DATA).species == "mouse"
    assert infer_species(["ENSG00000163914", "ENSG00000111640.14"], data_dir=DATA).species == "human"
    assert infer_species(RGC_MARKERS, data_dir=DATA).species == "mouse"
    assert infer_species(["RHO", "GAPDH", "MT-CO1", "HLA-DRA"], data_dir=DATA).species == "human"
    entrez = infer_species(["19663", "18996", "30044"], data_dir=DATA)  # Rbpms, Pou4f1, Opn4
    assert (entrez.species, entrez.evidence) == ("mouse", "entrez")


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="session")
def catalogs() -> tuple[GeneCatalog, GeneCatalog]:
    return GeneCatalog.load("human", data_dir=DATA), GeneCatalog.load("mouse", data_dir=DATA)


@pytest.mark.slow
@pytest.mark.usefixtures("catalogs")
def test_map_mixed_identifiers_human() -> None:
    names = ["ENSG00000163914.5", "ENSG00000111640", "7157", "p53", "rho", "NOT_A_GENE_Q"]
    # A mix: no kind is the majority, so "symbol"; every name still maps through its own route.
    x = np.zeros((4, len(names)), dtype=np.float32)
    x[:, 5] = 9.0  # the unmapped gene is the most expressed
    x[:, 0] = 1.0
    mapping = map_var_names(_adata(names, x), data_dir=DATA)
    assert mapping.species == "human"
    assert mapping.id_kind == "symbol"
    assert mapping.symbols.tolist() == ["RHO", "GAPDH", "TP53", "", "", ""]  # p53/rho repeat TP53/RHO
    assert mapping.n_mapped == 3
    assert mapping.n_duplicates == 2
    assert set(mapping.duplicate_examples) == {"TP53", "RHO"}
    assert mapping.unmapped_examples == ["NOT_A_GENE_Q"]
    assert "3 of 6 genes" in mapping.summary()
    with pytest.raises((TypeError, ValueError)):
        mapping.symbols[0] = "X"


@pytest.mark.slow
@pytest.mark.usefixtures("catalogs")
def test_duplicate_keeps_the_exact_name() -> None:
    mapping = map_var_names(_adata(["p53", "TP53", "Rbpms"]), species="human", data_dir=DATA)
    assert mapping.symbols.tolist() == ["", "TP53", "RBPMS"]


@pytest.mark.slow
@pytest.mark.usefixtures("catalogs")
def test_map_mouse_entrez_and_gene_column() -> None:
    ids = ["19663", "18996", "30044"]  # Rbpms, Pou4f1, Opn4
    mapping = map_var_names(_adata(ids), data_dir=DATA)
    assert mapping.id_kind == "entrez"
    assert mapping.species == "mouse"
    assert mapping.symbols.tolist() == ["Rbpms", "Pou4f1", "Opn4"]
    adata = _adata([f"g{i}" for i in range(3)], ensembl=["ENSMUSG00000031586.7", "x", "ENSMUSG00000030324"])
    by_column = map_var_names(adata, gene_column="ensembl", data_dir=DATA)
    assert by_column.symbols.tolist() == ["Rbpms", "", "Rho"]
    assert by_column.gene_column == "ensembl"


@pytest.mark.slow
@pytest.mark.usefixtures("catalogs")
def test_errors_name_problem_and_fix() -> None:
    with pytest.raises(InputError, match=r"gene column 'symbol' is not in var \(var columns: ensembl\)"):
        map_var_names(_adata(["a"], ensembl=["b"]), gene_column="symbol", data_dir=DATA)
    mouse_ids = [f"ENSMUSG{n:011d}" for n in (31586, 30324, 57666)]
    with pytest.raises(
        SpeciesMismatchError,
        match=r"^species='human' contradicts the var_names: 100% of its 3 Ensembl gene ids are mouse; "
        r"pass species='mouse' or species='auto'$",
    ):
        map_var_names(_adata(mouse_ids), species="human", data_dir=DATA)
    with pytest.raises(SpeciesMismatchError, match=r"pass --species mouse \(or leave --species out"):
        map_var_names(_adata(mouse_ids), species="human", data_dir=DATA, option="--species")
    with pytest.raises(InputError, match=r"none of the 3 var_names map to mouse gene symbols"):
        map_var_names(_adata(["foo1", "bar2", "baz3"]), species="mouse", data_dir=DATA)
    # Mouse-only predicted genes (Gm…): they resolve as mouse, hardly as human.
    lower = [g for g in GeneCatalog.load("mouse", data_dir=DATA).all_symbols() if g.startswith("Gm")][:40]
    with pytest.raises(SpeciesMismatchError, match="species='human' contradicts the var_names") as e:
        map_var_names(_adata(lower), species="human", data_dir=DATA)
    assert " they " not in str(e.value)


@pytest.mark.slow
@pytest.mark.usefixtures("catalogs")
def test_coverage_on_synthetic_mouse_rgc_atlas() -> None:
    # Real Tran 2019 cluster names as labels; the expression favours one marker per cluster.
    with gzip.open(DATA / "datasets" / "tran2019_rgc_atlas_labels.txt.gz", "rt") as fh:
        labels = pd.read_csv(fh, sep="\t", skiprows=[1], usecols=["Cluster"])["Cluster"]
    wanted = ["22_M5", "28_FmidiOFF", "33_M1", "35_Novel", "36_Novel", "43_AlphaONS"]
    cells = labels[labels.isin(wanted)].groupby(labels).head(20).to_numpy()
    assert set(cells) == set(wanted)
    genes = [*RGC_MARKERS, "mt-Co1", "mt-Nd1", "Gm99999zz", "Gapdh"]
    rng = np.random.default_rng(1)
    x = rng.poisson(0.3, size=(len(cells), len(genes))).astype(np.float32)
    for i, label in enumerate(cells):
        x[i, wanted.index(label)] += 20
    x[:, genes.index("mt-Co1")] += 5
    adata = _adata(genes, x)
    adata.obs["Cluster"] = pd.Categorical(cells)
    report = coverage_report(adata, top_n=3, data_dir=DATA)
    assert isinstance(report, CoverageReport)
    assert report.species == "mouse"
    assert report.n_cells == len(cells)
    assert report.n_mapped == len(genes) - 1
    total = (
        report.share_own_summary
        + report.share_ortholog_summary
        + report.share_full_name
        + report.share_none
        + report.share_mitochondrial
    )
    assert total == pytest.approx(1.0)
    assert report.share_ortholog_summary > 0.2  # Rbpms, Pou4f1, Opn4, Spp1, Tbr1 use their human ortholog
    assert report.share_mitochondrial > 0.2
    assert report.mitochondrial[0].name == "mt-Co1"
    assert report.mitochondrial[0].count == len(cells)
    assert all(g.name != "mt-Co1" for g in report.missing)
    text = report.to_text()
    assert "ortholog summary" in text
    assert "mitochondrial genes: mt-Co1" in text


@pytest.mark.slow
@pytest.mark.usefixtures("catalogs")
def test_coverage_counts_only_top_n_positive_values() -> None:
    x = np.array([[5, 4, 0, 0, 1], [0, 0, 0, 0, 0], [1, 2, 3, 0, 0]], dtype=np.float32)
    names = ["RHO", "GAPDH", "MT-CO1", "NOT_A_GENE_Q", "TP53"]
    report = coverage_report(_adata(names, x), species="human", top_n=2, data_dir=DATA)
    assert report.n_counted == 4  # cell 2 has no expressed gene
    assert report.share_mitochondrial == pytest.approx(1 / 4)
    assert report.share_none == 0
    assert [g.name for g in report.mitochondrial] == ["MT-CO1"]
    dense = _adata(names, x)
    dense.X = x.copy()
    assert coverage_report(dense, species="human", top_n=2, data_dir=DATA) == report


def test_coverage_rejects_scaled_data() -> None:
    adata = _adata(["RHO", "GAPDH"], np.array([[-1.0, 2.0]], dtype=np.float32))
    with pytest.raises(InputError, match=r"negative values \(scaled data\).*adata\.raw\.to_adata\(\)"):
        coverage_report(adata, species="human")
    with pytest.raises(InputError, match="top_n=0 must be a positive"):
        coverage_report(adata, top_n=0)


@pytest.mark.slow
@pytest.mark.usefixtures("catalogs")
def test_cli_coverage(tmp_path: Path) -> None:
    from click.testing import CliRunner

    import cellvec.cli._genes  # noqa: F401  (registers the commands)
    from cellvec.cli._app import cli
    from indexer import CellvecError

    x = np.array([[5, 4, 0, 1], [1, 2, 3, 0]], dtype=np.float32)
    path = tmp_path / "d.h5ad"
    _adata(["Rbpms", "Cartpt", "mt-Co1", "Irx4"], x).write_h5ad(path)
    monkey_env = {"CELLVEC_DATA_DIR": str(DATA)}
    result = CliRunner(env=monkey_env).invoke(
        cli, ["genes", "coverage", "--adata", str(path), "--top-n", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "ortholog summary" in result.output
    assert "mitochondrial genes: mt-Co1 (1)" in result.output
    result = CliRunner(env=monkey_env).invoke(
        cli, ["genes", "coverage", "--adata", str(path), "--species", "mouse", "--json"]
    )
    data = json.loads(result.output)
    assert data["species"] == "mouse"
    assert data["n_counted"] == 6  # zeros never count
    result = CliRunner(env=monkey_env).invoke(
        cli, ["genes", "coverage", "--adata", str(path), "--gene-column", "nope"]
    )
    assert isinstance(result.exception, CellvecError)
    assert "gene column 'nope' is not in var" in str(result.exception)
