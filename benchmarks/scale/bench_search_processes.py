"""Annotate's search on several cores: a read-only store searched by 1, 2… processes, faiss HNSW beside it.

Opens a copy of a built reference read-only once per process count (``open_store(..., search_processes=N)``),
searches ``--queries`` query vectors the way annotate does (``limit=10``, payload ``label`` and ``cell_id``, no
point ids, batches of 8,192 rows, as annotate) and prints, per ``N``:

- ``first_s``: the first 8,192-row call, which starts the reader processes (they load their copies while this
  process searches);
- queries/s of the whole set, median of ``--repeats`` runs (the settings alternate, as the machine may be
  shared), with process CPU / wall of this process;
- whether the neighbours (scores and payloads) equal those of ``N = 1``;
- each reader's resident memory (``RssAnon`` is its own; ``RssFile`` are pages of the collection's files,
  shared with the parent through the hard links).

Then faiss ``IndexHNSWFlat`` on the same stored vectors (same M, ef_construct and search ef as the collection)
with 1 and 2 OpenMP threads, and the recall@10 of Edge and faiss against exact search (faiss ``IndexFlatIP``).
The queries are stored reference vectors plus Gaussian noise (sigma ``--noise`` per dimension), renormalised.
Copy the store first: a reader writes nothing, but ``--store`` should not be the only copy of a reference::

    cp -a /work/scale17/work/store-n100000 /tmp/s100k
    python -m benchmarks.scale.bench_search_processes --store /tmp/s100k --reference scale --processes 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 8192


def _search(store: Any, collection: str, q: np.ndarray) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
    scores, pays = [], []
    for s in range(0, len(q), BATCH):
        res = store.query(
            collection, q[s : s + BATCH], using="cell", limit=10, payload_fields=["label", "cell_id"], with_ids=False
        )
        scores.append(res.scores)
        pays += res.payloads
    return np.vstack(scores), pays


def _rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def main() -> None:
    """Run the comparison and print one line per setting (``--json``: one JSON object)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--processes", default="1,2", help="comma-separated process counts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from indexer import open_store
    from indexer.reference import load_manifest, reference_vectors, resolve_version, version_collection

    counts = [int(c) for c in args.processes.split(",")]
    out: dict[str, Any] = {"store": str(args.store), "queries": args.queries, "loadavg_1m": os.getloadavg()[0]}
    with open_store(args.store, read_only=True, search_processes=1) as st:
        rec = resolve_version(load_manifest(st, args.reference), None)
        collection = version_collection(args.reference, rec.version)
        refv, _, cell_ids = reference_vectors(st, args.reference)
    refv = np.ascontiguousarray(refv, dtype=np.float32)
    out.update(n=len(refv), dim=refv.shape[1], cores=len(os.sched_getaffinity(0)))
    rng = np.random.default_rng(1)
    q = refv[rng.integers(len(refv), size=args.queries)] + rng.normal(0, args.noise, (args.queries, refv.shape[1]))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

    stores = {}
    for n in counts:
        st = open_store(args.store, read_only=True, search_processes=n)
        t = time.perf_counter()
        _search(st, collection, q[:BATCH])
        out[f"p{n}_first_s"] = round(time.perf_counter() - t, 2)
        stores[n] = st
    walls: dict[int, list[float]] = {n: [] for n in counts}
    cpus: dict[int, list[float]] = {n: [] for n in counts}
    found: dict[int, tuple[np.ndarray, list[list[dict[str, Any]]]]] = {}
    try:
        for _ in range(args.repeats):
            for n in counts:
                t, c = time.perf_counter(), time.process_time()
                found[n] = _search(stores[n], collection, q)
                wall = time.perf_counter() - t
                walls[n].append(wall)
                cpus[n].append((time.process_time() - c) / wall)
        for n, st in stores.items():  # each reader's resident memory (anonymous: its own; file: shared pages)
            for pool in getattr(st, "_readers", {}).values():
                for j, r in enumerate(pool.readers):
                    out[f"p{n}_reader{j + 1}_rss_mb"] = _rss_mb(r.proc.pid)
    finally:
        for st in stores.values():
            st.close()
    base = found[counts[0]]
    for n in counts:
        med = statistics.median(walls[n])
        out[f"p{n}_queries_per_s"] = round(args.queries / med)
        out[f"p{n}_runs_s"] = [round(w, 2) for w in walls[n]]
        out[f"p{n}_parent_cpu_per_wall"] = round(statistics.median(cpus[n]), 2)
        out[f"p{n}_identical_to_p{counts[0]}"] = bool(
            np.array_equal(found[n][0], base[0]) and found[n][1] == base[1]
        )

    if not args.no_faiss:
        import faiss

        from schemas import IndexParams

        sidecar = args.store / "collections" / collection / "cellvec-collection.json"
        index = IndexParams.from_json(json.loads(sidecar.read_text())["index"])
        flat = faiss.IndexFlatIP(refv.shape[1])
        flat.add(refv)
        truth_sims, _ = flat.search(q, 10)
        kth = truth_sims[:, -1]
        row_of = {c: i for i, c in enumerate(cell_ids)}
        edge_rows = np.array([[row_of[h["cell_id"]] for h in hits] + [-1] * (10 - len(hits)) for hits in base[1]])

        def recall(rows: np.ndarray) -> float:
            sims = np.where(rows >= 0, np.einsum("ij,ikj->ik", q, refv[np.maximum(rows, 0)]), -np.inf)
            return round(float((sims >= kth[:, None] - 1e-5).mean()), 4)

        out["edge_recall_at_10"] = recall(edge_rows)
        hnsw = faiss.IndexHNSWFlat(refv.shape[1], index.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = index.hnsw_ef_construct
        t = time.perf_counter()
        hnsw.add(refv)
        out["faiss_hnsw_build_s"] = round(time.perf_counter() - t, 1)
        hnsw.hnsw.efSearch = index.search_ef
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                _, ids = hnsw.search(q, 10)
                times.append(time.perf_counter() - t)
            out[f"faiss_hnsw_{threads}t_queries_per_s"] = round(args.queries / statistics.median(times))
        out["faiss_hnsw_recall_at_10"] = recall(ids)
        out["faiss_hnsw_ids_as_edge"] = round(
            float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, edge_rows, strict=True)])), 4
        )
    out["loadavg_1m_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
