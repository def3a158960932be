"""What the point table saves annotate: the same code, store and queries, labels from the table or payloads.

Annotates ``--queries`` synthetic query cells (``benchmarks.scale._scale``, the generator ``cellvec bench
scale`` uses, seed 1) against the ``scale`` reference of a store that ``cellvec bench scale --work-dir W``
built (``W/store-n<N>``), alternating runs that read each neighbour's label and cell id from the version's
point table (what annotate does) with runs that read them from the payloads (what it did before, and does
for versions without a table). Checks that both give the same labels and neighbours, then prints the
median of each.

::

    python -m benchmarks.scale.bench_point_table --store W/store-n100000 --search-processes 1
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    """Time both ways and print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--reference", default="scale")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--n-genes", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--search-processes", type=int, default=None)
    args = ap.parse_args()

    from annotator import annotate
    from benchmarks.scale._scale import pick_genes, synthetic_cells
    from indexer import open_store
    from indexer.reference import Reference

    query = synthetic_cells(args.queries, pick_genes(args.n_genes), n_classes=50, program_size=30, seed=1, prefix="q")
    real = Reference.points
    times: dict[str, list[float]] = {"point table": [], "payloads": []}
    out = {}
    try:
        with open_store(args.store, read_only=True, search_processes=args.search_processes) as store:
            annotate(query[:256].copy(), reference=args.reference, store=store)  # load the collection
            for _ in range(args.repeats):
                for way in times:
                    table = real if way == "point table" else property(lambda _self: None)
                    Reference.points = table  # type: ignore[method-assign,assignment]
                    t = time.perf_counter()
                    out[way] = annotate(query, reference=args.reference, store=store)
                    times[way].append(time.perf_counter() - t)
    finally:
        Reference.points = real  # type: ignore[method-assign]
    a, b = out["point table"], out["payloads"]
    assert (a.labels == b.labels).all(), "the two ways gave different labels"
    assert (a.neighbour_ids == b.neighbour_ids).all(), "the two ways gave different neighbours"
    for way, runs in times.items():
        med = statistics.median(runs)
        each = ", ".join(f"{r:.2f}" for r in runs)
        print(f"{way:12s} median {med:.2f} s = {args.queries / med:,.0f} cells/s  (runs {each})")


if __name__ == "__main__":
    main()
