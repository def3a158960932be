"""Figures of an annotation: a UMAP of the query's cell vectors by label and by confidence, label counts."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from annotator._natural import natural_sorted
from annotator._result import UNKNOWN, AnnotationResult
from indexer import InputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from indexer import Progress

logger = logging.getLogger(__name__)

Embedding = Literal["auto", "umap", "pca"]

_UNKNOWN_COLOUR = "#9e9e9e"


def plot_annotation(
    result: AnnotationResult,
    out_dir: str | os.PathLike[str],
    *,
    embedding: Embedding = "auto",
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, str]:
    """Draw an annotation as PNG files in ``out_dir`` (created when its parent exists; files written atomically).

    ``umap.png`` holds two panels of the same 2-D embedding of the query's cell vectors (``result.vectors``,
    the vectors searched in the reference): cells coloured by label, and by confidence with ``Unknown``
    cells marked. ``label_counts.png`` is a bar chart of the number of cells per label. Labels are in natural
    order ("2" before "10", ``Unknown`` last) with a palette that stays distinct past 20 labels.

    Parameters
    ----------
    result
        The annotation (:func:`annotator.annotate`).
    out_dir
        Folder for the figures.
    embedding
        ``"umap"``: UMAP (umap-learn, cosine metric) of the cell vectors; ``"pca"``: their first two principal
        components; ``"auto"``: UMAP when umap-learn is installed and there are at least 10 cells with a
        vector, else PCA. The method used is in each figure's title and in the returned ``"embedding"``.
    seed
        Seed of the UMAP layout.
    progress
        Progress callback ``(step, done, total)``, called after each figure.

    Returns
    -------
    ``{"umap": path, "label_counts": path, "embedding": "umap" or "pca"}``.

    Raises
    ------
    InputError
        When ``out_dir`` exists but is not a folder, or its parent folder is missing.

    Examples
    --------
    >>> paths = plot_annotation(annotate(query, reference=ref), "figures")  # doctest: +SKIP
    >>> paths["umap"]  # doctest: +SKIP
    'figures/umap.png'
    """
    out = check_plot_dir(out_dir)
    out.mkdir(exist_ok=True)
    labels = result.labels.astype(str)
    order = natural_sorted(set(labels.tolist()))
    colours = label_colours(order)
    valid = np.linalg.norm(result.vectors, axis=1) > 0
    if progress is not None:
        progress("plotting", 0, 2)  # the UMAP layout takes a while (numba compiles on first use)
    xy, method = embed_2d(result.vectors[valid], embedding=embedding, seed=seed)

    def step(done: int) -> None:
        if progress is not None:
            progress("plotting", done, 2)

    written = {"umap": out / "umap.png", "label_counts": out / "label_counts.png"}
    _save(_umap_figure(xy, labels[valid], result.confidence[valid], order, colours, method=method,
                       n_without=int((~valid).sum())), written["umap"])
    step(1)
    _save(_counts_figure(labels, order, colours), written["label_counts"])
    step(2)
    logger.info("wrote %s and %s (%s of the cell vectors)", written["umap"], written["label_counts"], method)
    return {"umap": str(written["umap"]), "label_counts": str(written["label_counts"]), "embedding": method}


def check_plot_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a figure folder that is a file, or whose parent is missing or read-only."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        msg = f"--plot '{out}' is a file; pass a folder for the figures (it is created if missing)."
        raise InputError(msg)
    parent = out if out.is_dir() else out.parent
    if not parent.is_dir():
        msg = f"--plot '{out}': the folder '{parent}' does not exist; create it first (mkdir -p '{parent}')."
        raise InputError(msg)
    if not os.access(parent, os.W_OK | os.X_OK):
        msg = f"--plot '{out}': the folder '{parent}' is not writable; pass a folder you can write to."
        raise InputError(msg)
    return out


def label_colours(labels: list[str]) -> dict[str, str]:
    """Return a distinct colour per label (tab10; tab20, tab20b, tab20c past 9 labels), grey for ``Unknown``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    named = [s for s in labels if s != UNKNOWN]
    # The palettes' greys are left out: grey is Unknown's.
    if len(named) <= 9:
        pool = [colormaps["tab10"](i) for i in range(10) if i != 7]
    else:
        pool = [colormaps["tab20"](i) for i in range(20) if i not in (14, 15)]
        pool += [colormaps["tab20b"](i) for i in range(20)] + [colormaps["tab20c"](i) for i in range(16)]
        if len(named) > len(pool):
            pool += [colormaps["hsv"](i / (len(named) - len(pool))) for i in range(len(named) - len(pool))]
    out = {s: to_hex(pool[i]) for i, s in enumerate(named)}
    out[UNKNOWN] = _UNKNOWN_COLOUR
    return out


