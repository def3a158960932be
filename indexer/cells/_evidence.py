"""Evidence the decision rule reads from a cell's neighbours, and the small numeric helpers it is fitted with."""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer._errors import InputError

FEATURES: tuple[str, ...] = ("log_votes", "log_room", "nn_sim", "absent", "log_prior")
"""Per-label evidence features of the conditional logit."""


def _to_list(a: np.ndarray | None) -> list[Any] | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def _to_array(v: list[Any] | None) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=np.float64)


def _by_label(values: np.ndarray, codes: np.ndarray, n_labels: int) -> list[np.ndarray]:
    order = np.lexsort((values, codes))
    v, c = values[order], codes[order]
    bounds = np.searchsorted(c, np.arange(n_labels + 1))
    return [v[bounds[i] : bounds[i + 1]] for i in range(n_labels)]


TIE_TOLERANCE = 1e-6
"""Relative tolerance under which a score counts as equal to a calibration score. A reference cell queried as
itself meets its own in-sample score in the table; the search engine's float32 rounding (measured: a chunked
and a one-call build of the same cells, equal vectors to 1e-6) must not decide which side of it it falls."""


def _conformal(scores: np.ndarray, label: np.ndarray, table: list[np.ndarray], min_cal: int) -> np.ndarray:
    """``(1 + #{cal <= s}) / (1 + n_cal)`` against the label's sorted scores (pooled when it has few).

    ``cal <= s`` holds within :data:`TIE_TOLERANCE` (relative to ``max(1, |s|)``).
    """
    p = np.full(len(scores), np.nan)
    # Infinite and NaN scores get a finite nudge, so they stay what they are.
    scores = scores + TIE_TOLERANCE * np.maximum(1.0, np.abs(np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)))
    pooled = np.sort(np.concatenate(table)) if table else np.zeros(0)
    for c in np.unique(label[label >= 0]):  # a loop over labels, not cells
        sel = label == c
        ref = table[c] if c < len(table) and table[c].size >= min_cal else pooled
        p[sel] = (1 + np.searchsorted(ref, scores[sel], side="right")) / (1 + ref.size)
    return p


def _check(codes: np.ndarray, scores: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes)
    scores = np.asarray(scores, dtype=np.float64)
    if codes.ndim != 2 or codes.shape != scores.shape:
        msg = (
            f"neighbour codes {codes.shape} and scores {scores.shape} must be two n x k arrays of the same "
            "shape; pass one row per cell, best neighbour first."
        )
        raise InputError(msg)
    if codes.size and (codes.max() >= n_labels or codes.min() < -1):
        msg = f"neighbour codes hold values outside [-1, {n_labels - 1}]; code labels 0..n_labels-1, -1 missing."
        raise InputError(msg)
    return codes.astype(np.int64), np.where(codes >= 0, np.nan_to_num(scores, nan=-1.0), -np.inf)


def _counts(codes: np.ndarray, scores: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Votes and summed similarity per (cell, label)."""
    n, k = codes.shape
    present = codes >= 0
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    votes = np.zeros((n, max(n_labels, 1)), dtype=np.float64)
    sims = np.zeros_like(votes)
    np.add.at(votes, (rows[present], codes[present]), 1.0)
    np.add.at(sims, (rows[present], codes[present]), scores[present])
    return votes, sims


def _evidence(codes: np.ndarray, scores: np.ndarray, k: int, n_labels: int) -> dict[str, np.ndarray]:
    """Per (cell, label) neighbour evidence from the best ``k`` neighbours."""
    order = np.argsort(-scores, axis=1, kind="stable")  # missing neighbours (-inf) last
    codes = np.take_along_axis(codes, order, axis=1)[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)[:, :k]
    n = codes.shape[0]
    present = codes >= 0
    n_present = present.sum(axis=1)
    votes, sims = _counts(codes, np.where(present, scores, 0.0), n_labels)
    last = np.where(n_present > 0, scores[np.arange(n), np.maximum(n_present - 1, 0)], np.nan)
    # Nearest neighbour of each label: the first column (best first) where the label occurs.
    nn = np.full((n, max(n_labels, 1)), np.nan)
    r, j = np.nonzero(present)
    first = np.full((n, max(n_labels, 1)), k, dtype=np.int64)
    np.minimum.at(first, (r, codes[r, j]), j)
    hit = first < k
    nn[hit] = scores[np.nonzero(hit)[0], first[hit]]
    nn = np.where(hit, nn, last[:, None])
    meank = np.divide(sims.sum(axis=1), n_present, out=np.full(n, np.nan), where=n_present > 0)
    return {"votes": votes, "sims": sims, "n_present": n_present, "nn": nn, "meank": meank}


def _features(ev: dict[str, np.ndarray], k: int, room: np.ndarray, prior: np.ndarray) -> np.ndarray:
    votes = ev["votes"]
    n, L = votes.shape
    x = np.zeros((n, L, len(FEATURES)))
    x[..., 0] = np.log(votes + 0.5)
    x[..., 1] = np.log(np.minimum(np.broadcast_to(room, (n, L)), k) + 0.5)
    x[..., 2] = np.nan_to_num(ev["nn"], nan=0.0)
    x[..., 3] = votes == 0
    x[..., 4] = np.log(np.maximum(prior, 1) / max(prior.sum(), 1))[None, :]
    return x


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _fit_theta(x: np.ndarray, y: np.ndarray, mask: np.ndarray, ridge: float, w: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    rows = np.arange(len(y))
    w = w / w.mean()

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.where(mask, x @ theta, -np.inf)
        zmax = z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
        p = np.exp(z - lse[:, None])
        val = float(np.sum(w * (lse - z[rows, y]))) + ridge * float(theta @ theta)
        grad = np.einsum("n,nl,nlf->f", w, p, x) - (w[:, None] * x[rows, y]).sum(axis=0) + 2 * ridge * theta
        return val / len(y), grad / len(y)

    theta0 = np.zeros(x.shape[2])
    theta0[0] = 1.0
    res = minimize(nll, theta0, jac=True, method="L-BFGS-B")
    return res.x, float(res.fun)


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of centred rows ``x`` (scikit-learn's estimator, in numpy)."""
    n, d = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / d
    delta = ((s - mu * np.eye(d)) ** 2).sum() / d
    x2 = x**2
    beta = min(((x2.T @ x2) / n - s**2).sum() / (d * n), delta)
    shrink = 0.0 if delta == 0 else beta / delta
    return (1 - shrink) * s + shrink * mu * np.eye(d)


def fit_mahalanobis(pca_scores: np.ndarray, labels: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means (``n_labels × d``; zeros for absent labels) and the pooled within-class shrunk precision."""
    s = np.asarray(pca_scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    sums = np.zeros((n_labels, s.shape[1]))
    np.add.at(sums, y, s)
    counts = np.bincount(y, minlength=n_labels)
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    precision = np.linalg.pinv(ledoit_wolf(s - means[y]), hermitian=True)
    return means, precision


def mahalanobis(pca_scores: np.ndarray, label: np.ndarray, *, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row to the mean of its ``label``."""
    d = np.asarray(pca_scores, dtype=np.float64) - means[np.maximum(label, 0)]
    return np.einsum("nd,de,ne->n", d, precision, d)
