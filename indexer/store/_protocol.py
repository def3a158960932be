"""The vector store protocol shared by every backend, :func:`open_store`, and helpers the backends share.

cellvec keeps gene vectors and labelled reference cells in Qdrant. Three backends implement
:class:`VectorStore`:

- a directory: embedded Qdrant Edge (:class:`indexer._store_edge.EdgeStore`), the default;
- an ``http(s)://`` URL: a Qdrant server or cluster (:class:`indexer._store_client.ClientStore`);
- ``":memory:"``: qdrant-client's pure-Python local mode, for tests only (brute force).

Every named vector of a collection uses cosine distance. Vectors come back unit-normalised, as Qdrant
stores them; rows that are all zero are kept as zero vectors and score 0 against every query.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable
from urllib.parse import quote, unquote

import numpy as np

from indexer._errors import StoreError

logger = logging.getLogger(__name__)

Where = Mapping[str, str | int | bool | Sequence[str] | Sequence[int]]
"""A payload filter: ``field == value``, or ``field in list`` for a list; all conditions are ANDed.

Booleans are refused with :class:`StoreError`: Qdrant Edge 0.9.0 cannot match them (store 0/1 instead).
"""

PayloadIndexKind = Literal["keyword", "integer"]

#: Prefix of every collection cellvec creates on a Qdrant server, so a shared server is not polluted.
CLIENT_PREFIX = "cellvec__"

_RESERVED = frozenset({"meta", "blobs"})  # the client backend keeps cellvec__meta, cellvec__blobs
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """One point read back from a store.

    Attributes
    ----------
    id
        The point's UUID in canonical (lower-case, hyphenated) form.
    payload
        The point's payload (empty when it was not asked for).
    vectors
        The named vectors asked for, each a 1-d float32 array (unit-normalised, or all zero).
    """

    id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The result of a batched query, as arrays for vectorised voting.

    Attributes
    ----------
    ids
        Per query, the ids of the hits, best first (fewer than ``limit`` when fewer points match).
    scores
        ``(n_queries, limit)`` float32 cosine similarities, padded with ``-inf`` where there are fewer hits.
    payloads
        Per query, the payload of each hit (restricted to the fields asked for).
    """

    ids: list[list[str]]
    scores: np.ndarray
    payloads: list[list[dict[str, Any]]]


@dataclass(frozen=True)
class IndexParams:
    """How a collection is indexed and searched.

    Attributes
    ----------
    hnsw_m
        Edges per node of the HNSW graph.
    hnsw_ef_construct
        Candidates kept while building the graph.
    full_scan_threshold
        Size in kB below which a (filtered) search scans vectors instead of using the graph, as in Qdrant.
    indexing_threshold
        Size in kB of a segment's vectors above which :meth:`VectorStore.optimize` builds HNSW for it;
        smaller collections are always searched exactly (Qdrant's optimizer setting of the same name).
    hnsw_ef
        Candidates kept while searching; ``None`` uses 128.
    quantization
        ``"int8"`` keeps a scalar-quantised copy of the vectors for faster search.
    on_disk
        Keep original vectors memory-mapped on disk rather than in RAM.
    rescore
        With quantization, re-rank candidates with the original vectors.
    oversampling
        With quantization, fetch ``oversampling * limit`` candidates before rescoring.
    segment_points
        Embedded store only: index the write buffer into an HNSW segment of its own each time it has
        received this many points (``0``: one segment, indexed by :meth:`VectorStore.optimize`). Qdrant
        Edge searches a collection's segments in parallel, one thread each, so segments of about
        ``n / cores`` points let one search use every core; each smaller graph is also quicker to build.
    shard_number
        Server only: shards of the collection.
    replication_factor
        Server only: copies of each shard.
    write_consistency_factor
        Server only: replicas that must confirm a write.
    """

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    full_scan_threshold: int = 10_000
    indexing_threshold: int = 10_000
    hnsw_ef: int | None = None
    quantization: Literal["none", "int8"] = "none"
    on_disk: bool = False
    rescore: bool = True
    oversampling: float = 2.0
    segment_points: int = 0
    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1

    @property
    def search_ef(self) -> int:
        """The ``hnsw_ef`` used at search time."""
        return 128 if self.hnsw_ef is None else self.hnsw_ef

    def to_json(self) -> dict[str, Any]:
        """Return the parameters as a JSON-able dict."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexParams:
        """Build parameters from :meth:`to_json` output, ignoring unknown fields."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@runtime_checkable
