"""Why a cell got its label: exact decomposition without SupCon, occlusion through it, output fields."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from annotator import UNKNOWN, AnnotationResult, annotate
from annotator._explain import _by_symbol, _top_per_row, explain_labels
from indexer import CellVectors, VectorStore, build_reference, encode_cells
from indexer.cells import l2_normalise
from indexer.reference import load_artifacts, load_manifest, reference_vectors, resolve_version
from schemas import CellVectorSpec, RefineParams

SMALL_SUPCON = RefineParams(method="supcon", hidden_dim=32, out_dim=8, proj_dim=8, epochs=3, batch_size=64,
                            val_fraction=0.0)


def _annotate_and_encode(
    store: VectorStore, ref: ad.AnnData, query: ad.AnnData, spec: CellVectorSpec, **kwargs: object
) -> tuple[AnnotationResult, CellVectors]:
    build_reference(ref, store=store, name="ref", label_key="cell_type", spec=spec)
    res = annotate(query, reference="ref", store=store, unknown_alpha=0, **kwargs)  # type: ignore[arg-type]
    rec = resolve_version(load_manifest(store, "ref"))
    cells, _ = encode_cells(query, spec=rec.spec, store=store, artifacts=load_artifacts(store, rec))
    return res, cells


def _centroids(store: VectorStore) -> dict[str, np.ndarray]:
    vecs, labels, _ = reference_vectors(store, "ref")
    out = {}
    for lab in np.unique(labels):
        c = vecs[labels == lab].astype(np.float64).mean(axis=0)
        out[str(lab)] = c / np.linalg.norm(c)
    return out


def test_paper_mode_contributions_sum_to_the_cosine_with_the_centroid(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    res, cells = _annotate_and_encode(store, adata, query_adata, fast_spec)
    explain_labels(res, cells=cells, store=store, top=None)
    assert res.extra["explain_method"] == "exact"
    assert res.explanations is not None
    centroids = _centroids(store)
    for i, label in enumerate(res.labels):
        v = res.vectors[i].astype(np.float64)
        cos = float(v @ centroids[label] / np.linalg.norm(v))
        contributions = [c for _, c in res.explanations[i]]
        assert len(contributions) == cells.weights[i].nnz  # type: ignore[index]
        assert sum(contributions) == pytest.approx(cos, abs=1e-5)
        assert res.extra["explain_similarity"][i] == pytest.approx(cos, abs=1e-5)
        assert abs(res.extra["explain_unattributed"][i]) < 1e-5


def test_paper_mode_contribution_is_weight_times_gene_cosine(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    res, cells = _annotate_and_encode(store, adata, query_adata, fast_spec)
    explain_labels(res, cells=cells, store=store, top=None)
    assert res.explanations is not None
    assert cells.weights is not None
    assert cells.gene_vectors is not None
    c = _centroids(store)[res.labels[0]]
    row = cells.weights[0]
    pooled = row @ cells.gene_vectors
    got = dict(res.explanations[0])
    for col, w in zip(row.indices, row.data, strict=True):
        expected = w * float(cells.gene_vectors[col] @ c) / np.linalg.norm(pooled)
        assert got[str(cells.symbols[col])] == pytest.approx(expected, abs=1e-6)


def test_annotate_explain_keeps_the_top_genes_sorted(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=store, name="ref", label_key="cell_type", spec=fast_spec)
    res = annotate(query_adata, reference="ref", store=store, explain=True, unknown_alpha=0)
    assert res.explanations is not None
    assert len(res.explanations) == query_adata.n_obs
    for ex in res.explanations:
        assert len(ex) == 5
        values = [v for _, v in ex]
        assert values == sorted(values, reverse=True)
    # A B cell is pulled toward "B cell" mostly by B cell program genes.
    b_markers = {"MS4A1", "CD79A", "CD79B", "CD19", "PAX5", "BLK", "CD22", "FCRL1"}
    b_rows = np.flatnonzero(res.labels == "B cell")
    top1 = [res.explanations[i][0][0] for i in b_rows]
    assert np.mean([g in b_markers for g in top1]) > 0.5
    out = res.to_adata(query_adata, copy=True)
    assert out.obs["cellvec_top_genes"].iloc[0] == ", ".join(g for g, _ in res.explanations[0])
    assert out.uns["cellvec"]["explain"]["method"] == "exact"
    assert len(out.uns["cellvec"]["explain"]["genes"]) == query_adata.n_obs


def test_unknown_cells_get_no_explanation(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    query = query_adata.copy()
    x = query.X.toarray()
    x[0] = 0  # no expressed gene: no vector
    query.X = sp.csr_matrix(x)
    res, cells = _annotate_and_encode(store, adata, query, fast_spec, min_confidence=1.0)
    explain_labels(res, cells=cells, store=store)
    assert res.explanations is not None
    unknown = np.flatnonzero(res.labels == UNKNOWN)
    assert 0 in unknown
    for i in unknown:
        assert res.explanations[i] == []
        assert np.isnan(res.extra["explain_similarity"][i])
    assert all(res.explanations[i] for i in np.flatnonzero(res.labels != UNKNOWN))


@pytest.mark.parametrize("text_dims", [None, 4])
def test_hybrid_text_share_is_exact_and_the_rest_is_reported(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, text_dims: int | None
) -> None:
    spec = CellVectorSpec(
        mode="hybrid", encoder="random:32", expression={"n_genes": 30, "n_components": 5}, text_dims=text_dims
    )
    res, cells = _annotate_and_encode(store, adata, query_adata, spec)
    explain_labels(res, cells=cells, store=store, top=None)
    assert res.extra["explain_method"] == "exact-text"
    assert res.explanations is not None
    assert cells.gene_vectors is not None
    centroids = _centroids(store)
    text_dim = text_dims or cells.gene_vectors.shape[1]  # the projected text view is the vector's tail
    for i, label in enumerate(res.labels):
        v = res.vectors[i].astype(np.float64)
        c = centroids[label]
        text_share = float(v[-text_dim:] @ c[-text_dim:]) / np.linalg.norm(v)
        total = sum(x for _, x in res.explanations[i])
        assert total == pytest.approx(text_share, abs=1e-5)
        assert total + res.extra["explain_unattributed"][i] == pytest.approx(
            float(v @ c) / np.linalg.norm(v), abs=1e-5
        )


def test_supcon_uses_occlusion_through_the_encoder(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    spec = fast_spec.model_copy(update={"refine": SMALL_SUPCON})
    res, cells = _annotate_and_encode(store, adata, query_adata, spec)
    explain_labels(res, cells=cells, store=store, top=None)
    assert res.extra["explain_method"] == "occlusion"
    assert "occlusion" in res.extra["explain_note"]
    assert res.explanations is not None
    assert cells.weights is not None
    assert cells.gene_vectors is not None
    model = load_artifacts(store, resolve_version(load_manifest(store, "ref"))).supcon
    assert model is not None
    centroids = _centroids(store)  # of the stored, refined vectors
    for i in (0, 25):
        c = centroids[res.labels[i]]
        base = float(res.vectors[i] @ c)
        assert res.extra["explain_similarity"][i] == pytest.approx(base, abs=1e-5)
        got = dict(res.explanations[i])
        row = cells.weights[i].toarray().ravel()
        for col in np.flatnonzero(row)[:6]:
            w = row.copy()
            w[col] = 0
            x = l2_normalise((w @ cells.gene_vectors)[None, :].astype(np.float32))
            drop = base - float(model.encode(x)[0] @ c)
            assert got[str(cells.symbols[col])] == pytest.approx(drop, abs=1e-4)


def test_occlusion_is_capped_per_cell(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import annotator._explain as explain

    monkeypatch.setattr(explain, "MAX_OCCLUDED", 3)
    spec = fast_spec.model_copy(update={"refine": SMALL_SUPCON})
    res, cells = _annotate_and_encode(store, adata, query_adata, spec)
    explain_labels(res, cells=cells, store=store, top=None)
    assert res.explanations is not None
    assert cells.weights is not None
    for i, ex in enumerate(res.explanations):
        row = cells.weights[i].toarray().ravel()
        heaviest = {str(cells.symbols[c]) for c in np.argsort(-row, kind="stable")[:3]}
        assert {g for g, _ in ex} == heaviest


def test_expression_mode_explains_nothing(
    store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData
) -> None:
    spec = CellVectorSpec(mode="expression", encoder="random:32",
                          expression={"n_genes": 30, "n_components": 5})
    res, cells = _annotate_and_encode(store, adata, query_adata, spec)
    explain_labels(res, cells=cells, store=store)
    assert res.extra["explain_method"] == "none"
    assert res.explanations == [[] for _ in range(query_adata.n_obs)]


def test_top_per_row_and_symbol_merge() -> None:
    rows = np.array([1, 0, 1, 0, 1])
    vals = np.array([0.1, 0.5, 0.3, -0.2, 0.2])
    keep = _top_per_row(rows, vals, 3, 2)
    assert rows[keep].tolist() == [0, 0, 1, 1]
    assert vals[keep].tolist() == [0.5, -0.2, 0.3, 0.2]
    r, g, v = _by_symbol(np.array([0, 0, 1]), np.array(["CD3E", "CD3E", "CD3E"], dtype=object),
                         np.array([0.1, 0.2, 0.4]))
    assert r.tolist() == [0, 1]
    assert g.tolist() == ["CD3E", "CD3E"]
    assert v.tolist() == pytest.approx([0.3, 0.4])
