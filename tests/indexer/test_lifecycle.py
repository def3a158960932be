"""add / remove / relabel / refit / prune / export / import, on every store backend."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from annotator import annotate
from indexer import (
    InputError,
    StoreError,
    UnseenLabelWarning,
    VectorStore,
    add_cells,
    build_reference,
    export_reference,
    import_reference,
    open_store,
    prune_versions,
    refit,
    relabel,
    remove_cells,
)
from indexer.reference import CELL_VECTOR, INPUT_VECTOR, VIEW2_VECTOR, load_manifest, version_collection
from indexer.reference._versions import cell_point_id
from schemas import CellVectorSpec, RefineParams
from tests.conftest import make_adata

SMALL = RefineParams(method="supcon", hidden_dim=32, out_dim=16, proj_dim=8, epochs=3, val_fraction=0)


def _truth(a: ad.AnnData) -> np.ndarray:
    return a.obs["cell_type"].astype(str).to_numpy()


def _without(a: ad.AnnData, label: str) -> ad.AnnData:
    return a[a.obs["cell_type"] != label].copy()


def _only(a: ad.AnnData, label: str, *, prefix: str) -> ad.AnnData:
    out = a[a.obs["cell_type"] == label].copy()
    out.obs_names = prefix + out.obs_names
    return out


@pytest.fixture
def refined() -> CellVectorSpec:
    return CellVectorSpec(mode="paper", encoder="random:32", refine=SMALL)


def test_add_batch_with_new_label_is_annotated(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(_without(adata, "NK cell"), store=store, name="r", label_key="cell_type", spec=fast_spec)
    before = annotate(query_adata, reference="r", store=store, k=5)
    assert "NK cell" not in set(before.labels)
    nk = _only(make_adata(seed=3), "NK cell", prefix="b2_")
    rec = add_cells(nk, store=store, name="r", label_key="cell_type", dataset="batch2")
    assert rec.version == 1
    assert rec.n_cells == 120
    assert rec.labels == {"B cell": 30, "Monocyte": 30, "NK cell": 30, "T cell": 30}
    man = load_manifest(store, "r")
    assert [v.version for v in man.versions] == [1]
    assert store.facet(version_collection("r", 1), "dataset") == {"": 90, "batch2": 30}
    after = annotate(query_adata, reference="r", store=store, k=5)
    nk_rows = _truth(query_adata) == "NK cell"
    assert (after.labels[nk_rows] == "NK cell").all()
    assert (after.labels == _truth(query_adata)).mean() >= 0.95
    assert after.params.version == 1


def test_add_is_idempotent(adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    new = make_adata(5, seed=4)
    new.obs_names = "x_" + new.obs_names
    add_cells(new, store=store, name="r", label_key="cell_type")
    rec = add_cells(new, store=store, name="r", label_key="cell_type")
    assert rec.n_cells == store.count(version_collection("r", 1)) == 140


def test_add_refuses_ids_of_another_dataset(
    adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec, dataset="run1")
    with pytest.raises(InputError, match=r"120 new cell ids already belong .* dataset 'run1'.*obs_names"):
        add_cells(make_adata(seed=5), store=edge_store, name="r", label_key="cell_type", dataset="run2")
    assert load_manifest(edge_store, "r").record().n_cells == 120


def test_add_to_refined_reference_warns_and_stores_every_vector(
    adata: ad.AnnData, edge_store: VectorStore, refined: CellVectorSpec
) -> None:
    build_reference(
        _without(adata, "NK cell"), store=edge_store, name="r", label_key="cell_type", spec=refined
    )
    nk = _only(make_adata(seed=3), "NK cell", prefix="b2_")
    with pytest.warns(UnseenLabelWarning, match=r"never saw labels NK cell.*cellvec reference refit"):
        rec = add_cells(nk, store=edge_store, name="r", label_key="cell_type")
    assert rec.labels["NK cell"] == 30
    pts = edge_store.retrieve(
        version_collection("r", 1),
        [cell_point_id("r", c) for c in nk.obs_names],
        with_vectors=[CELL_VECTOR, INPUT_VECTOR, VIEW2_VECTOR],
    )
    assert len(pts) == 30
    v = pts[0].vectors
    assert v[CELL_VECTOR].shape == (16,)
    assert v[INPUT_VECTOR].shape == v[VIEW2_VECTOR].shape == (32,)
    assert all(np.linalg.norm(p.vectors[VIEW2_VECTOR]) > 0 for p in pts)
    # Housekeeping genes (here RPS6) left the second view of the cells that had them in their top genes.
    assert any(not np.allclose(p.vectors[INPUT_VECTOR], p.vectors[VIEW2_VECTOR]) for p in pts)


def test_remove_label_disappears_from_results(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    assert remove_cells(store, "r", label="B cell") == 30
    rec = load_manifest(store, "r").record()
    assert rec.n_cells == 90
    assert "B cell" not in rec.labels
    res = annotate(query_adata, reference="r", store=store, k=5)
    assert "B cell" not in set(res.labels)
    assert "B cell" not in set(res.neighbour_labels.ravel())
    with pytest.raises(InputError, match="no cells with label 'B cell'"):
        remove_cells(store, "r", label="B cell")


def test_remove_by_cells_and_dataset(
    adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec, dataset_key="batch")
    assert remove_cells(store, "r", cell_ids=["cell0", "cell1", "not-there"]) == 2
    assert remove_cells(store, "r", dataset="b1") == 59
    rec = load_manifest(store, "r").record()
    assert rec.n_cells == store.count(version_collection("r", 1)) == 59
    assert sum(rec.labels.values()) == 59
    with pytest.raises(InputError, match="exactly one of"):
        remove_cells(store, "r", label="T cell", dataset="b2")


def test_relabel(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    assert relabel(store, "r", old="T cell", new="T lymphocyte") == 30
    rec = load_manifest(store, "r").record()
    assert rec.labels == {"B cell": 30, "Monocyte": 30, "NK cell": 30, "T lymphocyte": 30}
    res = annotate(query_adata, reference="r", store=store, k=5, unknown_alpha=0)
    assert set(res.labels[_truth(query_adata) == "T cell"]) == {"T lymphocyte"}
    with pytest.raises(InputError, match=r"no cells labelled 'T cell' \(labels: B cell, Monocyte"):
        relabel(store, "r", old="T cell", new="x")
    assert relabel(store, "r", old="T lymphocyte", new="B cell") == 30  # a merge
    assert load_manifest(store, "r").record().labels["B cell"] == 60


def test_refit_makes_a_new_version_and_keeps_the_old_one(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, refined: CellVectorSpec
) -> None:
    build_reference(_without(adata, "NK cell"), store=store, name="r", label_key="cell_type", spec=refined)
    with pytest.warns(UnseenLabelWarning):
        add_cells(
            _only(make_adata(seed=3), "NK cell", prefix="b2_"), store=store, name="r", label_key="cell_type"
        )
    v1 = annotate(query_adata, reference="r", store=store, k=5, unknown_alpha=0)
    rec = refit(store, "r", params=SMALL.model_copy(update={"seed": 1}))
    assert rec.version == 2
    assert rec.n_cells == 120
    assert rec.spec.refine.seed == 1
    man = load_manifest(store, "r")
    assert man.current == 2
    assert [v.status for v in man.versions] == ["ready", "ready"]
    new = annotate(query_adata, reference="r", store=store, k=5, unknown_alpha=0)
    assert new.params.version == 2
    assert (new.labels == _truth(query_adata)).mean() >= 0.95
    old = annotate(query_adata, reference="r", store=store, k=5, version=1, unknown_alpha=0)
    assert old.params.version == 1
    np.testing.assert_array_equal(old.labels, v1.labels)
    adata_out = new.to_adata(query_adata.copy())
    assert adata_out.uns["cellvec"]["params"]["version"] == 2


def test_refit_of_an_unrefined_reference(
    adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    rec = refit(store, "r", params=SMALL)
    assert rec.spec.refine.method == "supcon"
    assert rec.dim == 16
    assert set(rec.artifacts) >= {"supcon.safetensors", "supcon.json", "housekeeping.txt"}
    res = annotate(make_adata(5, seed=9), reference="r", store=store, k=5)
    assert res.params.version == 2


def test_prune(
    adata: ad.AnnData, query_adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    for _ in range(3):
        build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    assert prune_versions(edge_store, "r", keep=2) == [1]
    assert prune_versions(edge_store, "r", keep=2) == []
    assert prune_versions(edge_store, "r") == [2]
    man = load_manifest(edge_store, "r")
    assert [v.version for v in man.versions] == [3]
    assert [c for c in edge_store.collections() if c.startswith("ref__")] == ["ref__r__v3"]
    assert edge_store.get_blob("reference/r/v1/housekeeping.txt") is None
    with pytest.raises(StoreError, match=r"no finished version 1 \(versions: 3\)"):
        annotate(query_adata, reference="r", store=edge_store, version=1)
    with pytest.raises(InputError, match="keep must be at least 1"):
        prune_versions(edge_store, "r", keep=0)


@pytest.mark.parametrize("target", ["edge", "memory"])
def test_export_import_gives_identical_annotations(
    adata: ad.AnnData,
    query_adata: ad.AnnData,
    edge_store: VectorStore,
    refined: CellVectorSpec,
    tmp_path: Path,
    target: str,
) -> None:
    build_reference(
        adata, store=edge_store, name="r", label_key="cell_type", spec=refined, dataset_key="batch"
    )
    path = export_reference(edge_store, "r", tmp_path / "r.cellvec")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
    assert {
        "manifest.json",
        "cells.jsonl",
        "vectors/cell.npy",
        "vectors/input.npy",
        "vectors/view2.npy",
        "artifacts/supcon.safetensors",
        "genes/vectors.npy",
    } <= names
    assert not any(n.endswith((".pkl", ".pickle")) for n in names)
    assert manifest["n_cells"] == 120
    want = annotate(query_adata, reference="r", store=edge_store, k=5)
    location = str(tmp_path / "other") if target == "edge" else ":memory:"
    with open_store(location) as other:
        rec = import_reference(other, path, name="copy")
        assert (rec.reference, rec.version, rec.n_cells) == ("copy", 1, 120)
        got = annotate(query_adata, reference="copy", store=other, k=5)
        assert other.facet(version_collection("copy", 1), "dataset") == {"b1": 60, "b2": 60}
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.neighbour_ids, want.neighbour_ids)
    np.testing.assert_allclose(got.neighbour_scores, want.neighbour_scores, atol=1e-5)


def test_import_refuses_altered_files(
    adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec, tmp_path: Path
) -> None:
    build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    path = export_reference(edge_store, "r", tmp_path / "r.cellvec")
    bad = tmp_path / "bad.cellvec"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            dst.writestr(n, data[:-10] if n == "cells.jsonl" else data)
    with open_store(":memory:") as other, pytest.raises(InputError, match=r"'cells.jsonl' .* altered"):
        import_reference(other, bad)
    (tmp_path / "junk.cellvec").write_bytes(b"not a zip")
    with open_store(":memory:") as other, pytest.raises(InputError, match="not a cellvec export file"):
        import_reference(other, tmp_path / "junk.cellvec")


def test_second_writer_is_refused_readers_are_not(
    adata: ad.AnnData, tmp_path: Path, fast_spec: CellVectorSpec
) -> None:
    with open_store(tmp_path / "s") as writer:
        build_reference(adata, store=writer, name="r", label_key="cell_type", spec=fast_spec)
        with pytest.raises(StoreError, match=r"is locked by process \d+"):
            open_store(tmp_path / "s")
        with open_store(tmp_path / "s", read_only=True) as reader:
            assert load_manifest(reader, "r").current == 1
            export_reference(reader, "r", tmp_path / "r.cellvec")
            res = annotate(make_adata(5, seed=2), reference="r", store=reader, k=5)
            assert res.params.version == 1


def test_top_genes_keep_their_symbols_through_add_export_and_import(
    adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec, tmp_path: Path
) -> None:
    """Payloads store gene ids into the version's top_genes.txt; every path reads them back as symbols."""
    from indexer.reference import TOP_GENES_FILE, gene_codes, resolve_version
    from indexer.reference._read import (
        read_cells,
    )

    build_reference(adata[:80].copy(), store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    rec = add_cells(adata[80:].copy(), store=edge_store, name="r", label_key="cell_type")
    assert TOP_GENES_FILE in rec.artifacts
    codes = gene_codes(edge_store, rec)
    assert codes is not None
    stored = [p.payload["top_genes"] for b in edge_store.scroll(version_collection("r", 1)) for p in b]
    assert len(stored) == 120
    assert all(g and all(isinstance(i, int) for i in g) for g in stored)
    cells = read_cells(edge_store, rec, [CELL_VECTOR])
    assert all(isinstance(s, str) and s in set(codes.symbols) for g in cells["top_genes"] for s in g)
    path = export_reference(edge_store, "r", tmp_path / "r.cellvec")
    import_reference(edge_store, path, name="copy")
    copy = resolve_version(load_manifest(edge_store, "copy"), None)
    again = read_cells(edge_store, copy, [CELL_VECTOR])
    by_id = dict(zip(cells["cell_id"], cells["top_genes"], strict=True))
    assert dict(zip(again["cell_id"], again["top_genes"], strict=True)) == by_id
