"""Vectorised majority vote over the labels of each query cell's neighbours."""

from __future__ import annotations

import numpy as np


def vote(
    neighbour_codes: np.ndarray, neighbour_scores: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each row's winning label code, its vote share and the mean similarity of its voters.

    Parameters
    ----------
    neighbour_codes
        ``n × k`` label codes of the neighbours; ``-1`` marks a missing neighbour.
    neighbour_scores
        ``n × k`` cosine similarities (ignored where the code is ``-1``).
    n_labels
        Number of distinct label codes.

    Returns
    -------
    ``(winner, confidence, similarity)``; rows without any neighbour get winner ``-1``, confidence 0 and
    similarity NaN. Ties in vote count go to the label with the larger summed similarity.
    """
    n, k = neighbour_codes.shape
    present = neighbour_codes >= 0
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    counts = np.zeros((n, max(n_labels, 1)), dtype=np.float64)
    sims = np.zeros_like(counts)
    np.add.at(counts, (rows[present], neighbour_codes[present]), 1.0)
    np.add.at(sims, (rows[present], neighbour_codes[present]), neighbour_scores[present].astype(np.float64))
    # Summed similarity lies in [-k, k]; mapped into [0, 1) it breaks count ties without overriding counts.
    key = counts + (sims + k) / (2 * k + 1)
    key[counts == 0] = -1.0
    winner = np.argmax(key, axis=1)
    n_present = present.sum(axis=1)
    win_count = counts[np.arange(n), winner]
    confidence = np.divide(win_count, n_present, out=np.zeros(n), where=n_present > 0)
    similarity = np.divide(sims[np.arange(n), winner], win_count, out=np.full(n, np.nan), where=win_count > 0)
    winner = np.where(n_present > 0, winner, -1)
    return winner, confidence, similarity
