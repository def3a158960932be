"""Peak memory and time of the expression view's transform on 100,000 cells, and of its fit.

Usage: ``python -m benchmarks.scale.bench_expression_memory [--cells N] [--fit-cells M]``. Fits the default
expression view (2,000-gene panel, 50 components, logistic head over 30 labels) on 5,000 synthetic
log-expression cells, then transforms N cells (3,000 genes, 3% detected) at once and prints the peak of
Python-traced allocations (numpy's included) and the seconds it took; then the same for the PCA part of a fit
on M cells (``head="pca"``: the dense panel a fit holds; the logistic head reads the sparse matrix).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

from indexer.cells import fit_expression
from schemas import ExpressionParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--fit-cells", type=int, default=30_000)
    args = parser.parse_args()
    n, g = args.cells, 3_000
    x = sp.random(n, g, density=0.03, format="csr", dtype=np.float32, random_state=0)
    x.data = np.log1p(x.data * 10).astype(np.float32)
    symbols = np.array([f"G{i}" for i in range(g)], dtype=object)
    labels = np.random.default_rng(0).integers(0, 30, n).astype(str)
    proj = fit_expression(x[:5_000], symbols, ExpressionParams(), labels=labels[:5_000])
    tracemalloc.start()
    t = time.perf_counter()
    proj.transform_with_scores(x, symbols)
    _, peak = tracemalloc.get_traced_memory()
    print(f"transform of {n:,} cells: traced peak {peak / 1e6:,.0f} MB, {time.perf_counter() - t:.1f} s")
    m = min(args.fit_cells, n)
    tracemalloc.reset_peak()
    t = time.perf_counter()
    fit_expression(x[:m], symbols, ExpressionParams(head="pca"), labels=None)
    _, peak = tracemalloc.get_traced_memory()
    print(f"fit (PCA part) on {m:,} cells: traced peak {peak / 1e6:,.0f} MB, {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
