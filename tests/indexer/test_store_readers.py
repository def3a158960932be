"""A read-only Edge store searching one large batch in several processes: same neighbours, no byte written."""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path

import numpy as np
import pytest

from indexer import IndexParams, StoreError, open_store
from indexer.store._edge import PARALLEL_MIN_ROWS, EdgeStore, default_search_processes

N_POINTS, DIM = 3000, 16


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A store with one HNSW-indexed collection of clustered points and the query rows to search."""
    root = tmp_path_factory.mktemp("readers") / "store"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, DIM))
    labels = rng.integers(0, 12, N_POINTS)
    x = (centres[labels] + 0.5 * rng.normal(size=(N_POINTS, DIM))).astype(np.float32)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(N_POINTS)]
    with open_store(root) as w:
        w.create_collection("c", vectors={"cell": DIM}, index=IndexParams(indexing_threshold=1),
                            payload_indexes={"label": "keyword"})
        w.upsert("c", ids=ids, vectors={"cell": x},
                 payloads=[{"label": f"L{lab}", "cell_id": f"c{i}"} for i, lab in enumerate(labels)])
        w.optimize("c")
    n_q = PARALLEL_MIN_ROWS + 1500
    q = centres[rng.integers(0, 12, n_q)] + 0.5 * rng.normal(size=(n_q, DIM))
    return root, q.astype(np.float32)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _search(store: object, q: np.ndarray, **kw: object) -> tuple[np.ndarray, list[list[str]], list[list[dict]]]:
    assert isinstance(store, EdgeStore)
    res = store.query("c", q, using="cell", limit=10, payload_fields=["label", "cell_id"], **kw)  # type: ignore[arg-type]
    return res.scores, res.ids, res.payloads


def test_two_processes_find_the_neighbours_of_one_and_write_nothing(built: tuple[Path, np.ndarray]) -> None:
    root, q = built
    before = _hashes(root)
    with open_store(root, read_only=True, search_processes=1) as one:
        expected = _search(one, q)
        assert isinstance(one, EdgeStore)
        assert one._readers == {}  # one process: no reader started
    with open_store(root, read_only=True, search_processes=2) as two:
        assert isinstance(two, EdgeStore)
        _search(two, q[:100])  # opens the collection; too small to start readers
        assert two._readers == {}
        first = _search(two, q)  # starts one reader, which may still be loading: its chunks are done here
        pool = two._readers["c"]
        assert len(pool.readers) == 1
        assert pool.wait_ready() == 1
        second = _search(two, q)
        assert pool.answered > 0  # the reader searched part of the batch
        reader = pool.readers[0].proc
    assert reader.poll() is not None  # close() stopped it
    for got in (first, second):
        assert np.array_equal(got[0], expected[0])
        assert got[1] == expected[1]
        assert got[2] == expected[2]
    assert _hashes(root) == before  # neither the readers nor their copies wrote into the store


def test_rows_come_back_in_order_with_filters_and_without_ids(built: tuple[Path, np.ndarray]) -> None:
    root, q = built
    with open_store(root, read_only=True, search_processes=1) as one:
        expected = _search(one, q, where={"label": ["L1", "L2"]}, with_ids=False)
    with open_store(root, read_only=True, search_processes=2) as two:
        assert isinstance(two, EdgeStore)
        _search(two, q[: PARALLEL_MIN_ROWS])
        assert two._readers["c"].wait_ready() == 1
        got = _search(two, q, where={"label": ["L1", "L2"]}, with_ids=False)
        assert two._readers["c"].answered > 0
    assert np.array_equal(got[0], expected[0])
    assert got[1] == [[] for _ in range(len(q))]
    assert got[2] == expected[2]
    assert {h["label"] for hits in got[2] for h in hits} == {"L1", "L2"}


def test_a_reader_that_dies_is_replaced_by_this_process(
    built: tuple[Path, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    root, q = built
    with open_store(root, read_only=True, search_processes=1) as one:
        expected = _search(one, q)
    with open_store(root, read_only=True, search_processes=2) as two:
        assert isinstance(two, EdgeStore)
        _search(two, q)
        pool = two._readers["c"]
        assert pool.wait_ready() == 1
        proc = pool.readers[0].proc
        proc.kill()
        proc.wait()
        with caplog.at_level(logging.WARNING, logger="indexer.store._edge_readers"):
            got = _search(two, q)
        assert pool.readers == []
        assert "a search process stopped" in caplog.text
        again = _search(two, q)  # no reader left: one process, no new start
    for g in (got, again):
        assert np.array_equal(g[0], expected[0])
        assert g[2] == expected[2]


def test_a_writer_searches_in_one_process(built: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    import shutil

    root, q = built
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    with open_store(copy, search_processes=2) as w:
        assert isinstance(w, EdgeStore)
        _search(w, q)
        assert w._readers == {}


def test_search_processes_must_be_positive(built: tuple[Path, np.ndarray]) -> None:
    root, _ = built
    with pytest.raises(StoreError, match=r"search_processes must be at least 1 \(got 0\); pass 1"):
        open_store(root, read_only=True, search_processes=0)


def test_default_search_processes_follows_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLVEC_SEARCH_PROCESSES", "1")
    assert default_search_processes() == 1
    monkeypatch.setenv("CELLVEC_SEARCH_PROCESSES", "3")
    assert default_search_processes() == 3
    monkeypatch.delenv("CELLVEC_SEARCH_PROCESSES")
    assert 1 <= default_search_processes() <= 4


def test_a_reader_that_cannot_load_its_copy_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from indexer.store._edge_readers import ReaderPool

    pool = ReaderPool([(tmp_path / "no-such-shard", tmp_path / "copy")])
    with caplog.at_level(logging.WARNING, logger="indexer.store._edge_readers"):
        assert pool.wait_ready() == 0
    assert "could not load its copy" in caplog.text
    assert pool.readers == []
    pool.close()
