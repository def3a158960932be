"""How a collection is indexed and searched (recorded with every collection and reference version)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from schemas._base import Record


class IndexParams(Record):
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
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexParams:
        """Build parameters from :meth:`to_json` output, ignoring unknown fields (written by later versions)."""
        return cls(**{k: v for k, v in data.items() if k in cls.model_fields})
