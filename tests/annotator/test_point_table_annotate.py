"""Annotate reads each neighbour's label and cell id from the version's point table, never from payloads.

The table must give exactly what the payloads give, through every edit (add, remove, relabel, refit) and on
every store backend, and a hit the table lacks (a cell added by an edit that was killed before the table was
written) is read from its payload.
"""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import pytest

from annotator import annotate
from annotator._result import AnnotationResult
from indexer import VectorStore, add_cells, build_reference, refit, relabel, remove_cells
from indexer.reference import Reference
from indexer.reference._points import PointTable, points_file
from schemas import CellVectorSpec, RefineParams
from tests.conftest import make_adata


@pytest.fixture
def payload_fields(store: VectorStore, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the payload fields of every search of the store."""
    seen: list[Any] = []
    real = store.query

    def query(*a: Any, **k: Any) -> Any:
        seen.append(k.get("payload_fields"))
        return real(*a, **k)

    monkeypatch.setattr(store, "query", query)
    return seen


def _from_payloads(query: ad.AnnData, store: VectorStore, monkeypatch: pytest.MonkeyPatch) -> AnnotationResult:
    """Annotate as a version without a point table is annotated (from the payloads)."""
    with monkeypatch.context() as m:
        m.setattr(Reference, "points", property(lambda _self: None))
        return annotate(query, reference="r", store=store)


def _same(a: AnnotationResult, b: AnnotationResult) -> None:
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.neighbour_ids, b.neighbour_ids)
    np.testing.assert_array_equal(a.neighbour_labels, b.neighbour_labels)
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-9)  # a refined query: torch rounding


def test_the_table_gives_what_the_payloads_give_through_every_edit(
    adata: ad.AnnData,
    query_adata: ad.AnnData,
    store: VectorStore,
    fast_spec: CellVectorSpec,
    payload_fields: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    assert points_file(Reference.open(store, "r").record.artifacts)

    def check() -> AnnotationResult:
        payload_fields.clear()
        res = annotate(query_adata, reference="r", store=store)
        assert payload_fields == [[]]  # ids only
        _same(res, _from_payloads(query_adata, store, monkeypatch))
        return res

    check()
    extra = make_adata(4, seed=7)
    extra.obs_names = "new_" + extra.obs_names
    add_cells(extra, store=store, name="r", label_key="cell_type")
    assert len(Reference.open(store, "r").points) == adata.n_obs + extra.n_obs
    res = check()
    assert any(str(i).startswith("new_") for i in res.neighbour_ids.ravel())
    relabel(store, "r", old="B cell", new="B lymphocyte")
    res = check()
    assert "B lymphocyte" in set(res.labels)
    assert "B cell" not in set(res.neighbour_labels.ravel())
    relabel(store, "r", old="NK cell", new="T cell")  # a merge
    check()
    remove_cells(store, "r", label="Monocyte")
    assert len(Reference.open(store, "r").points) == Reference.open(store, "r").record.n_cells
    res = check()
    assert "Monocyte" not in set(res.neighbour_labels.ravel())
    remove_cells(store, "r", cell_ids=[str(c) for c in extra.obs_names])
    res = check()
    assert not any(str(i).startswith("new_") for i in res.neighbour_ids.ravel())


def test_a_refit_writes_a_table_of_its_own_points(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = CellVectorSpec(mode="paper", encoder="random:32")
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=spec)
    small = RefineParams(method="supcon", hidden_dim=16, out_dim=8, proj_dim=4, epochs=2, val_fraction=0)
    rec = refit(store, "r", params=small)
    assert rec.version == 2
    tables = [points_file(Reference.open(store, "r", version=v).record.artifacts) for v in (1, 2)]
    assert all(tables)
    _same(annotate(query_adata, reference="r", store=store), _from_payloads(query_adata, store, monkeypatch))


def test_a_hit_the_table_lacks_is_read_from_its_payload(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    full = Reference.open(store, "r").points
    assert full is not None
    # as after an add killed between the collection and the table: every other cell is missing from it
    half = full.keeping(_ids(full)[::2])
    want = _from_payloads(query_adata, store, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(Reference, "points", property(lambda _self: half))
        _same(annotate(query_adata, reference="r", store=store), want)


def test_a_relabel_killed_after_the_table_shows_the_new_label(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)

    def killed(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(store, "set_payload", killed)
        with pytest.raises(KeyboardInterrupt):
            relabel(store, "r", old="B cell", new="B lymphocyte")
    res = annotate(query_adata, reference="r", store=store)
    assert "B lymphocyte" in set(res.neighbour_labels.ravel())
    assert "B cell" not in set(res.neighbour_labels.ravel())
    assert relabel(store, "r", old="B cell", new="B lymphocyte") == 30  # the rerun finishes the payloads
    _same(annotate(query_adata, reference="r", store=store), _from_payloads(query_adata, store, monkeypatch))


def _ids(table: PointTable) -> list[str]:
    raw = np.ascontiguousarray(table.words.astype(">u8")).tobytes().hex()
    hexes = (raw[i : i + 32] for i in range(0, len(raw), 32))
    return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes]
