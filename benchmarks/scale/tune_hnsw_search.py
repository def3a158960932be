"""Search a shard kept by ``scripts/tune_hnsw_build.py`` at other ``hnsw_ef`` / oversampling values.

Usage: ``[SUF=-minilm] [TUNE_DIR=DIR] python scripts/tune_hnsw_search.py N SHARD_DIR EF,OVERSAMPLING ...``
(oversampling 0: no quantization parameters). Prints queries/s, process CPU seconds per wall second (above 1
when Edge searches several segments in parallel) and recall@10 against the exact neighbours. The second of two
passes is timed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import qdrant_edge as qe
from tune_hnsw_build import recall, search  # the same search loop and recall as the build script


def main(argv: list[str]) -> None:
    n, path = int(argv[0]), argv[1]
    suf, work = os.environ.get("SUF", ""), Path(os.environ.get("TUNE_DIR", "tune-work"))
    ref = np.load(work / f"ref{n}{suf}.npy", mmap_mode="r")
    queries = np.load(work / f"q{suf}.npy")
    kth = np.load(work / f"truth{n}{suf}.npy")
    shard = qe.EdgeShard.load(path)
    rows = queries.tolist()
    for arg in argv[2:]:
        ef_s, os_s = arg.split(",")
        ef, oversampling = int(ef_s), float(os_s)
        qp = qe.QuantizationSearchParams(rescore=True, oversampling=oversampling) if oversampling > 0 else None
        params = qe.SearchParams(hnsw_ef=ef, quantization=qp)
        for _ in range(2):
            t, c = time.perf_counter(), time.process_time()
            found = search(shard, rows, params)
            dt, dc = time.perf_counter() - t, time.process_time() - c
        line = {"ef": ef, "oversampling": oversampling, "qps": round(len(queries) / dt),
                "cpu_per_wall": round(dc / dt, 2), "recall": round(recall(ref, queries, found, kth), 4)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
