"""The one split, the one set of metrics and the one recall@k of cellvec.

The demo, SupCon's early stopping, the accuracy benchmark and the scale benchmark all call these, so a
figure means the same thing wherever it is printed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schemas import Scores


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
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels).astype(str)
    if not 0 < test_size < 1:
        msg = f"test_size={test_size} is not a share; expected a number strictly between 0 and 1, e.g. 0.2."
        raise ValueError(msg)
    values, counts = np.unique(y, return_counts=True)
    single = np.isin(y, values[counts < 2])
    idx = np.flatnonzero(~single)
    if idx.size == 0:
        return np.arange(y.size), np.zeros(0, dtype=np.int64)
    ref, query = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y[idx])
    ref = np.concatenate([ref, np.flatnonzero(single)])
    return np.sort(ref), np.sort(query)


def stratified_sample(labels: np.ndarray, size: int, *, seed: int = 0, floor: int = 50) -> np.ndarray:
    """Return sorted row indices of about ``size`` cells drawn per label in proportion to its count.

    Every label keeps at least ``min(count, floor)`` cells, so that rare types still reach what is fitted on
    the sample (a chunked build's artefacts, the decision rule's calibration); with ``size >= len(labels)``
    every row is returned.

    Examples
    --------
    >>> stratified_sample(np.array(["a"] * 90 + ["b"] * 10), 20, floor=5).size
    23
    """
    n = len(labels)
    if size >= n:
        return np.arange(n)
    codes, counts = np.unique(labels.astype(str), return_inverse=True, return_counts=True)[1:]
    quota = np.maximum(np.round(size * counts / n).astype(np.int64), np.minimum(counts, floor))
    rng = np.random.default_rng(seed)
    order = np.argsort(codes, kind="stable")  # rows grouped by label
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picked = [
        rng.choice(order[s : s + c], size=min(int(q), int(c)), replace=False)
        for s, c, q in zip(starts, counts, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


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

    Examples
    --------
    >>> score(["a", "a", "b"], ["a", "b", "b"]).accuracy
    0.6666666666666666
    """
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, recall_score

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


def recall_at_k(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Return the mean share of each row's exact neighbours that the approximate search also returned.

    Ids may be integers (``-1`` marks a missing hit) or strings (``""`` marks one); missing approximate
    hits never match.

    Parameters
    ----------
    exact
        ``(n, k)`` exact neighbour ids.
    approximate
        ``(n, k')`` neighbour ids from the approximate index.

    Returns
    -------
    Recall@k in [0, 1] (1 for no rows).

    Examples
    --------
    >>> recall_at_k(np.array([[3, 2, 1], [4, 9, 8]]), np.array([[1, 2, 3], [4, 5, 6]]))
    0.6666666666666666
    """
    exact = np.asarray(exact)
    approximate = np.asarray(approximate)
    if exact.size == 0:
        return 1.0
    missing = approximate == ("" if approximate.dtype.kind in "US" else -1)
    # Each exact id is compared with every approximate id of its row: (n, k, k') booleans, no Python loop.
    hit = (exact[:, :, None] == approximate[:, None, :]) & ~missing[:, None, :]
    return float(hit.any(axis=2).sum() / exact.size)
