"""The one label decision: today's vote, or a calibrated, class-balanced rule with a novelty p-value (issue 14).

:func:`decide` is used by annotation, by :func:`indexer.cells.vote` (and so SupCon's early stopping) and by the
benchmarks. Without a :class:`Calibration` it is exactly the majority vote cellvec always had (ties broken by
summed similarity). With one, fitted at build time on cross-fitted reference evidence
(:func:`fit_calibration`):

* the **probability** of a label is a conditional logit over per-label neighbour evidence (votes, the votes a
  label *could* get, nearest similarity, absence, prior), fitted by maximum likelihood on reference cells whose
  neighbours never include themselves; it is calibrated on the reference;
* the **winner** is the argmax of the same logit fitted with class-balanced weights ``n_c ** -gamma``
  (``gamma = 0.5``), so that a label with 3 reference cells holding most of a cell's neighbours is not
  out-voted by construction; its reported probability is the unweighted model's;
* the **novelty p-value** is a class-conditional conformal p-value of Fisher's combination of two scores: the
  mean similarity of the ``k`` neighbours, and (with an expression view) the squared Mahalanobis distance of the
  cell's raw PCA scores to the winner's reference mean (pooled within-class Ledoit-Wolf covariance). Labels
  with fewer than ``min_class_calibration`` calibration cells use the pooled scores. The tables are the
  calibration cells' cross-fitted scores, except for a query that is a stored reference cell (its best
  neighbour is itself): the projection was fitted on it, so it is judged against their in-sample scores.
  ``p < alpha`` means
  "unlike any reference cell of <label>". It is a low-recall flag: it rejects about ``alpha`` of
  reference-like cells and, measured on left-out cell types, 0-79% (mean about 20%) of a type the reference lacks.
  :func:`annotator.annotate` adds a second test on the query's own cells (:func:`indexer.cells.query_density`).

Pure numpy / scipy; vectorised over cells (loops run over labels or features only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer._errors import InputError
from indexer.cells._calibration import Calibration
from indexer.cells._evidence import (
    _check,
    _conformal,
    _counts,
    _evidence,
    _features,
    _softmax,
    mahalanobis,
)

SELF_SIMILARITY = 1 - 1e-4
"""A neighbour this similar is the query itself: the query is a stored reference cell (float32 cosine of a
vector with itself is 1 within 1e-6; the closest two distinct cells measured, on voigt-coarse, are at 0.9936:
``benchmarks/accuracy/exchangeability.py``)."""

# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Decision:
    """Per-cell outcome of :func:`decide` (``-1`` codes / NaN where a cell has no neighbour).

    Attributes
    ----------
    winner
        Chosen label code.
    probability
        Calibrated probability of the winner; the vote share without a calibration.
    vote_share
        Share of the present neighbours that carry the winner (today's confidence).
    similarity
        Mean cosine similarity of the neighbours that carry the winner (NaN when none does).
    runner_up, runner_up_probability
        The most probable other label and its probability (``-1``/0 when there is none).
    novelty_p
        Conformal novelty p-value (NaN without a calibration).
    rejected
        ``novelty_p < alpha``: report the cell as "Unknown".
    """

    winner: np.ndarray
    probability: np.ndarray
    vote_share: np.ndarray
    similarity: np.ndarray
    runner_up: np.ndarray
    runner_up_probability: np.ndarray
    novelty_p: np.ndarray
    rejected: np.ndarray


# --------------------------------------------------------------------------------------------- helpers


# --------------------------------------------------------------------------------------------- fitting


# --------------------------------------------------------------------------------------------- deciding
def decide(
    codes: np.ndarray,
    scores: np.ndarray,
    *,
    calibration: Calibration | None = None,
    alpha: float = 0.01,
    pca_scores: np.ndarray | None = None,
    n_labels: int | None = None,
    class_weights: np.ndarray | None = None,
) -> Decision:
    """Label cells from their neighbours: today's vote, or the calibrated rule with novelty.

    Parameters
    ----------
    codes
        ``n × K`` label codes of each cell's reference neighbours (``-1`` missing); with a calibration, codes
        index ``calibration.labels``.
    scores
        ``n × K`` cosine similarities (ignored where the code is ``-1``).
    calibration
        The reference version's calibration; ``None`` gives the majority vote (ties to the larger summed
        similarity) with the vote share as probability and no novelty.
    alpha
        Novelty level: cells with ``novelty_p < alpha`` are rejected; 0 rejects none.
    pca_scores
        ``n × d`` raw PCA scores of the cells under the reference's projection (needed when the
        calibration has a PCA part).
    n_labels
        Number of label codes without a calibration (default: the largest code + 1).
    class_weights
        Without a calibration: one weight per label code multiplying its votes (a class-balanced vote, e.g.
        ``n_c ** -gamma``); ``None`` counts every vote as 1. The vote share stays the unweighted one.

    Returns
    -------
    The decision arrays.
    """
    if not 0 <= alpha < 1:
        msg = f"alpha must lie in [0, 1) (got {alpha}); 0.01 rejects about 1% of reference-like cells."
        raise InputError(msg)
    codes = np.asarray(codes)
    if calibration is None:
        L = int(codes.max()) + 1 if n_labels is None and codes.size else int(n_labels or 0)
        if class_weights is not None:
            L = max(L, len(class_weights))
        return _vote(*_check(codes, scores, max(L, 1)), class_weights=class_weights)
    cal = calibration
    L = cal.n_labels
    c, s = _check(codes, scores, L)
    n = len(c)
    if cal.uses_pca:
        assert cal.means is not None
        if pca_scores is None or np.shape(pca_scores) != (n, cal.means.shape[1]):
            got = None if pca_scores is None else np.shape(pca_scores)
            msg = (
                f"pca_scores has shape {got}; pass the raw PCA scores of the same {n} cells under the "
                f"reference's projection ({cal.means.shape[1]} components)."
            )
            raise InputError(msg)
    k = min(cal.k, c.shape[1])
    ev = _evidence(c, s, k, L)
    x = _features(ev, k, cal.class_sizes, cal.class_sizes)
    live = cal.class_sizes > 0  # labels removed from the reference cannot win
    none = ev["n_present"] == 0
    proba = _softmax(np.where(live, x @ cal.theta, -np.inf))
    dec = np.where(live, x @ cal.theta_decide, -np.inf)
    rows = np.arange(n)
    winner = np.argmax(dec, axis=1)
    prob = proba[rows, winner]
    others = proba.copy()
    others[rows, winner] = -1.0
    runner = np.argmax(others, axis=1) if L > 1 else np.full(n, -1)
    rprob = np.where(runner >= 0, others[rows, np.maximum(runner, 0)], 0.0)
    runner = np.where((rprob >= 0) & (runner >= 0), runner, -1)
    rprob = np.maximum(rprob, 0.0)
    votes = ev["votes"][rows, winner]
    share = np.divide(votes, ev["n_present"], out=np.zeros(n), where=~none)
    sim = np.divide(ev["sims"][rows, winner], votes, out=np.full(n, np.nan), where=votes > 0)
    nb_score = np.nan_to_num(ev["meank"], nan=-1.0)
    pca_score = None
    if cal.uses_pca:
        assert cal.means is not None
        assert cal.precision is not None
        assert pca_scores is not None
        pca_score = -mahalanobis(pca_scores, winner, means=cal.means, precision=cal.precision)
    p = _novelty(cal, nb_score, pca_score, winner, own=False)
    # A query that is a stored reference cell (its best neighbour is itself) was in the fit of the PCA and the
    # head: it is exchangeable with the reference cells' in-sample scores, not with the cross-fitted ones.
    own = (np.max(s, axis=1) >= SELF_SIMILARITY) & ~none if cal.has_own_scores else np.zeros(n, dtype=bool)
    if own.any():
        p[own] = _novelty(cal, nb_score[own], None if pca_score is None else pca_score[own], winner[own], own=True)
    winner = np.where(none, -1, winner)
    runner = np.where(none, -1, runner)
    p[none] = np.nan
    rejected = (p < alpha) & ~none if alpha > 0 else np.zeros(n, dtype=bool)
    return Decision(
        winner=winner,
        probability=np.where(none, 0.0, prob),
        vote_share=share,
        similarity=sim,
        runner_up=runner,
        runner_up_probability=np.where(none, 0.0, rprob),
        novelty_p=p,
        rejected=rejected,
    )


def novelty_floor(cal: Calibration, winner: np.ndarray) -> np.ndarray:
    """Smallest novelty p-value each cell can get: ``1 / (1 + n)`` for its label's calibration table of ``n``.

    A cell at it scored beyond every calibration cell of its label (the pooled table for a label with fewer than
    ``min_class_calibration`` cells); NaN for cells without a label.
    """
    tables = cal._tables(own=False)
    table = tables["comb"] if "comb" in tables else tables["nb"]
    sizes = np.array([t.size for t in table], dtype=np.float64)
    pooled = float(sizes.sum())
    sizes = np.where(sizes >= cal.min_class_calibration, sizes, pooled)
    w = np.asarray(winner)
    return np.where(w >= 0, 1.0 / (1.0 + sizes[np.maximum(w, 0)]), np.nan)


def _novelty(
    cal: Calibration, nb_score: np.ndarray, pca_score: np.ndarray | None, winner: np.ndarray, *, own: bool
) -> np.ndarray:
    """Conformal novelty p-value against the cross-fitted (or, ``own``, the in-sample) calibration tables."""
    tables = cal._tables(own=own)
    m = cal.min_class_calibration
    p = _conformal(nb_score, winner, tables["nb"], m)
    if pca_score is not None:
        p_pca = _conformal(pca_score, winner, tables["pca"], m)
        p = _conformal(np.log(p) + np.log(p_pca), winner, tables["comb"], m)
    return p


def _vote(codes: np.ndarray, scores: np.ndarray, *, class_weights: np.ndarray | None = None) -> Decision:
    """Majority vote, ties to the larger summed similarity (cellvec's rule before issue 14), optionally weighted."""
    n, k = codes.shape
    present = codes >= 0
    L = max(int(codes.max()) + 1 if codes.size else 1, 1)
    if class_weights is not None:
        L = max(L, len(class_weights))
    counts, sims = _counts(codes, np.where(present, scores, 0.0), L)
    # Summed similarity lies in [-k, k]; mapped into [0, 1) it breaks count ties without overriding counts.
    key = counts + (sims + k) / (2 * k + 1)
    if class_weights is not None:
        w = np.ones(L)
        w[: len(class_weights)] = np.asarray(class_weights, dtype=np.float64)
        # Weighted counts are not integers: the tie-break shrinks to a fraction of the smallest weight.
        key = counts * w + (sims + k) / (2 * k + 1) * 1e-6 * float(w.min())
    key[counts == 0] = -1.0
    rows = np.arange(n)
    winner = np.argmax(key, axis=1)
    n_present = present.sum(axis=1)
    win = counts[rows, winner]
    share = np.divide(win, n_present, out=np.zeros(n), where=n_present > 0)
    sim = np.divide(sims[rows, winner], win, out=np.full(n, np.nan), where=win > 0)
    key[rows, winner] = -np.inf
    runner = np.argmax(key, axis=1) if L > 1 else np.zeros(n, dtype=np.int64)
    has_runner = (L > 1) & (counts[rows, runner] > 0)
    rshare = np.divide(counts[rows, runner], n_present, out=np.zeros(n), where=has_runner & (n_present > 0))
    none = n_present == 0
    return Decision(
        winner=np.where(none, -1, winner),
        probability=share,
        vote_share=share,
        similarity=sim,
        runner_up=np.where(has_runner & ~none, runner, -1),
        runner_up_probability=rshare,
        novelty_p=np.full(n, np.nan),
        rejected=np.zeros(n, dtype=bool),
    )
