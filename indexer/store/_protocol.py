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

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np

from schemas import IndexParams

logger = logging.getLogger(__name__)

Where = Mapping[str, str | int | bool | Sequence[str] | Sequence[int]]
"""A payload filter: ``field == value``, or ``field in list`` for a list; all conditions are ANDed.

Booleans are refused with :class:`StoreError`: Qdrant Edge 0.9.0 cannot match them (store 0/1 instead).
"""

PayloadIndexKind = Literal["keyword", "integer"]



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
    id_ints
        Per query, the hits' point ids as 128-bit integers (``uuid.UUID(...).int``), best first (fewer than
        ``limit`` when fewer points match). Integers, because turning Qdrant Edge's ``UUID`` objects into
        text cost more than the search of a small reference (``ids`` gives the text when it is wanted).
    scores
        ``(n_queries, limit)`` float32 cosine similarities, padded with ``-inf`` where there are fewer hits.
    payloads
        Per query, the payload of each hit (restricted to the fields asked for).
    """

    id_ints: list[list[int]]
    scores: np.ndarray
    payloads: list[list[dict[str, Any]]]

    @property
    def ids(self) -> list[list[str]]:
        """Per query, the hits' point ids as canonical UUID text, best first."""
        return [[str(uuid.UUID(int=i)) for i in row] for row in self.id_ints]


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

    def prefetch(self, name: str) -> None:
        """Start opening collection ``name`` ahead of its first use, where opening takes time (a no-op else)."""
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

        ``with_ids=False`` leaves ``id_ints`` (and ``ids``) empty, one empty list per query: callers that read
        what they need from payloads skip converting every hit's point id. ``hnsw_ef`` overrides the collection's search
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


