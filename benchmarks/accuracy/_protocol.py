"""The evaluation protocol of the paper: seeded stratified split, k by cross-validation, metrics.

Everything here is plain numpy / scikit-learn and knows nothing about cellvec, so the same code scores
every method. The k-selection functions take the *reference* split only: they have no parameter through
which query cells could reach them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    recall_score,
)
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neighbors import NearestNeighbors

K_GRID: tuple[int, ...] = (4, 6, 8, 10, 12, 14)
"""Neighbour counts tried by cross-validation (the paper's Table 1)."""

METRICS: tuple[str, ...] = ("accuracy", "weighted_f1", "macro_f1", "kappa")
"""Scalar metrics reported for every method, in report order."""


def stratified_split(
    labels: Sequence[str] | np.ndarray, *, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split cells into reference and query indices, stratified by label and seeded.

    Labels with a single cell cannot be stratified; their cell goes to the reference.

    Parameters
    ----------
    labels
        One label per cell.
    test_size
        Share of cells in the query split.
    seed
        Random seed; the same seed gives the same split.

    Returns
    -------
    Sorted reference indices and sorted query indices (disjoint, covering every cell).

    Examples
    --------
    >>> ref, query = stratified_split(["a"] * 5 + ["b"] * 5, test_size=0.2, seed=0)
    >>> len(ref), len(query)
    (8, 2)
    """
    y = np.asarray(labels).astype(str)
    if not 0 < test_size < 1:
        msg = f"test_size={test_size} is not a share; expected a number strictly between 0 and 1, e.g. 0.2."
        raise ValueError(msg)
    values, counts = np.unique(y, return_counts=True)
    single = np.isin(y, values[counts < 2])
    idx = np.flatnonzero(~single)
    ref, query = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y[idx])
    ref = np.concatenate([ref, np.flatnonzero(single)])
    return np.sort(ref), np.sort(query)


def _folds(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return stratified folds; classes smaller than ``n_folds`` are spread over fewer folds."""
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes (fewer cells than folds) are expected in real references; scikit-learn warns and
        # still puts each of their cells in some fold, which is what we want.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(np.zeros(len(y)), y))


def knn_neighbours(ref_vectors: np.ndarray, query_vectors: np.ndarray, *, k: int) -> np.ndarray:
    """Return the indices of the ``k`` nearest reference rows of every query row (cosine, exact).

    Parameters
    ----------
    ref_vectors
        Reference vectors, one row per cell.
    query_vectors
        Query vectors in the same space.
    k
        Number of neighbours.

    Returns
    -------
    An ``(n_query, k)`` integer array, nearest first.
    """
    k = min(k, len(ref_vectors))
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(ref_vectors)
    return nn.kneighbors(query_vectors, return_distance=False)


def vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Return the majority label of each row; ties go to the label met first (the nearest).

    Parameters
    ----------
    neighbour_labels
        ``(n, k)`` labels of each cell's neighbours, nearest first.

    Returns
    -------
    One label per row.
    """
    classes, codes = np.unique(neighbour_labels, return_inverse=True)
    codes = codes.reshape(neighbour_labels.shape)
    n, k = codes.shape
    counts = np.zeros((n, len(classes)), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), codes.ravel()), 1)
    # Among tied labels prefer the one whose first occurrence is nearest: subtract a rank fraction.
    first = np.full((n, len(classes)), k, dtype=np.int64)
    np.minimum.at(first, (np.repeat(np.arange(n), k), codes.ravel()), np.tile(np.arange(k), n))
    score = counts - first / (k + 1)
    return classes[np.argmax(score, axis=1)]


def knn_predict(
    ref_vectors: np.ndarray, ref_labels: np.ndarray, query_vectors: np.ndarray, *, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Label query vectors by a majority vote of their ``k`` nearest reference vectors (cosine, exact).

    Parameters
    ----------
    ref_vectors
        Reference vectors.
    ref_labels
        Reference labels.
    query_vectors
        Query vectors.
    k
        Number of neighbours.

    Returns
    -------
    Predicted labels and the ``(n_query, k)`` neighbour indices.
    """
    nbrs = knn_neighbours(ref_vectors, query_vectors, k=k)
    return vote(np.asarray(ref_labels).astype(str)[nbrs]), nbrs


def cv_k_accuracy(
    ref_vectors: np.ndarray,
    ref_labels: Sequence[str] | np.ndarray,
    *,
    k_grid: Sequence[int] = K_GRID,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[int, float]:
    """Cross-validated KNN accuracy for every k, computed on the reference split only.

    One neighbour search per fold at the largest k serves every smaller k.

    Parameters
    ----------
    ref_vectors
        Reference cell vectors.
    ref_labels
        Reference labels.
    k_grid
        Neighbour counts to try.
    n_folds
        Number of stratified folds.
    seed
        Fold shuffling seed.

    Returns
    -------
    Mean accuracy over folds, by k.
    """
    y = np.asarray(ref_labels).astype(str)
    x = np.asarray(ref_vectors)
    kmax = max(k_grid)
    correct = dict.fromkeys(k_grid, 0)
    for train, held in _folds(y, n_folds, seed):
        nbrs = knn_neighbours(x[train], x[held], k=kmax)
        nlab = y[train][nbrs]
        for k in k_grid:
            correct[k] += int(np.sum(vote(nlab[:, :k]) == y[held]))
    return {k: correct[k] / len(y) for k in k_grid}


def select_k(table: dict[int, float]) -> int:
    """Return the k with the best CV accuracy (the smallest such k on ties).

    Parameters
    ----------
    table
        CV accuracy by k, as returned by :func:`cv_k_accuracy`.

    Returns
    -------
    The chosen k.
    """
    best = max(table.values())
    return min(k for k, acc in table.items() if acc == best)


@dataclass(frozen=True)
class Scores:
    """Metrics of one method on one split.

    Parameters
    ----------
    accuracy
        Share of query cells labelled correctly.
    weighted_f1
        F1 averaged over labels weighted by support.
    macro_f1
        Unweighted mean F1 over labels.
    kappa
        Cohen's kappa.
    per_class_recall
        Recall of every true query label.
    """

    accuracy: float
    weighted_f1: float
    macro_f1: float
    kappa: float
    per_class_recall: dict[str, float]

    def scalars(self) -> dict[str, float]:
        """Return the scalar metrics by name (see :data:`METRICS`)."""
        return {m: float(getattr(self, m)) for m in METRICS}


def score(y_true: Sequence[str] | np.ndarray, y_pred: Sequence[str] | np.ndarray) -> Scores:
    """Compute accuracy, weighted F1, macro F1, Cohen's kappa and per-class recall.

    F1 averages follow scikit-learn: over the union of true and predicted labels, 0 where undefined.

    Parameters
    ----------
    y_true
        True labels of the query cells.
    y_pred
        Predicted labels.

    Returns
    -------
    The scores.
    """
    t = np.asarray(y_true).astype(str)
    p = np.asarray(y_pred).astype(str)
    classes = np.unique(t)
    rec = recall_score(t, p, labels=classes, average=None, zero_division=0)
    kappa = cohen_kappa_score(t, p) if len(np.union1d(t, p)) > 1 else 1.0
    return Scores(
        accuracy=float(accuracy_score(t, p)),
        weighted_f1=float(f1_score(t, p, average="weighted", zero_division=0)),
        macro_f1=float(f1_score(t, p, average="macro", zero_division=0)),
        kappa=float(kappa),
        per_class_recall={str(c): float(r) for c, r in zip(classes, rec, strict=True)},
    )


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (0 for a single value).

    Parameters
    ----------
    values
        One value per seed.

    Returns
    -------
    Mean and standard deviation.
    """
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def recall_at_k(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Return the mean share of each row's exact neighbours that the approximate search also returned.

    Parameters
    ----------
    exact
        ``(n, k)`` exact neighbour ids.
    approximate
        ``(n, k)`` neighbour ids from the approximate index.

    Returns
    -------
    Recall@k in [0, 1].
    """
    exact = np.asarray(exact).astype(str)
    approximate = np.asarray(approximate).astype(str)
    hits = [len(set(e) & set(a)) / max(len(e), 1) for e, a in zip(exact, approximate, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")
