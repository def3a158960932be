"""What only the embedded Edge store does: files, persistence, the writer lock, read-only copies, HNSW."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer import IndexParams, StoreError, open_store
from indexer.store._edge import EdgeStore

ROOT = Path(__file__).resolve().parents[2]


COLLECTION_FILE_NAME = "cellvec-collection.json"


def _points(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [str(uuid.uuid4()) for _ in range(n)], rng.normal(size=(n, dim)).astype(np.float32)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = (Path(dirpath) / f).stat()
            out[str(Path(dirpath) / f)] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, list[str], np.ndarray]:
    root = tmp_path / "store"
    ids, vecs = _points(200, 8)
    with open_store(root) as s:
        s.create_collection("cells", vectors={"cell": 8}, payload_indexes={"label": "keyword"})
        s.upsert(
            "cells", ids=ids, vectors={"cell": vecs}, payloads=[{"label": f"L{i % 3}"} for i in range(200)]
        )
        s.put_meta("reference/pbmc", {"version": 1})
        s.put_blob("weights/enc.safetensors", b"w" * 1000)
    return root, ids, vecs


def test_layout_and_persistence(built: tuple[Path, list[str], np.ndarray]) -> None:
    root, ids, vecs = built
    assert json.loads((root / "cellvec-store.json").read_text()) == {
        "format": "cellvec-store",
        "layout_version": 1,
    }
    assert (root / "collections" / "cells" / "cellvec-collection.json").is_file()
    assert (root / "meta" / "reference%2Fpbmc.json").is_file()
    assert (root / "blobs" / "weights%2Fenc%2Esafetensors").is_file()
    with open_store(root, create=False) as s:
        assert isinstance(s, EdgeStore)
        assert s.collections() == ["cells"]
        assert s.count("cells") == 200
        assert s.facet("cells", "label") == {"L0": 67, "L1": 67, "L2": 66}
        got = s.retrieve("cells", ids[:2], with_vectors=["cell"])
        np.testing.assert_allclose(got[1].vectors["cell"], vecs[1] / np.linalg.norm(vecs[1]), atol=1e-6)
        assert s.get_meta("reference/pbmc") == {"version": 1}
        assert s.meta_keys() == ["reference/pbmc"]
        assert s.get_blob("weights/enc.safetensors") == b"w" * 1000
        with pytest.raises(StoreError, match="has no vector named 'gene'"):
            s.query("cells", vecs[:1], using="gene", limit=1)


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as s:
        s.put_meta("../../evil", {"x": 1})
        s.put_blob("..", b"x")
        assert s.get_meta("../../evil") == {"x": 1}
        assert s.get_blob("..") == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("hello")
    with pytest.raises(StoreError, match=r"is not a cellvec store \(no cellvec-store.json\); pass an empty"):
        open_store(tmp_path)
    with pytest.raises(StoreError, match="is a file"):
        open_store(tmp_path / "other.txt")


def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"no cellvec store at '{tmp_path / 'nope'}'"):
        open_store(tmp_path / "nope", create=False)
    with pytest.raises(StoreError, match="no cellvec store at"):
        open_store(tmp_path / "nope", read_only=True)
    assert not (tmp_path / "nope").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    open_store(empty).close()
    assert (empty / "cellvec-store.json").is_file()


def test_layout_version_mismatch(tmp_path: Path) -> None:
    (tmp_path / "cellvec-store.json").write_text(json.dumps({"format": "cellvec-store", "layout_version": 9}))
    with pytest.raises(StoreError, match="layout version 9"):
        open_store(tmp_path)


def test_interrupted_create_is_not_a_collection(tmp_path: Path) -> None:
    root = tmp_path / "s"
    open_store(root).close()
    (root / "collections" / "half").mkdir()
    (root / "collections" / "half" / "junk").write_text("x")
    with open_store(root) as s:
        assert s.collections() == []
        s.create_collection("half", vectors={"v": 2})
        assert s.collections() == ["half"]


def test_second_writer_in_process_is_refused(built: tuple[Path, list[str], np.ndarray]) -> None:
    root = built[0]
    with open_store(root) as s:
        with pytest.raises(StoreError, match=f"locked by process {os.getpid()} \\(another cellvec command"):
            open_store(root)
        s.count("cells")
    open_store(root).close()  # released on close


@pytest.fixture
def writer_process(built: tuple[Path, list[str], np.ndarray]) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the store open for writing (and the 'cells' shard loaded)."""
    code = textwrap.dedent(
        f"""
        import sys
        from indexer import open_store
        s = open_store({str(built[0])!r})
        s.count("cells")
        print("ready", flush=True)
        sys.stdin.readline()
        s.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    with proc:  # closes the pipes
        yield proc
        proc.communicate("\n", timeout=30)


def test_lock_held_by_another_process(
    built: tuple[Path, list[str], np.ndarray], writer_process: subprocess.Popen[str]
) -> None:
    with pytest.raises(StoreError, match=f"locked by process {writer_process.pid} .*wait for it to finish"):
        open_store(built[0])


def test_readers_work_during_a_write_and_write_nothing(
    built: tuple[Path, list[str], np.ndarray], writer_process: subprocess.Popen[str]
) -> None:
    root, ids, vecs = built
    before = _snapshot(root)
    with open_store(root, read_only=True) as r1, open_store(root, read_only=True) as r2:
        assert r1.count("cells") == 200
        res = r2.query("cells", vecs[:3], using="cell", limit=1)
        assert [h[0] for h in res.ids] == ids[:3]
        assert r1.get_meta("reference/pbmc") == {"version": 1}
        assert r2.get_blob("weights/enc.safetensors") == b"w" * 1000
        r1.flush()
        with pytest.raises(StoreError, match="opened read-only"):
            r1.upsert("cells", ids=ids[:1], vectors={"cell": vecs[:1]}, payloads=[{}])
        with pytest.raises(StoreError, match="opened read-only"):
            r1.optimize("cells")
    assert _snapshot(root) == before


def test_reader_without_a_writer_changes_no_byte_and_blocks_no_writer(
    built: tuple[Path, list[str], np.ndarray],
) -> None:
    """Loading a shard in place rewrites edge_config.json and segment.json: a reader loads a private copy."""
    import hashlib

    root, _ids, _vecs = built

    def hashes() -> dict[str, str]:
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}

    before = hashes()
    with open_store(root, read_only=True) as r:
        assert r.count("cells") == 200
        with open_store(root) as w:  # a reader holds no lock
            assert w.count("cells") == 200
    assert hashes() != before  # the writer's own load rewrote Edge's files: the check can see it
    before = hashes()
    with open_store(root, read_only=True) as r:
        assert r.count("cells") == 200
        r.query("cells", _vecs[:2], using="cell", limit=3)
    assert hashes() == before


def test_read_only_sees_only_what_was_flushed_when_it_opened(tmp_path: Path) -> None:
    root = tmp_path / "s"
    ids, vecs = _points(20, 4)
    with open_store(root) as w:
        w.create_collection("c", vectors={"v": 4})
        w.upsert("c", ids=ids[:10], vectors={"v": vecs[:10]}, payloads=[{}] * 10)
        w.flush()
        with open_store(root, read_only=True) as r:
            assert r.count("c") == 10
            w.upsert("c", ids=ids[10:], vectors={"v": vecs[10:]}, payloads=[{}] * 10)
            w.flush()
            assert r.count("c") == 10  # a private copy: reopen to see new writes
        with open_store(root, read_only=True) as r:
            assert r.count("c") == 20


def test_disk_full_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(tmp_path / "s") as s:

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("indexer.store._edge.os.fsync", full)
        with pytest.raises(
            StoreError, match=r"no space left on device while writing .*blobs.*; free space and rerun"
        ):
            s.put_blob("big", b"x")
        monkeypatch.undo()
        assert s.get_blob("big") is None
        assert list((tmp_path / "s" / "blobs").iterdir()) == []  # no temporary file left behind


def test_hnsw_recall_on_clustered_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, dim = 20_000, 64
    centres = rng.normal(size=(50, dim))
    x = (centres[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    q = (centres[rng.integers(0, 50, 200)] + 0.3 * rng.normal(size=(200, dim))).astype(np.float32)
    with open_store(tmp_path / "s") as s:
        s.create_collection("c", vectors={"cell": dim}, index=IndexParams(indexing_threshold=1000))
        s.upsert("c", ids=ids, vectors={"cell": x}, payloads=[{}] * n)
        s.optimize("c")
        assert isinstance(s, EdgeStore)
        assert s._coll("c").shard.info().indexed_vectors_count == n  # HNSW was built
        res = s.query("c", q, using="cell", limit=10, payload_fields=[])
        exact = s.query("c", q, using="cell", limit=10, payload_fields=[], exact=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.argsort(-(q @ xn.T), axis=1)[:, :10]
    recall = np.mean([len({ids[j] for j in t} & set(r)) / 10 for t, r in zip(truth, res.ids, strict=True)])
    assert recall >= 0.95
    assert exact.ids == [[ids[j] for j in t] for t in truth]


def test_segment_points_splits_the_collection_into_indexed_segments(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n, dim = 2_000, 16
    x = rng.normal(size=(n, dim)).astype(np.float32)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    q = rng.normal(size=(20, dim)).astype(np.float32)
    index = IndexParams(indexing_threshold=1, segment_points=500)
    with open_store(tmp_path / "s", index=index) as s:
        s.create_collection("c", vectors={"cell": dim})
        for start in range(0, n, 250):  # a segment is closed every 500 points written
            s.upsert("c", ids=ids[start : start + 250], vectors={"cell": x[start : start + 250]},
                     payloads=[{}] * 250)
        assert isinstance(s, EdgeStore)
        info = s._coll("c").shard.info()
        assert info.indexed_vectors_count == n
        assert info.segments_count >= 4
        assert s.count("c") == n
        res = s.query("c", q, using="cell", limit=5, payload_fields=[])
        exact = s.query("c", q, using="cell", limit=5, payload_fields=[], exact=True)
    hits = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(res.ids, exact.ids, strict=True)])
    assert hits >= 0.95
    with open_store(tmp_path / "s", read_only=True) as s:  # the setting is kept with the collection
        assert s._coll("c").index.segment_points == 500  # type: ignore[attr-defined]


def test_a_readers_copy_links_the_large_segment_files_and_changes_no_byte(tmp_path: Path) -> None:
    """A reader's private copy shares the inodes of a closed segment's vectors and graph (no second copy)."""
    import hashlib

    from indexer.store._edge_copy import READ_ONLY_FILES

    root = tmp_path / "s"
    ids, vecs = _points(3000, 64)
    with open_store(root) as w:
        w.create_collection("c", vectors={"v": 64}, index=IndexParams(indexing_threshold=1))
        w.upsert("c", ids=ids, vectors={"v": vecs}, payloads=[{"i": i} for i in range(len(ids))])
        w.optimize("c")
    big = [
        p for p in (root / "collections" / "c").rglob("*") if p.name in READ_ONLY_FILES or p.parent.name == "wal"
    ]
    assert {p.name for p in big} >= {"matrix.dat"}  # a closed, indexed segment
    hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    links = {p: p.stat().st_nlink for p in big}
    with open_store(root, read_only=True) as r:
        res = r.query("c", vecs[:5], using="v", limit=1)
        assert [h[0] for h in res.ids] == ids[:5]
        assert r._tmp is not None
        copy = r._tmp / "c"
        for p in big:
            assert p.stat().st_nlink == links[p] + 1
            assert (copy / p.relative_to(root / "collections" / "c")).stat().st_ino == p.stat().st_ino
        matrix = next(p for p in r._tmp.rglob("matrix.dat"))
        assert matrix.stat().st_size >= 3000 * 64 * 4
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()} == hashes
    assert all(p.stat().st_nlink == links[p] for p in big)  # the copy is gone


def test_an_integer_payload_index_is_a_lookup_without_a_range_index(tmp_path: Path) -> None:
    """Filters match integers, never ranges: no range index, which Edge rebuilds in memory on every load."""
    root = tmp_path / "s"
    ids, vecs = _points(300, 4)
    with open_store(root) as w:
        w.create_collection("c", vectors={"v": 4}, payload_indexes={"g": "integer"},
                            index=IndexParams(indexing_threshold=1))
        w.upsert("c", ids=ids, vectors={"v": vecs}, payloads=[{"g": [i % 7, 100 + i % 3]} for i in range(300)])
        w.optimize("c")
    with open_store(root, read_only=True) as r:
        assert isinstance(r, EdgeStore)
        params = r._coll("c").shard.info().payload_schema["g"].params
        assert (params.lookup, params.range) == (True, False)
        assert r.count("c", where={"g": 3}) == sum(i % 7 == 3 for i in range(300))
        assert r.count("c", where={"g": [101, 5]}) == sum(i % 3 == 1 or i % 7 == 5 for i in range(300))
        hits = r.query("c", vecs[:3], using="v", limit=5, where={"g": 102}, payload_fields=["g"])
        assert all(102 in h["g"] for row in hits.payloads for h in row)
    index_dirs = [p.name for p in (root / "collections" / "c").rglob("*") if p.is_dir() and "-g-" in p.name]
    assert index_dirs
    assert not any(n.endswith("-numeric") for n in index_dirs)


def test_a_private_copy_keeps_bytes_holes_and_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copied files equal their sources byte for byte, keep their holes and mode; so does the fallback copy."""
    from indexer.store import _edge_copy

    src = tmp_path / "src"
    (src / "seg").mkdir(parents=True)
    sparse = src / "seg" / "page_0.dat"
    with sparse.open("wb") as f:  # data, an 8 MiB hole, data, and a hole at the end
        f.write(b"a" * 5000)
        f.seek(8 << 20)
        f.write(b"b" * 3000)
        f.truncate(16 << 20)
    sparse.chmod(0o640)
    (src / "seg" / "small.json").write_text('{"x": 1}')
    (src / "empty.bin").write_bytes(b"")

    def same(dest: Path) -> None:
        for p in src.rglob("*"):
            q = dest / p.relative_to(src)
            assert q.is_dir() == p.is_dir()
            if p.is_file():
                assert q.read_bytes() == p.read_bytes()
                assert q.stat().st_mode == p.stat().st_mode

    _edge_copy.copy_sparse(src, tmp_path / "a")
    same(tmp_path / "a")
    copied = tmp_path / "a" / "seg" / "page_0.dat"
    if sparse.stat().st_blocks * 512 < 4 << 20:  # this filesystem keeps holes: so must the copy
        assert copied.stat().st_blocks * 512 < 4 << 20

    def no_copy_file_range(*_a: object) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(_edge_copy.os, "copy_file_range", no_copy_file_range)
    _edge_copy.copy_sparse(src, tmp_path / "b")
    same(tmp_path / "b")


def test_a_prefetched_collection_answers_as_one_opened_on_use(tmp_path: Path) -> None:
    """prefetch opens a read-only store's collection in the background; queries, errors and close are unchanged."""
    root = tmp_path / "s"
    ids, vecs = _points(300, 16)
    with open_store(root) as w:
        w.create_collection("c", vectors={"v": 16})
        w.upsert("c", ids=ids, vectors={"v": vecs}, payloads=[{"i": i} for i in range(len(ids))])
        w.prefetch("c")  # a writer opens its own files: nothing to do ahead
        assert w._prefetching == {}
    with open_store(root, read_only=True) as plain:
        want = plain.query("c", vecs[:20], using="v", limit=5)
    with open_store(root, read_only=True) as r:
        r.prefetch("c")
        r.prefetch("c")  # once is enough
        r.prefetch("missing")  # reported by the call that uses it
        assert list(r._prefetching) == ["c"]
        got = r.query("c", vecs[:20], using="v", limit=5)
        assert got.ids == want.ids
        np.testing.assert_array_equal(got.scores, want.scores)
        with pytest.raises(StoreError, match="missing"):
            r.query("missing", vecs[:1], using="v", limit=1)
    unused = open_store(root, read_only=True)
    unused.prefetch("c")
    tmp = unused._tmp
    assert tmp is not None
    unused.close()  # waits for the opening, then closes it and deletes the copy
    assert not tmp.exists()


def test_a_failed_prefetch_is_raised_by_the_call_that_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "s"
    ids, vecs = _points(10, 4)
    with open_store(root) as w:
        w.create_collection("c", vectors={"v": 4})
        w.upsert("c", ids=ids, vectors={"v": vecs}, payloads=[{} for _ in ids])
    r = open_store(root, read_only=True)

    def broken(_name: str, _path: Path) -> Path:
        msg = "cannot read collection 'c': disk on fire"
        raise StoreError(msg)

    monkeypatch.setattr(r, "_private_copy", broken)
    r.prefetch("c")
    with pytest.raises(StoreError, match="disk on fire"):
        r.query("c", vecs[:1], using="v", limit=1)
    r.close()


def test_a_reader_closes_every_copy_and_reports_a_shard_that_fails_to_close(tmp_path: Path) -> None:
    """The shards close side by side: each copy is deleted, and one shard's failure leaves the others closed."""
    root = tmp_path / "s"
    ids, vecs = _points(50, 8)
    with open_store(root) as w:
        for name in ("a", "b", "c"):
            w.create_collection(name, vectors={"v": 8})
            w.upsert(name, ids=ids, vectors={"v": vecs}, payloads=[{} for _ in ids])

    class FailingClose:
        def __init__(self, shard: object) -> None:
            self.shard = shard

        def close(self) -> None:
            self.shard.close()  # type: ignore[attr-defined]
            raise OSError(errno.EIO, "disk gone")

    r = open_store(root, read_only=True)
    for name in ("a", "b", "c"):
        assert r.query(name, vecs[:1], using="v", limit=1).ids == [[ids[0]]]
    copies = [r._coll(name).private for name in ("a", "b", "c")]  # type: ignore[attr-defined]
    assert all(c is not None and c.is_dir() for c in copies)
    r._coll("b").shard = FailingClose(r._coll("b").shard)  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match=r"closing store .* failed: .*disk gone"):
        r.close()
    assert not any(c.exists() for c in copies if c is not None)
    assert r._tmp is None
    with open_store(root, read_only=True) as again:  # nothing of the store was touched
        assert again.query("b", vecs[:1], using="v", limit=1).ids == [[ids[0]]]
