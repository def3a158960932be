"""Figures of the benchmark report: confusion matrices, 2-D embeddings and metric bars (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy._protocol import METRICS

METRIC_TITLES = {
    "accuracy": "Accuracy",
    "weighted_f1": "Weighted F1",
    "macro_f1": "Macro F1",
    "kappa": "Kappa",
}
"""Display name of each scalar metric."""


def _figure(width: float, height: float) -> Any:
    """Return a matplotlib Figure drawn by the Agg canvas; pyplot and the global backend are never touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, *, title: str, path: Path) -> None:
    """Draw a row-normalised confusion matrix with counts (the paper's Fig. 2-3).

    Parameters
    ----------
    y_true
        True labels.
    y_pred
        Predicted labels.
    title
        Figure title.
    path
        PNG to write.
    """
    from sklearn.metrics import confusion_matrix

    true_classes = list(np.unique(y_true))
    extra = [c for c in np.unique(y_pred) if c not in true_classes]
    classes = true_classes + extra
    cm = confusion_matrix(y_true, y_pred, labels=classes)[: len(true_classes)]
    rows = cm.sum(axis=1, keepdims=True)
    frac = cm / np.where(rows > 0, rows, 1)
    n = len(classes)
    fig = _figure(max(4.5, 0.45 * n + 2.5), max(4.0, 0.4 * len(true_classes) + 2.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n), [str(c)[:24] for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(true_classes)), [str(c)[:24] for c in true_classes], fontsize=7)
    for i in range(len(true_classes)):
        for j in range(n):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if frac[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def embed_2d(vectors: np.ndarray, *, use_umap: bool, seed: int = 0) -> tuple[np.ndarray, str]:
    """Project vectors to 2-D with UMAP (cosine) or, without it, PCA.

    Parameters
    ----------
    vectors
        Cell vectors.
    use_umap
        Use UMAP (slower; compiles on first use).
    seed
        Random seed.

    Returns
    -------
    Coordinates and the method's name.
    """
    x = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
    if use_umap and len(x) > 15:
        import warnings

        with warnings.catch_warnings():
            # umap-learn warns that a fixed random_state disables parallelism; that is the trade we want.
            warnings.filterwarnings("ignore", message=".*random_state.*", category=UserWarning)
            import umap

            reducer = umap.UMAP(n_neighbors=15, metric="cosine", random_state=seed, n_jobs=1)
            return np.asarray(reducer.fit_transform(x)), "UMAP"
    from sklearn.decomposition import PCA

    n = min(2, x.shape[1], len(x))
    out = PCA(n_components=n, random_state=seed).fit_transform(x)
    if out.shape[1] < 2:
        out = np.column_stack([out, np.zeros(len(out))])
    return out, "PCA"


def plot_embedding(
    coords: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, *, title: str, how: str, path: Path
) -> None:
    """Draw query cells in 2-D, coloured by true (left) and predicted (right) label.

    Parameters
    ----------
    coords
        2-D coordinates.
    y_true
        True labels.
    y_pred
        Predicted labels.
    title
        Figure title.
    how
        Projection name for the axis labels.
    path
        PNG to write.
    """
    from matplotlib import colormaps

    classes = sorted(set(y_true) | set(y_pred))
    cmap = colormaps["tab20"]
    colour = {c: cmap(i % 20) for i, c in enumerate(classes)}
    fig = _figure(11, 4.8)
    for i, (labels, sub) in enumerate(((y_true, "true label"), (y_pred, "predicted label"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for c in classes:
            sel = labels == c
            if sel.any():
                ax.scatter(coords[sel, 0], coords[sel, 1], s=4, color=colour[c], label=str(c)[:24], linewidths=0)
        ax.set_title(f"{title}: {sub}", fontsize=9)
        ax.set_xlabel(f"{how} 1")
        ax.set_ylabel(f"{how} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def plot_metric_bars(summary: dict[str, Any], *, path: Path) -> None:
    """Draw mean ± sd of every metric per method (the paper's Fig. 4).

    Parameters
    ----------
    summary
        Output of :func:`summarise`.
    path
        PNG to write.
    """
    names = [n for n, m in summary["methods"].items() if m["metrics"]["accuracy"]["values"]]
    fig = _figure(max(7.0, 0.55 * len(names) * len(METRICS) / 2), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(METRICS), 1)
    x = np.arange(len(names))
    for i, metric in enumerate(METRICS):
        means = [summary["methods"][n]["metrics"][metric]["mean"] for n in names]
        sds = [summary["methods"][n]["metrics"][metric]["sd"] for n in names]
        ax.bar(
            x + (i - (len(METRICS) - 1) / 2) * width,
            means,
            width,
            yerr=sds,
            capsize=2,
            label=METRIC_TITLES[metric],
        )
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (mean ± sd over seeds)")
    ax.legend(fontsize=7, ncols=len(METRICS), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
