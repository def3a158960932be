"""Vector stores: the :class:`VectorStore` protocol and :func:`open_store` (Qdrant Edge, server, or memory)."""

from indexer.store._open import open_store
from indexer.store._protocol import SearchResult, StoredPoint, VectorStore, Where
from schemas import IndexParams

__all__ = [
    "IndexParams",
    "SearchResult",
    "StoredPoint",
    "VectorStore",
    "Where",
    "open_store",
]
