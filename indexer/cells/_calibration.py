"""The decision rule's calibration: fitted on a reference's cells only (cross-fitted), stored as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from indexer._errors import InputError, StoreError
from indexer.cells._evidence import (
    FEATURES,
    _by_label,
    _check,
    _conformal,
    _evidence,
    _features,
    _fit_theta,
    _to_array,
    _to_list,
)

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

MIN_CLASS_CALIBRATION = 100
"""Labels with fewer calibration cells are judged against the pooled scores. A label's own conformal table of
``n`` cells cannot give a p-value below ``1 / (n + 1)``: with 50 (the first default) a cell predicted as a
label of 50-99 cells could never be rejected at the default alpha 0.01, however unlike it was (measured on
voigt-coarse, where 6 of 12 types have 59-178 reference cells)."""


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
    own_neighbours, own_pca
        The same calibration cells' *in-sample* scores: mean similarity of their ``k`` nearest stored vectors,
        themselves included, and minus their squared Mahalanobis distance under the full reference's model
        (``None`` in calibrations fitted before they existed). A query that is a stored reference cell (its
        best neighbour is itself) is judged against these: the PCA and class head were fitted on it, so
        along the PCA's fitted-noise components it lies about three times farther from its label's mean than
        a cell they were not fitted on (docs/accuracy.md, "The reference's own cells").
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
    min_class_calibration: int = MIN_CLASS_CALIBRATION
    approximate: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    own_neighbours: np.ndarray | None = None
    own_pca: np.ndarray | None = None

    @property
    def n_labels(self) -> int:
        """Number of label codes."""
        return len(self.labels)

    @property
    def uses_pca(self) -> bool:
        """Whether novelty needs the cells' raw PCA scores."""
        return self.means is not None

    @property
    def has_own_scores(self) -> bool:
        """Whether queries that are stored reference cells can be judged against in-sample scores."""
        return self.own_neighbours is not None and (self.cal_pca is None or self.own_pca is not None)

    def _tables(self, *, own: bool = False) -> dict[str, Any]:
        """Sorted per-label calibration scores, cross-fitted or (``own``) in-sample; computed once per object."""
        key = "_cache_own" if own else "_cache"
        cached = self.__dict__.get(key)
        if cached is not None:
            return cached
        nb_scores, pca_scores = (self.own_neighbours, self.own_pca) if own else (self.cal_neighbours, self.cal_pca)
        if nb_scores is None:
            msg = "this calibration has no in-sample scores; run `cellvec reference refit` to recompute it."
            raise StoreError(msg)
        L, m = self.n_labels, self.min_class_calibration
        codes = self.cal_codes
        nb = _by_label(nb_scores, codes, L)
        out: dict[str, Any] = {"nb": nb}
        if self.cal_pca is not None and pca_scores is not None:
            pca = _by_label(pca_scores, codes, L)
            comb = np.log(_conformal(nb_scores, codes, nb, m)) + np.log(_conformal(pca_scores, codes, pca, m))
            out |= {"pca": pca, "comb": _by_label(comb, codes, L)}
        object.__setattr__(self, key, out)
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
            "own_neighbours": f(self.own_neighbours),
            "own_pca": f(self.own_pca),
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
            own_neighbours=a(d.get("own_neighbours")),
            own_pca=a(d.get("own_pca")),
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
    min_class_calibration: int = MIN_CLASS_CALIBRATION,
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
