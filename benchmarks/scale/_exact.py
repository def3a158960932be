"""Exact search and recall for the scale benchmark: numpy top-k, recall by similarity, id helpers."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

_TIE_EPS = 1e-5


def recall_by_score(found_sims: np.ndarray, kth_exact: np.ndarray, *, eps: float = _TIE_EPS) -> float:
    """Return recall@k counting a hit when its true similarity reaches the k-th exact similarity.

    This is :func:`indexer.cells.recall_at_k` made robust to ties (duplicate or equidistant reference cells), as in
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


def exact_topk(ref: np.ndarray, queries: np.ndarray, k: int, *, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
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


def true_sims(ref: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    out = np.full(ids.shape, -np.inf, dtype=np.float32)
    ok = ids >= 0
    rows = np.repeat(np.arange(len(ids)), ids.shape[1]).reshape(ids.shape)
    out[ok] = np.einsum("ij,ij->i", queries[rows[ok]], ref[ids[ok]])
    return out


def ids_to_rows(ids: np.ndarray, prefix: str = "c") -> np.ndarray:
    flat = ids.ravel()
    out = np.full(flat.size, -1, dtype=np.int64)
    ok = np.array([bool(s) for s in flat], dtype=bool)
    if ok.any():
        out[ok] = np.char.lstrip(flat[ok].astype(str), prefix).astype(np.int64)
    return out.reshape(ids.shape)
