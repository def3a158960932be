"""Qdrant Edge HNSW settings at scale: build and search the scale benchmark's cells straight on an Edge shard.

Usage: ``[ENC=minilm] [TUNE_DIR=DIR] python scripts/tune_hnsw_build.py N SETTING_JSON ...``

Pools N synthetic reference cells and 10,000 query cells (``annotator._scale.synthetic_cells``, paper mode,
gene vectors of ``$ENC``: ``random:384`` by default; ``minilm`` reads them from the gene cache
``$TUNE_DIR/genes-minilm``, e.g. a copy of the ``--gene-cache`` of ``cellvec bench scale``), saves them and
their exact 10th-neighbour similarities (faiss ``IndexFlatIP``) under ``$TUNE_DIR`` once, then for each
setting creates a shard, upserts the vectors (1,000 per update, a one-field payload), runs ``optimize()`` and
searches the queries at each ``hnsw_ef``. A first JSON line says how concentrated the cells are (mean cosine
between query cells, mean cosine of the exact 10th neighbour); then one JSON line per setting: upsert and
index seconds, CPU seconds, peak memory (``VmHWM``; sampled anonymous / file-backed resident memory), segment
directories (the indexed ones plus one empty appendable segment), and queries/s and recall@10 per ef.

Setting keys: ``m``, ``efc`` (ef_construct), ``int8``, ``on_disk``, ``phases`` (optimize after every
1/phases of the points: one HNSW segment each), ``efs``, ``os`` (oversampling), ``keep`` (keep the shard
under this name, for ``scripts/tune_hnsw_search.py``).

This measures the store alone (no cellvec payloads, pooling or voting); ``cellvec bench scale`` measures the
product end to end. The figures in docs/scale.md came from::

    python scripts/tune_hnsw_build.py 100000 '{"efs":[64,128]}' '{"int8":true,"efs":[64,128]}'
    python scripts/tune_hnsw_build.py 1000000 '{"int8":true,"efs":[64,96,128]}' \\
        '{"int8":true,"m":32,"efs":[64,128,256]}' '{"int8":true,"efc":200,"efs":[64,128,256]}' \\
        '{"int8":true,"phases":2,"efs":[64,96,128]}'
    ENC=minilm python scripts/tune_hnsw_build.py 1000000 '{"int8":true,"efs":[64,128,192],"keep":"mini1"}' \\
        '{"efs":[64,128,192]}' '{"phases":2,"efs":[64,128,192]}'
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from benchmarks.scale._scale import pick_genes, synthetic_cells
from indexer import encode_cells, open_store
from schemas import CellVectorSpec

W = Path(os.environ.get("TUNE_DIR", "tune-work"))
ENC = os.environ.get("ENC", "random:384")
SUF = "" if ENC.startswith("random") else "-" + ENC
SPEC = CellVectorSpec(mode="paper", encoder=ENC, keep_views=False)
PEAK = {"anon": 0.0, "file": 0.0, "rss": 0.0}


def vectors(count: int, seed: int, prefix: str, path: Path) -> np.ndarray:
    """Pool ``count`` synthetic cells (200,000 at a time) into ``path`` once; return them memory-mapped."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    symbols = pick_genes(2000)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, 384))
    with open_store(W / ("genes" + SUF)) as store:
        for s in range(0, count, 200_000):
            m = min(200_000, count - s)
            cells = synthetic_cells(m, symbols, seed=seed * 1000 + s // 200_000, prefix=prefix)
            pooled, _ = encode_cells(cells, spec=SPEC, store=store, what="reference")
            out[s : s + m] = pooled.final
    out.flush()
    return np.load(path, mmap_mode="r")


def sample_memory() -> None:
    """Keep the peaks of RssAnon, RssFile and VmRSS (MB), every 0.2 s."""
    while True:
        vals = {}
        with Path("/proc/self/status").open() as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("RssAnon", "RssFile", "VmRSS"):
                    vals[key] = float(line.split()[1]) / 1024
        PEAK["anon"] = max(PEAK["anon"], vals.get("RssAnon", 0))
        PEAK["file"] = max(PEAK["file"], vals.get("RssFile", 0))
        PEAK["rss"] = max(PEAK["rss"], vals.get("VmRSS", 0))
        time.sleep(0.2)


def run(n: int, ref: np.ndarray, queries: np.ndarray, kth: np.ndarray, cfg: dict) -> dict:
    """Build one shard with setting ``cfg`` and search it; return the result line."""
    Path("/proc/self/clear_refs").write_text("5")
    PEAK.update(anon=0.0, file=0.0, rss=0.0)
    d = W / "shard"
    shutil.rmtree(d, ignore_errors=True)
    quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99) if cfg.get("int8") else None
    mem = qe.Memory.Cold if cfg.get("on_disk") else None
    config = qe.EdgeConfig(
        vectors={"cell": qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine, memory=mem)},
        hnsw_config=qe.HnswIndexConfig(
            m=cfg.get("m", 16), ef_construct=cfg.get("efc", 100), full_scan_threshold=10000,
            max_indexing_threads=cfg.get("threads", 0),
        ),
        quantization_config=quant,
        optimizers=qe.EdgeOptimizersConfig(
            indexing_threshold=10000, default_segment_number=cfg.get("segs"), max_segment_size=cfg.get("maxseg")
        ),
        wal_enabled=cfg.get("wal"),
    )
    shard = qe.EdgeShard.create(str(d), config)
    t0, c0 = time.perf_counter(), time.process_time()
    phases = cfg.get("phases", 1)
    per = -(-n // phases)
    idx_s = 0.0
    for ph in range(phases):
        for s in range(ph * per, min(n, (ph + 1) * per), 1000):
            rows = np.asarray(ref[s : min(s + 1000, (ph + 1) * per)]).tolist()
            points = [qe.Point(s + i, {"cell": v}, {"label": "x"}) for i, v in enumerate(rows)]
            shard.update(qe.UpdateOperation.upsert_points(points))
        if ph < phases - 1:
            ti = time.perf_counter()
            shard.optimize()
            idx_s += time.perf_counter() - ti
    t1 = time.perf_counter()
    shard.optimize()
    shard.flush()
    t2, c2 = time.perf_counter(), time.process_time()
    with Path("/proc/self/status").open() as f:
        hwm = next(float(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))
    res = {
        "n": n, **cfg, "peak": {"hwm": round(hwm), **{k: round(v) for k, v in PEAK.items()}},
        "upsert_s": round(t1 - t0, 1), "index_s": round(t2 - t1 + idx_s, 1),
        "upsert_only_s": round(t1 - t0 - idx_s, 1), "cpu_s": round(c2 - c0, 1),
        "segments": len(list((d / "segments").iterdir())),
    }
    rows = queries.tolist()
    for ef in cfg.get("efs", [128]):
        qp = qe.QuantizationSearchParams(rescore=True, oversampling=cfg.get("os", 2.0)) if quant else None
        t = time.perf_counter()
        found = search(shard, rows, qe.SearchParams(hnsw_ef=ef, quantization=qp))
        dt = time.perf_counter() - t
        res[f"ef{ef}_qps"] = round(len(queries) / dt, 1)
        res[f"ef{ef}_recall"] = round(recall(ref, queries, np.array(found), kth), 4)
    shard.close()
    if cfg.get("keep"):
        shutil.rmtree(W / cfg["keep"], ignore_errors=True)
        d.rename(W / cfg["keep"])
    return res


def search(shard: qe.EdgeShard, rows: list[list[float]], params: qe.SearchParams) -> np.ndarray:
    """Return the integer ids of each query's 10 nearest points, 256 queries per ``query_batch``."""
    found = []
    for s in range(0, len(rows), 256):
        reqs = [
            qe.QueryRequest(limit=10, query=qe.Query.Nearest(v, using="cell"), with_payload=False,
                            with_vector=False, params=params)
            for v in rows[s : s + 256]
        ]
        found += [[int(h.id) for h in hits] for hits in shard.query_batch(qe.QueryBatchRequest(reqs))]
    return np.array(found)


def recall(ref: np.ndarray, queries: np.ndarray, found: np.ndarray, kth: np.ndarray) -> float:
    """Share of found neighbours whose true cosine reaches the exact 10th one (ties count)."""
    ids = np.unique(found)
    pos = np.searchsorted(ids, found)
    sims = np.einsum("ijk,ik->ij", np.asarray(ref[ids])[pos], queries)
    return float((sims >= kth[:, None] - 1e-5).mean())


def main(argv: list[str]) -> None:
    n = int(argv[0])
    W.mkdir(parents=True, exist_ok=True)
    ref = vectors(n, 0, "c", W / f"ref{n}{SUF}.npy")
    queries = np.ascontiguousarray(vectors(10000, 7, "q", W / f"q{SUF}.npy"))
    truth = W / f"truth{n}{SUF}.npy"
    if truth.exists():
        kth = np.load(truth)
    else:
        import faiss

        flat = faiss.IndexFlatIP(384)
        flat.add(np.ascontiguousarray(ref))
        sims, _ = flat.search(queries, 10)
        kth = sims[:, -1]
        np.save(truth, kth)
    sample = queries[:2000] @ queries[:2000].T
    pairwise = float(sample[np.triu_indices(2000, 1)].mean())
    stats = {"n": n, "encoder": ENC, "query_pairwise_cos_mean": round(pairwise, 4),
             "tenth_neighbour_cos_mean": round(float(kth.mean()), 4)}
    sys.stdout.write(json.dumps(stats) + "\n")  # how concentrated the cells are (one line before the settings)
    threading.Thread(target=sample_memory, daemon=True).start()
    for arg in argv[1:]:
        sys.stdout.write(json.dumps(run(n, ref, queries, kth, json.loads(arg))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
