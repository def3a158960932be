"""``build_reference(genes=...)``: a reference restricted to the genes its query has (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from annotator import annotate
from indexer import InputError, Reference, build_reference
from indexer.cells import log_normalise
from indexer.genes import genes_covered
from schemas import CellVectorSpec, ExpressionParams
from tests.conftest import FAST_ENCODER, PROGRAMS, SHARED, as_mouse, make_adata

# Two programs' markers and the shared genes: the B cell and NK markers are left out.
KEPT = PROGRAMS["T cell"] + PROGRAMS["Monocyte"] + SHARED


def _spec() -> CellVectorSpec:
    return CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)


def test_restricted_build_reads_only_the_given_genes(store, data_dir) -> None:  # type: ignore[no-untyped-def]
    rec = build_reference(
        make_adata(), store=store, name="r", label_key="cell_type", spec=_spec(), genes=[*KEPT, "NOT_A_GENE"]
    )
    assert "gene_subset.npz" in rec.artifacts
    assert rec.spec.expression is not None
    assert rec.spec.expression.c == 1.0  # same species: the head is the default one
    art = Reference.open(store, "r").artifacts
    assert art.gene_subset is not None
    assert sorted(art.gene_subset) == sorted(KEPT)  # the unknown name covers nothing
    proj = art.expression
    assert proj is not None
    assert proj.head_genes is not None
    assert set(proj.genes) <= set(KEPT)
    assert set(proj.head_genes) == set(KEPT)
    assert art.text_panel is not None
    assert set(art.text_panel) <= set(KEPT)


def test_restricted_build_normalises_over_the_whole_library(store, data_dir) -> None:  # type: ignore[no-untyped-def]
    ref = make_adata()
    build_reference(ref, store=store, name="r", label_key="cell_type", spec=_spec(), genes=KEPT)
    proj = Reference.open(store, "r").artifacts.expression
    assert proj is not None
    full = log_normalise(sp.csr_matrix(ref.X))
    cols = [list(ref.var_names).index(g) for g in proj.genes]
    np.testing.assert_allclose(proj.mean, np.asarray(full[:, cols].mean(axis=0)).ravel(), rtol=1e-5)
    cut = log_normalise(sp.csr_matrix(ref[:, KEPT].X))  # what cutting the counts first would give
    kept_cols = [KEPT.index(g) for g in proj.genes]
    assert not np.allclose(proj.mean, np.asarray(cut[:, kept_cols].mean(axis=0)).ravel(), rtol=1e-3)


def test_every_gene_given_changes_nothing(edge_store, data_dir) -> None:  # type: ignore[no-untyped-def]
    from indexer.reference import reference_vectors

    ref = make_adata()
    build_reference(ref, store=edge_store, name="a", label_key="cell_type", spec=_spec())
    build_reference(ref, store=edge_store, name="b", label_key="cell_type", spec=_spec(), genes=ref)
    va, _, ia = reference_vectors(edge_store, "a")
    vb, _, ib = reference_vectors(edge_store, "b")
    np.testing.assert_allclose(va[np.argsort(ia)], vb[np.argsort(ib)], atol=1e-5)


def test_queries_read_the_same_genes(edge_store, data_dir) -> None:  # type: ignore[no-untyped-def]
    build_reference(make_adata(), store=edge_store, name="r", label_key="cell_type", spec=_spec(), genes=KEPT)
    query = make_adata(5, seed=3)
    res = annotate(query, reference="r", store=edge_store, k=5)
    # Left-out genes with other values but the same library size give the same vectors.
    x = query.X.toarray()
    out = [i for i, g in enumerate(query.var_names) if g not in KEPT]
    x[:, out] = x[:, out][:, ::-1]
    shuffled = query.copy()
    shuffled.X = sp.csr_matrix(x)
    res2 = annotate(shuffled, reference="r", store=edge_store, k=5)
    np.testing.assert_allclose(res.vectors, res2.vectors, atol=1e-5)


def test_mouse_reference_restricted_to_a_human_query(edge_store, data_dir) -> None:  # type: ignore[no-untyped-def]
    human = make_adata(10, seed=1)
    rec = build_reference(
        as_mouse(make_adata()), store=edge_store, name="m", label_key="cell_type", spec=_spec(), genes=human
    )
    assert rec.spec.species == "mouse"
    assert rec.spec.expression is not None
    assert rec.spec.expression.c == ExpressionParams().c  # no setting tuned on a query's labels
    subset = Reference.open(edge_store, "m").artifacts.gene_subset
    assert subset is not None
    covered = genes_covered(human, species="mouse", data_dir=data_dir)
    assert covered.through_orthologs
    assert covered.species_call.species == "human"
    assert set(subset) <= set(covered.symbols)
    assert {"Cd3e", "Cd19", "Ms4a1"} <= set(subset)  # mouse symbols, not the human names
    res = annotate(human, reference="m", store=edge_store, k=5, min_ortholog_genes=20)
    assert res.params.orthologs is not None
    assert res.extra["panel_coverage"]["expression"]["fraction"] == pytest.approx(1.0)
    assert np.mean(res.labels == human.obs["cell_type"].to_numpy()) >= 0.9


def test_no_shared_gene_is_one_line_error(store, data_dir) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=r"^none of the 2 gene names of genes resolve to human or mouse genes") as e:
        build_reference(
            make_adata(), store=store, name="r", label_key="cell_type", spec=_spec(), genes=["NOT_GENE_1", "NOT_GENE_2"]
        )
    assert "\n" not in str(e.value)


def test_covered_genes_absent_from_the_reference_refused(store, data_dir) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=r"^none of the 2 genes the reference is restricted to are among its genes"):
        build_reference(
            make_adata(), store=store, name="r", label_key="cell_type", spec=_spec(), genes=["TP53", "EGFR"]
        )

