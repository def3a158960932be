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
  with fewer than ``min_class_calibration`` calibration cells use the pooled scores. ``p < alpha`` means
  "unlike any reference cell of <label>". It is a low-recall flag: it rejects about ``alpha`` of
  reference-like cells and, measured on left-out cell types, 10-35% of a type the reference lacks.

Pure numpy / scipy; vectorised over cells (loops run over labels or features only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from indexer._errors import InputError, StoreError

FEATURES: tuple[str, ...] = ("log_votes", "log_room", "nn_sim", "absent", "log_prior")
"""Per-label evidence features of the conditional logit."""
CALIBRATION_FILE = "calibration.json"
"""Artefact file of a reference version that holds its :class:`Calibration` (as built; an in-place edit
writes ``calibration-<sha12>.json`` and switches the build record to it, see :func:`calibration_file`)."""


def calibration_file(names: Iterable[str]) -> str | None:
    """Return the calibration artefact among a version's artefact file names (``None`` when it has none)."""
    for name in names:
        if name == CALIBRATION_FILE or (name.startswith("calibration-") and name.endswith(".json")):
            return name
    return None
SCHEMA = "cellvec.calibration/1"


# --------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Calibration:
    """What :func:`decide` needs from a reference version; stored as the JSON artefact ``calibration.json``.

    Attributes
    ----------
    labels
        Label names, in code order.
    class_sizes
        Reference cells per label (kept current by ``add_cells``/``remove_cells``/``relabel``).
    k
        Neighbours the rule uses (chosen by cross-fitted log-loss).
    theta, theta_decide
        Weights of :data:`FEATURES` of the probability model and of the class-balanced winner model.
    gamma
        Class-balance exponent of ``theta_decide``.
    means, precision
        Class means of the raw PCA scores (``n_labels × d``) and the pooled shrunk precision (``d × d``);
        ``None`` for modes without an expression view.
    cal_codes, cal_neighbours, cal_pca
        Per calibration cell: its label code, its cross-fitted mean neighbour similarity, and minus its
        out-of-fold squared Mahalanobis distance (``None`` without an expression view).
    cal_cells
        Cell ids of the calibration cells (so a refit can recompute their neighbour scores).
    method
        ``"5-fold refit"`` or ``"leave-self-out"``: how the calibration evidence was cross-fitted.
    min_class_calibration
        Labels with fewer calibration cells use the pooled scores.
    approximate
        What edits since the fit changed without refitting (empty when exact).
    info
        Diagnostics (cross-fitted log-loss per ``k``, cells used).
    """

    labels: tuple[str, ...]
    class_sizes: np.ndarray
    k: int
    theta: np.ndarray
    theta_decide: np.ndarray
    gamma: float
    means: np.ndarray | None
    precision: np.ndarray | None
    cal_codes: np.ndarray
    cal_neighbours: np.ndarray
    cal_pca: np.ndarray | None
    cal_cells: tuple[str, ...]
    method: str
    min_class_calibration: int = 50
    approximate: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_labels(self) -> int:
        """Number of label codes."""
        return len(self.labels)

    @property
    def uses_pca(self) -> bool:
        """Whether novelty needs the cells' raw PCA scores."""
        return self.means is not None

    def _tables(self) -> dict[str, Any]:
        """Sorted per-label calibration scores (computed once per object)."""
        cached = self.__dict__.get("_cache")
        if cached is not None:
            return cached
        L, m = self.n_labels, self.min_class_calibration
        codes = self.cal_codes
        nb = _by_label(self.cal_neighbours, codes, L)
        out: dict[str, Any] = {"nb": nb}
        if self.cal_pca is not None:
            pca = _by_label(self.cal_pca, codes, L)
            comb = np.log(_conformal(self.cal_neighbours, codes, nb, m)) + np.log(
                _conformal(self.cal_pca, codes, pca, m)
            )
            out |= {"pca": pca, "comb": _by_label(comb, codes, L)}
        object.__setattr__(self, "_cache", out)
        return out

    # ---------------------------------------------------------------- serialisation
    def to_json(self) -> bytes:
        """Serialise to JSON bytes (lists and numbers only; no pickle)."""
        f = _to_list
        d = {
            "schema": SCHEMA,
            "labels": list(self.labels),
            "class_sizes": [int(v) for v in self.class_sizes],
            "k": self.k,
            "theta": dict(zip(FEATURES, map(float, self.theta), strict=True)),
            "theta_decide": dict(zip(FEATURES, map(float, self.theta_decide), strict=True)),
            "gamma": self.gamma,
            "means": f(self.means),
            "precision": f(self.precision),
            "cal_codes": [int(v) for v in self.cal_codes],
            "cal_neighbours": f(self.cal_neighbours),
            "cal_pca": f(self.cal_pca),
            "cal_cells": list(self.cal_cells),
            "method": self.method,
            "min_class_calibration": self.min_class_calibration,
            "approximate": list(self.approximate),
            "info": self.info,
        }
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Calibration:
        """Inverse of :meth:`to_json`; refuses other schema versions."""
        try:
            d = json.loads(data)
        except ValueError as e:
            msg = f"the reference's calibration cannot be read ({e}); run `cellvec reference refit`."
            raise StoreError(msg) from e
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else None
            msg = f"calibration schema {got!r} is not {SCHEMA!r}; run `cellvec reference refit` to recompute it."
            raise StoreError(msg)
        a = _to_array
        return cls(
            labels=tuple(d["labels"]),
            class_sizes=np.asarray(d["class_sizes"], dtype=np.int64),
            k=int(d["k"]),
            theta=np.array([d["theta"][f] for f in FEATURES]),
            theta_decide=np.array([d["theta_decide"][f] for f in FEATURES]),
            gamma=float(d["gamma"]),
            means=a(d["means"]),
            precision=a(d["precision"]),
            cal_codes=np.asarray(d["cal_codes"], dtype=np.int64),
            cal_neighbours=np.asarray(d["cal_neighbours"], dtype=np.float64),
            cal_pca=a(d["cal_pca"]),
            cal_cells=tuple(d["cal_cells"]),
            method=str(d["method"]),
            min_class_calibration=int(d["min_class_calibration"]),
            approximate=tuple(d.get("approximate", ())),
            info=dict(d.get("info", {})),
        )

    # ---------------------------------------------------------------- edits
    def renamed(self, old: str, new: str) -> Calibration:
        """Rename label ``old`` to ``new``; when ``new`` exists the two merge (sizes add, means are averaged)."""
        if old not in self.labels:
            return self
        i = self.labels.index(old)
        if new not in self.labels:
            labels = tuple(new if lab == old else lab for lab in self.labels)
            return replace(self, labels=labels)
        j = self.labels.index(new)
        keep = [c for c in range(self.n_labels) if c != i]
        remap = np.full(self.n_labels, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        remap[i] = remap[j]
        sizes = self.class_sizes.copy()
        means = None
        if self.means is not None:
            means = self.means.copy()
            w = sizes[[i, j]].astype(np.float64)
            if w.sum() > 0:
                means[j] = (w[0] * means[i] + w[1] * means[j]) / w.sum()
            means = means[keep]
        sizes[j] += sizes[i]
        note = f"merged label '{old}' into '{new}' (weights and novelty scores not refitted)"
        return replace(
            self,
            labels=tuple(self.labels[c] for c in keep),
            class_sizes=sizes[keep],
            means=means,
            cal_codes=remap[self.cal_codes],
            approximate=(*self.approximate, note),
        )

    def with_counts(
        self, counts: dict[str, int], *, note: str, added_sums: dict[str, np.ndarray] | None = None
    ) -> Calibration:
        """Return the calibration with new class sizes (labels new to it are appended).

        ``added_sums`` (label → summed raw PCA scores of added cells) updates the class means; a new label
        without them gets the grand mean, so its Mahalanobis score is uninformative until a refit.
        """
        labels = list(self.labels)
        labels += sorted(set(counts) - set(labels))
        L = len(labels)
        old = np.zeros(L, dtype=np.int64)
        old[: self.n_labels] = self.class_sizes
        sizes = np.array([int(counts.get(lab, 0)) for lab in labels], dtype=np.int64)
        means = self.means
        if means is not None:
            grand = means.mean(axis=0) if means.size else np.zeros(means.shape[1])
            means = np.vstack([means, np.tile(grand, (L - self.n_labels, 1))])
            for lab, s in (added_sums or {}).items():
                c = labels.index(lab)
                n_add = max(int(sizes[c] - old[c]), 0)
                if n_add and c >= self.n_labels:
                    means[c] = s / n_add
                elif n_add:
                    means[c] = (old[c] * means[c] + s) / (old[c] + n_add)
        notes = self.approximate if note in self.approximate else (*self.approximate, note)
        return replace(self, labels=tuple(labels), class_sizes=sizes, means=means, approximate=notes)


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
def _to_list(a: np.ndarray | None) -> list[Any] | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def _to_array(v: list[Any] | None) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=np.float64)


def _by_label(values: np.ndarray, codes: np.ndarray, n_labels: int) -> list[np.ndarray]:
    order = np.lexsort((values, codes))
    v, c = values[order], codes[order]
    bounds = np.searchsorted(c, np.arange(n_labels + 1))
    return [v[bounds[i] : bounds[i + 1]] for i in range(n_labels)]


def _conformal(scores: np.ndarray, label: np.ndarray, table: list[np.ndarray], min_cal: int) -> np.ndarray:
    """``(1 + #{cal <= s}) / (1 + n_cal)`` against the label's sorted scores (pooled when it has few)."""
    p = np.full(len(scores), np.nan)
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


# --------------------------------------------------------------------------------------------- fitting
def fit_calibration(
    neighbour_codes: np.ndarray,
    neighbour_scores: np.ndarray,
    labels: np.ndarray,
    *,
    label_names: tuple[str, ...],
    cell_ids: np.ndarray,
    method: str,
    class_sizes: np.ndarray | None = None,
    available: np.ndarray | None = None,
    oof_distance: np.ndarray | None = None,
    means: np.ndarray | None = None,
    precision: np.ndarray | None = None,
    k: int | None = None,
    k_grid: tuple[int, ...] = (10, 15, 20, 30),
    gamma: float = 0.5,
    min_class_calibration: int = 50,
    ridge: float = 1e-3,
) -> Calibration:
    """Fit the rule on cross-fitted evidence of (a stratified sample of) reference cells.

    Parameters
    ----------
    neighbour_codes, neighbour_scores
        ``n × K`` label codes (``-1`` missing) and cosine similarities of each calibration cell's neighbours
        among reference cells that exclude it (the fold's other 4/5, or the reference without the cell).
    labels
        Label code of each calibration cell.
    label_names
        Names of the codes.
    cell_ids
        Ids of the calibration cells.
    method
        How the evidence was cross-fitted (recorded).
    class_sizes
        Cells per label in the whole reference (default: counted from ``labels``).
    available
        Cells of each label the cell's search could reach, ``n × n_labels`` (default: sizes minus itself).
    oof_distance
        Out-of-fold squared Mahalanobis distance of each cell to its own label (``None``: no PCA part).
    means, precision
        Mahalanobis model of the whole reference's raw PCA scores (needed with ``oof_distance``).
    k
        Neighbours used; ``None`` picks from ``k_grid`` by cross-fitted log-loss.
    k_grid
        Candidate ``k``.
    gamma
        Class-balance exponent of the winner (0: none, 1: every label counts equally); 0.5 measured best.
    min_class_calibration
        Labels with fewer calibration cells use the pooled scores.
    ridge
        L2 penalty on the weights.

    Returns
    -------
    The calibration.
    """
    y = np.asarray(labels, dtype=np.int64)
    L = len(label_names)
    codes, scores = _check(neighbour_codes, neighbour_scores, L)
    if not len(y) == len(codes) == len(cell_ids):
        msg = f"labels ({len(y)}), neighbour rows ({len(codes)}) and cell ids ({len(cell_ids)}) differ in length."
        raise InputError(msg)
    if not 0 <= gamma <= 1:
        msg = f"gamma must lie in [0, 1] (got {gamma}); 0.5 is the measured default."
        raise InputError(msg)
    if (oof_distance is None) != (means is None) or (means is None) != (precision is None):
        msg = "pass oof_distance, means and precision together (the PCA part), or none of them."
        raise InputError(msg)
    sample_sizes = np.bincount(y, minlength=L)
    sizes = sample_sizes if class_sizes is None else np.asarray(class_sizes, dtype=np.int64)
    if available is None:
        available = sample_sizes[None, :] - np.eye(L, dtype=np.int64)[y]
    available = np.broadcast_to(np.asarray(available), (len(y), L))
    mask = available > 0
    mask[np.arange(len(y)), y] = True  # the cell's own label is always a candidate
    grid = [k] if k is not None else [g for g in k_grid if g <= codes.shape[1]] or [codes.shape[1]]
    best: tuple[float, int, np.ndarray, dict[str, np.ndarray], np.ndarray] | None = None
    losses = {}
    for kk in grid:
        ev = _evidence(codes, scores, kk, L)
        x = _features(ev, kk, available, sizes)
        theta, loss = _fit_theta(x, y, mask, ridge, np.ones(len(y)))
        losses[kk] = loss
        if best is None or loss < best[0] - 1e-4:
            best = (loss, kk, theta, ev, x)
    assert best is not None
    _, kk, theta, ev, x = best
    weights = np.maximum(sample_sizes[y], 1).astype(np.float64) ** -gamma
    theta_decide = theta if gamma == 0 else _fit_theta(x, y, mask, ridge, weights)[0]
    meank = np.nan_to_num(ev["meank"], nan=-1.0)
    return Calibration(
        labels=tuple(label_names),
        class_sizes=sizes,
        k=kk,
        theta=theta,
        theta_decide=theta_decide,
        gamma=float(gamma),
        means=None if means is None else np.asarray(means, dtype=np.float64),
        precision=None if precision is None else np.asarray(precision, dtype=np.float64),
        cal_codes=y,
        cal_neighbours=meank,
        cal_pca=None if oof_distance is None else -np.asarray(oof_distance, dtype=np.float64),
        cal_cells=tuple(map(str, cell_ids)),
        method=method,
        min_class_calibration=min_class_calibration,
        info={"cv_log_loss": {str(g): round(v, 5) for g, v in losses.items()}, "n_cells": len(y)},
    )


# --------------------------------------------------------------------------------------------- deciding
def decide(
    codes: np.ndarray,
    scores: np.ndarray,
    *,
    calibration: Calibration | None = None,
    alpha: float = 0.01,
    pca_scores: np.ndarray | None = None,
    n_labels: int | None = None,
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
        return _vote(*_check(codes, scores, max(L, 1)))
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
    tables = cal._tables()
    m = cal.min_class_calibration
    p = _conformal(np.nan_to_num(ev["meank"], nan=-1.0), winner, tables["nb"], m)
    if cal.uses_pca:
        assert cal.means is not None
        assert cal.precision is not None
        assert pca_scores is not None
        p_pca = _conformal(
            -mahalanobis(pca_scores, winner, means=cal.means, precision=cal.precision), winner, tables["pca"], m
        )
        p = _conformal(np.log(p) + np.log(p_pca), winner, tables["comb"], m)
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


def _vote(codes: np.ndarray, scores: np.ndarray) -> Decision:
    """Majority vote, ties to the larger summed similarity (cellvec's rule before issue 14)."""
    n, k = codes.shape
    present = codes >= 0
    L = max(int(codes.max()) + 1 if codes.size else 1, 1)
    counts, sims = _counts(codes, np.where(present, scores, 0.0), L)
    # Summed similarity lies in [-k, k]; mapped into [0, 1) it breaks count ties without overriding counts.
    key = counts + (sims + k) / (2 * k + 1)
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
