"""Today's majority vote, as a thin view of :func:`indexer.cells.decide` (one implementation)."""

from __future__ import annotations

import numpy as np

from indexer.cells._decide import decide


def vote(
    neighbour_codes: np.ndarray, neighbour_scores: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each row's winning label code, its vote share and the mean similarity of its voters.

    This is :func:`~indexer.cells.decide` without a calibration (SupCon's early stopping uses it).

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
    d = decide(neighbour_codes, neighbour_scores, n_labels=max(n_labels, 1))
    return d.winner, d.vote_share, d.similarity
