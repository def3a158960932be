"""One contract for every store backend: Edge in a temporary directory, qdrant-client ``:memory:``, a server.

The server backend runs only when ``CELLVEC_QDRANT_URL`` points at a running Qdrant (marker ``server``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer import IndexParams, StoreError, VectorStore, open_store
from indexer.store import SearchResult

LABELS = ["T", "B", "NK", "Mono"]
Filled = tuple[VectorStore, list[str], dict[str, np.ndarray], list[dict[str, object]]]


@pytest.fixture(
    params=[
        "edge",
        "memory",
        pytest.param("server", marks=pytest.mark.server),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "edge":
        s = open_store(tmp_path / "store")
    elif request.param == "memory":
        s = open_store(":memory:")
    else:
        url = os.environ.get("CELLVEC_QDRANT_URL")
        if not url:
            pytest.skip("CELLVEC_QDRANT_URL is not set")
        s = open_store(url, api_key=os.environ.get("CELLVEC_QDRANT_API_KEY"))
        for name in s.collections():
            if name.startswith("ctest_"):
                s.drop_collection(name)
    with s:
        yield s
        if request.param == "server":
            for name in s.collections():
                if name.startswith("ctest_"):
                    s.drop_collection(name)
            for key in s.meta_keys("ctest/"):
                s.delete_meta(key)


def _unit(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, n, out=np.zeros_like(a), where=n > 0)


def _data(n: int = 60, seed: int = 0) -> tuple[list[str], dict[str, np.ndarray], list[dict[str, object]]]:
    rng = np.random.default_rng(seed)
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**63)) * 2 + i)) for i in range(n)]
    vectors = {
        "cell": rng.normal(size=(n, 8)).astype(np.float32),
        "pooled": rng.normal(size=(n, 16)).astype(np.float32),
    }
    payloads: list[dict[str, object]] = [
        {"label": LABELS[i % 4], "donor": i % 3, "ok": i % 2 == 0, "name": f"cell{i}"} for i in range(n)
    ]
    return ids, vectors, payloads


@pytest.fixture
def filled(store: VectorStore) -> Filled:
    ids, vectors, payloads = _data()
    store.create_collection(
        "ctest_cells",
        vectors={"cell": 8, "pooled": 16},
        payload_indexes={"label": "keyword", "donor": "integer"},
    )
    store.upsert("ctest_cells", ids=ids, vectors=vectors, payloads=payloads)
    store.flush()
    return store, ids, vectors, payloads


def test_create_has_drop(store: VectorStore) -> None:
    assert not store.has_collection("ctest_a")
    store.create_collection("ctest_a", vectors={"v": 4})
    store.create_collection("ctest_b", vectors={"v": 4}, index=IndexParams(hnsw_m=8))
    assert store.has_collection("ctest_a")
    assert {"ctest_a", "ctest_b"} <= set(store.collections())
    with pytest.raises(StoreError, match="already exists"):
        store.create_collection("ctest_a", vectors={"v": 4})
    store.drop_collection("ctest_a")
    store.drop_collection("ctest_a")  # missing: no-op
    assert not store.has_collection("ctest_a")
    assert "ctest_a" not in store.collections()
    assert store.count("ctest_b") == 0


def test_bad_names_and_missing_collection(store: VectorStore) -> None:
    with pytest.raises(StoreError, match="invalid collection name"):
        store.create_collection("../evil", vectors={"v": 4})
    with pytest.raises(StoreError, match="reserved"):
        store.create_collection("meta", vectors={"v": 4})
    with pytest.raises(StoreError, match="has no collection 'ctest_nope'"):
        store.count("ctest_nope")


def test_upsert_retrieve_round_trip(filled: Filled) -> None:
    store, ids, vectors, payloads = filled
    got = store.retrieve("ctest_cells", [ids[5], str(uuid.uuid4()), ids[2]], with_vectors=["cell", "pooled"])
    assert [p.id for p in got] == [ids[5], ids[2]]
    assert got[0].payload == payloads[5]
    np.testing.assert_allclose(got[0].vectors["cell"], _unit(vectors["cell"])[5], atol=1e-5)
    np.testing.assert_allclose(got[1].vectors["pooled"], _unit(vectors["pooled"])[2], atol=1e-5)
    assert got[0].vectors["cell"].dtype == np.float32

    bare = store.retrieve("ctest_cells", [ids[0]], payload=False)
    assert bare[0].payload == {}
    assert bare[0].vectors == {}


def test_uppercase_ids_are_canonical(store: VectorStore) -> None:
    store.create_collection("ctest_ids", vectors={"v": 2})
    pid = str(uuid.uuid4())
    store.upsert("ctest_ids", ids=[pid.upper()], vectors={"v": np.ones((1, 2), np.float32)}, payloads=[{}])
    assert [p.id for p in store.retrieve("ctest_ids", [pid])] == [pid]


def test_upsert_validation(store: VectorStore) -> None:
    store.create_collection("ctest_v", vectors={"cell": 4})
    ok = np.ones((2, 4), np.float32)
    ids = [str(uuid.uuid4()) for _ in range(2)]
    with pytest.raises(StoreError, match="not a UUID"):
        store.upsert("ctest_v", ids=["cell-1", ids[1]], vectors={"cell": ok}, payloads=[{}, {}])
    with pytest.raises(StoreError, match=r"shape \(2, 3\); expected \(2, 4\)"):
        store.upsert("ctest_v", ids=ids, vectors={"cell": np.ones((2, 3))}, payloads=[{}, {}])
    with pytest.raises(StoreError, match="missing vector 'cell'"):
        store.upsert("ctest_v", ids=ids, vectors={}, payloads=[{}, {}])
    with pytest.raises(StoreError, match="NaN"):
        store.upsert("ctest_v", ids=ids, vectors={"cell": ok * np.nan}, payloads=[{}, {}])
    with pytest.raises(StoreError, match="one payload"):
        store.upsert("ctest_v", ids=ids, vectors={"cell": ok}, payloads=[{}])
    assert store.count("ctest_v") == 0


def test_zero_vector_is_stored_and_scores_zero(store: VectorStore) -> None:
    """Qdrant keeps an all-zero row under Cosine as zeros (no NaN); it scores 0 against every query."""
    store.create_collection("ctest_zero", vectors={"cell": 4})
    ids = [str(uuid.uuid4()) for _ in range(2)]
    vecs = np.array([[0, 0, 0, 0], [1, 0, 0, 0]], np.float32)
    store.upsert("ctest_zero", ids=ids, vectors={"cell": vecs}, payloads=[{"i": 0}, {"i": 1}])
    got = store.retrieve("ctest_zero", [ids[0]], with_vectors=["cell"])
    np.testing.assert_array_equal(got[0].vectors["cell"], np.zeros(4, np.float32))
    res = store.query("ctest_zero", np.array([[1, 1, 0, 0]], np.float32), using="cell", limit=2)
    assert res.ids[0] == [ids[1], ids[0]]
    np.testing.assert_allclose(res.scores[0], [np.sqrt(0.5), 0.0], atol=1e-5)
    zero_q = store.query("ctest_zero", np.zeros((1, 4), np.float32), using="cell", limit=2)
    assert np.all(np.isfinite(zero_q.scores[0, : len(zero_q.ids[0])]))


def test_query_matches_exact_cosine(filled: Filled) -> None:
    store, ids, vectors, _ = filled
    rng = np.random.default_rng(1)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    res = store.query("ctest_cells", q, using="pooled", limit=10)
    assert isinstance(res, SearchResult)
    assert res.scores.shape == (7, 10)
    assert res.scores.dtype == np.float32
    sims = _unit(q) @ _unit(vectors["pooled"]).T
    for i in range(7):
        order = np.argsort(-sims[i])[:10]
        assert res.ids[i] == [ids[j] for j in order]
        assert res.id_ints[i] == [uuid.UUID(ids[j]).int for j in order]
        np.testing.assert_allclose(res.scores[i], sims[i, order], atol=1e-5)
    assert res.payloads[0][0] == filled[3][ids.index(res.ids[0][0])]
    exact = store.query("ctest_cells", q, using="pooled", limit=10, exact=True)
    assert exact.ids == res.ids
    bare = store.query("ctest_cells", q, using="pooled", limit=10, with_ids=False)
    assert bare.ids == [[] for _ in range(7)]
    np.testing.assert_allclose(bare.scores, res.scores, atol=1e-6)
    assert bare.payloads == res.payloads


def test_query_where_and_payload_fields(filled: Filled) -> None:
    store, ids, vectors, payloads = filled
    q = vectors["cell"][:3]
    res = store.query("ctest_cells", q, using="cell", limit=5, where={"label": "T"}, payload_fields=["label"])
    for hits, pays in zip(res.ids, res.payloads, strict=True):
        assert len(hits) == 5
        assert all(p == {"label": "T"} for p in pays)
    res = store.query("ctest_cells", q, using="cell", limit=60, where={"label": ["B", "NK"], "donor": 1})
    expected = {
        i for i, p in zip(ids, payloads, strict=True) if p["label"] in ("B", "NK") and p["donor"] == 1
    }
    assert set(res.ids[0]) == expected
    assert np.isneginf(res.scores[0, len(expected) :]).all()
    none = store.query("ctest_cells", q, using="cell", limit=3, payload_fields=[])
    assert none.payloads[0] == [{}, {}, {}]
    empty = store.query("ctest_cells", q, using="cell", limit=3, where={"label": []})
    assert empty.ids == [[], [], []]
    assert np.isneginf(empty.scores).all()
    with pytest.raises(StoreError, match="filtering on a boolean is not supported"):
        store.query("ctest_cells", q, using="cell", limit=60, where={"ok": True})
    with pytest.raises(StoreError, match="list of strings or a list of integers"):
        store.count("ctest_cells", where={"donor": [1, "2"]})


def test_query_batches_many_queries(filled: Filled) -> None:
    store, ids, vectors, _ = filled
    q = np.repeat(vectors["cell"], 10, axis=0)  # 600 queries: several batches
    res = store.query("ctest_cells", q, using="cell", limit=1, payload_fields=[])
    assert [h[0] for h in res.ids] == [i for i in ids for _ in range(10)]


def test_query_validation(filled: Filled) -> None:
    store = filled[0]
    with pytest.raises(StoreError, match="no vector named 'gene'"):
        store.query("ctest_cells", np.ones((1, 8)), using="gene", limit=3)
    with pytest.raises(StoreError, match=r"expected \(n, 8\)"):
        store.query("ctest_cells", np.ones((1, 5)), using="cell", limit=3)


def test_count_delete(filled: Filled) -> None:
    store, ids, _, _ = filled
    assert store.count("ctest_cells") == 60
    assert store.count("ctest_cells", where={"label": "T"}) == 15
    assert store.count("ctest_cells", where={"donor": [0, 1]}) == 40
    store.delete("ctest_cells", ids=ids[:5])
    assert store.count("ctest_cells") == 55
    store.delete("ctest_cells", where={"label": "Mono"})
    assert store.count("ctest_cells") == 55 - sum(1 for i in range(5, 60) if i % 4 == 3)
    store.delete("ctest_cells", ids=ids[5:20], where={"donor": 0})
    assert store.count("ctest_cells", where={"donor": 0}) == sum(
        1 for i in range(20, 60) if i % 3 == 0 and i % 4 != 3
    )
    with pytest.raises(StoreError, match="needs ids=, where= or both"):
        store.delete("ctest_cells")


def test_set_payload_relabel_and_facet(filled: Filled) -> None:
    store, ids, _, _ = filled
    assert store.facet("ctest_cells", "label") == {"T": 15, "B": 15, "NK": 15, "Mono": 15}
    assert store.facet("ctest_cells", "label", where={"donor": 0}) == {
        lab: sum(1 for i in range(60) if i % 3 == 0 and LABELS[i % 4] == lab) for lab in LABELS
    }
    store.set_payload("ctest_cells", {"label": "Lymphocyte", "relabelled": True}, where={"label": ["T", "B"]})
    assert store.facet("ctest_cells", "label") == {"Lymphocyte": 30, "NK": 15, "Mono": 15}
    got = store.retrieve("ctest_cells", [ids[0]])[0].payload
    assert got["label"] == "Lymphocyte"
    assert got["relabelled"] is True
    assert got["name"] == "cell0"  # other fields are kept
    store.set_payload("ctest_cells", {"label": "NK2"}, ids=[ids[2]])
    assert store.facet("ctest_cells", "label")["NK2"] == 1


def test_scroll_covers_every_point_once(filled: Filled) -> None:
    store, ids, _, _ = filled
    seen: list[str] = []
    for batch in store.scroll("ctest_cells", batch_size=7, with_vectors=["cell"]):
        assert 0 < len(batch) <= 7
        seen.extend(p.id for p in batch)
        assert all(p.vectors["cell"].shape == (8,) for p in batch)
    assert sorted(seen) == sorted(ids)
    some = [p.id for b in store.scroll("ctest_cells", where={"label": "NK"}, payload=False) for p in b]
    assert len(some) == 15
    assert not list(store.scroll("ctest_cells", where={"label": []}))


def test_idempotent_upsert(filled: Filled) -> None:
    store, ids, vectors, payloads = filled
    store.upsert("ctest_cells", ids=ids, vectors=vectors, payloads=payloads)
    assert store.count("ctest_cells") == 60
    changed = [{**p, "label": "X"} for p in payloads[:3]]
    store.upsert("ctest_cells", ids=ids[:3], vectors={k: v[:3] for k, v in vectors.items()}, payloads=changed)
    assert store.count("ctest_cells") == 60
    assert store.count("ctest_cells", where={"label": "X"}) == 3


def test_meta(store: VectorStore) -> None:
    assert store.get_meta("ctest/none") is None
    store.put_meta("ctest/ref/pbmc", {"version": 1, "labels": ["T", "B"]})
    store.put_meta("ctest/ref/lung", {"version": 2})
    store.put_meta("ctest/other", {"x": None})
    store.put_meta("ctest/ref/pbmc", {"version": 3, "labels": ["T", "B"]})
    assert store.get_meta("ctest/ref/pbmc") == {"version": 3, "labels": ["T", "B"]}
    assert store.meta_keys("ctest/ref/") == ["ctest/ref/lung", "ctest/ref/pbmc"]
    assert set(store.meta_keys()) >= {"ctest/ref/lung", "ctest/ref/pbmc", "ctest/other"}
    store.delete_meta("ctest/ref/lung")
    store.delete_meta("ctest/ref/lung")
    assert store.meta_keys("ctest/ref/") == ["ctest/ref/pbmc"]
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.put_meta("ctest/bad", {"a": object()})
    assert "meta" not in store.collections()


def test_blobs(store: VectorStore) -> None:
    assert store.get_blob("ctest/enc.pt") is None
    store.put_blob("ctest/enc.pt", b"\x00\x01small")
    assert store.get_blob("ctest/enc.pt") == b"\x00\x01small"
    big = np.random.default_rng(0).bytes(10 * 1024 * 1024 + 17)
    store.put_blob("ctest/enc.pt", big)
    assert store.get_blob("ctest/enc.pt") == big
    store.put_blob("ctest/empty", b"")
    assert store.get_blob("ctest/empty") == b""
    store.delete_blob("ctest/enc.pt")
    store.delete_blob("ctest/enc.pt")
    assert store.get_blob("ctest/enc.pt") is None
    store.delete_blob("ctest/empty")


def test_read_only_refuses_writes(store: VectorStore, tmp_path: Path) -> None:
    if store.location == ":memory:":
        ro = open_store(":memory:", read_only=True)
    elif store.location.startswith("http"):
        ro = open_store(store.location, read_only=True, api_key=os.environ.get("CELLVEC_QDRANT_API_KEY"))
    else:
        store.create_collection("ctest_ro", vectors={"v": 2})
        store.flush()
        ro = open_store(store.location, read_only=True)
    with ro:
        assert ro.read_only
        with pytest.raises(StoreError, match="opened read-only"):
            ro.create_collection("ctest_x", vectors={"v": 2})
        with pytest.raises(StoreError, match="opened read-only"):
            ro.put_meta("ctest/x", {})
        with pytest.raises(StoreError, match="opened read-only"):
            ro.put_blob("ctest/x", b"")


def test_closed_store_refuses(tmp_path: Path) -> None:
    s = open_store(":memory:")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="is closed"):
        s.collections()


def test_int8_quantization_still_finds_neighbours(store: VectorStore) -> None:
    ids, vectors, payloads = _data(n=100)
    store.create_collection(
        "ctest_q", vectors={"cell": 8}, index=IndexParams(quantization="int8", hnsw_ef=64)
    )
    store.upsert("ctest_q", ids=ids, vectors={"cell": vectors["cell"]}, payloads=payloads)
    store.optimize("ctest_q")
    res = store.query("ctest_q", vectors["cell"][:5], using="cell", limit=3, payload_fields=["name"])
    assert [h[0] for h in res.ids] == ids[:5]
    assert [p[0]["name"] for p in res.payloads] == [f"cell{i}" for i in range(5)]


def test_unreachable_server() -> None:
    with pytest.raises(
        StoreError, match=r"cannot reach the Qdrant server at http://127.0.0.1:9: is it running"
    ):
        open_store("http://127.0.0.1:9")


def test_a_server_gets_lookup_only_integer_indexes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Integer payload fields are matched exactly, never by range: the server builds no range index for them."""
    from indexer.store._client import ClientStore

    store = ClientStore(":memory:")
    asked: dict[str, object] = {}
    monkeypatch.setattr(store, "local", False)  # local mode skips payload indexes; a server is asked for them
    monkeypatch.setattr(store.client, "create_payload_index",
                        lambda name, *, field_name, field_schema, wait: asked.update({field_name: field_schema}))
    store.create_collection("c", vectors={"cell": 4}, payload_indexes={"top_genes": "integer", "label": "keyword"})
    assert asked["label"] == "keyword"
    assert (asked["top_genes"].lookup, asked["top_genes"].range) == (True, False)  # type: ignore[attr-defined]
    store.close()
