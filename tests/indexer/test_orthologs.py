"""Ortholog mapping: choice policy, the sparse product, the report, the floors, real HCOP data."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from indexer import GeneCatalog, InputError, OrthologMap, OrthologMappingError
from indexer.genes import check_mapping, load_hcop, map_adata
from schemas import OrthologReport

REF = ["CD3E", "CD19", "LYZ", "HLA-DRA", "GENE1", "GENE2"]


@pytest.fixture
def mouse_to_human(fake_catalogs: dict) -> OrthologMap:
    pairs = [
        ("Cd3e", "CD3E", 12),
        ("Cd19", "CD19", 11),
        ("Lyz2", "LYZ", 9),  # two mouse genes on one human gene: summed
        ("Lyz1", "LYZ", 8),
        ("H2-Ea", "HLA-DRA", 6),
        ("Gene1", "GENE1", 10),  # Gene1 has two human orthologs: the best-supported wins
        ("Gene1", "GENE2", 3),
        ("Gene3", "GENE3", 10),  # best ortholog absent from the reference ...
        ("Gene3", "GENE2", 2),  # ... and no fallback to a weak one that is present
        ("Cd3e", "CD3E", 2),  # duplicate pair keeps its highest support
    ]
    return OrthologMap.from_pairs(
        "mouse", "human", pairs, query_catalog=fake_catalogs["mouse"], reference_catalog=fake_catalogs["human"]
    )


def test_choice_policy(mouse_to_human: OrthologMap) -> None:
    chosen = mouse_to_human.choose(REF).set_index("q")["r"].to_dict()
    assert chosen == {
        "Cd3e": "CD3E", "Cd19": "CD19", "Lyz1": "LYZ", "Lyz2": "LYZ", "H2-Ea": "HLA-DRA", "Gene1": "GENE1",
    }  # fmt: skip
    assert len(mouse_to_human) == 9


def test_one_to_one_beats_support(fake_catalogs: dict) -> None:
    # Gene5 -> GENE5 is reciprocal 1:1 (support 2); Gene5 -> GENE6 has more support but GENE6 has another
    # mouse ortholog, so the pair is not one-to-one.
    pairs = [("Gene5", "GENE5", 2), ("Gene5", "GENE6", 9), ("Gene6", "GENE6", 12)]
    omap = OrthologMap.from_pairs(
        "mouse", "human", pairs, query_catalog=fake_catalogs["mouse"], reference_catalog=fake_catalogs["human"]
    )
    got = omap.choose(["GENE5", "GENE6"]).set_index("q")["r"].to_dict()
    assert got == {"Gene5": "GENE5", "Gene6": "GENE6"}


def test_map_matrix_is_a_sum_preserving_product(mouse_to_human: OrthologMap) -> None:
    names = ["Cd3e", "LYZ2", "Lyz1", "H2-Ea", "Gene1", "Gene3", "Unknown1", "12478"]  # case, Entrez id
    x = sp.csr_matrix(np.array([[1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 0, 0, 2, 0, 0, 1]], dtype=np.float32))
    xm, report = mouse_to_human.map_matrix(x, names, REF)
    assert sp.issparse(xm)
    assert xm.shape == (2, len(REF))
    np.testing.assert_array_equal(
        xm.toarray(),
        [[1, 8, 2 + 3, 4, 5, 0], [0, 1, 1, 0, 2, 0]],  # CD3E, CD19 (Entrez 12478), LYZ = Lyz2 + Lyz1, ...
    )
    assert report.n_query_genes == 8
    assert report.n_resolved == 7  # Unknown1 does not resolve
    assert report.n_with_ortholog == 7  # every resolved name is in the pair list
    assert report.n_mapped == 6  # Gene3's ortholog is not in the reference
    assert report.n_one_to_one == 3  # Cd3e, Cd19, H2-Ea
    assert report.n_one_to_many == 1  # Gene1
    assert report.n_many_to_one == 2  # Lyz1 + Lyz2 share LYZ
    assert report.n_reference_covered == 5
    assert report.expression_mass_share == pytest.approx(27 / 40)  # all but Gene3 (6) and Unknown1 (7)
    assert report.ortholog_mass_share == pytest.approx((40 - 7) / 40)
    assert report.unmapped_examples == ["Unknown1", "Gene3"]
    assert report.summary().startswith("orthologs: 6 of 8 mouse genes mapped onto 5 human genes through HCOP")


def test_map_matrix_checks_shapes(mouse_to_human: OrthologMap) -> None:
    with pytest.raises(InputError, match="3 gene columns but 2 gene names"):
        mouse_to_human.map_matrix(sp.csr_matrix((2, 3)), ["Cd3e", "Cd19"], REF)


def test_map_adata_keeps_covered_genes_and_library_size(mouse_to_human: OrthologMap) -> None:
    counts = np.array([[10, 0, 30, 60], [5, 5, 0, 0]], dtype=np.float32)
    q = ad.AnnData(X=sp.csr_matrix(counts))
    q.var_names = ["Cd3e", "Lyz2", "Lyz1", "Unknown1"]
    q.obs_names = ["c1", "c2"]
    out, report = map_adata(q, mouse_to_human, REF)
    assert list(out.var_names) == ["CD3E", "LYZ"]  # no all-zero columns for unmapped reference genes
    # ln(1 + CP10k) with the library size over all four genes, not the mapped ones only.
    expected = np.log1p(np.array([[1000, 3000], [5000, 5000]], dtype=np.float64))
    np.testing.assert_allclose(out.X.toarray(), expected, rtol=1e-5)
    assert out.uns["cellvec_orthologs"]["n_mapped"] == 3
    assert report.ortholog_mass_share == pytest.approx((0.1 + 0.3 + 1.0) / 2)
    # Log-normalised input maps to the same values.
    lognorm = q.copy()
    lognorm.X = sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32))
    out2, _ = map_adata(lognorm, mouse_to_human, REF)
    np.testing.assert_allclose(out2.X.toarray(), expected, rtol=1e-4)


def _report(**kw: object) -> OrthologReport:
    base = {
        "query_species": "mouse", "reference_species": "human", "n_query_genes": 19371, "n_resolved": 19000,
        "n_with_ortholog": 17000, "n_mapped": 15000, "n_one_to_one": 11000, "n_one_to_many": 4000,
        "n_many_to_one": 100, "n_reference_genes": 20000, "n_reference_covered": 14000,
        "expression_mass_share": 0.9, "ortholog_mass_share": 0.95, "unmapped_examples": ["Malat1"],
    }  # fmt: skip
    return OrthologReport.model_validate(base | kw)


def test_check_mapping_floors() -> None:
    check_mapping(_report())
    with pytest.raises(OrthologMappingError, match=r"^only 35 of the mouse query's 19,371 genes map onto"):
        check_mapping(_report(n_mapped=35))
    with pytest.raises(
        OrthologMappingError, match=r"^only 31% of the mouse query's expression maps onto human genes .*at least 50%"
    ) as e:
        check_mapping(_report(expression_mass_share=0.31))
    assert "mouse" in str(e.value)
    assert "\n" not in str(e.value)


def test_same_species_is_refused(data_dir: Path) -> None:
    with pytest.raises(InputError, match="needs no mapping"):
        OrthologMap.load("human", "human", data_dir=data_dir)


# ---------------------------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_hcop_loads_once(data_dir: Path) -> None:
    from indexer.genes._hcop import _TABLES

    _TABLES.clear()
    table = load_hcop(data_dir=data_dir)
    again = load_hcop(data_dir=data_dir)
    assert again is table  # read once per data folder, then served from the cache
    assert len(table) > 60_000
    assert {"human_symbol", "mouse_symbol", "n_support"} <= set(table.columns)


@pytest.mark.slow
def test_real_pairs(data_dir: Path) -> None:
    m2h = OrthologMap.load("mouse", "human", data_dir=data_dir)
    h2m = OrthologMap.load("human", "mouse", data_dir=data_dir)
    best_h = m2h.best.set_index("q")["r"]
    best_m = h2m.best.set_index("q")["r"]
    assert best_h["Cd3e"] == "CD3E"
    assert best_h["mt-Nd5"] == "MT-ND5"
    assert best_h["H2-Ea"] == "HLA-DRA"
    assert best_h["Lyz1"] == best_h["Lyz2"] == "LYZ"
    assert best_m["LYZ"] == "Lyz2"  # 9 resources against Lyz1's 8


@pytest.mark.slow
def test_pbmc_onto_mouse_reference(pbmc: ad.AnnData, actinn: ad.AnnData, data_dir: Path) -> None:
    ref = GeneCatalog.load("mouse", data_dir=data_dir).resolve(list(actinn.var_names))
    omap = OrthologMap.load("human", "mouse", data_dir=data_dir)
    out, report = map_adata(pbmc, omap, ref)
    assert out.n_obs == pbmc.n_obs
    assert report.n_mapped > 650
    assert report.n_one_to_one > 450
    assert report.expression_mass_share > 0.9
    assert "Cd74" in out.var_names
    assert "Lyz2" in out.var_names
    check_mapping(report)


@pytest.mark.slow
def test_actinn_onto_small_human_panel(pbmc: ad.AnnData, actinn: ad.AnnData, data_dir: Path) -> None:
    ref = GeneCatalog.load("human", data_dir=data_dir).resolve(list(pbmc.var_names))
    omap = OrthologMap.load("mouse", "human", data_dir=data_dir)
    out, report = map_adata(actinn, omap, ref)
    # Nearly every mouse count has a human ortholog, but pbmc68k's 765 genes catch a fraction of them.
    assert report.ortholog_mass_share > 0.95
    assert report.expression_mass_share < 0.3
    assert 650 < report.n_reference_covered <= 765
    assert out.n_vars == report.n_reference_covered
    with pytest.raises(OrthologMappingError, match=r"only 1\d% of the mouse query's expression maps onto human"):
        check_mapping(report)  # the share landing on these 765 genes, not on the human catalog
    with pytest.raises(OrthologMappingError, match=r"only \d{3} of the mouse query's 19,371 genes"):
        check_mapping(report, min_genes=5000)


@pytest.mark.slow
def test_wrong_species_query_fails_the_mass_floor(pbmc: ad.AnnData, data_dir: Path) -> None:
    # A human query declared mouse: its names barely resolve as mouse genes with mouse orthologs.
    omap = OrthologMap.load("mouse", "human", data_dir=data_dir)
    ref = GeneCatalog.load("human", data_dir=data_dir).all_symbols()
    q = pbmc.copy()
    q.var_names = [f"X{i}" for i in range(q.n_vars)]
    _, report = map_adata(q, omap, ref)
    with pytest.raises(OrthologMappingError, match=r"^only \d of the mouse query's 765 genes map onto human"):
        check_mapping(report)
    with pytest.raises(OrthologMappingError, match=r"^only [0-9]% of the mouse query's expression maps onto human"):
        check_mapping(report, min_genes=0)
