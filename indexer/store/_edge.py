"""The embedded store: one Qdrant Edge shard per collection under a directory.

Layout of a store directory::

    <root>/cellvec-store.json              marker: {"format": "cellvec-store", "layout_version": 1}
    <root>/.lock                           flock held by the one writer; holds its PID
    <root>/collections/<name>/             one EdgeShard per collection
    <root>/collections/<name>/cellvec-collection.json   vector dimensions, index and payload indexes
    <root>/meta/<key>.json                 small JSON documents (atomic replace)
    <root>/blobs/<key>                     bytes: encoder weights, projections (atomic replace)

Concurrency (measured with qdrant-edge-py 0.9.0): a shard's write-ahead log is locked by the process that
loaded it, so a second ``EdgeShard.load`` of the same directory fails while the first is open, even in
another process; and loading a shard rewrites some of its files (``edge_config.json``, ``segment.json``,
flag files) even when nothing is written. Hence:

- a writer (``read_only=False``) takes an exclusive ``flock`` on ``<root>/.lock``; a second writer gets a
  :class:`StoreError` naming the PID of the first;
- a reader (``read_only=True``) never writes any file of the store: no points, payloads, meta or blobs,
  no lock file and none of the files Edge rewrites when it loads a shard. It opens each collection it uses
  from a private copy in a temporary directory (deleted on ``close()``), so it also keeps working during a
  write, and on a read-only filesystem, and sees each collection as it was when the reader first touched it.
  The copy is cheap: the large files of closed segments, which Edge and writers only read
  (:data:`READ_ONLY_FILES`: vectors, HNSW links), are hard-linked when the temporary directory is on the
  store's filesystem (``TMPDIR``), and the rest is copied sparse (``copy_file_range``). A collection
  copied in the middle of a write may miss the writes not yet flushed; writers that publish a new reference
  version into a new collection, then switch a meta key, give readers a consistent view.
- ``query_batch`` holds the GIL, so a reader searches a large batch (:data:`PARALLEL_MIN_ROWS` rows or more)
  with *reader processes* as well (``search_processes``, default the cores, at most 4): each loads its own
  copy of the reader's private copy and searches the chunks it is sent; results come back in row order and
  equal those of one process (:mod:`indexer.store._edge_readers`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import qdrant_edge as qe

from indexer._errors import StoreError
from indexer.store._edge_copy import copy_sparse
from indexer.store._edge_readers import Hits, ReaderPool, SearchSpec, edge_filter, search_shard
from indexer.store._protocol import (
    PayloadIndexKind,
    SearchResult,
    StoredPoint,
    Where,
)
from indexer.store._shared import (
    canonical_ids,
    check_collection_name,
    check_key,
    check_payloads,
    check_query_vectors,
    check_vectors,
    decode_key,
    dumps_meta,
    empty_result,
    encode_key,
    enospc_error,
    is_enospc,
    no_collection_error,
    os_errors,
    pad_scores,
    read_only_error,
)
from schemas import IndexParams

logger = logging.getLogger(__name__)

MARKER = "cellvec-store.json"
LAYOUT_VERSION = 1
COLLECTION_FILE = "cellvec-collection.json"
UPSERT_BATCH = 1000
QUERY_BATCH = 256


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, ``os.replace``."""
    with os_errors(path, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def _left_by_init(path: Path) -> bool:
    """Return whether ``path`` is what an interrupted store creation leaves before the marker exists."""
    if path.name.startswith(".tmp-"):
        return True
    return path.name == "collections" and path.is_dir() and not any(path.iterdir())


def _to_point(rec: Any, with_vectors: Sequence[str]) -> StoredPoint:
    vec = rec.vector or {}
    return StoredPoint(
        id=str(rec.id),
        payload=dict(rec.payload or {}),
        vectors={v: np.asarray(vec[v], dtype=np.float32) for v in with_vectors if v in vec},
    )


class _Collection:
    """An open shard and what cellvec knows about it."""

    def __init__(
        self, shard: Any, dims: dict[str, int], index: IndexParams, path: Path, private: Path | None = None
    ) -> None:
        self.shard = shard
        self.private = private
        """The private copy a reader loaded (``None`` for a writer, which loads the store's own files)."""
        self.dims = dims
        self.index = index
        self.path = path
        self.unindexed = 0
        """Points written since the last optimize (by this process)."""


class _Opening(threading.Thread):
    """A collection being opened in the background (:meth:`EdgeStore.prefetch`)."""

    def __init__(self, load: Callable[[], _Collection]) -> None:
        super().__init__(name="cellvec-prefetch", daemon=True)
        self._load = load
        self._coll: _Collection | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._coll = self._load()
        except BaseException as e:  # handed to the thread that uses the collection
            self._error = e

    def result(self) -> _Collection:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._coll is not None
        return self._coll


class EdgeStore:
    """A cellvec store in a directory, backed by embedded Qdrant Edge (one shard per collection).

    Open it with :func:`indexer.open_store`; see the module docstring for the layout and what holds
    for concurrent readers and writers.
    """

    def __init__(
        self,
        root: Path,
        *,
        create: bool = True,
        read_only: bool = False,
        index: IndexParams | None = None,
        search_processes: int | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.location = str(self.root)
        self.read_only = read_only
        self.default_index = index or IndexParams()
        self._open: dict[str, _Collection] = {}
        if search_processes is not None and search_processes < 1:
            msg = f"search_processes must be at least 1 (got {search_processes}); pass 1 to search in one process"
            raise StoreError(msg)
        self.search_processes = search_processes
        """Processes that search a large query batch of a read-only store (``None``: the default)."""
        self._readers: dict[str, ReaderPool] = {}
        self._prefetching: dict[str, _Opening] = {}
        self._lock_fd: int | None = None
        self._tmp: Path | None = None
        self._closed = False
        # Loading a shard rewrites some of its files, so a reader loads private copies, never the originals.
        self._direct = not read_only
        self._check_or_init(create=create)
        if not read_only:
            if not _has_room(self.root):
                raise enospc_error(self.root)  # even loading a shard writes through mmap
            self._acquire_lock()

    # ---------------------------------------------------------------- opening, locking

    def _check_or_init(self, *, create: bool) -> None:
        root = self.root
        marker = root / MARKER
        if marker.is_file():
            try:
                info = json.loads(marker.read_text())
            except (OSError, ValueError) as e:
                msg = f"'{root}' has an unreadable {MARKER} ({e}); restore it or rebuild the store"
                raise StoreError(msg) from e
            if info.get("format") != "cellvec-store":
                msg = f"'{root}' is not a cellvec store ({MARKER} has format {info.get('format')!r})"
                raise StoreError(msg)
            if info.get("layout_version") != LAYOUT_VERSION:
                msg = (
                    f"store '{root}' has layout version {info.get('layout_version')!r}; this cellvec "
                    f"reads version {LAYOUT_VERSION}: upgrade cellvec or rebuild the store"
                )
                raise StoreError(msg)
            return
        if root.exists() and not root.is_dir():
            msg = f"'{root}' is a file, not a cellvec store directory; pass a directory"
            raise StoreError(msg)
        if root.is_dir() and any(not _left_by_init(p) for p in root.iterdir()):
            msg = (
                f"'{root}' is not a cellvec store (no {MARKER}); pass an empty or new directory, "
                "or the store created by `cellvec reference build`"
            )
            raise StoreError(msg)
        if not create or self.read_only:
            msg = (
                f"no cellvec store at '{root}'; build one with `cellvec reference build` "
                "or pass the directory of an existing store"
            )
            raise StoreError(msg)
        with os_errors(root, "create the store directory"):
            (root / "collections").mkdir(parents=True, exist_ok=True)
        atomic_write(
            marker, json.dumps({"format": "cellvec-store", "layout_version": LAYOUT_VERSION}).encode()
        )

    def _acquire_lock(self) -> None:
        path = self.root / ".lock"
        with os_errors(path, "open the lock file"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.read(fd, 64).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            msg = (
                f"store '{self.root}' is locked by process {pid} (another cellvec command is using it); "
                "wait for it to finish or stop it"
            )
            raise StoreError(msg) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self.read_only:
            raise read_only_error(self.location, what)
        if not what.startswith(("drop", "delete")) and not _has_room(self.root):
            # Edge writes through memory-mapped files: on a full disk the process dies of SIGBUS instead of
            # seeing ENOSPC, so refuse before writing while the previous state is intact.
            raise enospc_error(self.root)

    def _check_open(self) -> None:
        if self._closed:
            msg = f"store '{self.location}' is closed; open it again with open_store()"
            raise StoreError(msg)

    # ---------------------------------------------------------------- collections

    def _coll_dir(self, name: str) -> Path:
        return self.root / "collections" / name

    def collections(self) -> list[str]:
        """Return the names of the collections, sorted."""
        self._check_open()
        base = self.root / "collections"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / COLLECTION_FILE).is_file())

    def has_collection(self, name: str) -> bool:
        """Return whether collection ``name`` exists."""
        self._check_open()
        return (self._coll_dir(check_collection_name(name)) / COLLECTION_FILE).is_file()

    def create_collection(
        self,
        name: str,
        *,
        vectors: Mapping[str, int],
        index: IndexParams | None = None,
        payload_indexes: Mapping[str, PayloadIndexKind] | None = None,
    ) -> None:
        """Create a collection: one cosine vector per name, payload indexes first, then the sidecar file."""
        self._check_writable(f"create collection {name!r}")
        check_collection_name(name)
        if self.has_collection(name):
            msg = (
                f"collection {name!r} already exists in store '{self.location}'; "
                "drop it first or pick a new name"
            )
            raise StoreError(msg)
        if not vectors or any(int(d) < 1 for d in vectors.values()):
            msg = (
                f"collection {name!r} needs at least one named vector with a positive dimension, "
                f"got {dict(vectors)}"
            )
            raise StoreError(msg)
        idx = index or self.default_index
        path = self._coll_dir(name)
        if path.exists():  # left over from an interrupted create
            with os_errors(path, "remove the unfinished collection"):
                shutil.rmtree(path)
        memory = qe.Memory.Cold if idx.on_disk else None
        quant = (
            qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99)
            if idx.quantization == "int8"
            else None
        )
        config = qe.EdgeConfig(
            vectors={
                v: qe.EdgeVectorParams(size=int(d), distance=qe.Distance.Cosine, memory=memory)
                for v, d in vectors.items()
            },
            hnsw_config=qe.HnswIndexConfig(
                m=idx.hnsw_m, ef_construct=idx.hnsw_ef_construct, full_scan_threshold=idx.full_scan_threshold
            ),
            quantization_config=quant,
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=idx.indexing_threshold, max_segment_size=_max_segment_kb(idx, vectors)
            ),
        )
        shard = self._edge(path, "create collection", lambda: qe.EdgeShard.create(str(path), config))
        # Filters only match integers (MatchValue / MatchAny), never ranges: a lookup index alone. Edge builds a
        # range index in memory each time it loads a shard (a B-tree of every value): with 20 gene ids per
        # cell it was ~70% of loading a 100k-cell reference (2.7 s), and every reader process loads it again.
        kinds: dict[str, Any] = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.IntegerIndexParams(lookup=True, range=False),
        }
        for field, kind in (payload_indexes or {}).items():
            if kind not in kinds:
                shard.close()
                shutil.rmtree(path, ignore_errors=True)
                msg = f"payload index kind for {field!r} must be 'keyword' or 'integer', got {kind!r}"
                raise StoreError(msg)
            op = qe.UpdateOperation.create_field_index(field, kinds[kind])
            self._edge(path, "create a payload index", lambda op=op: shard.update(op))
        self._edge(path, "flush", shard.flush)
        dims = {v: int(d) for v, d in vectors.items()}
        sidecar = {"vectors": dims, "index": idx.to_json(), "payload_indexes": dict(payload_indexes or {})}
        atomic_write(path / COLLECTION_FILE, json.dumps(sidecar, sort_keys=True).encode())
        self._open[name] = _Collection(shard, dims, idx, path)

    def drop_collection(self, name: str) -> None:
        """Delete a collection and its points; a missing collection is a no-op."""
        self._check_writable(f"drop collection {name!r}")
        check_collection_name(name)
        coll = self._open.pop(name, None)
        if coll is not None:
            with contextlib.suppress(Exception):
                coll.shard.close()
        path = self._coll_dir(name)
        if path.exists():
            with os_errors(path, "delete the collection directory"):
                # Remove the sidecar first so a half-deleted directory is no longer a collection.
                (path / COLLECTION_FILE).unlink(missing_ok=True)
                shutil.rmtree(path)

    def prefetch(self, name: str) -> None:
        """Start opening collection ``name`` in a background thread; the first call that uses it waits for it.

        Only a read-only store does anything: its private copy and Edge's load of a collection (~0.13 s for
        the Voigt reference) release the GIL for most of that time, so they run while the caller encodes
        its query cells. A collection that does not exist is left to the call that uses it to report.
        """
        if self._direct or name in self._open or name in self._prefetching or not self.has_collection(name):
            return
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="cellvec-ro-"))
        task = _Opening(lambda: self._load(name))
        self._prefetching[name] = task
        task.start()

    def _coll(self, name: str) -> _Collection:
        self._check_open()
        coll = self._open.get(name)
        if coll is not None:
            return coll
        task = self._prefetching.pop(name, None)
        coll = task.result() if task is not None else self._load(name)
        self._open[name] = coll
        return coll

    def _load(self, name: str) -> _Collection:
        check_collection_name(name)
        path = self._coll_dir(name)
        sidecar = path / COLLECTION_FILE
        if not sidecar.is_file():
            raise no_collection_error(self.location, name, self.collections())
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            msg = (
                f"collection {name!r} in '{self.location}' has an unreadable {COLLECTION_FILE} ({e}); "
                "rebuild it"
            )
            raise StoreError(msg) from e
        shard_path = path
        if not self._direct:
            shard_path = self._private_copy(name, path)
        shard = self._edge(path, "open collection", lambda: qe.EdgeShard.load(str(shard_path)))
        return _Collection(
            shard,
            dict(info["vectors"]),
            IndexParams.from_json(info.get("index", {})),
            path,
            None if self._direct else shard_path,
        )

    def _private_copy(self, name: str, path: Path) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="cellvec-ro-"))
        dest = self._tmp / name
        last: Exception | None = None
        for _ in range(3):  # a writer may swap segments while we copy; try again
            shutil.rmtree(dest, ignore_errors=True)
            try:
                copy_sparse(path, dest)
                return dest
            except (OSError, shutil.Error) as e:
                last = e
        if last is not None and is_enospc(last):
            raise enospc_error(dest) from last
        msg = (
            f"cannot read collection {name!r} of '{self.location}' while it is being rewritten ({last}); "
            "retry"
        )
        raise StoreError(msg) from last

    def _edge(self, path: Path, what: str, fn: Any) -> Any:
        try:
            return fn()
        except StoreError:
            raise
        except Exception as e:
            if is_enospc(e):
                raise enospc_error(path) from e
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "WouldBlock" in text:
                msg = (
                    f"collection '{path}' is open in another process (another cellvec command is using it); "
                    "wait for it to finish"
                )
                raise StoreError(msg) from e
            msg = f"Qdrant Edge failed to {what} at '{path}': {text}"
            raise StoreError(msg) from e

    # ---------------------------------------------------------------- points

    def upsert(
        self,
        name: str,
        *,
        ids: Sequence[str],
        vectors: Mapping[str, np.ndarray],
        payloads: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or replace points, 1,000 per Edge update; zero rows are stored as zero vectors."""
        self._check_writable(f"upsert into {name!r}")
        coll = self._coll(name)
        pids = canonical_ids(ids)
        n = len(pids)
        vecs = check_vectors(name, vectors, coll.dims, n)
        pays = check_payloads(payloads, n)
        for start in range(0, n, UPSERT_BATCH):
            stop = min(start + UPSERT_BATCH, n)
            rows = {v: a[start:stop].tolist() for v, a in vecs.items()}
            points = [
                qe.Point(pids[i], {v: rows[v][i - start] for v in rows}, pays[i]) for i in range(start, stop)
            ]
            op = qe.UpdateOperation.upsert_points(points)
            self._edge(coll.path, "upsert points", lambda op=op: coll.shard.update(op))
            coll.unindexed += stop - start
            if coll.index.segment_points and coll.unindexed >= coll.index.segment_points:
                # Close this segment: index it now, so that later points fill a new one.
                self._edge(coll.path, "optimize", coll.shard.optimize)
                coll.unindexed = 0

    def retrieve(
        self, name: str, ids: Sequence[str], *, with_vectors: Sequence[str] = (), payload: bool = True
    ) -> list[StoredPoint]:
        """Return the points with these ids, in the order given; missing ids are omitted."""
        coll = self._coll(name)
        pids = canonical_ids(ids)
        self._check_vector_names(name, coll, with_vectors)
        if not pids:
            return []
        wv: Any = list(with_vectors) if with_vectors else False
        found: dict[str, StoredPoint] = {}
        for start in range(0, len(pids), UPSERT_BATCH):
            chunk = pids[start : start + UPSERT_BATCH]
            recs = self._edge(
                coll.path,
                "retrieve points",
                lambda chunk=chunk: coll.shard.retrieve(chunk, with_payload=payload, with_vector=wv),
            )
            for r in recs:
                p = _to_point(r, with_vectors)
                found[p.id] = p
        return [found[i] for i in pids if i in found]

    @staticmethod
    def _check_vector_names(name: str, coll: _Collection, names: Sequence[str]) -> None:
        if isinstance(names, str):
            names = [names]
        for v in names:
            if v not in coll.dims:
                msg = f"collection {name!r} has no vector named {v!r}; it has {sorted(coll.dims)}"
                raise StoreError(msg)

    def query(
        self,
        name: str,
        vectors: np.ndarray,
        *,
        using: str,
        limit: int,
        where: Where | None = None,
        payload_fields: Sequence[str] | None = None,
        exact: bool = False,
        with_ids: bool = True,
        hnsw_ef: int | None = None,
    ) -> SearchResult:
        """Return the ``limit`` nearest points of each query row, in batches of 256 queries."""
        coll = self._coll(name)
        q = check_query_vectors(name, vectors, using, coll.dims)
        if limit < 1:
            msg = f"limit must be at least 1, got {limit}"
            raise StoreError(msg)
        if edge_filter(where) is False:
            return empty_result(len(q), limit)
        search = SearchSpec(
            using=using,
            limit=limit,
            where=dict(where) if where is not None else None,
            payload_fields=None if payload_fields is None else list(payload_fields),
            with_ids=with_ids,
            hnsw_ef=coll.index.search_ef if hnsw_ef is None else int(hnsw_ef),
            exact=exact,
            quantization=(coll.index.rescore, coll.index.oversampling) if coll.index.quantization == "int8" else None,
        )
        chunks = [q[start : start + QUERY_BATCH] for start in range(0, len(q), QUERY_BATCH)]
        readers = self._readers_for(name, coll, len(q))
        if readers is not None:
            parts = readers.search(chunks, search, lambda c: self._search_here(coll, c, search))
        else:
            parts = [self._search_here(coll, c, search) for c in chunks]
        ids = [row for part in parts for row in part[0]]
        scores = [row for part in parts for row in part[1]]
        pays = [row for part in parts for row in part[2]]
        return SearchResult(id_ints=ids, scores=pad_scores(scores, limit), payloads=pays)

    def _search_here(self, coll: _Collection, rows: np.ndarray, search: SearchSpec) -> Hits:
        return self._edge(coll.path, "query", lambda: search_shard(coll.shard, rows, search))

    def _readers_for(self, name: str, coll: _Collection, n_rows: int) -> ReaderPool | None:
        """Return the reader processes of collection ``name``, started on its first large enough query.

        Only a read-only store has them (a writer's shard cannot be loaded twice, and it changes), and only
        when :attr:`search_processes` (default :func:`default_search_processes`) is above 1.
        """
        pool = self._readers.get(name)
        if pool is not None:
            return pool if pool.readers else None
        if self._direct or n_rows < PARALLEL_MIN_ROWS:
            return None
        n = self.search_processes if self.search_processes is not None else default_search_processes()
        if n < 2 or coll.private is None:
            return None
        # Each reader copies the private copy itself (on its own core) into a folder beside it.
        copies = [(coll.private, coll.private.parent / f"{coll.private.name}.reader-{j}") for j in range(1, n)]
        try:
            pool = ReaderPool(copies)
        except OSError as e:
            logger.warning("cannot start a search process (%s); searching in one", e)
            pool = ReaderPool([])
        self._readers[name] = pool
        logger.info("searching %r with %d processes", name, 1 + len(pool.readers))
        return pool if pool.readers else None

    def scroll(
        self,
        name: str,
        *,
        where: Where | None = None,
        with_vectors: Sequence[str] = (),
        payload: bool = True,
        batch_size: int = 1000,
    ) -> Iterator[list[StoredPoint]]:
        """Yield every (matching) point exactly once, in batches of ``batch_size``, ordered by id."""
        coll = self._coll(name)
        self._check_vector_names(name, coll, with_vectors)
        flt = edge_filter(where)
        if flt is False:
            return
        wv: Any = list(with_vectors) if with_vectors else False
        offset: Any = None
        while True:
            req = qe.ScrollRequest(
                offset=offset, limit=batch_size, filter=flt, with_payload=payload, with_vector=wv
            )
            recs, offset = self._edge(coll.path, "scroll", lambda req=req: coll.shard.scroll(req))
            if recs:
                yield [_to_point(r, with_vectors) for r in recs]
            if offset is None:
                return

    def count(self, name: str, *, where: Where | None = None) -> int:
        """Return the exact number of (matching) points."""
        coll = self._coll(name)
        flt = edge_filter(where)
        if flt is False:
            return 0
        req = qe.CountRequest(exact=True, filter=flt)
        return int(self._edge(coll.path, "count", lambda: coll.shard.count(req)))

    def _selection(self, what: str, ids: Sequence[str] | None, where: Where | None) -> qe.Filter | bool:
        if ids is None and where is None:
            msg = f"{what} needs ids=, where= or both; to empty a collection, drop it"
            raise StoreError(msg)
        flt = edge_filter(where, None if ids is None else canonical_ids(ids))
        return True if flt is None else flt

    def delete(self, name: str, *, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        """Delete points by id, by filter, or both (ids that also match the filter)."""
        self._check_writable(f"delete points from {name!r}")
        coll = self._coll(name)
        flt = self._selection("delete", ids, where)
        if flt is False:
            return
        if flt is True:  # where={} matches everything
            flt = qe.Filter(must=[])
        op = qe.UpdateOperation.delete_points_by_filter(flt)
        self._edge(coll.path, "delete points", lambda: coll.shard.update(op))

    def set_payload(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        ids: Sequence[str] | None = None,
        where: Where | None = None,
    ) -> None:
        """Set payload fields (others are kept) on points chosen by id, by filter, or both."""
        self._check_writable(f"set payload in {name!r}")
        coll = self._coll(name)
        flt = self._selection("set_payload", ids, where)
        if flt is False:
            return
        if flt is True:
            flt = qe.Filter(must=[])
        op = qe.UpdateOperation.set_payload_by_filter(flt, dict(payload))
        self._edge(coll.path, "set payload", lambda: coll.shard.update(op))

    def facet(self, name: str, field: str, *, where: Where | None = None) -> dict[str, int]:
        """Return the exact number of (matching) points per value of ``field`` (values as strings)."""
        coll = self._coll(name)
        flt = edge_filter(where)
        if flt is False:
            return {}
        n = self.count(name, where=where)
        if n == 0:
            return {}
        req = qe.FacetRequest(key=field, limit=n, exact=True, filter=flt)
        res = self._edge(coll.path, "facet", lambda: coll.shard.facet(req))
        # Edge keeps values whose points were relabelled or deleted, with count 0.
        return {str(h.value): int(h.count) for h in res if h.count > 0}

    def optimize(self, name: str) -> None:
        """Build HNSW (and quantization) for segments above the indexing threshold, then flush."""
        self._check_writable(f"optimize {name!r}")
        coll = self._coll(name)
        self._edge(coll.path, "optimize", coll.shard.optimize)
        self._edge(coll.path, "flush", coll.shard.flush)
        coll.unindexed = 0

    def flush(self) -> None:
        """Make every write so far durable."""
        self._check_open()
        if self.read_only:
            return
        for coll in self._open.values():
            self._edge(coll.path, "flush", coll.shard.flush)

    # ---------------------------------------------------------------- meta and blobs

    def _meta_path(self, key: str) -> Path:
        return self.root / "meta" / f"{encode_key(check_key(key))}.json"

    def _blob_path(self, key: str) -> Path:
        return self.root / "blobs" / encode_key(check_key(key, "blob key"))

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """Return the JSON object stored under ``key``, or ``None``."""
        self._check_open()
        path = self._meta_path(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            msg = f"cannot read meta {key!r} at '{path}': {e.strerror}"
            raise StoreError(msg) from e
        try:
            value: dict[str, Any] = json.loads(text)
        except ValueError as e:
            msg = f"meta {key!r} at '{path}' is not valid JSON ({e}); delete it or rebuild"
            raise StoreError(msg) from e
        return value

    def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON object under ``key`` (temporary file, fsync, atomic rename)."""
        self._check_writable(f"write meta {key!r}")
        atomic_write(self._meta_path(key), dumps_meta(key, value).encode())

    def delete_meta(self, key: str) -> None:
        """Delete ``key``; a missing key is a no-op."""
        self._check_writable(f"delete meta {key!r}")
        path = self._meta_path(key)
        with os_errors(path, "delete"):
            path.unlink(missing_ok=True)

    def meta_keys(self, prefix: str = "") -> list[str]:
        """Return the sorted meta keys that start with ``prefix``."""
        self._check_open()
        base = self.root / "meta"
        if not base.is_dir():
            return []
        keys = (decode_key(p.name[: -len(".json")]) for p in base.iterdir() if p.name.endswith(".json"))
        return sorted(k for k in keys if k.startswith(prefix) and not k.startswith(".tmp-"))

    def put_blob(self, key: str, data: bytes) -> None:
        """Store bytes under ``key`` (temporary file, fsync, atomic rename)."""
        self._check_writable(f"write blob {key!r}")
        atomic_write(self._blob_path(key), bytes(data))

    def get_blob(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or ``None``."""
        self._check_open()
        path = self._blob_path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            msg = f"cannot read blob {key!r} at '{path}': {e.strerror}"
            raise StoreError(msg) from e

    def delete_blob(self, key: str) -> None:
        """Delete blob ``key``; a missing key is a no-op."""
        self._check_writable(f"delete blob {key!r}")
        path = self._blob_path(key)
        with os_errors(path, "delete"):
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Flush and close every open shard, release the lock and delete private copies; idempotent."""
        if self._closed:
            return
        errors: list[BaseException] = []
        for name, task in list(self._prefetching.items()):  # opened but never used: close it with the rest
            with contextlib.suppress(Exception):
                self._open.setdefault(name, task.result())
        self._prefetching.clear()
        for pool in self._readers.values():
            pool.close()
        self._readers.clear()
        # Edge's close releases the GIL and takes ~30 ms a shard even for a reader's copy: the shards close
        # side by side, and each copy is deleted by the thread that closed it.
        closers = [threading.Thread(target=self._close_one, args=(c, errors)) for c in self._open.values()]
        for t in closers:
            t.start()
        for t in closers:
            t.join()
        self._open.clear()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._closed = True
        if errors:
            first = errors[0]
            if is_enospc(first):
                raise enospc_error(self.root) from first
            text = str(first).splitlines()[0] if str(first) else repr(first)
            msg = f"closing store '{self.location}' failed: {text}"
            raise StoreError(msg) from first

    def _close_one(self, coll: _Collection, errors: list[BaseException]) -> None:
        try:
            if not self.read_only:
                coll.shard.flush()
            coll.shard.close()
        except Exception as e:  # keep closing the others
            errors.append(e)
        if coll.private is not None:
            shutil.rmtree(coll.private, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"EdgeStore('{self.location}', {mode})"


PARALLEL_MIN_ROWS = 2048
"""Query rows from which one ``query`` call of a read-only store starts reader processes (kept until
``close()``): a reader needs about 0.5 s to start (Python, then its copy of the collection) on the other
core, while this process goes on searching; smaller batches are searched in this process."""


def default_search_processes() -> int:
    """Return how many processes a read-only store searches a large batch with, by default.

    ``CELLVEC_SEARCH_PROCESSES`` when set, else the cores this process may run on, at most
    :data:`MAX_SEARCH_PROCESSES`.
    """
    from indexer._settings import Settings  # read once per store, when its first large query starts readers

    chosen = Settings().search_processes
    if chosen is not None:
        return max(1, chosen)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_SEARCH_PROCESSES))


MAX_SEARCH_PROCESSES = 4
"""Default ceiling on search processes (each holds its own copy of the collection's payload indexes)."""


MIN_FREE_BYTES = 8 * 1024 * 1024
"""Free space under which writes are refused and readers work on copies (Edge maps files into memory)."""


def _max_segment_kb(idx: IndexParams, vectors: Mapping[str, int]) -> int | None:
    """Qdrant's ``max_segment_size`` (kB of vectors) that keeps the optimiser from merging closed segments."""
    if not idx.segment_points:
        return None
    per_point = 4 * sum(int(d) for d in vectors.values())
    return max(1, -(-idx.segment_points * per_point // 1024))


def _has_room(path: Path) -> bool:
    try:
        return shutil.disk_usage(path).free >= MIN_FREE_BYTES
    except OSError:
        return True
