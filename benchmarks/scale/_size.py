"""One size of the scale benchmark, run in its own process: build, annotate, exact search, baselines."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.scale._build import build_chunked, seed_gene_vectors
from benchmarks.scale._cells import LABEL_KEY, REFERENCE, pick_genes, synthetic_cells
from benchmarks.scale._config import ScaleConfig
from benchmarks.scale._exact import exact_topk, ids_to_rows, recall_by_score, true_sims
from benchmarks.scale._memory import RssSampler, dir_size_mb, peak_rss_mb, reset_peak_rss
from indexer import IndexParams
from indexer.cells import recall_at_k

logger = logging.getLogger(__name__)


def run_size(config: ScaleConfig) -> dict[str, Any]:
    """Measure one size in this process; return its result row (see :data:`REQUIRED_FIELDS`).

    Parameters
    ----------
    config
        The size and settings.

    Returns
    -------
    A JSON-able dict: build, memory, disk, annotate and recall figures, then the baselines'.
    """
    from annotator._annotate import annotate
    from indexer import build_reference, encode_cells, open_store
    from indexer.reference import load_artifacts, version_collection
    from schemas import CellVectorSpec

    index = IndexParams.from_json(config.index)
    work = Path(config.work_dir)
    store_dir = work / f"store-n{config.n}"
    work.mkdir(parents=True, exist_ok=True)
    # Where the reference lives: this size's Edge folder (rebuilt), or a server (the reference dropped first).
    location: str | Path = config.qdrant_url or store_dir
    if config.qdrant_url:
        from indexer import drop_reference, list_references

        with open_store(config.qdrant_url) as store:
            if any(m.name == REFERENCE for m in list_references(store)):
                drop_reference(store, REFERENCE)
    else:
        shutil.rmtree(store_dir, ignore_errors=True)
    # text_dims None: the product's default for the mode; 0: the full text view.
    dims = {} if config.text_dims is None else {"text_dims": config.text_dims or None}
    spec = CellVectorSpec(
        mode=config.mode,  # type: ignore[arg-type]
        encoder=config.encoder_id,
        keep_views=False,
        **dims,  # type: ignore[arg-type]
    )
    row: dict[str, Any] = {
        "n": config.n,
        "queries": config.queries,
        "dim": config.dim,
        "k": config.k,
        "encoder": config.encoder_id,
        "mode": config.mode,
        "text_dims": spec.text_dims,
        "index": index.to_json(),
        "store": "server" if config.qdrant_url else "edge",
    }

    symbols = pick_genes(config.n_genes)
    t = time.perf_counter()
    ref = synthetic_cells(
        config.n, symbols, n_classes=config.n_classes, program_size=config.program_size, seed=config.seed
    )
    row["generate_s"] = round(time.perf_counter() - t, 2)
    row["nnz_per_cell"] = round(ref.X.nnz / max(config.n, 1), 1)

    # Warm the gene vector cache first: the benchmark measures builds with gene vectors cached.
    t = time.perf_counter()
    with open_store(location, index=index) as store:
        row["genes_embedded"] = seed_gene_vectors(store, symbols, config.encoder_id, cache=config.gene_cache)
        # Loads the gene vectors into the store's pages; the paper's mode fits nothing on these 100 cells.
        warm = CellVectorSpec(mode="paper", encoder=config.encoder_id, keep_views=False)
        encode_cells(ref[:100], spec=warm, store=store, what="reference")
    row["genes_s"] = round(time.perf_counter() - t, 2)
    marks: dict[str, float] = {}

    def progress(step: str, done: int, total: int) -> None:
        if step == "writing cells":
            marks.setdefault("first_batch", time.perf_counter())
            if done >= total:
                marks["written"] = time.perf_counter()

    reset_peak_rss()
    row["loadavg_1m_before"] = round(os.getloadavg()[0], 2)
    vec_path = work / f"ref-n{config.n}.npy"
    chunked = config.n > config.chunk
    row["build_mode"] = "chunked" if chunked else "build_reference"
    t0, c0 = time.perf_counter(), time.process_time()
    with RssSampler() as build_mem, open_store(location, index=index) as store:
        if chunked:
            rec = build_chunked(ref, store=store, spec=spec, chunk=config.chunk, vectors_to=vec_path, progress=progress)
        else:
            rec = build_reference(ref, store=store, name=REFERENCE, label_key=LABEL_KEY, spec=spec, progress=progress)
    t1 = time.perf_counter()
    row["dim"] = rec.dim
    row["build_s"] = round(t1 - t0, 2)
    row["build_cpu_s"] = round(time.process_time() - c0, 2)
    row["write_s"] = round(marks.get("written", t1) - t0, 2)  # pooling, payloads, upsert
    row["index_s"] = round(t1 - marks.get("written", t1), 2)  # optimize (HNSW, quantization), flush
    _partial(config, row)
    row["peak_rss_build_mb"] = round(peak_rss_mb(), 1)
    row["peak_rss_anon_build_mb"] = round(build_mem.peak_anon_mb, 1)
    row["peak_rss_file_build_mb"] = round(build_mem.peak_file_mb, 1)
    if config.qdrant_url:
        row["disk_mb"] = row["store_disk_mb"] = None  # on the server's disk: see its storage folder
    else:
        coll_dir = store_dir / "collections" / version_collection(REFERENCE, rec.version)
        row["disk_mb"] = round(dir_size_mb(coll_dir), 1)
        row["store_disk_mb"] = round(dir_size_mb(store_dir), 1)

    # Exact reference vectors for recall and baselines: the same pooling, kept on disk while annotating.
    if not chunked:
        with open_store(location, read_only=True) as store:
            cells, _ = encode_cells(
                ref,
                spec=rec.spec,
                store=store,
                artifacts=load_artifacts(store, rec),
                what="reference",
                query_species=rec.spec.species,
            )
        np.save(vec_path, cells.final)
        del cells
    del ref
    gc.collect()

    query = synthetic_cells(
        config.queries,
        symbols,
        n_classes=config.n_classes,
        program_size=config.program_size,
        seed=config.seed + 1,
        prefix="q",
    )
    truth_labels = query.obs[LABEL_KEY].astype(str).to_numpy()
    reset_peak_rss()
    with RssSampler() as ann_mem, open_store(location, index=index) as store:
        t = time.perf_counter()
        annotate(query[: min(256, config.queries)].copy(), reference=REFERENCE, store=store, k=config.k)
        row["warmup_s"] = round(time.perf_counter() - t, 2)
        # A first full pass on other query cells: the collection's pages come from disk as the graph is
        # walked (what a fresh process sees); the timed pass then measures a warm store.
        first = synthetic_cells(
            config.queries,
            symbols,
            n_classes=config.n_classes,
            program_size=config.program_size,
            seed=config.seed + 2,
            prefix="f",
        )
        t = time.perf_counter()
        annotate(first, reference=REFERENCE, store=store, k=config.k)
        row["annotate_cold_cells_per_s"] = round(config.queries / (time.perf_counter() - t), 1)
        del first
        t, c = time.perf_counter(), time.process_time()
        result = annotate(query, reference=REFERENCE, store=store, k=config.k)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        row["annotate_s"] = round(dt, 3)
        row["annotate_cells_per_s"] = round(config.queries / dt, 1)
        # CPU seconds of this process (all threads): the throughput an idle machine would give when the
        # benchmark shares its cores with other work (see loadavg).
        row["annotate_cpu_s"] = round(dc, 3)
        row["annotate_cells_per_cpu_s"] = round(config.queries / max(dc, 1e-9), 1)
        qv = result.vectors
        t, c = time.perf_counter(), time.process_time()
        store.query(
            version_collection(REFERENCE, rec.version),
            qv,
            using="cell",
            limit=config.k,
            payload_fields=["label", "cell_id"],
        )
        row["qdrant_queries_per_s"] = round(config.queries / (time.perf_counter() - t), 1)
        row["qdrant_queries_per_cpu_s"] = round(config.queries / max(time.process_time() - c, 1e-9), 1)
    row["peak_rss_annotate_mb"] = round(peak_rss_mb(), 1)
    row["peak_rss_anon_annotate_mb"] = round(ann_mem.peak_anon_mb, 1)
    row["peak_rss_mb"] = max(row["peak_rss_build_mb"], row["peak_rss_annotate_mb"])
    row["accuracy"] = round(float(np.mean(result.labels.astype(str) == truth_labels)), 4)
    _partial(config, row)
    ann_ids = ids_to_rows(result.neighbour_ids)
    del query, result
    gc.collect()

    reset_peak_rss()
    refv = np.load(vec_path)
    _baselines(config, index, refv, qv, ann_ids, row, location=location)
    row["peak_rss_baselines_mb"] = round(peak_rss_mb(), 1)
    row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    row["cpus"] = os.cpu_count()
    vec_path.unlink(missing_ok=True)
    return row


def _baselines(
    config: ScaleConfig,
    index: IndexParams,
    refv: np.ndarray,
    qv: np.ndarray,
    ann_ids: np.ndarray,
    row: dict[str, Any],
    *,
    location: str | Path | None = None,
) -> None:
    """Exact neighbours (faiss IndexFlatIP, else numpy), the ``hnsw_ef`` sweep, scikit-learn, faiss HNSW."""
    k = config.k
    if config.faiss:
        import faiss

        t = time.perf_counter()
        flat = faiss.IndexFlatIP(refv.shape[1])
        flat.add(refv)
        row["faiss_flat_build_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        truth_sims, truth_ids = flat.search(qv, k)
        row["faiss_flat_queries_per_s"] = round(len(qv) / (time.perf_counter() - t), 1)
        del flat
    else:
        t = time.perf_counter()
        truth_sims, truth_ids = exact_topk(refv, qv, k)
        row["numpy_exact_s"] = round(time.perf_counter() - t, 2)
    kth = truth_sims[:, -1]

    def recall(ids: np.ndarray) -> float:
        return round(recall_by_score(true_sims(refv, qv, ids), kth), 4)

    row["recall_at_10"] = recall(ann_ids)
    row["recall_at_10_ids"] = round(recall_at_k(truth_ids, ann_ids), 4)
    if config.faiss:
        row["faiss_flat_recall_at_10"] = recall(truth_ids)
    _partial(config, row)
    if config.ef_sweep and location is not None:
        from indexer import open_store
        from indexer.reference import version_collection

        collection = version_collection(REFERENCE, 1)
        with open_store(location, read_only=True) as store:
            # One untimed pass first: the store was just reopened and its pages (graph, vectors and the
            # payloads read below) are cold.
            store.query(
                collection,
                qv,
                using="cell",
                limit=k,
                payload_fields=["cell_id"],
                with_ids=False,
                hnsw_ef=max(config.ef_sweep),
            )
            for ef in config.ef_sweep:
                t = time.perf_counter()
                res = store.query(
                    collection, qv, using="cell", limit=k, payload_fields=["cell_id"], with_ids=False, hnsw_ef=ef
                )
                row[f"ef{ef}_queries_per_s"] = round(len(qv) / (time.perf_counter() - t), 1)
                cells = np.array(
                    [[h["cell_id"] for h in hits] + [""] * (k - len(hits)) for hits in res.payloads], dtype=object
                )
                row[f"ef{ef}_recall_at_10"] = recall(ids_to_rows(cells))
        _partial(config, row)
    if config.sklearn:
        from sklearn.neighbors import NearestNeighbors

        t = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(refv)
        row["sklearn_build_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        ids = nn.kneighbors(qv, return_distance=False)
        row["sklearn_queries_per_s"] = round(len(qv) / (time.perf_counter() - t), 1)
        row["sklearn_recall_at_10"] = recall(ids)
        del nn
        _partial(config, row)
    if config.faiss:
        import faiss

        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(refv.shape[1], index.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = index.hnsw_ef_construct
        hnsw.add(refv)
        row["faiss_hnsw_build_s"] = round(time.perf_counter() - t, 2)
        hnsw.hnsw.efSearch = max(index.search_ef, k)
        t = time.perf_counter()
        _, ids = hnsw.search(qv, k)
        row["faiss_hnsw_queries_per_s"] = round(len(qv) / (time.perf_counter() - t), 1)
        row["faiss_hnsw_recall_at_10"] = recall(ids)
        del hnsw


def _partial(config: ScaleConfig, row: dict[str, Any]) -> None:
    """Write the figures so far to ``<work_dir>/partial-n<N>.json`` (readable before a long run ends)."""
    path = Path(config.work_dir) / f"partial-n{config.n}.json"
    path.write_text(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------------ driver