class VectorStore(Protocol):
    """What cellvec needs from a vector store; implemented by the Edge and qdrant-client backends.

    Methods that write raise :class:`~indexer.StoreError` on a store opened with ``read_only=True``.
    Writes are durable once :meth:`flush` returns.
    """

    location: str
    read_only: bool

    def collections(self) -> list[str]:
        """Return the names of the collections, sorted."""
        ...

    def has_collection(self, name: str) -> bool:
        """Return whether collection ``name`` exists."""
        ...

    def create_collection(
        self,
        name: str,
        *,
        vectors: Mapping[str, int],
        index: IndexParams | None = None,
        payload_indexes: Mapping[str, PayloadIndexKind] | None = None,
    ) -> None:
        """Create a collection with one cosine vector per name (``name -> dimension``); exists -> error."""
        ...

    def drop_collection(self, name: str) -> None:
        """Delete a collection and its points; a missing collection is a no-op."""
        ...

    def upsert(
        self,
        name: str,
        *,
        ids: Sequence[str],
        vectors: Mapping[str, np.ndarray],
        payloads: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or replace points (UUID ids, ``(n, dim)`` float32 vectors per name, JSON payloads)."""
        ...

    def retrieve(
        self, name: str, ids: Sequence[str], *, with_vectors: Sequence[str] = (), payload: bool = True
    ) -> list[StoredPoint]:
        """Return the points with these ids, in the order given; missing ids are omitted."""
        ...

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
        """Return the ``limit`` nearest points (cosine) of each row of ``vectors``.

        ``with_ids=False`` leaves ``ids`` empty (one empty list per query): callers that read what they need
        from payloads skip converting every hit's point id. ``hnsw_ef`` overrides the collection's search
        setting for this call.
        """
        ...

    def scroll(
        self,
        name: str,
        *,
        where: Where | None = None,
        with_vectors: Sequence[str] = (),
        payload: bool = True,
        batch_size: int = 1000,
    ) -> Iterator[list[StoredPoint]]:
        """Yield every (matching) point exactly once, in batches."""
        ...

    def count(self, name: str, *, where: Where | None = None) -> int:
        """Return the number of (matching) points."""
        ...

    def delete(self, name: str, *, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        """Delete points by id, by filter, or both (ids that also match the filter)."""
        ...

    def set_payload(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        ids: Sequence[str] | None = None,
        where: Where | None = None,
    ) -> None:
        """Set payload fields (others are kept) on points chosen by id, by filter, or both."""
        ...

    def facet(self, name: str, field: str, *, where: Where | None = None) -> dict[str, int]:
        """Return the number of (matching) points per value of payload ``field`` (values as strings)."""
        ...

    def optimize(self, name: str) -> None:
        """Build the search index after bulk writes (blocking)."""
        ...

    def flush(self) -> None:
        """Make every write so far durable."""
        ...

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """Return the JSON object stored under ``key``, or ``None``."""
        ...

    def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON object under ``key``, atomically replacing any previous value."""
        ...

    def delete_meta(self, key: str) -> None:
        """Delete ``key``; a missing key is a no-op."""
        ...

    def meta_keys(self, prefix: str = "") -> list[str]:
        """Return the sorted meta keys that start with ``prefix``."""
        ...

    def put_blob(self, key: str, data: bytes) -> None:
        """Store bytes (model weights, projections; up to tens of MB) under ``key``, atomically."""
        ...

    def get_blob(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or ``None``."""
        ...

    def delete_blob(self, key: str) -> None:
        """Delete blob ``key``; a missing key is a no-op."""
        ...

    def close(self) -> None:
        """Flush and release the store (files, locks, connections); idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_store(
    location: str | os.PathLike[str],
    *,
    create: bool = True,
    read_only: bool = False,
    api_key: str | None = None,
    index: IndexParams | None = None,
) -> VectorStore:
    """Open the store at ``location``.

    Parameters
    ----------
    location
        A directory (embedded Qdrant Edge), an ``http://`` / ``https://`` URL of a Qdrant server, or
        ``":memory:"`` (qdrant-client local mode; tests only).
    create
        Create the store when the directory does not exist yet (ignored for servers and ``":memory:"``).
    read_only
        Never write: every write method raises :class:`~indexer.StoreError`. A read-only Edge store takes
        no lock and reads private copies of the collections it opens, so it keeps working while another
        process writes.
    api_key
        API key of the Qdrant server.
    index
        Default :class:`IndexParams` of collections created without their own.

    Returns
    -------
    VectorStore
        The opened store; use it as a context manager or call ``close()``.

    Raises
    ------
    StoreError
        The directory is missing (with ``create=False``), not a cellvec store, or locked by another writer;
        or the server cannot be reached.

    Examples
    --------
    >>> with open_store(":memory:") as store:
    ...     store.create_collection("genes", vectors={"text": 4})
    ...     store.collections()
    ['genes']
    """
    loc = os.fspath(location)
    if loc == ":memory:" or loc.startswith(("http://", "https://")):
        from indexer.store._client import ClientStore

        return ClientStore(loc, read_only=read_only, api_key=api_key, index=index)
    from indexer.store._edge import EdgeStore

    return EdgeStore(Path(loc), create=create, read_only=read_only, index=index)


# --------------------------------------------------------------------------------------------------
# Helpers shared by the backends
# --------------------------------------------------------------------------------------------------


def check_collection_name(name: str) -> str:
    """Return ``name`` if it is a valid collection name, else raise :class:`StoreError`."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name) or name.startswith(CLIENT_PREFIX):
        msg = (
            f"invalid collection name {name!r}: use letters, digits, '_', '-' and '.', starting with a "
            f"letter or digit, at most 200 characters, not starting with {CLIENT_PREFIX!r}"
        )
        raise StoreError(msg)
    if name in _RESERVED:
        msg = f"collection name {name!r} is reserved for cellvec's own data; pick another name"
        raise StoreError(msg)
    return name


def check_key(key: str, what: str = "meta key") -> str:
    """Return ``key`` if it is a usable meta/blob key, else raise :class:`StoreError`."""
    if not isinstance(key, str) or not key or len(key) > 200:
        msg = f"invalid {what} {key!r}: expected a non-empty string of at most 200 characters"
        raise StoreError(msg)
    return key


def encode_key(key: str) -> str:
    """Map a meta/blob key (which may contain ``/``) to a safe file name, reversibly."""
    return quote(key, safe="-_").replace(".", "%2E")


def decode_key(filename: str) -> str:
    """Invert :func:`encode_key`."""
    return unquote(filename)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_ids(ids: Sequence[str]) -> list[str]:
    """Return ids in canonical UUID form; raise :class:`StoreError` naming the first id that is not a UUID."""
    if isinstance(ids, str):
        msg = f"ids must be a sequence of UUID strings, got the single string {ids!r}"
        raise StoreError(msg)
    out: list[str] = []
    canonical = _CANONICAL_UUID.fullmatch
    for i in ids:
        if isinstance(i, str) and canonical(i):  # already canonical (cellvec's own ids): no UUID object
            out.append(i)
            continue
        try:
            out.append(str(uuid.UUID(str(i))))
        except ValueError:
            msg = (
                f"point id {i!r} is not a UUID: Qdrant accepts UUIDs only; derive one with "
                "uuid.uuid5(namespace, key) and keep the original key in the payload"
            )
            raise StoreError(msg) from None
    return out


def check_vectors(
    name: str, vectors: Mapping[str, np.ndarray], dims: Mapping[str, int], n: int
) -> dict[str, np.ndarray]:
    """Validate vectors for an upsert into collection ``name``; return them as C-contiguous float32.

    Every named vector of the collection must be given, as an ``(n, dim)`` array of finite values.
    """
    unknown = sorted(set(vectors) - set(dims))
    if unknown:
        msg = f"collection {name!r} has no vector named {unknown[0]!r}; it has {sorted(dims)}"
        raise StoreError(msg)
    out: dict[str, np.ndarray] = {}
    for vname, dim in dims.items():
        if vname not in vectors:
            msg = f"upsert into {name!r} is missing vector {vname!r}; give every one of {sorted(dims)}"
            raise StoreError(msg)
        arr = np.ascontiguousarray(vectors[vname], dtype=np.float32)
        if arr.ndim != 2 or arr.shape != (n, dim):
            msg = (
                f"vector {vname!r} of collection {name!r} has shape {arr.shape}; "
                f"expected ({n}, {dim}) (one row per id)"
            )
            raise StoreError(msg)
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
            msg = f"vector {vname!r} row {bad} for collection {name!r} holds NaN or infinity; fix the input"
            raise StoreError(msg)
        out[vname] = arr
    return out


def check_query_vectors(name: str, vectors: np.ndarray, using: str, dims: Mapping[str, int]) -> np.ndarray:
    """Validate a query matrix against vector ``using`` of collection ``name``; return it as float32 2-d."""
    if using not in dims:
        msg = f"collection {name!r} has no vector named {using!r}; it has {sorted(dims)}"
        raise StoreError(msg)
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dims[using]:
        msg = (
            f"query vectors for {name!r}/{using!r} have shape {np.shape(vectors)}; "
            f"expected (n, {dims[using]})"
        )
        raise StoreError(msg)
    if not np.isfinite(arr).all():
        msg = f"query vectors for {name!r} hold NaN or infinity; fix the input"
        raise StoreError(msg)
    return np.ascontiguousarray(arr)


def check_payloads(payloads: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """Check there is one payload mapping per id; return them as plain dicts."""
    if len(payloads) != n:
        msg = f"got {len(payloads)} payloads for {n} ids; give one payload (possibly empty) per id"
        raise StoreError(msg)
    return [dict(p) for p in payloads]


Condition = tuple[str, Literal["value", "any"], Any]


def where_conditions(where: Where | None) -> list[Condition] | None:
    """Normalise a :data:`Where` into ``(field, "value"|"any", value)`` conditions.

    Returns ``None`` when the filter can match nothing (a field compared with an empty list).
    """
    if not where:
        return []
    out: list[Condition] = []
    for field, value in where.items():
        if isinstance(value, bool | np.bool_):
            # qdrant-edge-py 0.9.0 converts MatchValue(True) to the integer 1, which matches no JSON
            # boolean: refuse rather than silently match nothing (on every backend, to keep them alike).
            msg = (
                f"where[{field!r}] = {value!r}: filtering on a boolean is not supported by Qdrant Edge; "
                "store the flag as 0/1 or as a keyword such as 'yes'/'no' and filter on that"
            )
            raise StoreError(msg)
        if isinstance(value, str | int | np.integer):
            out.append((field, "value", value.item() if isinstance(value, np.generic) else value))
        elif isinstance(value, Sequence | np.ndarray):
            values = [v.item() if isinstance(v, np.generic) else v for v in value]
            if not values:
                return None
            if not (all(type(v) is str for v in values) or all(type(v) is int for v in values)):
                msg = f"where[{field!r}] must be a list of strings or a list of integers, got {values[:5]!r}"
                raise StoreError(msg)
            out.append((field, "any", values))
        else:
            msg = f"where[{field!r}] must be a string, an integer or a list of them, got {value!r}"
            raise StoreError(msg)
    return out


def empty_result(n_queries: int, limit: int) -> SearchResult:
    """Return a result with no hits for ``n_queries`` queries."""
    return SearchResult(
        ids=[[] for _ in range(n_queries)],
        scores=np.full((n_queries, limit), -np.inf, dtype=np.float32),
        payloads=[[] for _ in range(n_queries)],
    )


def read_only_error(location: str, what: str) -> StoreError:
    """Return the error raised by a write on a read-only store."""
    msg = f"cannot {what}: store '{location}' was opened read-only; open it with read_only=False"
    return StoreError(msg)


def no_collection_error(location: str, name: str, existing: Sequence[str]) -> StoreError:
    """Return the error raised when collection ``name`` does not exist."""
    msg = f"store '{location}' has no collection {name!r}; it has {sorted(existing)}"
    return StoreError(msg)


def is_enospc(exc: BaseException) -> bool:
    """Return whether ``exc`` means the disk is full."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "no space left on device" in str(exc).lower()


def enospc_error(path: str | os.PathLike[str]) -> StoreError:
    """Return the error raised when the disk fills up while writing ``path``."""
    msg = (
        f"no space left on device while writing {os.fspath(path)}; free space and rerun "
        "(points already written are kept)"
    )
    return StoreError(msg)


@contextmanager
def os_errors(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside the block into a one-line :class:`StoreError`."""
    try:
        yield
    except StoreError:
        raise
    except OSError as e:
        if is_enospc(e):
            raise enospc_error(path) from e
        msg = f"cannot {what} '{os.fspath(path)}': {e.strerror or e}"
        raise StoreError(msg) from e


def dumps_meta(key: str, value: Mapping[str, Any]) -> str:
    """Serialise a meta value to JSON, with a clear error for values JSON cannot hold."""
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        msg = f"meta value for {key!r} is not JSON-serialisable ({e}); store plain dicts, lists, str, numbers"
        raise StoreError(msg) from e


def pad_scores(rows: Sequence[Sequence[float]], limit: int) -> np.ndarray:
    """Stack per-query score lists into a ``(n, limit)`` float32 array padded with ``-inf``."""
    out = np.full((len(rows), limit), -np.inf, dtype=np.float32)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = r
    return out