def embed_2d(vectors: np.ndarray, *, embedding: Embedding = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """Return a 2-D embedding of unit vectors and the method used (``"umap"`` or ``"pca"``)."""
    n = vectors.shape[0]
    if n == 0:
        return np.zeros((0, 2)), "pca"
    use_umap = embedding == "umap" or (embedding == "auto" and n >= 10 and _has_umap())
    if use_umap:
        import warnings

        with warnings.catch_warnings():
            # umap-learn warns at import that TensorFlow (ParametricUMAP only) is absent; not used here.
            warnings.simplefilter("ignore", ImportWarning)
            import umap

        model = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, n_jobs=1)
        return np.asarray(model.fit_transform(vectors), dtype=np.float64), "umap"
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    return (np.hstack([xy, np.zeros((n, 2 - xy.shape[1]))]) if xy.shape[1] < 2 else xy), "pca"


def _has_umap() -> bool:
    from importlib.util import find_spec

    return find_spec("umap") is not None


def _umap_figure(
    xy: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    order: list[str],
    colours: dict[str, str],
    *,
    method: str,
    n_without: int,
) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    name = "UMAP" if method == "umap" else "PCA"
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    ax_lab, ax_conf = fig.subplots(1, 2)
    size = max(2.0, min(30.0, 3e4 / max(len(labels), 1)))
    for lab in order:
        sel = labels == lab
        if sel.any():
            ax_lab.scatter(xy[sel, 0], xy[sel, 1], s=size, c=colours[lab], linewidths=0, rasterized=True)
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[s], label=f"{s} ({int((labels == s).sum())})")
               for s in order if (labels == s).any()]
    ax_lab.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
                  ncols=1 if len(handles) <= 25 else 2)
    ax_lab.set_title(f"label ({name} of the query's cell vectors)")
    unknown = labels == UNKNOWN
    points = ax_conf.scatter(xy[~unknown, 0], xy[~unknown, 1], s=size, c=confidence[~unknown], cmap="viridis",
                             vmin=0, vmax=1, linewidths=0, rasterized=True)
    ax_conf.scatter(xy[unknown, 0], xy[unknown, 1], s=size * 1.5, c="#d62728", marker="x", linewidths=0.8,
                    label=f"Unknown ({int(unknown.sum())})")
    if unknown.any():
        ax_conf.legend(loc="best", fontsize=8, frameon=False)
    fig.colorbar(points, ax=ax_conf, label="confidence")
    extra = f"; {n_without} cells without a vector not shown" if n_without else ""
    ax_conf.set_title(f"confidence, Unknown cells marked{extra}")
    for ax in (ax_lab, ax_conf):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{name} 1")
        ax.set_ylabel(f"{name} 2")
    return fig


def _counts_figure(labels: np.ndarray, order: list[str], colours: dict[str, str]) -> Figure:
    from matplotlib.figure import Figure

    counts = [int((labels == s).sum()) for s in order]
    fig = Figure(figsize=(max(5.0, 0.35 * len(order) + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(range(len(order)), counts, color=[colours[s] for s in order])
    ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(order)), order, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("cells")
    ax.set_title(f"cells per label ({len(labels)} cells)")
    return fig


def _save(fig: Figure, path: Path) -> None:
    """Write a figure atomically: a temporary file in the same folder, then a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=130)
        Path(tmp).chmod(0o666 & ~_umask())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
