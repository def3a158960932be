"""What handing points to Qdrant Edge costs in Python, per 1,000 points, by payload shape.

Usage: ``python scripts/bench_edge_points.py``. Builds 1,000 ``qdrant_edge.Point`` objects (a 384-d vector
and UUID id each) with different payloads, best of 15, and prints milliseconds per 1,000 points. A cellvec
reference cell's payload is the "cellvec payload" line (reference, cell id, label, dataset and 20 top genes as
symbols, as references stored them before gene ids), "cellvec payload, gene ids" today's (20 integer ids).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import numpy as np
import qdrant_edge as qe


def best_ms(fn: Callable[[], object], repeats: int = 15) -> float:
    """Return the best of ``repeats`` timings of ``fn`` in milliseconds."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main() -> None:
    rows = np.random.default_rng(0).random((1000, 384), dtype=np.float32).tolist()
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    genes = [f"GENE{i}" for i in range(20)]
    payloads = [
        {"reference": "r", "cell_id": f"c{i}", "label": "type01", "dataset": "", "top_genes": list(genes)}
        for i in range(1000)
    ]
    with_ids = [{**pl, "top_genes": list(range(100, 120))} for pl in payloads]
    shapes: dict[str, Callable[[int], dict]] = {
        "no payload": lambda i: {},
        "4 short strings": lambda i: {"reference": "r", "cell_id": "c", "label": "x", "dataset": ""},
        "cellvec payload": lambda i: payloads[i],
        "cellvec payload, gene ids": lambda i: with_ids[i],
        "a list of 20 strings": lambda i: {"g": genes},
        "a list of 20 ints": lambda i: {"g": list(range(20))},
        "one string of 20 genes": lambda i: {"g": " ".join(genes)},
    }
    for name, payload in shapes.items():
        ms = best_ms(lambda payload=payload: [qe.Point(ids[i], {"cell": rows[i]}, payload(i)) for i in range(1000)])
        print(f"{name:24s} {ms:7.1f} ms per 1,000 points")


if __name__ == "__main__":
    main()
