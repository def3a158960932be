"""Scale benchmark: build references of growing size and measure build, memory, disk, throughput and recall.

Each size runs in a fresh Python subprocess (``python -m annotator._scale CONFIG_JSON``) so that one size's
memory does not pollute the next one's peak. Within that process, the steps are:

1. **Cells.** Synthetic but realistic: sparse raw counts over ~2,000 real human gene symbols (those with
   NCBI text), with one gene program per class (program genes with their own rates and dropout), shared
   genes expressed everywhere, per-cell library size and random noise genes. After top-20 pooling the
   cells form one cluster per class, as real cells do (uniformly random vectors would make HNSW look much
   worse than it is on real data). Gene vectors come from the real :class:`indexer.GeneIndex`; the default
   encoder is ``random:<dim>`` (instant; a fixed random vector per symbol). A reference built with
   ``minilm`` would pool the cached MiniLM vectors instead: pooling, storage and search cost the same for
   the same dimension.
2. **Build.** The real :func:`indexer.build_reference` into an embedded Qdrant Edge store (pooling,
   payloads, upsert in batches of 1,000, ``optimize()`` to build HNSW), with the
   :class:`indexer.IndexParams` given. Peak resident memory of this step is read from ``VmHWM``.
3. **Annotate.** The real :func:`annotator.annotate` on 10,000 query cells (an AnnData in memory): pooling,
   batched Qdrant queries, vote; gene vectors already cached. One small warm-up call first (it opens the
   collection), then a first pass over 10,000 other query cells (``annotate_cold_cells_per_s``: pages read
   from disk as the graph is walked), then the timed pass (a warm store). ``VmHWM`` is reset before this
   step (``/proc/self/clear_refs``) so its peak is its own.
4. **Exact search and baselines** on the same vectors: faiss ``IndexFlatIP`` (exact; also the ground truth),
   faiss ``IndexHNSWFlat`` with the same ``m``/``ef_construct``/``ef`` as Qdrant, and scikit-learn's
   brute-force cosine ``NearestNeighbors`` (the paper's approach). Recall@10 counts a returned neighbour
   as correct when its true cosine similarity reaches the 10th exact one (ties between equal vectors count).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from indexer import CellvecError, IndexParams

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer import Progress, VectorStore
    from schemas import BuildRecord, CellVectorSpec

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = (
    "n", "build_s", "peak_rss_mb", "disk_mb", "annotate_cells_per_s", "recall_at_10",
)
"""Fields every result row has (baselines add ``sklearn_*``, ``faiss_flat_*`` and ``faiss_hnsw_*``)."""

REFERENCE = "scale"
LABEL_KEY = "cell_type"
_CLASS_SEED = 20_240_601  # programs are the same for the reference and the queries
_TIE_EPS = 1e-5


class ScaleError(CellvecError):
    """A scale run failed (its subprocess exited with an error)."""


@dataclass(frozen=True)
class ScaleConfig:
    """One size of the scale benchmark.

    Attributes
    ----------
    n
        Reference cells.
    queries
        Query cells annotated (and searched by each baseline).
    dim
        Gene (and cell) vector dimension of the ``random:<dim>`` encoder.
    index
        HNSW, quantization and storage settings of the reference collection, as a JSON dict of
        :class:`indexer.IndexParams`.
    n_genes
        Real human symbols the synthetic cells express.
    n_classes
        Cell types.
    program_size
        Program genes per class.
    k
        Neighbours that vote and over which recall is measured.
    faiss
        Run the faiss baselines (``IndexFlatIP`` also gives the exact neighbours; without it numpy does).
    sklearn
        Run the scikit-learn brute-force baseline.
    work_dir
        Folder of this size's store (wiped first).
    seed
        Seed of the reference cells (queries use ``seed + 1``).
    encoder
        Gene text encoder; ``None`` means ``random:<dim>``.
    gene_cache
        Store (a folder) holding this encoder's gene vectors, filled on first use and reused by every size
        and run; ``None`` embeds into each size's store.
    chunk
        References larger than this are pooled and written chunk by chunk (see :func:`build_chunked`);
        smaller ones go through :func:`indexer.build_reference` in one call.
    ef_sweep
        Also search the built reference with each of these ``hnsw_ef`` values (queries/s and recall@10 of
        the store's search alone): the speed/recall trade-off without rebuilding.
    """

    n: int
    queries: int = 10_000
    dim: int = 384
    index: dict[str, Any] = field(default_factory=lambda: IndexParams().to_json())
    n_genes: int = 2_000
    n_classes: int = 50
    program_size: int = 30
    k: int = 10
    faiss: bool = True
    sklearn: bool = True
    work_dir: str = "scale-work"
    seed: int = 0
    encoder: str | None = None
    gene_cache: str | None = None
    chunk: int = 200_000
    ef_sweep: tuple[int, ...] = ()

    @property
    def encoder_id(self) -> str:
        """The encoder actually used."""
        return self.encoder or f"random:{self.dim}"


# ------------------------------------------------------------------------------------------ synthetic cells


def pick_genes(n_genes: int, *, seed: int = _CLASS_SEED) -> list[str]:
    """Return ``n_genes`` real human symbols that have an NCBI summary, chosen reproducibly.

    Mitochondrial and ribosomal genes are left out so that pooling options do not change the panel.
    """
    from indexer import GeneCatalog

    catalog = GeneCatalog.load("human")
    symbols = catalog.symbols()
    src = catalog.sources(symbols)
    pool = [
        s for s, so in zip(symbols, src, strict=True)
        if so == "own_summary" and not s.startswith(("MT-", "RPL", "RPS")) and "-" not in s
    ]
    if len(pool) < n_genes:
        pool = [s for s in symbols if not s.startswith(("MT-", "RPL", "RPS"))]
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=min(n_genes, len(pool)), replace=False).tolist())


def synthetic_cells(
    n: int,
    symbols: Sequence[str],
    *,
    n_classes: int = 50,
    program_size: int = 30,
    n_shared: int = 40,
    n_noise: int = 15,
    seed: int = 0,
    class_seed: int = _CLASS_SEED,
    prefix: str = "c",
) -> AnnData:
    """Return ``n`` labelled cells x ``symbols`` of raw counts that cluster by class after pooling.

    Parameters
    ----------
    n
        Cells.
    symbols
        Gene symbols (``var_names``).
    n_classes
        Classes (``obs['cell_type']``: ``type00``, ``type01``…).
    program_size
        Program genes per class, each kept by a cell with probability 0.8 at a class-specific rate.
    n_shared
        Genes every cell expresses at a lower rate (housekeeping-like).
    n_noise
        Random genes per cell with a count of about 1.
    seed
        Seed of the cells.
    class_seed
        Seed of the programs; keep it fixed so that references and queries share them.
    prefix
        Prefix of the cell ids (``obs_names``).

    Returns
    -------
    Cells x genes, CSR float32 counts, ``obs['cell_type']`` categorical.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    g = len(symbols)
    crng = np.random.default_rng(class_seed)
    order = crng.permutation(g)
    shared = order[:n_shared]
    rest = order[n_shared:]
    programs = np.stack([crng.choice(rest, size=program_size, replace=False) for _ in range(n_classes)])
    rates = crng.uniform(4.0, 20.0, size=(n_classes, program_size))
    shared_rates = crng.uniform(1.0, 4.0, size=n_shared)
    rng = np.random.default_rng(seed)
    labels = rng.integers(n_classes, size=n)
    blocks = []
    chunk = 100_000
    for start in range(0, n, chunk):
        lab = labels[start : start + chunk]
        m = lab.size
        size = rng.lognormal(0.0, 0.3, size=m)[:, None]
        prog = rng.poisson(rates[lab] * size) * (rng.random((m, program_size)) < 0.8)
        sh = rng.poisson(shared_rates[None, :] * size)
        noise_cols = rng.integers(g, size=(m, n_noise))
        noise = 1 + rng.poisson(0.3, size=(m, n_noise))
        cols = np.hstack([programs[lab], np.broadcast_to(shared, (m, n_shared)), noise_cols])
        vals = np.hstack([prog, sh, noise]).astype(np.float32)
        rows = np.repeat(np.arange(m), cols.shape[1])
        block = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(m, g), dtype=np.float32)
        block.eliminate_zeros()
        blocks.append(block)
    x = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    names = np.char.add(prefix, np.arange(n).astype(str))
    obs = pd.DataFrame(
        {LABEL_KEY: pd.Categorical.from_codes(labels, [f"type{c:02d}" for c in range(n_classes)])},
        index=pd.Index(names, dtype=object),
    )
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=pd.Index(list(symbols), dtype=object)))


