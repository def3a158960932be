"""Benchmark a cellvec store on clustered synthetic vectors.

Usage::

    python scripts/bench_store.py --n 100000 --dim 128 [--store DIR | --store http://localhost:6333]

Prints upsert, optimize, batched query and reopen times, recall@10 against exact numpy search, and the
store's size on disk.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from indexer import IndexParams, open_store


def clustered(n: int, dim: int, *, n_clusters: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = (centres[rng.integers(0, n_clusters, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)
    q = (centres[rng.integers(0, n_clusters, 1000)] + 0.35 * rng.normal(size=(1000, dim))).astype(np.float32)
    return x, q


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--store", default=None, help="directory or URL (default: a temporary directory)")
    ap.add_argument("--quantization", choices=["none", "int8"], default="none")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = ap.parse_args()

    tmp = None
    location = args.store
    if location is None:
        tmp = tempfile.mkdtemp(prefix="cellvec-bench-")
        location = str(Path(tmp) / "store")
    x, q = clustered(args.n, args.dim)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(args.n)]
    payloads = [{"label": f"type{i % 20}", "i": i} for i in range(args.n)]
    print(f"store {location}: {args.n} x {args.dim} clustered vectors, 1000 queries")

    index = IndexParams(quantization=args.quantization)
    with open_store(location) as s:
        s.drop_collection("bench")
        s.create_collection(
            "bench", vectors={"cell": args.dim}, index=index, payload_indexes={"label": "keyword"}
        )
        t = time.perf_counter()
        s.upsert("bench", ids=ids, vectors={"cell": x}, payloads=payloads)
        s.flush()
        print(f"upsert      {time.perf_counter() - t:8.2f} s")
        t = time.perf_counter()
        s.optimize("bench")
        print(f"optimize    {time.perf_counter() - t:8.2f} s")

    t = time.perf_counter()
    s = open_store(location)
    s.count("bench")  # opens the shard
    print(f"reopen      {time.perf_counter() - t:8.2f} s")
    with s:
        s.query("bench", q[:10], using="cell", limit=10, payload_fields=[])  # warm up
        t = time.perf_counter()
        res = s.query("bench", q, using="cell", limit=10, payload_fields=["label"])
        print(f"1000 top-10 {time.perf_counter() - t:8.2f} s (batched)")
    t = time.perf_counter()
    r = open_store(location, read_only=True)
    r.count("bench")
    print(f"reopen r/o  {time.perf_counter() - t:8.2f} s (private copy of the collection)")
    r.close()

    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    truth = np.argpartition(-(qn @ xn.T), 10, axis=1)[:, :10]
    pos = {pid: i for i, pid in enumerate(ids)}
    recall = np.mean(
        [len({pos[h] for h in hits} & set(t.tolist())) / 10 for hits, t in zip(res.ids, truth, strict=True)]
    )
    print(f"recall@10   {recall:8.4f} vs exact numpy")
    if not location.startswith(("http://", "https://", ":memory:")):
        print(f"disk        {disk_mb(Path(location)):8.1f} MB")
    if tmp is not None and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp is not None:
        print(f"kept {location}")


if __name__ == "__main__":
    main()
