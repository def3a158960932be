"""Does Qdrant Edge's ``query_batch`` release the GIL? One thread against two threads over the same batches.

Builds (or reuses) an embedded store of synthetic default-mode cells, then searches 10,000 queries as
batches of 256, once on one thread and once split over two threads, ``--repeats`` times each alternately
(the machine may be shared), and prints the median wall seconds and the ratio::

    python -m benchmarks.scale.bench_query_threads --cells 100000 --store /tmp/threads-store
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def main() -> None:
    """Run the comparison and print one line per setting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--store", type=Path, required=True)
    args = ap.parse_args()

    import qdrant_edge as qe

    from benchmarks.scale._cells import LABEL_KEY, REFERENCE, pick_genes, synthetic_cells
    from indexer import build_reference, open_store
    from indexer.reference import reference_vectors, version_collection
    from schemas import CellVectorSpec

    if not args.store.is_dir():
        ref = synthetic_cells(args.cells, pick_genes(2000), seed=0)
        with open_store(args.store) as st:
            spec = CellVectorSpec(encoder="random:384", keep_views=False)
            build_reference(ref, store=st, name=REFERENCE, label_key=LABEL_KEY, spec=spec, chunk_size=200_000)
    with open_store(args.store, read_only=True) as st:
        vecs, _, _ = reference_vectors(st, REFERENCE)
        rng = np.random.default_rng(1)
        q = vecs[rng.integers(len(vecs), size=args.queries)] + rng.normal(0, 0.02, (args.queries, vecs.shape[1]))
        q = q.astype(np.float32).tolist()
        coll = st._coll(version_collection(REFERENCE, 1))  # the shard itself: Edge alone, no conversion
        params = qe.SearchParams(hnsw_ef=128, exact=False)
        batches = [
            qe.QueryBatchRequest(
                [
                    qe.QueryRequest(
                        limit=10,
                        query=qe.Query.Nearest(v, using="cell"),
                        with_payload=["label", "cell_id"],
                        with_vector=False,
                        params=params,
                    )
                    for v in q[s : s + 256]
                ]
            )
            for s in range(0, len(q), 256)
        ]

        def one(bs: list[qe.QueryBatchRequest]) -> None:
            for b in bs:
                coll.shard.query_batch(b)

        cpu: dict[int, list[float]] = {1: [], 2: []}

        def run(threads: int) -> float:
            t, c = time.perf_counter(), time.process_time()
            if threads == 1:
                one(batches)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(one, [batches[i::threads] for i in range(threads)]))
            wall = time.perf_counter() - t
            cpu.setdefault(threads, []).append((time.process_time() - c) / wall)
            return wall

        run(1)  # pages in memory
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeats):
            for n in (1, 2):
                times[n].append(run(n))
        med = {n: statistics.median(ts) for n, ts in times.items()}
        for n, ts in times.items():
            print(
                f"{n} thread(s): median {med[n]:.2f} s ({args.queries / med[n]:,.0f} q/s); "
                f"runs {[round(t, 2) for t in ts]}, process CPU / wall {statistics.median(cpu[n]):.2f}"
            )
        print(f"ratio 1 thread / 2 threads: {med[1] / med[2]:.2f} (dim {vecs.shape[1]}, {len(vecs):,} cells)")


if __name__ == "__main__":
    main()