# ------------------------------------------------------------------------------------------ recall


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Return the mean share of each row's true top-k ids that were found.

    Parameters
    ----------
    found
        ``n x k`` ids returned by the approximate search (``-1`` where missing).
    truth
        ``n x k`` exact top-k ids.

    Returns
    -------
    Recall@k in [0, 1] (1 for no rows).

    Examples
    --------
    >>> recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 1], [4, 9, 8]]))
    0.6666666666666666
    """
    found = np.asarray(found)
    truth = np.asarray(truth)
    if truth.size == 0:
        return 1.0
    hits = sum(len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def recall_by_score(found_sims: np.ndarray, kth_exact: np.ndarray, *, eps: float = _TIE_EPS) -> float:
    """Return recall@k counting a hit when its true similarity reaches the k-th exact similarity.

    This is :func:`recall_at_k` made robust to ties (duplicate or equidistant reference cells), as in
    ann-benchmarks: any neighbour as close as the k-th exact one is a correct answer.

    Parameters
    ----------
    found_sims
        ``n x k`` true cosine similarities of the returned neighbours (``-inf``/NaN where missing).
    kth_exact
        ``n`` similarities of each query's k-th exact neighbour.
    eps
        Tolerance for float rounding.

    Returns
    -------
    Recall@k in [0, 1].

    Examples
    --------
    >>> recall_by_score(np.array([[0.9, 0.8], [0.7, 0.1]]), np.array([0.8, 0.6]))
    0.75
    """
    found_sims = np.nan_to_num(np.asarray(found_sims, dtype=np.float64), nan=-np.inf)
    if found_sims.size == 0:
        return 1.0
    ok = found_sims >= np.asarray(kth_exact, dtype=np.float64)[:, None] - eps
    return float(ok.sum() / found_sims.size)


def exact_topk(
    ref: np.ndarray, queries: np.ndarray, k: int, *, block: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact top-k inner products (cosine on unit vectors) and their ids, with numpy."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for s in range(0, len(queries), block):
        d = queries[s : s + block] @ ref.T
        part = np.argpartition(-d, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(d, part, axis=1)
        o = np.argsort(-ps, axis=1)
        ids[s : s + block] = np.take_along_axis(part, o, axis=1)
        sims[s : s + block] = np.take_along_axis(ps, o, axis=1)
    return sims, ids


def _true_sims(ref: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    out = np.full(ids.shape, -np.inf, dtype=np.float32)
    ok = ids >= 0
    rows = np.repeat(np.arange(len(ids)), ids.shape[1]).reshape(ids.shape)
    out[ok] = np.einsum("ij,ij->i", queries[rows[ok]], ref[ids[ok]])
    return out


# ------------------------------------------------------------------------------------------ measurements


def _status_kb(field_name: str) -> float:
    with Path("/proc/self/status").open() as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    return float("nan")


def peak_rss_mb() -> float:
    """Return this process's peak resident memory (``VmHWM``) in MB, or NaN where /proc is absent."""
    try:
        return _status_kb("VmHWM") / 1024
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); return whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Sample this process's anonymous and file-backed resident memory in a thread; keep the peaks (MB).

    ``VmHWM`` counts both: memory-mapped files (Qdrant's on-disk vectors, ``.npy`` memmaps) count while their
    pages are resident, although the kernel can drop them under pressure. The split says which is which.

    Examples
    --------
    >>> with RssSampler() as s:  # doctest: +SKIP
    ...     work()
    >>> s.peak_anon_mb, s.peak_file_mb  # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.1) -> None:
        import threading

        self.interval = interval
        self.peak_anon_mb = 0.0
        self.peak_file_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        """Read the current figures once."""
        try:
            anon, file = _status_kb("RssAnon") / 1024, _status_kb("RssFile") / 1024
        except OSError:
            return
        if not np.isnan(anon):  # no /proc figures on this system
            self.peak_anon_mb = max(self.peak_anon_mb, anon)
            self.peak_file_mb = max(self.peak_file_mb, file)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def dir_size_mb(path: Path) -> float:
    """Return the disk space (allocated blocks, so sparse files count what they use) under ``path`` in MB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(Path(root) / f).st_blocks * 512  # noqa: PTH116
            except OSError:
                continue
    return total / 2**20


def _ids_to_rows(ids: np.ndarray, prefix: str = "c") -> np.ndarray:
    flat = ids.ravel()
    out = np.full(flat.size, -1, dtype=np.int64)
    ok = np.array([bool(s) for s in flat], dtype=bool)
    if ok.any():
        out[ok] = np.char.lstrip(flat[ok].astype(str), prefix).astype(np.int64)
    return out.reshape(ids.shape)


def build_chunked(
    ref: AnnData,
    *,
    store: VectorStore,
    spec: CellVectorSpec,
    chunk: int,
    vectors_to: Path | None = None,
    progress: Progress | None = None,
) -> BuildRecord:
    """Build reference :data:`REFERENCE` chunk by chunk, as :func:`indexer.build_reference` would in one call.

    The real pooling (:func:`indexer.encode_cells`) and writer (:func:`indexer.upsert_cells`) run on
    ``chunk`` cells at a time, so that a million cells need a fraction of the memory of one call (which holds
    every intermediate array of every cell at once). Valid for specs that fit nothing on the reference
    (``paper`` mode without ``idf``/``whiten``/SupCon): pooling a chunk then equals pooling the whole.

    Parameters
    ----------
    ref
        Labelled reference cells (``obs['cell_type']``).
    store
        Target store (the reference must not exist yet).
    spec
        Cell vector spec.
    chunk
        Cells per chunk.
    vectors_to
        Also save the cell vectors to this ``.npy`` file (for exact search).
    progress
        Progress callback, called with ``"writing cells"``.

    Returns
    -------
    The build record of version 1, ready.
    """
    import hashlib
    from datetime import UTC, datetime

    from indexer import encode_cells
    from indexer.cells import Artifacts
    from indexer.reference import CELL_VECTOR, version_collection
    from indexer.reference._build import (
        HOUSEKEEPING_FILE,
        PAYLOAD_INDEXES,
        _default_housekeeping,
        stored_vectors,
        top_genes_of,
        upsert_rows,
        usable_rows,
    )
    from indexer.reference._versions import artifact_key, save_manifest
    from schemas import BuildRecord, ReferenceManifest

    if spec.mode != "paper" or spec.pooling.idf or spec.pooling.whiten or spec.refine.method != "none":
        msg = f"chunked builds need a spec that fits nothing on the reference (paper mode), got {spec.mode!r}"
        raise ScaleError(msg)
    n = ref.n_obs
    labels = ref.obs[LABEL_KEY].astype(str).to_numpy().astype(object)
    cell_ids = np.asarray(ref.obs_names, dtype=object)
    datasets = np.full(n, "", dtype=object)
    collection = version_collection(REFERENCE, 1)
    housekeeping = _default_housekeeping(spec, data_dir=None)
    blobs = {} if housekeeping is None else {HOUSEKEEPING_FILE: "\n".join(sorted(housekeeping)).encode()}
    out = None
    rec: BuildRecord | None = None
    kept: list[np.ndarray] = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        cells, _ = encode_cells(ref[start:stop], spec=spec, store=store, artifacts=Artifacts(),
                                housekeeping=housekeeping, with_view2=spec.stores_view2(), what="reference")
        keep = usable_rows(cells, what="reference")
        vecs = stored_vectors(cells, keep, spec=spec)
        if rec is None:
            dims = {v: int(a.shape[1]) for v, a in vecs.items()}
            rec = BuildRecord(
                reference=REFERENCE, version=1, spec=spec, dim=dims[CELL_VECTOR], text_dim=dims[CELL_VECTOR],
                label_key=LABEL_KEY, created=datetime.now(UTC), status="building",
                artifacts={f: hashlib.sha256(b).hexdigest() for f, b in blobs.items()},
            )
            save_manifest(store, ReferenceManifest(name=REFERENCE, versions=[rec]))
            for file, data in blobs.items():
                store.put_blob(artifact_key(REFERENCE, 1, file), data)
            store.create_collection(collection, vectors=dims, payload_indexes=PAYLOAD_INDEXES)
            if vectors_to is not None:
                # Plain writes, not a memmap: mapped pages would count in this process's resident memory.
                out = Path(vectors_to).open("wb")
                header = {"descr": "<f4", "fortran_order": False, "shape": (n, dims[CELL_VECTOR])}
                np.lib.format.write_array_header_1_0(out, header)
        rows = start + keep
        upsert_rows(store, collection, name=REFERENCE, vectors=vecs, cell_ids=cell_ids[rows],
                    labels=labels[rows], datasets=datasets[rows], top_genes=top_genes_of(cells, keep))
        if out is not None:
            out.write(np.ascontiguousarray(cells.final, dtype="<f4").tobytes())
        kept.append(rows)
        if progress is not None:
            progress("writing cells", stop, n)
        del cells, vecs
    if out is not None:
        out.close()
    assert rec is not None
    store.optimize(collection)
    store.flush()
    names, counts = np.unique(labels[np.concatenate(kept)].astype(str), return_counts=True)
    done = rec.model_copy(update={"n_cells": int(store.count(collection)), "status": "ready",
                                  "labels": {str(k): int(v) for k, v in zip(names, counts, strict=True)}})
    save_manifest(store, ReferenceManifest(name=REFERENCE, versions=[done], current=1))
    return done


def seed_gene_vectors(store: VectorStore, symbols: Sequence[str], encoder: str, *, cache: str | None) -> int:
    """Give ``store`` the vectors of ``symbols`` for ``encoder``; return how many texts were embedded.

    With a ``cache`` store, genes are embedded there once (only those missing) and copied into ``store``
    with their records, so that each size's build starts with every gene cached as a user's second build
    would. Without one, they are embedded into ``store`` directly.
    """
    from indexer import GeneCatalog, GeneIndex, get_encoder, open_store
    from indexer.genes import GENE_VECTOR, gene_point_id

    enc = get_encoder(encoder)
    catalog = GeneCatalog.load("human")
    if cache is None:
        index = GeneIndex(store, enc, catalog)
        index.vectors(symbols)
        return index.last_embedded
    with open_store(cache) as src:
        index = GeneIndex(src, enc, catalog)
        _, found = index.vectors(symbols)
        ids = [gene_point_id("human", s) for s, ok in zip(symbols, found, strict=True) if ok]
        points = src.retrieve(index.collection, ids, with_vectors=[GENE_VECTOR])
    dest = GeneIndex(store, enc, catalog)
    dest._ensure_collection()
    store.upsert(
        dest.collection,
        ids=[p.id for p in points],
        vectors={GENE_VECTOR: np.stack([p.vectors[GENE_VECTOR] for p in points]).astype(np.float32)},
        payloads=[p.payload for p in points],
    )
    store.flush()
    return index.last_embedded


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
    from indexer.cells import Artifacts
    from indexer.reference import version_collection
    from schemas import CellVectorSpec

    index = IndexParams.from_json(config.index)
    work = Path(config.work_dir)
    store_dir = work / f"store-n{config.n}"
    shutil.rmtree(store_dir, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    spec = CellVectorSpec(mode="paper", encoder=config.encoder_id, keep_views=False)
    row: dict[str, Any] = {"n": config.n, "queries": config.queries, "dim": config.dim, "k": config.k,
                           "encoder": config.encoder_id, "index": index.to_json()}

    symbols = pick_genes(config.n_genes)
    t = time.perf_counter()
    ref = synthetic_cells(config.n, symbols, n_classes=config.n_classes, program_size=config.program_size,
                          seed=config.seed)
    row["generate_s"] = round(time.perf_counter() - t, 2)
    row["nnz_per_cell"] = round(ref.X.nnz / max(config.n, 1), 1)

    # Warm the gene vector cache first: the benchmark measures builds with gene vectors cached.
    t = time.perf_counter()
    with open_store(store_dir, index=index) as store:
        row["genes_embedded"] = seed_gene_vectors(store, symbols, config.encoder_id, cache=config.gene_cache)
        encode_cells(ref[:100], spec=spec, store=store, what="reference")
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
    with RssSampler() as build_mem, open_store(store_dir, index=index) as store:
        if chunked:
            rec = build_chunked(ref, store=store, spec=spec, chunk=config.chunk, vectors_to=vec_path,
                                progress=progress)
        else:
            rec = build_reference(
                ref, store=store, name=REFERENCE, label_key=LABEL_KEY, spec=spec, progress=progress
            )
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
    coll_dir = store_dir / "collections" / version_collection(REFERENCE, rec.version)
    row["disk_mb"] = round(dir_size_mb(coll_dir), 1)
    row["store_disk_mb"] = round(dir_size_mb(store_dir), 1)

    # Exact reference vectors for recall and baselines: the same pooling, kept on disk while annotating.
    if not chunked:
        with open_store(store_dir, read_only=True) as store:
            cells, _ = encode_cells(ref, spec=spec, store=store, artifacts=Artifacts(), what="reference")
        np.save(vec_path, cells.final)
        del cells
    del ref
    gc.collect()

    query = synthetic_cells(config.queries, symbols, n_classes=config.n_classes,
                            program_size=config.program_size, seed=config.seed + 1, prefix="q")
    truth_labels = query.obs[LABEL_KEY].astype(str).to_numpy()
    reset_peak_rss()
    with RssSampler() as ann_mem, open_store(store_dir, index=index) as store:
        t = time.perf_counter()
        annotate(query[: min(256, config.queries)].copy(), reference=REFERENCE, store=store, k=config.k)
        row["warmup_s"] = round(time.perf_counter() - t, 2)
        # A first full pass on other query cells: the collection's pages come from disk as the graph is
        # walked (what a fresh process sees); the timed pass then measures a warm store.
        first = synthetic_cells(config.queries, symbols, n_classes=config.n_classes,
                                program_size=config.program_size, seed=config.seed + 2, prefix="f")
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
        store.query(version_collection(REFERENCE, rec.version), qv, using="cell", limit=config.k,
                    payload_fields=["label", "cell_id"])
        row["qdrant_queries_per_s"] = round(config.queries / (time.perf_counter() - t), 1)
        row["qdrant_queries_per_cpu_s"] = round(config.queries / max(time.process_time() - c, 1e-9), 1)
    row["peak_rss_annotate_mb"] = round(peak_rss_mb(), 1)
    row["peak_rss_anon_annotate_mb"] = round(ann_mem.peak_anon_mb, 1)
    row["peak_rss_mb"] = max(row["peak_rss_build_mb"], row["peak_rss_annotate_mb"])
    row["accuracy"] = round(float(np.mean(result.labels.astype(str) == truth_labels)), 4)
    _partial(config, row)
    ann_ids = _ids_to_rows(result.neighbour_ids)
    del query, result
    gc.collect()

    reset_peak_rss()
    refv = np.load(vec_path)
    _baselines(config, index, refv, qv, ann_ids, row, store_dir=store_dir)
    row["peak_rss_baselines_mb"] = round(peak_rss_mb(), 1)
    row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    row["cpus"] = os.cpu_count()
    vec_path.unlink(missing_ok=True)
    return row


def _baselines(
    config: ScaleConfig, index: IndexParams, refv: np.ndarray, qv: np.ndarray, ann_ids: np.ndarray,
    row: dict[str, Any],
    *,
    store_dir: Path | None = None,
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
        return round(recall_by_score(_true_sims(refv, qv, ids), kth), 4)

    row["recall_at_10"] = recall(ann_ids)
    row["recall_at_10_ids"] = round(recall_at_k(ann_ids, truth_ids), 4)
    if config.faiss:
        row["faiss_flat_recall_at_10"] = recall(truth_ids)
    _partial(config, row)
    if config.ef_sweep and store_dir is not None:
        from indexer import open_store
        from indexer.reference import version_collection

        collection = version_collection(REFERENCE, 1)
        with open_store(store_dir, read_only=True) as store:
            # One untimed pass first: the store was just reopened and its pages (graph, vectors and the
            # payloads read below) are cold.
            store.query(collection, qv, using="cell", limit=k, payload_fields=["cell_id"], with_ids=False,
                        hnsw_ef=max(config.ef_sweep))
            for ef in config.ef_sweep:
                t = time.perf_counter()
                res = store.query(collection, qv, using="cell", limit=k, payload_fields=["cell_id"],
                                  with_ids=False, hnsw_ef=ef)
                row[f"ef{ef}_queries_per_s"] = round(len(qv) / (time.perf_counter() - t), 1)
                cells = np.array([[h["cell_id"] for h in hits] + [""] * (k - len(hits)) for hits in res.payloads],
                                 dtype=object)
                row[f"ef{ef}_recall_at_10"] = recall(_ids_to_rows(cells))
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


def run_scale(
    sizes: Sequence[int],
    *,
    queries: int = 10_000,
    dim: int = 384,
    index: IndexParams | None = None,
    faiss: bool = True,
    sklearn: bool = True,
    work_dir: Path | None = None,
    isolate: Literal["subprocess", "none"] = "subprocess",
    **extra: Any,
) -> Iterator[dict[str, Any]]:
    """Measure each size (in a fresh subprocess by default) and yield its result row as it finishes.

    Parameters
    ----------
    sizes
        Reference sizes (cells).
    queries
        Query cells per size.
    dim
        Vector dimension of the ``random:<dim>`` gene encoder.
    index
        Reference collection settings (default :class:`indexer.IndexParams`).
    faiss
        Run the faiss baselines.
    sklearn
        Run the scikit-learn baseline.
    work_dir
        Folder for the stores (kept); default a temporary folder deleted at the end.
    isolate
        ``"subprocess"`` measures each size in a fresh interpreter (honest peak memory); ``"none"`` runs in
        this process (tests).
    **extra
        Other :class:`ScaleConfig` fields (``encoder``, ``gene_cache``, ``n_classes``, ``seed``…); the gene
        cache defaults to ``<work_dir>/genes``, shared by the sizes of a run.

    Yields
    ------
    One dict per size with at least :data:`REQUIRED_FIELDS`.
    """
    import tempfile

    index = index or IndexParams()
    for n in sizes:
        if n < queries // 100 or n < 20:
            msg = f"size {n} is too small: give sizes of at least 20 cells (and k=10 neighbours)."
            raise ScaleError(msg)
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="cellvec-scale-")
        work_dir = Path(tmp)
    extra.setdefault("gene_cache", str(Path(work_dir) / "genes"))
    try:
        for n in sizes:
            config = ScaleConfig(n=n, queries=queries, dim=dim, index=index.to_json(), faiss=faiss,
                                 sklearn=sklearn, work_dir=str(work_dir), **extra)
            if isolate == "none":
                yield run_size(config)
            else:
                yield _run_isolated(config)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run_isolated(config: ScaleConfig) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.scale._scale", json.dumps(asdict(config))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"scale run for n={config.n} failed (exit {proc.returncode}): {tail}"
        raise ScaleError(msg)
    row: dict[str, Any] = json.loads(lines[-1])
    return row


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Return the result rows side by side: one column per size, one line per figure."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k, v in r.items() if k not in keys and not isinstance(v, dict | list)]
    head = ["figure", *[f"n={r['n']:,}" for r in rows]]
    body = [[k, *[_fmt(r.get(k)) for r in rows]] for k in keys if k != "n"]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    lines = []
    for cells in [head, *body]:
        pairs = enumerate(zip(cells, widths, strict=True))
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in pairs))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def _main(argv: Sequence[str]) -> int:
    import warnings

    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = ScaleConfig(**json.loads(argv[0]))
    row = run_size(config)
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
