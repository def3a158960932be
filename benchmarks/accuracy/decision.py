"""Issue 14: the calibrated decision rule against today's vote and CellTypist, through the real library.

A thin command line over :mod:`benchmarks.accuracy._open_set` (what ``cellvec bench --open-set`` runs):
closed-set accuracy, macro-F1, ECE and rare-class recall and, with ``--left-out``, leave-one-type-out
rejection of every type with at least ``--min-cells`` reference cells (novelty AUROC per type).
``voigt-rare`` is the voigt-fine split with six clusters' reference cells cut to 3-10.

Prints one JSON line per (dataset, seed[, left-out], method) and markdown tables of means.

Usage::

    OMP_NUM_THREADS=2 python -m benchmarks.accuracy.decision --datasets pbmc68k,voigt-fine,voigt-coarse \
        --seeds 1 --store /tmp/decide-store [--encoder random:384] [--alpha 0.01] [--left-out] [--celltypist]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmarks.accuracy._open_set import (
    NOVEL,
    RARE_CLUSTERS,
    RARE_SIZES,
    SIZE_BINS,
    ece,
    recall_by_size,
    report,
    run_one,
    run_open_set,
    three_decisions,
)

__all__ = [
    "NOVEL",
    "RARE_CLUSTERS",
    "RARE_SIZES",
    "SIZE_BINS",
    "ece",
    "main",
    "recall_by_size",
    "run_one",
    "three_decisions",
]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    from benchmarks.accuracy import load_dataset
    from indexer import open_store

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="pbmc68k,voigt-fine,voigt-coarse")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--store", required=True)
    p.add_argument("--encoder", default="random:384")
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--min-cells", type=int, default=20, help="Leave out types with at least this many cells.")
    p.add_argument("--left-out", action="store_true", help="Leave-one-type-out (open set).")
    p.add_argument("--celltypist", action="store_true", help="Also CellTypist on the same splits.")
    args = p.parse_args(argv)
    store = open_store(args.store)
    rows: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        rare = name == "voigt-rare"
        ds = load_dataset("voigt-fine" if rare else name)
        out = run_open_set(
            ds,
            seeds=args.seeds,
            store=store,
            encoder=args.encoder,
            alpha=args.alpha,
            min_cells=args.min_cells if args.left_out else 10**9,
            celltypist=args.celltypist,
            rare=rare,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
        for r in out:
            print(json.dumps(r), flush=True)
        rows += out
    print(report(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
