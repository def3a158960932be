"""What a search hit costs on annotate's path: Edge with and without payloads, then cellvec's conversion.

Searches ``--queries`` query vectors (stored reference vectors plus Gaussian noise, sigma 0.02 per dimension)
against a reference's current version, ``limit=10``, batches of 256, in one process, and prints the median of
``--repeats`` runs of:

- ``edge``: ``EdgeShard.query_batch`` alone, with payload ``["label", "cell_id"]`` (what annotate reads),
  ``["label"]``, none, and the whole payload;
- ``search_shard``: the same plus turning the hits into Python lists (:func:`indexer.store._edge_readers.search_shard`);
- ``store.query``: the whole :meth:`EdgeStore.query` as annotate calls it (``with_ids=False``).

::

    python -m benchmarks.scale.bench_hit_cost --store STORE --reference voigt --queries 1228
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    """Time each step and print one line per setting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--queries", type=int, default=1228)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import qdrant_edge as qe

    from indexer import open_store
    from indexer.reference import load_manifest, reference_vectors, resolve_version, version_collection
    from indexer.store._edge import EdgeStore
    from indexer.store._edge_readers import SearchSpec, search_shard

    st = open_store(args.store, read_only=True, search_processes=1)
    assert isinstance(st, EdgeStore)
    rec = resolve_version(load_manifest(st, args.reference), None)
    collection = version_collection(args.reference, rec.version)
    vecs, _, _ = reference_vectors(st, args.reference)
    rng = np.random.default_rng(1)
    q = vecs[rng.integers(len(vecs), size=args.queries)] + rng.normal(0, 0.02, (args.queries, vecs.shape[1]))
    q = q.astype(np.float32)
    coll = st._coll(collection)
    ef = coll.index.search_ef
    params = qe.SearchParams(hnsw_ef=ef, exact=False)

    def edge(fields: Any) -> None:
        for s in range(0, len(q), 256):
            reqs = [
                qe.QueryRequest(limit=10, query=qe.Query.Nearest(v, using="cell"), with_payload=fields,
                                with_vector=False, params=params)
                for v in q[s : s + 256].tolist()
            ]
            coll.shard.query_batch(qe.QueryBatchRequest(reqs))

    def converted(fields: list[str]) -> None:
        spec = SearchSpec(using="cell", limit=10, where=None, payload_fields=fields, with_ids=False, hnsw_ef=ef,
                          exact=False, quantization=None)
        for s in range(0, len(q), 256):
            search_shard(coll.shard, q[s : s + 256], spec)

    def whole(fields: list[str]) -> None:
        st.query(collection, q, using="cell", limit=10, payload_fields=fields, with_ids=False)

    steps: list[tuple[str, Callable[[Any], None], Any]] = [
        ("edge, payload label+cell_id", edge, ["label", "cell_id"]),
        ("edge, payload label", edge, ["label"]),
        ("edge, no payload", edge, False),
        ("edge, whole payload", edge, True),
        ("search_shard, payload label+cell_id", converted, ["label", "cell_id"]),
        ("search_shard, no payload", converted, []),
        ("store.query, payload label+cell_id", whole, ["label", "cell_id"]),
    ]
    print(f"{args.reference}: {len(vecs):,} cells, {vecs.shape[1]}-d, {len(q):,} queries, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, fn, arg in steps:
        fn(arg)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn(arg)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"{name:40s} {med:.3f} s  ({med / (10 * len(q)) * 1e6:.1f} us per hit, search included)")
    st.close()


if __name__ == "__main__":
    main()
