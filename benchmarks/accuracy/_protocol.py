"""The evaluation protocol of the paper: k by cross-validation, exact cosine KNN, summary statistics.

The split, the vote and the metrics are the product's (:func:`indexer.cells.stratified_split`,
:func:`indexer.cells.vote`, :func:`indexer.cells.score`), so every method is scored and voted the way
cellvec annotates. The k-selection functions take the *reference* split only: they have no parameter
through which query cells could reach them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors

from indexer.cells import vote

K_GRID: tuple[int, ...] = (4, 6, 8, 10, 12, 14)
"""Neighbour counts tried by cross-validation (the paper's Table 1)."""

METRICS: tuple[str, ...] = ("accuracy", "weighted_f1", "macro_f1", "kappa")
"""Scalar metrics reported for every method, in report order (those of :meth:`schemas.Scores.scalars`)."""


def _folds(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return stratified folds; classes smaller than ``n_folds`` are spread over fewer folds."""
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes (fewer cells than folds) are expected in real references; scikit-learn warns and
        # still puts each of their cells in some fold, which is what we want.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(np.zeros(len(y)), y))


def knn_neighbours(
    ref_vectors: np.ndarray, query_vectors: np.ndarray, *, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` nearest reference rows of every query row and their similarities (cosine, exact).

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
    ``(n_query, k)`` integer indices, nearest first, and their cosine similarities (1 - cosine distance).
    """
    k = min(k, len(ref_vectors))
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(ref_vectors)
    distances, indices = nn.kneighbors(query_vectors, return_distance=True)
    return indices, 1.0 - distances


def knn_predict(
    ref_vectors: np.ndarray, ref_labels: np.ndarray, query_vectors: np.ndarray, *, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Label query vectors by cellvec's vote over their ``k`` nearest reference vectors (cosine, exact).

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
    classes, codes = np.unique(np.asarray(ref_labels).astype(str), return_inverse=True)
    nbrs, sims = knn_neighbours(ref_vectors, query_vectors, k=k)
    return classes[vote(codes[nbrs], sims, len(classes))[0]], nbrs


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
    classes, codes = np.unique(y, return_inverse=True)
    x = np.asarray(ref_vectors)
    kmax = max(k_grid)
    correct = dict.fromkeys(k_grid, 0)
    for train, held in _folds(y, n_folds, seed):
        nbrs, sims = knn_neighbours(x[train], x[held], k=kmax)
        ncodes = codes[train][nbrs]
        for k in k_grid:
            winner = vote(ncodes[:, :k], sims[:, :k], len(classes))[0]
            correct[k] += int(np.sum(winner == codes[held]))
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
