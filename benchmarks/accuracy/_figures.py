"""Figures of the benchmark report: confusion matrices, 2-D embeddings and metric bars (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy._order import natural_sorted
from benchmarks.accuracy._protocol import METRICS

METRIC_TITLES = {
    "accuracy": "Accuracy",
    "weighted_f1": "Weighted F1",
    "macro_f1": "Macro F1",
    "kappa": "Kappa",
}
"""Display name of each scalar metric."""


_TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"
)  # fmt: skip
"""matplotlib's ``tab10``: the first ten colours of every palette, so small label sets look familiar."""

MISCLASSIFIED = "#111111"
"""Colour of misclassified cells in the error panel (correct cells are light grey): near-black, which
:func:`palette` never gives a label, so an error is not read as a label's colour."""


def _hex_rgb(colour: str) -> tuple[float, float, float]:
    return (int(colour[1:3], 16) / 255, int(colour[3:5], 16) / 255, int(colour[5:7], 16) / 255)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB colours in [0, 1] (``(n, 3)``) to CIELAB (D65), where distance tracks perceived difference.

    Parameters
    ----------
    rgb
        Colours, one per row.

    Returns
    -------
    ``(n, 3)`` L*, a*, b*.
    """
    c = np.asarray(rgb, dtype=float)
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.column_stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])])


def palette(n: int) -> list[tuple[float, float, float]]:
    """Return ``n`` distinct colours for labels: ``tab10`` first, then each next colour the farthest one left.

    Beyond ten labels, ``tab20``'s light/dark pairs and a cycled ``tab20`` make neighbouring clusters look
    alike; here every added colour maximises its CIELAB distance to those already taken (Glasbey et al.
    2007), chosen from an sRGB grid without near-white, near-black and near-grey colours, so a UMAP of
    40 labels still shows 40 colours. Deterministic.

    Parameters
    ----------
    n
        Number of labels.

    Returns
    -------
    RGB triples in [0, 1].
    """
    chosen = [_hex_rgb(c) for c in _TAB10[: max(n, 0)]]
    if n <= len(_TAB10):
        return chosen
    steps = np.linspace(0, 1, 16)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    keep = (lab[:, 0] > 25) & (lab[:, 0] < 82) & (chroma > 20)
    grid, lab = grid[keep], lab[keep]
    taken = srgb_to_lab(np.array(chosen))
    dist = np.min(np.linalg.norm(lab[:, None, :] - taken[None, :, :], axis=2), axis=1)
    while len(chosen) < n:
        i = int(np.argmax(dist))
        chosen.append((float(grid[i, 0]), float(grid[i, 1]), float(grid[i, 2])))
        dist = np.minimum(dist, np.linalg.norm(lab - lab[i], axis=1))
    return chosen


def _short(label: object, width: int = 30) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"


def _figure(width: float, height: float) -> Any:
    """Return a matplotlib Figure drawn by the Agg canvas; pyplot and the global backend are never touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, *, title: str, path: Path) -> list[str]:
    """Draw a row-normalised confusion matrix with counts and a colour bar (the paper's Fig. 2-3).

    Rows are the true labels in natural order ("2" before "10"); columns the same, then labels only
    predicted (such as "Unknown").

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

    Returns
    -------
    The column labels, in drawing order.
    """
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    true_classes = natural_sorted(y_true)
    extra = [c for c in natural_sorted(y_pred) if c not in set(true_classes)]
    classes = true_classes + extra
    cm = confusion_matrix(y_true, y_pred, labels=classes)[: len(true_classes)]
    rows = cm.sum(axis=1, keepdims=True)
    frac = cm / np.where(rows > 0, rows, 1)
    n = len(classes)
    fig = _figure(max(5.0, 0.45 * n + 3.2), max(4.0, 0.4 * len(true_classes) + 2.0))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.015, aspect=30)
    bar.set_label("share of the true label's cells", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    ax.set_xticks(range(n), [_short(c) for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(true_classes)), [_short(c) for c in true_classes], fontsize=7)
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
    return classes


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
) -> dict[str, tuple[float, float, float]]:
    """Draw query cells in 2-D: coloured by true label, by predicted label, and the misclassified cells.

    The two label panels share one legend and one :func:`palette` colour per label (natural order); the
    third panel draws correct cells in light grey and misclassified ones in near-black on top, with their count.

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

    Returns
    -------
    The colour given to each label.
    """
    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    classes = natural_sorted([*y_true, *y_pred])
    colour = dict(zip(classes, palette(len(classes)), strict=True))
    wrong = y_true != y_pred
    legend_cols = 1 if len(classes) <= 24 else 2
    size = float(np.clip(2500 / max(len(coords), 1), 3, 24))  # a few hundred cells: bigger dots
    fig = _figure(12.6 + 1.5 * legend_cols, 4.4)
    grid = fig.add_gridspec(1, 4, width_ratios=(1, 1, 1, 0.36 * legend_cols))
    panels = ((y_true, "true label"), (y_pred, "predicted label"), (None, "misclassified"))
    for i, (labels, sub) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        if labels is None:
            ax.scatter(coords[~wrong, 0], coords[~wrong, 1], s=size, color="#d0d0d0", linewidths=0, label="correct")
            ax.scatter(
                coords[wrong, 0],
                coords[wrong, 1],
                s=size * 1.5,
                color=MISCLASSIFIED,
                linewidths=0,
                label="misclassified",
            )
            share = f"{wrong.sum()} of {len(wrong)} ({wrong.mean():.0%})" if len(wrong) else "none"
            ax.set_title(f"{title}: misclassified, {share}", fontsize=9)
        else:
            for c in classes:
                sel = labels == c
                if sel.any():
                    ax.scatter(coords[sel, 0], coords[sel, 1], s=size, color=colour[c], linewidths=0)
            ax.set_title(f"{title}: {sub}", fontsize=9)
        ax.set_xlabel(f"{how} 1")
        ax.set_ylabel(f"{how} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=4, color=colour[c], label=_short(c)) for c in classes
    ]
    fig.axes[2].legend(
        handles=[
            Line2D([], [], marker="o", linestyle="", markersize=4, color="#d0d0d0", label="correct"),
            Line2D([], [], marker="o", linestyle="", markersize=4, color=MISCLASSIFIED, label="misclassified"),
        ],
        fontsize=6,
        loc="best",
        frameon=True,
        framealpha=0.8,
    )
    key = fig.add_subplot(grid[0, 3])
    key.axis("off")
    key.legend(
        handles=handles,
        fontsize=6,
        loc="center left",
        ncols=legend_cols,
        frameon=False,
        title="label",
        title_fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(path)
    return colour


def plot_metric_bars(summary: dict[str, Any], *, path: Path) -> None:
    """Draw mean ± sd of every metric per method (the paper's Fig. 4); one seed draws no error bars.

    Parameters
    ----------
    summary
        Output of :func:`summarise`.
    path
        PNG to write.
    """
    names = [n for n, m in summary["methods"].items() if m["metrics"]["accuracy"]["values"]]
    n_seeds = max((len(summary["methods"][n]["metrics"]["accuracy"]["values"]) for n in names), default=0)
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
            yerr=sds if n_seeds > 1 else None,
            capsize=2,
            label=METRIC_TITLES[metric],
        )
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"score (mean ± sd over {n_seeds} seeds)" if n_seeds > 1 else "score (1 seed)")
    ax.legend(fontsize=7, ncols=len(METRICS), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
