"""build_reference and versions: records, resuming, atomic switch, refusal of unfinished versions."""

from __future__ import annotations

import uuid

import anndata as ad
import numpy as np
import pytest

from annotator import annotate
from indexer import InputError, StoreError, VectorStore, build_reference, list_references
from indexer.reference import (
    CELL_VECTOR,
    INPUT_VECTOR,
    VIEW2_VECTOR,
    load_manifest,
    reference_vectors,
    resolve_version,
    version_collection,
)
from indexer.reference import _versions as versions_module
from indexer.reference import _write as ref_module
from indexer.reference._points import points_file
from schemas import CellVectorSpec, ReferenceCellPayload, RefineParams


class Boom(RuntimeError):
    """Stands for a crash in the middle of a write."""


def _crash_after(monkeypatch: pytest.MonkeyPatch, store: VectorStore, n_batches: int) -> None:
    """Make the store's upsert into a reference collection fail after ``n_batches`` batches of 25."""
    monkeypatch.setattr(ref_module, "_UPSERT_BATCH", 25)
    real = store.upsert
    calls = {"n": 0}

    def upsert(name: str, **kw: object) -> None:
        if name.startswith("ref__"):
            calls["n"] += 1
            if calls["n"] > n_batches:
                raise Boom
        real(name, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "upsert", upsert)


def test_build_record_and_vectors(adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec) -> None:
    rec = build_reference(
        adata, store=store, name="r", label_key="cell_type", spec=fast_spec, dataset_key="batch"
    )
    assert (rec.version, rec.status, rec.n_cells, rec.dim, rec.text_dim) == (1, "ready", 120, 32, 32)
    assert rec.labels == {"B cell": 30, "Monocyte": 30, "NK cell": 30, "T cell": 30}
    assert "housekeeping.txt" in rec.artifacts
    man = load_manifest(store, "r")
    assert man.current == 1
    assert [m.name for m in list_references(store)] == ["r"]
    vecs, _, ids = reference_vectors(store, "r")
    assert vecs.shape == (120, 32)
    assert sorted(ids) == sorted(adata.obs_names)
    _, _, _ = reference_vectors(store, "r", using=VIEW2_VECTOR)
    with pytest.raises(StoreError, match="has no vector named 'input'"):
        reference_vectors(store, "r", using=INPUT_VECTOR)  # only refined references keep it


def test_stored_payloads_follow_the_schema_and_ids_are_uuid5(
    adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec, dataset_key="batch")
    points = [p for batch in store.scroll(version_collection("r", 1)) for p in batch]
    assert len(points) == adata.n_obs
    truth = dict(zip(adata.obs_names, adata.obs["cell_type"].astype(str), strict=True))
    for p in points:
        pay = ReferenceCellPayload.model_validate(p.payload)
        assert pay.reference == "r"
        assert pay.label == truth[pay.cell_id]
        assert 1 <= len(pay.top_genes) <= 20
        assert p.id == str(uuid.uuid5(versions_module._NAMESPACE, f"r\x1f{pay.cell_id}"))


def test_refined_build_keeps_input_and_view2(adata: ad.AnnData, edge_store: VectorStore) -> None:
    spec = CellVectorSpec(
        mode="paper",
        encoder="random:32",
        refine=RefineParams(method="supcon", hidden_dim=16, out_dim=8, proj_dim=8, epochs=2),
    )
    rec = build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=spec)
    assert rec.dim == 8
    for using, dim in ((CELL_VECTOR, 8), (INPUT_VECTOR, 32), (VIEW2_VECTOR, 32)):
        assert reference_vectors(edge_store, "r", using=using)[0].shape == (120, dim)


