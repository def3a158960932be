"""Split an h5ad into reference and query files, stratified by a label column and seeded.

Usage: ``python scripts/split_h5ad.py IN.h5ad LABEL_KEY OUT_DIR [--test-size 0.2] [--seed 0]``; writes
``OUT_DIR/ref.h5ad`` and ``OUT_DIR/query.h5ad``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad

from cellvec.cli._annotate import demo_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("adata")
    ap.add_argument("label_key")
    ap.add_argument("out")
    ap.add_argument("--test-size", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    adata = ad.read_h5ad(args.adata)
    ref, query = demo_split(adata, args.label_key, test_size=args.test_size, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref.write_h5ad(out / "ref.h5ad")
    query.write_h5ad(out / "query.h5ad")
    print(f"{ref.n_obs} reference and {query.n_obs} query cells written to {out}")


if __name__ == "__main__":
    main()
