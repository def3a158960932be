"""The qdrant-client store: a Qdrant server or cluster (``http(s)://`` URL), or ``":memory:"`` for tests.

Every collection cellvec creates is named ``cellvec__<name>`` so a shared server is not polluted;
:meth:`ClientStore.collections` returns the names without the prefix. Meta documents live in
``cellvec__meta`` (one point per key, payload ``{"key", "value_json"}``, a 1-d dummy vector) and blobs in
``cellvec__blobs`` (base64 chunks of at most 4 MiB, switched atomically through a head point).

Local mode (``":memory:"``) is pure-Python brute force: it ignores HNSW, quantization and payload-index
settings, and is only for tests of this code path.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlparse

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from indexer._errors import StoreError
from indexer.store._protocol import (
    PayloadIndexKind,
    SearchResult,
    StoredPoint,
    Where,
)
from indexer.store._shared import (
    CLIENT_PREFIX,
    canonical_ids,
    check_collection_name,
    check_key,
    check_payloads,
    check_query_vectors,
    check_vectors,
    dumps_meta,
    empty_result,
    no_collection_error,
    pad_scores,
    point_int,
    read_only_error,
    where_conditions,
)
from schemas import IndexParams

logger = logging.getLogger(__name__)

T = TypeVar("T")

META = f"{CLIENT_PREFIX}meta"
BLOBS = f"{CLIENT_PREFIX}blobs"
_NS = uuid.UUID("8f5b3c2e-6d0a-4f4e-9c57-3f1d2a7b9e10")  # namespace of cellvec's meta/blob point ids
UPSERT_BATCH = 256
REQUEST_BUDGET = 24 * 1024 * 1024  # below the server's 32 MiB request limit, with room for JSON overhead
QUERY_BATCH = 256
BLOB_CHUNK = 4 * 1024 * 1024
RETRIES = 5
PARALLEL = 2


def _point_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "\0".join(parts)))


def _filter(where: Where | None, ids: Sequence[str] | None = None) -> qm.Filter | Literal[False] | None:
    """Build a client filter; ``False`` when nothing can match, ``None`` when everything matches."""
    conds = where_conditions(where)
    if conds is None:
        return False
    must: list[qm.Condition] = []
    if ids is not None:
        if not ids:
            return False
        must.append(qm.HasIdCondition(has_id=list(ids)))
    for field, kind, value in conds:
        match: qm.MatchValue | qm.MatchAny = (
            qm.MatchValue(value=value) if kind == "value" else qm.MatchAny(any=value)
        )
        must.append(qm.FieldCondition(key=field, match=match))
    return qm.Filter(must=must) if must else None


def _to_point(rec: Any, with_vectors: Sequence[str]) -> StoredPoint:
    vec = rec.vector if isinstance(rec.vector, dict) else {}
    return StoredPoint(
        id=str(rec.id),
        payload=dict(rec.payload or {}),
        vectors={v: np.asarray(vec[v], dtype=np.float32) for v in with_vectors if v in vec},
    )


def _is_refused(e: BaseException) -> bool:
    text = f"{e} {e.__cause__ or ''} {e.__context__ or ''}".lower()
    return "connection refused" in text or "connecterror" in text or "name or service not known" in text


def _is_transient(e: BaseException) -> bool:
    if isinstance(e, UnexpectedResponse):
        code = e.status_code or 0
        return code >= 500 or code == 429
    if isinstance(e, ResponseHandlingException | TimeoutError | ConnectionError):
        return not _is_refused(e)
    return False


class ClientStore:
    """A cellvec store on a Qdrant server (``http(s)://`` URL) or in local mode (``":memory:"``).

    Open it with :func:`indexer.open_store`.
    """

    def __init__(
        self,
        location: str,
        *,
        read_only: bool = False,
        api_key: str | None = None,
        index: IndexParams | None = None,
    ) -> None:
        self.location = location
        self.read_only = read_only
        self.default_index = index or IndexParams()
        self.local = location == ":memory:"
        self._dims: dict[str, dict[str, int]] = {}
        self._index: dict[str, IndexParams] = {}
        self._closed = False
        if self.local:
            self.client = QdrantClient(":memory:")
        else:
            port = urlparse(location).port
            self.client = QdrantClient(
                url=location, api_key=api_key, prefer_grpc=port == 6334, timeout=60, check_compatibility=False
            )
            self._call("connect", self.client.get_collections)

    # ---------------------------------------------------------------- plumbing

    def _call(self, what: str, fn: Callable[[], T], *, retry: bool = False) -> T:
        """Run a client call, retrying transient server errors when ``retry``; wrap errors in StoreError."""
        attempts = RETRIES if retry and not self.local else 1
        for attempt in range(attempts):
            try:
                return fn()
            except StoreError:
                raise
            except Exception as e:
                if _is_refused(e):
                    msg = (
                        f"cannot reach the Qdrant server at {self.location}: is it running? "
                        "`docker compose up -d`"
                    )
                    raise StoreError(msg) from e
                if attempt + 1 < attempts and _is_transient(e):
                    delay = 0.5 * 2**attempt
                    logger.warning("%s failed (%s); retrying in %.1f s", what, e, delay)
                    time.sleep(delay)
                    continue
                text = str(e).splitlines()[0] if str(e) else type(e).__name__
                msg = f"Qdrant at {self.location} failed to {what}: {text}"
                raise StoreError(msg) from e
        msg = "unreachable"  # pragma: no cover
        raise AssertionError(msg)

    def _check_open(self) -> None:
        if self._closed:
            msg = f"store '{self.location}' is closed; open it again with open_store()"
            raise StoreError(msg)

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self.read_only:
            raise read_only_error(self.location, what)

    def _exists(self, full: str) -> bool:
        return self._call("list collections", lambda: self.client.collection_exists(full))

    def _coll(self, name: str) -> tuple[str, dict[str, int], IndexParams]:
        """Return the server name, vector dimensions and index parameters of collection ``name``."""
        self._check_open()
        check_collection_name(name)
        full = CLIENT_PREFIX + name
        if name not in self._dims:
            if not self._exists(full):
                raise no_collection_error(self.location, name, self.collections())
            info = self._call(f"describe collection {name!r}", lambda: self.client.get_collection(full))
            vectors = info.config.params.vectors
            if not isinstance(vectors, dict):
                msg = f"collection {full!r} on {self.location} was not created by cellvec (no named vectors)"
                raise StoreError(msg)
            self._dims[name] = {v: int(p.size) for v, p in vectors.items()}
            meta = (info.config.metadata or {}).get("cellvec", {})
            self._index[name] = IndexParams.from_json(meta.get("index", {}))
        return full, self._dims[name], self._index[name]

    # ---------------------------------------------------------------- collections

    def collections(self) -> list[str]:
        """Return the names of cellvec's collections (without the ``cellvec__`` prefix), sorted."""
        self._check_open()
        resp = self._call("list collections", self.client.get_collections)
        names = [c.name[len(CLIENT_PREFIX) :] for c in resp.collections if c.name.startswith(CLIENT_PREFIX)]
        return sorted(n for n in names if CLIENT_PREFIX + n not in (META, BLOBS))

    def has_collection(self, name: str) -> bool:
        """Return whether collection ``name`` exists."""
        self._check_open()
        return self._exists(CLIENT_PREFIX + check_collection_name(name))

    def prefetch(self, name: str) -> None:
        """Do nothing: a server's collections need no opening."""

    def create_collection(
        self,
        name: str,
        *,
        vectors: Mapping[str, int],
        index: IndexParams | None = None,
        payload_indexes: Mapping[str, PayloadIndexKind] | None = None,
    ) -> None:
        """Create ``cellvec__<name>``: cosine vectors, HNSW/quantization/sharding from ``index``, indexes."""
        self._check_writable(f"create collection {name!r}")
        full = CLIENT_PREFIX + check_collection_name(name)
        if self._exists(full):
            msg = f"collection {name!r} already exists on {self.location}; drop it first or pick a new name"
            raise StoreError(msg)
        if not vectors or any(int(d) < 1 for d in vectors.values()):
            msg = (
                f"collection {name!r} needs at least one named vector with a positive dimension, "
                f"got {dict(vectors)}"
            )
            raise StoreError(msg)
        # Integer fields are only matched exactly (never by range), as in the embedded store: a lookup index
        # alone, without the range index a server would otherwise build and keep for them.
        kinds: dict[str, Any] = {
            "keyword": qm.PayloadSchemaType.KEYWORD,
            "integer": qm.IntegerIndexParams(type=qm.IntegerIndexType.INTEGER, lookup=True, range=False),
        }
        for field, kind in (payload_indexes or {}).items():
            if kind not in kinds:
                msg = f"payload index kind for {field!r} must be 'keyword' or 'integer', got {kind!r}"
                raise StoreError(msg)
        idx = index or self.default_index
        quant = (
            qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99, always_ram=True)
            )
            if idx.quantization == "int8"
            else None
        )
        vectors_config = {
            v: qm.VectorParams(size=int(d), distance=qm.Distance.COSINE, on_disk=idx.on_disk or None)
            for v, d in vectors.items()
        }
        self._call(
            f"create collection {name!r}",
            lambda: self.client.create_collection(
                full,
                vectors_config=vectors_config,
                shard_number=idx.shard_number,
                replication_factor=idx.replication_factor,
                write_consistency_factor=idx.write_consistency_factor,
                hnsw_config=qm.HnswConfigDiff(
                    m=idx.hnsw_m,
                    ef_construct=idx.hnsw_ef_construct,
                    full_scan_threshold=idx.full_scan_threshold,
                ),
                optimizers_config=qm.OptimizersConfigDiff(indexing_threshold=idx.indexing_threshold),
                quantization_config=quant,
                metadata={
                    "cellvec": {"index": idx.to_json(), "payload_indexes": dict(payload_indexes or {})}
                },
            ),
        )
        # Local mode ignores payload indexes (and warns); the server needs them for fast filters and facets.
        for field, kind in ({} if self.local else payload_indexes or {}).items():
            self._call(
                f"create payload index {field!r}",
                lambda field=field, kind=kind: self.client.create_payload_index(  # type: ignore[misc]
                    full, field_name=field, field_schema=kinds[kind], wait=True
                ),
            )
        self._dims[name] = {v: int(d) for v, d in vectors.items()}
        self._index[name] = idx

    def drop_collection(self, name: str) -> None:
        """Delete ``cellvec__<name>``; a missing collection is a no-op."""
        self._check_writable(f"drop collection {name!r}")
        full = CLIENT_PREFIX + check_collection_name(name)
        self._dims.pop(name, None)
        self._index.pop(name, None)
        if self._exists(full):
            self._call(f"drop collection {name!r}", lambda: self.client.delete_collection(full))

    # ---------------------------------------------------------------- points

    def upsert(
        self,
        name: str,
        *,
        ids: Sequence[str],
        vectors: Mapping[str, np.ndarray],
        payloads: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or replace points: requests of <= 256 points and ~24 MiB, 2 in parallel, with retries."""
        self._check_writable(f"upsert into {name!r}")
        full, dims, _ = self._coll(name)
        pids = canonical_ids(ids)
        n = len(pids)
        vecs = check_vectors(name, vectors, dims, n)
        pays = check_payloads(payloads, n)
        if n == 0:
            return
        # JSON floats take ~12 bytes; size batches from the vectors and a sample of payloads.
        sample = pays[: min(n, 64)]
        payload_bytes = max(len(json.dumps(p, default=str)) for p in sample) if sample else 2
        per_point = 12 * sum(dims.values()) + 2 * payload_bytes + 100
        batch = max(1, min(UPSERT_BATCH, REQUEST_BUDGET // per_point))
        bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]

        def send(bound: tuple[int, int]) -> None:
            start, stop = bound
            rows = {v: a[start:stop].tolist() for v, a in vecs.items()}
            points = [
                qm.PointStruct(id=pids[i], vector={v: rows[v][i - start] for v in rows}, payload=pays[i])
                for i in range(start, stop)
            ]
            self._call(
                f"upsert points into {name!r}",
                lambda: self.client.upsert(full, points=points, wait=True),
                retry=True,
            )

        if self.local or len(bounds) < 2 * PARALLEL:
            for b in bounds:
                send(b)
        else:
            with ThreadPoolExecutor(PARALLEL) as pool:
                for _ in pool.map(send, bounds):
                    pass

    def retrieve(
        self, name: str, ids: Sequence[str], *, with_vectors: Sequence[str] = (), payload: bool = True
    ) -> list[StoredPoint]:
        """Return the points with these ids, in the order given; missing ids are omitted."""
        full, dims, _ = self._coll(name)
        pids = canonical_ids(ids)
        self._check_vector_names(name, dims, with_vectors)
        found: dict[str, StoredPoint] = {}
        wv: Any = list(with_vectors) if with_vectors else False
        for start in range(0, len(pids), 1000):
            chunk = pids[start : start + 1000]
            recs = self._call(
                f"retrieve points from {name!r}",
                lambda chunk=chunk: self.client.retrieve(  # type: ignore[misc]
                    full, ids=chunk, with_payload=payload, with_vectors=wv
                ),
                retry=True,
            )
            for r in recs:
                p = _to_point(r, with_vectors)
                found[p.id] = p
        return [found[i] for i in pids if i in found]

    @staticmethod
    def _check_vector_names(name: str, dims: Mapping[str, int], names: Sequence[str]) -> None:
        for v in [names] if isinstance(names, str) else names:
            if v not in dims:
                msg = f"collection {name!r} has no vector named {v!r}; it has {sorted(dims)}"
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
        """Return the ``limit`` nearest points of each query row (``query_batch_points``, 256 per request)."""
        full, dims, idx = self._coll(name)
        q = check_query_vectors(name, vectors, using, dims)
        if limit < 1:
            msg = f"limit must be at least 1, got {limit}"
            raise StoreError(msg)
        flt = _filter(where)
        if flt is False:
            return empty_result(len(q), limit)
        with_payload: Any = True if payload_fields is None else (list(payload_fields) or False)
        quant = (
            qm.QuantizationSearchParams(rescore=idx.rescore, oversampling=idx.oversampling)
            if idx.quantization == "int8"
            else None
        )
        # Local mode is brute force and warns that search params have no effect.
        params = (
            None
            if self.local
            else qm.SearchParams(
                hnsw_ef=idx.search_ef if hnsw_ef is None else int(hnsw_ef), exact=exact, quantization=quant
            )
        )
        ids: list[list[str]] = []
        scores: list[list[float]] = []
        pays: list[list[dict[str, Any]]] = []
        rows = q.tolist()
        for start in range(0, len(rows), QUERY_BATCH):
            reqs = [
                qm.QueryRequest(
                    query=v,
                    using=using,
                    limit=limit,
                    filter=flt,
                    with_payload=with_payload,
                    with_vector=False,
                    params=params,
                )
                for v in rows[start : start + QUERY_BATCH]
            ]
            res = self._call(
                f"query {name!r}",
                lambda reqs=reqs: self.client.query_batch_points(full, requests=reqs),  # type: ignore[misc]
                retry=True,
            )
            for r in res:
                ids.append([point_int(h.id) for h in r.points] if with_ids else [])
                scores.append([h.score for h in r.points])
                pays.append([dict(h.payload or {}) for h in r.points])
        return SearchResult(id_ints=ids, scores=pad_scores(scores, limit), payloads=pays)

    def scroll(
        self,
        name: str,
        *,
        where: Where | None = None,
        with_vectors: Sequence[str] = (),
        payload: bool = True,
        batch_size: int = 1000,
    ) -> Iterator[list[StoredPoint]]:
        """Yield every (matching) point exactly once, in batches of ``batch_size``."""
        full, dims, _ = self._coll(name)
        self._check_vector_names(name, dims, with_vectors)
        flt = _filter(where)
        if flt is False:
            return
        wv: Any = list(with_vectors) if with_vectors else False
        offset: Any = None
        while True:
            recs, offset = self._call(
                f"scroll {name!r}",
                lambda offset=offset: self.client.scroll(  # type: ignore[misc]
                    full,
                    scroll_filter=flt,
                    limit=batch_size,
                    offset=offset,
                    with_payload=payload,
                    with_vectors=wv,
                ),
                retry=True,
            )
            if recs:
                yield [_to_point(r, with_vectors) for r in recs]
            if offset is None:
                return

    def count(self, name: str, *, where: Where | None = None) -> int:
        """Return the exact number of (matching) points."""
        full, _, _ = self._coll(name)
        flt = _filter(where)
        if flt is False:
            return 0
        res = self._call(f"count {name!r}", lambda: self.client.count(full, count_filter=flt, exact=True))
        return int(res.count)

    def _selection(
        self, what: str, ids: Sequence[str] | None, where: Where | None
    ) -> qm.Filter | Literal[False]:
        if ids is None and where is None:
            msg = f"{what} needs ids=, where= or both; to empty a collection, drop it"
            raise StoreError(msg)
        flt = _filter(where, None if ids is None else canonical_ids(ids))
        return qm.Filter(must=[]) if flt is None else flt

    def delete(self, name: str, *, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        """Delete points by id, by filter, or both (ids that also match the filter)."""
        self._check_writable(f"delete points from {name!r}")
        full, _, _ = self._coll(name)
        flt = self._selection("delete", ids, where)
        if flt is False:
            return
        self._call(
            f"delete points from {name!r}",
            lambda: self.client.delete(full, points_selector=qm.FilterSelector(filter=flt), wait=True),
            retry=True,
        )

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
        full, _, _ = self._coll(name)
        flt = self._selection("set_payload", ids, where)
        if flt is False:
            return
        self._call(
            f"set payload in {name!r}",
            lambda: self.client.set_payload(full, payload=dict(payload), points=flt, wait=True),
            retry=True,
        )

    def facet(self, name: str, field: str, *, where: Where | None = None) -> dict[str, int]:
        """Return the exact number of (matching) points per value of ``field`` (values as strings).

        Uses Qdrant's facet API, which needs a payload index on ``field`` on a server; without one,
        counts by scrolling the payloads.
        """
        full, _, _ = self._coll(name)
        flt = _filter(where)
        if flt is False:
            return {}
        n = self.count(name, where=where)
        if n == 0:
            return {}
        try:
            res = self.client.facet(full, key=field, facet_filter=flt, limit=n, exact=True)
            return {str(h.value): int(h.count) for h in res.hits if h.count > 0}
        except UnexpectedResponse as e:
            if e.status_code != 400:
                err = self._wrap(f"facet {name!r}", e)
                raise err from e
        counts: dict[str, int] = {}
        for batch in self.scroll(name, where=where, payload=True):
            for p in batch:
                values = p.payload.get(field)
                for v in values if isinstance(values, list) else [values]:
                    if v is not None:
                        counts[str(v)] = counts.get(str(v), 0) + 1
        return counts

    def _wrap(self, what: str, e: Exception) -> StoreError:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        return StoreError(f"Qdrant at {self.location} failed to {what}: {text}")

    def optimize(self, name: str, *, timeout_s: float = 3600.0) -> None:
        """Wait until the server has finished indexing (status green); a no-op in local mode."""
        self._check_writable(f"optimize {name!r}")
        full, _, _ = self._coll(name)
        if self.local:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            info = self._call(f"describe collection {name!r}", lambda: self.client.get_collection(full))
            if info.status == qm.CollectionStatus.GREEN:
                return
            if time.monotonic() > deadline:
                msg = f"collection {name!r} on {self.location} is still {info.status} after {timeout_s:.0f} s"
                raise StoreError(msg)
            time.sleep(1.0)

    def flush(self) -> None:
        """Do nothing: every write already waits for the server's acknowledgement (``wait=True``)."""
        self._check_open()

    # ---------------------------------------------------------------- meta and blobs

    def _ensure(self, full: str) -> None:
        if not self._exists(full):
            self._call(
                f"create {full!r}",
                lambda: self.client.create_collection(
                    full, vectors_config=qm.VectorParams(size=1, distance=qm.Distance.DOT)
                ),
            )

    def _get_points(self, full: str, ids: list[str]) -> list[Any]:
        if not self._exists(full):
            return []
        return self._call(
            f"read {full!r}",
            lambda: self.client.retrieve(full, ids=ids, with_payload=True, with_vectors=False),
        )

    def _put_point(self, full: str, pid: str, payload: dict[str, Any]) -> None:
        self._call(
            f"write {full!r}",
            lambda: self.client.upsert(
                full, points=[qm.PointStruct(id=pid, vector=[1.0], payload=payload)], wait=True
            ),
            retry=True,
        )

    def _delete_points(self, full: str, ids: list[str]) -> None:
        if ids and self._exists(full):
            self._call(
                f"delete from {full!r}",
                lambda: self.client.delete(
                    full, points_selector=qm.PointIdsList(points=list[qm.ExtendedPointId](ids)), wait=True
                ),
                retry=True,
            )

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """Return the JSON object stored under ``key``, or ``None``."""
        self._check_open()
        recs = self._get_points(META, [_point_id("meta", check_key(key))])
        if not recs:
            return None
        value: dict[str, Any] = json.loads(recs[0].payload["value_json"])
        return value

    def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON object under ``key`` (one point upsert: atomic)."""
        self._check_writable(f"write meta {key!r}")
        text = dumps_meta(check_key(key), value)
        self._ensure(META)
        self._put_point(META, _point_id("meta", key), {"key": key, "value_json": text})

    def delete_meta(self, key: str) -> None:
        """Delete ``key``; a missing key is a no-op."""
        self._check_writable(f"delete meta {key!r}")
        self._delete_points(META, [_point_id("meta", check_key(key))])

    def meta_keys(self, prefix: str = "") -> list[str]:
        """Return the sorted meta keys that start with ``prefix``."""
        self._check_open()
        if not self._exists(META):
            return []
        keys: list[str] = []
        offset: Any = None
        while True:
            recs, offset = self._call(
                "list meta keys",
                lambda offset=offset: self.client.scroll(  # type: ignore[misc]
                    META, limit=1000, offset=offset, with_payload=["key"], with_vectors=False
                ),
            )
            keys.extend(str((r.payload or {})["key"]) for r in recs)
            if offset is None:
                break
        return sorted(k for k in keys if k.startswith(prefix))

    def put_blob(self, key: str, data: bytes) -> None:
        """Store bytes as base64 chunks of a new generation, then switch the head point to it (atomic)."""
        self._check_writable(f"write blob {key!r}")
        check_key(key, "blob key")
        data = bytes(data)
        self._ensure(BLOBS)
        old = self._get_points(BLOBS, [_point_id("blob", key)])
        gen = uuid.uuid4().hex
        n_chunks = max(1, math.ceil(len(data) / BLOB_CHUNK))
        for i in range(n_chunks):
            chunk = base64.b64encode(data[i * BLOB_CHUNK : (i + 1) * BLOB_CHUNK]).decode()
            self._put_point(BLOBS, _point_id("chunk", key, gen, str(i)), {"chunk_of": key, "data": chunk})
        head = {"key": key, "generation": gen, "chunks": n_chunks, "sha256": hashlib.sha256(data).hexdigest()}
        self._put_point(BLOBS, _point_id("blob", key), head)
        if old:
            self._delete_blob_chunks(key, old[0].payload)

    def _delete_blob_chunks(self, key: str, head: Mapping[str, Any]) -> None:
        ids = [_point_id("chunk", key, str(head["generation"]), str(i)) for i in range(int(head["chunks"]))]
        self._delete_points(BLOBS, ids)

    def get_blob(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or ``None``."""
        self._check_open()
        recs = self._get_points(BLOBS, [_point_id("blob", check_key(key, "blob key"))])
        if not recs:
            return None
        head = recs[0].payload
        ids = [_point_id("chunk", key, str(head["generation"]), str(i)) for i in range(int(head["chunks"]))]
        parts: list[bytes] = []
        for pid in ids:  # one chunk per request keeps responses small
            rec = self._get_points(BLOBS, [pid])
            if not rec:
                msg = f"blob {key!r} on {self.location} is incomplete (a chunk is missing); write it again"
                raise StoreError(msg)
            parts.append(base64.b64decode(rec[0].payload["data"]))
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != head["sha256"]:
            msg = f"blob {key!r} on {self.location} is corrupt (checksum mismatch); write it again"
            raise StoreError(msg)
        return data

    def delete_blob(self, key: str) -> None:
        """Delete blob ``key``; a missing key is a no-op."""
        self._check_writable(f"delete blob {key!r}")
        head_id = _point_id("blob", check_key(key, "blob key"))
        recs = self._get_points(BLOBS, [head_id])
        if recs:
            self._delete_points(BLOBS, [head_id])
            self._delete_blob_chunks(key, recs[0].payload)

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the client; idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.client.close()

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
        return f"ClientStore('{self.location}', {mode})"