def test_each_build_is_a_new_version_old_ones_stay_queryable(
    adata: ad.AnnData, query_adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    rec2 = build_reference(
        adata[:80].copy(), store=edge_store, name="r", label_key="cell_type", spec=fast_spec
    )
    assert rec2.version == 2
    assert load_manifest(edge_store, "r").current == 2
    assert annotate(query_adata, reference="r", store=edge_store, k=3).record.n_cells == 80
    assert annotate(query_adata, reference="r", store=edge_store, k=3, version=1).record.n_cells == 120


def test_interrupted_build_is_invisible_then_resumed_exactly(
    adata: ad.AnnData,
    query_adata: ad.AnnData,
    store: VectorStore,
    fast_spec: CellVectorSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _crash_after(monkeypatch, store, 2)
    with pytest.raises(Boom):
        build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    man = load_manifest(store, "r")
    assert (man.current, [v.status for v in man.versions]) == (None, ["building"])
    assert store.count(version_collection("r", 1)) == 50
    with pytest.raises(StoreError, match=r"no finished version yet.*rerun `cellvec reference build`"):
        resolve_version(man)
    with pytest.raises(StoreError, match="no finished version"):
        annotate(query_adata, reference="r", store=store)
    monkeypatch.undo()
    rec = build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    assert (rec.version, rec.n_cells) == (1, 120)
    assert store.count(version_collection("r", 1)) == 120


def test_resume_with_other_cells_deletes_the_stale_ones(
    adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_after(monkeypatch, store, 3)
    with pytest.raises(Boom):
        build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    monkeypatch.undo()
    subset = adata[40:].copy()  # the first 40 cells, written before the crash, must go
    rec = build_reference(subset, store=store, name="r", label_key="cell_type", spec=fast_spec)
    assert rec.version == 1
    assert rec.n_cells == store.count(version_collection("r", 1)) == 80
    assert sorted(reference_vectors(store, "r")[2]) == sorted(subset.obs_names)


def test_resume_with_another_spec_starts_the_version_afresh(
    adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_after(monkeypatch, edge_store, 1)
    with pytest.raises(Boom):
        build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    monkeypatch.undo()
    other = CellVectorSpec(mode="paper", encoder="random:16")
    rec = build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=other)
    assert (rec.version, rec.dim, rec.n_cells) == (1, 16, 120)
    man = load_manifest(edge_store, "r")
    assert [(v.version, v.status, v.spec.encoder) for v in man.versions] == [(1, "ready", "random:16")]


def test_a_failed_new_version_leaves_the_current_one_in_use(
    adata: ad.AnnData,
    query_adata: ad.AnnData,
    edge_store: VectorStore,
    fast_spec: CellVectorSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    _crash_after(monkeypatch, edge_store, 1)
    with pytest.raises(Boom):
        build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    monkeypatch.undo()
    man = load_manifest(edge_store, "r")
    assert man.current == 1
    assert [v.status for v in man.versions] == ["ready", "building"]
    assert annotate(query_adata, reference="r", store=edge_store, k=3).params.version == 1
    with pytest.raises(StoreError, match=r"no finished version 2 \(versions: 1\)"):
        annotate(query_adata, reference="r", store=edge_store, version=2)


def test_repeated_obs_names_are_refused(
    adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    dup = adata.copy()
    dup.obs_names = np.where(np.arange(dup.n_obs) < 2, "same", dup.obs_names)
    with pytest.raises(Exception, match="duplicate cell names"):
        build_reference(dup, store=store, name="r", label_key="cell_type", spec=fast_spec)


def _fitted(artifacts: dict[str, str]) -> dict[str, str]:
    return {f: h for f, h in artifacts.items() if points_file([f]) is None}


@pytest.mark.parametrize(
    "spec",
    [
        CellVectorSpec(encoder="random:32"),  # the default mode: PCA + class head + text view
        CellVectorSpec(encoder="random:32", text_dims=4),
        CellVectorSpec(mode="expression"),
        CellVectorSpec(mode="paper", encoder="random:32", pooling={"idf": True, "whiten": True}),
    ],
    ids=["hybrid", "hybrid-text_dims", "expression", "paper-idf-whiten"],
)
def test_chunked_build_fitted_on_every_cell_equals_one_pass(
    adata: ad.AnnData, edge_store: VectorStore, spec: CellVectorSpec
) -> None:
    # fit_cells >= n: the artefacts are fitted on every cell, so each chunk gets the one-pass vectors.
    one = build_reference(adata, store=edge_store, name="one", label_key="cell_type", spec=spec)
    chunked = build_reference(
        adata, store=edge_store, name="chunked", label_key="cell_type", spec=spec, chunk_size=35, fit_cells=1000
    )
    # the same artefacts, byte for byte; the point tables differ by the point ids (derived from the names)
    assert _fitted(chunked.artifacts) == _fitted(one.artifacts)
    assert points_file(chunked.artifacts)
    assert points_file(one.artifacts)
    assert (chunked.n_cells, chunked.dim) == (one.n_cells, one.dim)
    v1, l1, i1 = reference_vectors(edge_store, "one")
    v2, l2, i2 = reference_vectors(edge_store, "chunked")
    o1, o2 = np.argsort(i1), np.argsort(i2)
    np.testing.assert_array_equal(i1[o1], i2[o2])
    np.testing.assert_array_equal(l1[o1], l2[o2])
    np.testing.assert_allclose(v1[o1], v2[o2], atol=1e-5)  # float rounding of row blocks only


def test_chunked_build_fits_on_a_stratified_sample(adata: ad.AnnData, edge_store: VectorStore) -> None:
    from indexer.cells import stratified_sample

    labels = adata.obs["cell_type"].astype(str).to_numpy()
    rows = stratified_sample(labels, 60, seed=0, floor=5)
    assert rows.size == 60
    assert (np.diff(rows) > 0).all()
    assert set(np.unique(labels[rows], return_counts=True)[1]) == {15}  # 30 cells per type, halved
    assert stratified_sample(labels, 500).size == 120
    rec = build_reference(
        adata,
        store=edge_store,
        name="r",
        label_key="cell_type",
        spec=CellVectorSpec(encoder="random:32"),
        chunk_size=50,
        fit_cells=60,
    )
    assert rec.n_cells == 120
    res = annotate(adata[:40].copy(), reference="r", store=edge_store)
    assert (res.labels == labels[:40]).mean() > 0.9


def test_chunked_build_refuses_a_bad_fit_size(adata: ad.AnnData, edge_store: VectorStore) -> None:
    with pytest.raises(InputError, match="fit_cells must be a positive"):
        build_reference(adata, store=edge_store, name="r", label_key="cell_type", chunk_size=50, fit_cells=0)
