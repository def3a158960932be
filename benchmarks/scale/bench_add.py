"""Time ``add_cells``: 10,000 new cells into a 100,000-cell reference (gene vectors already cached).

Synthetic cells use real human gene symbols: 30 cell types, each with its own program of 40 marker genes
over 2,000 expressed genes, drawn as Poisson counts, so their vectors cluster as real cells do (HNSW on
uniformly random vectors says nothing). The reference is built first (not timed); the add is then timed in
the same process, so the gene catalog and the gene collection are warm as they are for a user's second
command.

Run::

    python scripts/bench_add.py [--store DIR] [--n-ref 100000] [--n-add 10000] [--encoder random:384]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from indexer import GeneCatalog, add_cells, build_reference, open_store
from indexer.reference import load_manifest, version_collection
from schemas import CellVectorSpec, RefineParams

N_TYPES = 30
N_GENES = 2000
N_MARKERS = 40


def synthetic(n_cells: int, genes: list[str], *, seed: int, prefix: str) -> ad.AnnData:
    """Return ``n_cells`` labelled cells with Poisson counts: background + one marker program per type."""
    rng = np.random.default_rng(seed)
    programs = np.random.default_rng(0).permutation(len(genes))[: N_TYPES * N_MARKERS].reshape(N_TYPES, -1)
    labels = rng.integers(0, N_TYPES, n_cells)
    rows, cols, vals = [], [], []
    for start in range(0, n_cells, 5000):
        lab = labels[start : start + 5000]
        lam = np.full((lab.size, len(genes)), 0.05, dtype=np.float32)
        lam[:, :50] = 2.0  # shared, housekeeping-like
        lam[np.arange(lab.size)[:, None], programs[lab]] = rng.uniform(3, 10, (lab.size, N_MARKERS))
        block = sp.csr_matrix(rng.poisson(lam).astype(np.float32))
        coo = block.tocoo()
        rows.append(coo.row + start)
        cols.append(coo.col)
        vals.append(coo.data)
    ijv = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    x = sp.csr_matrix(ijv, shape=(n_cells, len(genes)))
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type{t:02d}" for t in labels])},
        index=[f"{prefix}{i}" for i in range(n_cells)],
    )
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=genes))


def main() -> None:
    """Build the reference, then time the add and print the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None, help="Store directory (default: a temporary one, deleted after).")
    p.add_argument("--n-ref", type=int, default=100_000)
    p.add_argument("--n-add", type=int, default=10_000)
    p.add_argument("--encoder", default="random:384")
    p.add_argument("--refine", action="store_true", help="Build a SupCon-refined reference.")
    args = p.parse_args()
    catalog = GeneCatalog.load("human")
    genes = [s for s in catalog.symbols() if not s.startswith(("MT-", "RPL", "RPS"))][:N_GENES]
    refine = RefineParams(method="supcon", epochs=5) if args.refine else RefineParams()
    spec = CellVectorSpec(mode="paper", encoder=args.encoder, refine=refine)
    tmp = None
    if args.store is None:
        tmp = tempfile.mkdtemp(prefix="cellvec-bench-add-")
        store_path = Path(tmp) / "store"
    else:
        store_path = Path(args.store)
    try:
        ref = synthetic(args.n_ref, genes, seed=1, prefix="ref")
        new = synthetic(args.n_add, genes, seed=2, prefix="new")
        with open_store(store_path) as store:
            t0 = time.perf_counter()
            build_reference(ref, store=store, name="bench", label_key="cell_type", spec=spec, dataset="ref")
            t_build = time.perf_counter() - t0
            what = f"{args.encoder}, refine={refine.method}"
            print(f"built a {args.n_ref:,}-cell reference ({what}) in {t_build:.1f} s")
            t0 = time.perf_counter()
            rec = add_cells(new, store=store, name="bench", label_key="cell_type", dataset="new")
            t_add = time.perf_counter() - t0
            n = store.count(version_collection("bench", rec.version))
            assert n == rec.n_cells == args.n_ref + args.n_add, (n, rec.n_cells)
            assert load_manifest(store, "bench").current == rec.version
        print(
            f"add_cells: {args.n_add:,} cells into a {args.n_ref:,}-cell reference in {t_add:.1f} s "
            f"({args.n_add / t_add:,.0f} cells/s); now {rec.n_cells:,} cells, version {rec.version}"
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
