"""Scale benchmark: build references of growing size and measure build, memory, disk, throughput and recall.

Each size runs in a fresh Python subprocess (``python -m benchmarks.scale._scale CONFIG_JSON``) so that one size's
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

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from benchmarks.scale._build import build_chunked
from benchmarks.scale._cells import LABEL_KEY, REFERENCE, pick_genes, synthetic_cells
from benchmarks.scale._config import REQUIRED_FIELDS, ScaleConfig, ScaleError
from benchmarks.scale._exact import exact_topk, recall_by_score
from benchmarks.scale._size import run_size
from indexer import IndexParams

logger = logging.getLogger(__name__)

__all__ = [
    "LABEL_KEY",
    "REFERENCE",
    "REQUIRED_FIELDS",
    "ScaleConfig",
    "ScaleError",
    "build_chunked",
    "exact_topk",
    "format_table",
    "pick_genes",
    "recall_by_score",
    "run_scale",
    "run_size",
    "synthetic_cells",
]


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
            config = ScaleConfig(
                n=n,
                queries=queries,
                dim=dim,
                index=index.to_json(),
                faiss=faiss,
                sklearn=sklearn,
                work_dir=str(work_dir),
                **extra,
            )
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
