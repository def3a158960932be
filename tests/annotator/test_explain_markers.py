"""Explanations name marker genes: exact shares of the label's class-head score (default hybrid mode)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from annotator import UNKNOWN, annotate
from indexer import VectorStore, build_reference
from indexer.cells import log_normalise
from indexer.reference import Reference
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER, PROGRAMS, SHARED


def test_markers_are_the_label_program_not_the_most_expressed_genes(
    edge_store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData
) -> None:
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=spec)
    res = annotate(query_adata, reference="ref", store=edge_store, k=5, unknown_alpha=0, explain=True)
    genes, values = res.extra["explain_markers"]
    assert genes.shape == values.shape == (query_adata.n_obs, 5)
    for label, markers in res.label_markers().items():
        assert set(markers) <= set(PROGRAMS[label]), (label, markers)  # the synthetic program of the label
    text = {g for ex in res.explanations or [] for g, _ in ex}
    assert text & set(SHARED)  # the text part is where the most expressed, shared genes show up
    assert not set(genes.ravel()) & set(SHARED)
    assert np.all(np.diff(values, axis=1)[np.isfinite(np.diff(values, axis=1))] <= 0)  # largest first
    assert np.nanmin(values) > 0


def test_marker_contribution_is_expression_times_centred_coefficient(
    edge_store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData
) -> None:
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=spec)
    res = annotate(query_adata, reference="ref", store=edge_store, k=5, unknown_alpha=0, explain=True)
    proj = Reference.open(edge_store, "ref").artifacts.expression
    assert proj is not None
    assert proj.head_coef is not None
    assert proj.head_classes is not None
    x = log_normalise(query_adata.X.tocsr().astype(np.float32)).toarray()
    col = {g: i for i, g in enumerate(query_adata.var_names)}
    head = {g: j for j, g in enumerate(proj.head_genes)}
    classes = list(proj.head_classes)
    centred = proj.head_coef - proj.head_coef.mean(axis=0, keepdims=True)
    genes, values = res.extra["explain_markers"]
    for i in (0, 7, 23):
        c = classes.index(res.labels[i])
        want = {g: x[i, col[g]] * centred[c, head[g]] for g in head}
        best = sorted((v, g) for g, v in want.items() if v > 0)[::-1][:5]
        assert list(genes[i]) == [g for _, g in best]
        np.testing.assert_allclose(values[i], [v for v, _ in best], rtol=1e-4)
        # The shares over every gene, plus the centred intercept, are the label's centred class score.
        b = proj.head_intercept - proj.head_intercept.mean()
        scores = np.array([sum(x[i, col[g]] * proj.head_coef[k, head[g]] for g in head) for k in range(len(classes))])
        np.testing.assert_allclose(sum(want.values()) + b[c], scores[c] + proj.head_intercept[c]
                                   - (scores + proj.head_intercept).mean(), rtol=1e-4, atol=1e-5)


def test_markers_are_written_rectangular_with_unknown_cells(
    edge_store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, tmp_path: Path
) -> None:
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=spec)
    query = query_adata.copy()
    x = query.X.toarray()
    x[[0, 5]] = 0  # cells without any expressed gene: Unknown
    x[3] = x[3] + x[13] + x[23] + x[33]  # a mix of the four programs: Unknown at the novelty check
    query.X = sp.csr_matrix(x)
    res = annotate(query, reference="ref", store=edge_store, k=5, explain=True)
    unknown = res.labels == UNKNOWN
    assert unknown.any()
    assert not unknown.all()
    out = res.to_adata(query, copy=True)
    out.write_h5ad(tmp_path / "a.h5ad")  # ragged lists once crashed here
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    explain = back.uns["cellvec"]["explain"]
    assert explain["marker_genes"].shape == explain["marker_contributions"].shape == (query_adata.n_obs, 5)
    assert (explain["marker_genes"][unknown] == "").all()
    assert np.isnan(explain["marker_contributions"][unknown]).all()
    assert "class-head" in explain["marker_note"]
    assert (back.obs["cellvec_marker_genes"][unknown] == "").all()
    assert back.obs["cellvec_marker_genes"][~unknown].str.len().min() > 0


def test_paper_mode_has_no_class_head_so_no_markers(
    edge_store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec)
    res = annotate(query_adata, reference="ref", store=edge_store, k=5, explain=True)
    assert "explain_markers" not in res.extra
    assert res.label_markers() == {}
    assert "marker_genes" not in res.to_adata(query_adata, copy=True).uns["cellvec"]["explain"]
