"""Search latency (issue 6): a gene query on ~20,000 human genes, a cell query on a 100,000-cell reference.

Genes: the first ``--genes`` described human genes get ``random:384`` vectors (MiniLM vectors for every gene
take hours on CPU, so they are not assumed cached), written through ``GeneIndex`` like ``cellvec genes index``
does; then ``search_genes`` is timed for symbol queries and free-text queries. The MiniLM embedding of one
free-text query (model already loaded) is timed apart, as it adds to a real free-text query.

Cells: ``--cells`` synthetic clustered 384-d vectors (``--labels`` clusters) are written straight into a
reference collection with a ready manifest, indexed (HNSW), then single-vector searches are timed with and
without a payload filter, plus ``typical_cells`` (label centroid, then search) and one full ``search_cells``
(encoding a query cell from an AnnData, gene vectors cached).

Usage::

    python scripts/bench_search.py [--genes 20000] [--cells 100000] [--queries 200] [--store DIR] [--json]

Targets: < 50 ms per gene query, < 20 ms per cell query.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from annotator import search_cells, search_genes, typical_cells
from annotator._cell_search import _nearest
from indexer import GeneCatalog, GeneIndex, get_encoder, open_store
from indexer.reference import CELL_VECTOR, version_collection
from indexer.reference._versions import save_manifest
from schemas import BuildRecord, CellVectorSpec, ReferenceCellPayload, ReferenceManifest

REFERENCE = "bench-search"
TEXTS = [
    "axon regeneration after optic nerve injury",
    "phototransduction in rod photoreceptors",
    "T cell receptor signalling",
    "mitochondrial respiratory chain complex",
    "synaptic vesicle exocytosis",
]


def timed(fn: Callable[[int], object], n: int) -> dict[str, float]:
    fn(0)  # warm-up: caches, first segment reads
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return {
        "median_ms": round(float(np.median(ms)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "n": n,
    }


def bench_genes(store_dir: Path, n_genes: int, n_queries: int) -> dict[str, object]:
    catalog = GeneCatalog.load("human")
    # Genes with their own RefSeq summary first (about 15,000), then genes described by their full name only.
    every = catalog.symbols()
    own = catalog.sources(every) == "own_summary"
    symbols = (
        [s for s, o in zip(every, own, strict=True) if o]
        + [s for s, o in zip(every, own, strict=True) if not o]
    )[:n_genes]
    out: dict[str, object] = {"genes": len(symbols), "encoder": "random:384"}
    with open_store(store_dir) as store:
        t = time.perf_counter()
        GeneIndex(store, get_encoder("random:384"), catalog).vectors(symbols)
        out["index_s"] = round(time.perf_counter() - t, 1)
    rng = np.random.default_rng(0)
    picks = rng.choice(symbols, size=n_queries + 1)
    with open_store(store_dir, read_only=True) as store:
        out["symbol_query"] = timed(
            lambda i: search_genes(str(picks[i]), store=store, encoder="random:384", limit=10), n_queries
        )
        out["text_query"] = timed(
            lambda i: search_genes(
                TEXTS[i % len(TEXTS)] + f" {i}", store=store, encoder="random:384", limit=10
            ),
            n_queries,
        )
    enc = get_encoder("minilm")
    enc.embed_batch(["warm up"])
    out["minilm_embed_one_query"] = timed(lambda i: enc.embed_batch([TEXTS[i % len(TEXTS)]]), 50)
    return out


def write_reference(store_dir: Path, n_cells: int, n_labels: int, dim: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((n_labels, dim)).astype(np.float32)
    labels = rng.integers(0, n_labels, n_cells)
    vecs = centres[labels] + 0.6 * rng.standard_normal((n_cells, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    names = np.array([f"type{i:02d}" for i in range(n_labels)])
    coll = version_collection(REFERENCE, 1)
    timings = {}
    with open_store(store_dir) as store:
        if store.has_collection(coll):
            store.drop_collection(coll)
        store.create_collection(
            coll,
            vectors={CELL_VECTOR: dim},
            payload_indexes={"label": "keyword", "dataset": "keyword", "cell_id": "keyword"},
        )
        t = time.perf_counter()
        for start in range(0, n_cells, 1000):
            sl = slice(start, min(start + 1000, n_cells))
            ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(sl.start, sl.stop)]
            payloads = [
                ReferenceCellPayload(
                    reference=REFERENCE, cell_id=f"c{i}", label=str(names[labels[i]]), dataset=f"d{i % 4}"
                ).model_dump()
                for i in range(sl.start, sl.stop)
            ]
            store.upsert(coll, ids=ids, vectors={CELL_VECTOR: vecs[sl]}, payloads=payloads)
        timings["upsert_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        store.optimize(coll)
        timings["optimize_s"] = round(time.perf_counter() - t, 1)
        counts = dict(zip(*np.unique(names[labels], return_counts=True), strict=True))
        record = BuildRecord(
            reference=REFERENCE,
            version=1,
            spec=CellVectorSpec(encoder=f"random:{dim}"),
            dim=dim,
            text_dim=dim,
            label_key="label",
            n_cells=n_cells,
            labels={str(k): int(v) for k, v in counts.items()},
            created=datetime.now(UTC),
            status="ready",
        )
        save_manifest(store, ReferenceManifest(name=REFERENCE, current=1, versions=[record]))
    return timings


def query_adata(catalog: GeneCatalog, n_genes: int = 300) -> ad.AnnData:
    symbols = catalog.symbols()[:n_genes]
    rng = np.random.default_rng(2)
    x = rng.poisson(1.5, size=(20, n_genes)).astype(np.float32)
    return ad.AnnData(
        sp.csr_matrix(x),
        obs=pd.DataFrame(index=[f"q{i}" for i in range(20)]),
        var=pd.DataFrame(index=symbols),
    )


def bench_cells(store_dir: Path, n_cells: int, n_labels: int, n_queries: int) -> dict[str, object]:
    dim = 384
    out: dict[str, object] = {"cells": n_cells, "labels": n_labels, "dim": dim}
    out.update(write_reference(store_dir, n_cells, n_labels, dim))
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((n_queries + 1, dim)).astype(np.float32)
    coll = version_collection(REFERENCE, 1)
    with open_store(store_dir, read_only=True) as store:
        # Queries near the data: a stored cell's direction plus noise.
        centre = next(iter(store.scroll(coll, with_vectors=[CELL_VECTOR], batch_size=n_queries + 1)))
        base = np.vstack([p.vectors[CELL_VECTOR] for p in centre])
        queries = base + 0.3 * queries[: base.shape[0]] / np.sqrt(dim)
        n = min(n_queries, base.shape[0] - 1)
        out["vector_query"] = timed(lambda i: _nearest(store, coll, queries[i], limit=10, where={}), n)
        out["vector_query_where_label"] = timed(
            lambda i: _nearest(store, coll, queries[i], limit=10, where={"label": "type03"}), n
        )
        out["typical_cells"] = timed(
            lambda i: typical_cells(f"type{i % n_labels:02d}", reference=REFERENCE, store=store, limit=10), 20
        )
        catalog = GeneCatalog.load("human")
        qa = query_adata(catalog)
    with open_store(store_dir) as store:  # writable: the first call caches the query genes' vectors
        out["search_cells_with_encoding"] = timed(
            lambda i: search_cells(qa, cell=f"q{i % 20}", reference=REFERENCE, store=store, limit=10), 20
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--labels", type=int, default=30)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--store", default=None, help="Store folder (kept); default: temporary.")
    p.add_argument("--part", choices=["all", "genes", "cells"], default="all")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="cellvec-bench-search-")
    store_dir = Path(args.store) if args.store else Path(tmp.name) / "store"
    result: dict[str, dict[str, object]] = {}
    if args.part in ("all", "genes"):
        result["genes"] = bench_genes(store_dir, args.genes, args.queries)
    if args.part in ("all", "cells"):
        result["cells"] = bench_cells(store_dir, args.cells, args.labels, args.queries)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        if "genes" in result:
            g: dict[str, Any] = result["genes"]
            print(
                f"gene search on {g['genes']} human genes ({g['encoder']} vectors, "
                f"indexed in {g['index_s']} s):"
            )
            for key in ("symbol_query", "text_query", "minilm_embed_one_query"):
                print(f"  {key:<28} median {g[key]['median_ms']:7.2f} ms  p95 {g[key]['p95_ms']:7.2f} ms")
        if "cells" in result:
            c: dict[str, Any] = result["cells"]
            print(
                f"cell search on {c['cells']} cells, {c['labels']} labels, {c['dim']}-d "
                f"(upsert {c['upsert_s']} s, optimize {c['optimize_s']} s):"
            )
            for key in (
                "vector_query",
                "vector_query_where_label",
                "typical_cells",
                "search_cells_with_encoding",
            ):
                print(f"  {key:<28} median {c[key]['median_ms']:7.2f} ms  p95 {c[key]['p95_ms']:7.2f} ms")
        print("targets: < 50 ms per gene query, < 20 ms per cell query")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
