"""Issue 14: which expression-view score tells a missing cell type apart (leave-one-type-out, no store).

A quick screen of novelty scores outside the product, on the expression view alone (the PCA of the 2,000-gene
panel that ``hybrid`` builds), so that a candidate is measured before it enters :func:`indexer.cells.decide`.
For each type with at least 20 reference cells (seed 0's 80/20 split), the type is removed from the reference,
the panel and PCA are fitted on the rest, and every score is calibrated by a 5-fold refit on the reference
alone (each calibration cell scored by a fold that did not fit it). Scores (larger: more novel):

* ``mahalanobis``: squared distance of the raw PCA scores to the nearest class mean (pooled within-class
  Ledoit-Wolf covariance), the product's PCA part;
* ``residual``: squared norm of the scaled panel left off the 50 components (what the PCA cannot express);
* ``fisher``: Fisher's combination of the two p-values;
* ``class-cov``: Mahalanobis distance under the nearest class's own shrunk covariance (``n / (n + 50)`` of
  its Ledoit-Wolf estimate, the rest pooled), same winner as ``mahalanobis``;
* ``class-cov-min``: the same, minimised over classes.

p-values are pooled over labels, or with ``--per-label`` per label as the product computes them (labels with
fewer than 100 calibration cells pooled); a cell is rejected at p < 0.01.
Prints one line per left-out type (rejected missing / rejected known / AUROC per score) and the means.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.accuracy.novelty_scores --dataset voigt-coarse
"""

from __future__ import annotations

import argparse
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

    from indexer.cells._expression import ExpressionProjection

SCORES = ("mahalanobis", "residual", "fisher", "class-cov", "class-cov-min")
CLASS_SHRINK = 50
"""Cells at which a class's own covariance gets half the weight (the rest: the pooled covariance)."""


def _scores(proj: ExpressionProjection, x: sp.csr_matrix, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw PCA scores and the residual off the components, of log-normalised cells ``x``."""
    pos = {s: i for i, s in enumerate(symbols)}
    cols = np.array([pos.get(g, -1) for g in proj.genes])
    present = cols >= 0
    z = np.zeros((x.shape[0], proj.genes.size), np.float32)
    z[:, present] = (x[:, cols[present]].toarray() - proj.mean[present]) / proj.std[present]
    np.clip(z, -10, 10, out=z)
    raw = z @ proj.components.T
    return raw, (z**2).sum(axis=1) - (raw**2).sum(axis=1)


def _fit_class_cov(raw: np.ndarray, y: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    from indexer.cells._evidence import fit_mahalanobis, ledoit_wolf

    means, precision = fit_mahalanobis(raw, y, n_labels)
    pooled = np.linalg.pinv(precision, hermitian=True)
    precisions = []
    for c in range(n_labels):
        r = raw[y == c] - means[c]
        w = len(r) / (len(r) + CLASS_SHRINK)
        own = ledoit_wolf(r) if len(r) > 2 else pooled
        precisions.append(np.linalg.pinv(w * own + (1 - w) * pooled, hermitian=True))
    return means, np.array(precisions)


def _class_cov(raw: np.ndarray, label: np.ndarray, means: np.ndarray, precisions: np.ndarray) -> np.ndarray:
    d = raw - means[label]
    return np.einsum("nd,nde,ne->n", d, precisions[label], d)


def _p(
    calibration: np.ndarray,
    s: np.ndarray,
    *,
    cal_labels: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    n_labels: int = 0,
) -> np.ndarray:
    """Conformal p-value of novelty scores ``s`` (larger: more novel), pooled or, given labels, per label.

    Per label as the product does it: a label with fewer than its minimum of calibration cells is pooled.
    """
    if cal_labels is None or labels is None:
        cal = np.sort(calibration)
        return (1 + cal.size - np.searchsorted(cal, s, side="left")) / (1 + cal.size)
    from indexer.cells._calibration import MIN_CLASS_CALIBRATION
    from indexer.cells._evidence import _by_label, _conformal

    table = _by_label(-calibration, cal_labels, n_labels)
    return _conformal(-s, labels, table, MIN_CLASS_CALIBRATION)


def left_out(
    x_ref: sp.csr_matrix,
    y_ref: np.ndarray,
    x_q: sp.csr_matrix,
    y_q: np.ndarray,
    symbols: np.ndarray,
    lo: str,
    *,
    per_label: bool = False,
) -> dict[str, tuple[float, float, float]]:
    """(missing rejected, known rejected, AUROC) of every score with type ``lo`` out of the reference."""
    from benchmarks.accuracy._open_set import auroc
    from indexer.cells._evidence import fit_mahalanobis, mahalanobis
    from indexer.cells._expression import fit_expression
    from indexer.reference._calibrate import _folds
    from schemas import ExpressionParams

    params = ExpressionParams()
    keep = y_ref != lo
    xk = x_ref[keep]
    names = np.unique(y_ref[keep])
    y = np.searchsorted(names, y_ref[keep])
    L = len(names)
    fold = _folds(y, 5, 0)
    cal = {s: np.zeros(len(y)) for s in ("mahalanobis", "residual", "class-cov")}
    for f in range(5):
        tr, he = fold != f, fold == f
        raw, res = _scores(fit_expression(xk[tr], symbols, params), xk, symbols)
        m, prec = fit_mahalanobis(raw[tr], y[tr], L)
        cal["mahalanobis"][he] = mahalanobis(raw[he], y[he], means=m, precision=prec)
        cal["residual"][he] = res[he]
        mc, pc = _fit_class_cov(raw[tr], y[tr], L)
        cal["class-cov"][he] = _class_cov(raw[he], y[he], mc, pc)
    proj = fit_expression(xk, symbols, params)
    raw_k, _ = _scores(proj, xk, symbols)
    raw_q, res_q = _scores(proj, x_q, symbols)
    m, prec = fit_mahalanobis(raw_k, y, L)
    d = np.stack([mahalanobis(raw_q, np.full(len(y_q), c), means=m, precision=prec) for c in range(L)], 1)
    winner = d.argmin(axis=1)
    mc, pc = _fit_class_cov(raw_k, y, L)
    dc = np.stack([_class_cov(raw_q, np.full(len(y_q), c), mc, pc) for c in range(L)], 1)
    nearest = dc.argmin(axis=1)

    def pv(score: str, s: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if not per_label:
            return _p(cal[score], s)
        return _p(cal[score], s, cal_labels=y, labels=labels, n_labels=L)

    p_m, p_r = pv("mahalanobis", d.min(axis=1), winner), pv("residual", res_q, winner)
    cal["fisher"] = -np.log(pv("mahalanobis", cal["mahalanobis"], y)) - np.log(pv("residual", cal["residual"], y))
    p = {
        "mahalanobis": p_m,
        "residual": p_r,
        "fisher": pv("fisher", -np.log(p_m) - np.log(p_r), winner),
        "class-cov": pv("class-cov", dc[np.arange(len(y_q)), winner], winner),
        "class-cov-min": pv("class-cov", dc.min(axis=1), nearest),
    }
    missing = y_q == lo
    return {s: ((v[missing] < 0.01).mean(), (v[~missing] < 0.01).mean(), auroc(missing, -v)) for s, v in p.items()}


def _fmt(missing: float, known: float, auc: float) -> str:
    return f"{missing:.2f} {known:.3f} {auc:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Run the screen (see the module docstring)."""
    from benchmarks.accuracy import load_dataset
    from benchmarks.accuracy._open_set import _split, left_out_types
    from indexer.cells._pool import log_normalise
    from indexer.cells._validate import expression_matrix

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="voigt-coarse")
    p.add_argument("--per-label", action="store_true", help="Per-label p-values (the product's), not pooled.")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    ds = load_dataset(args.dataset)
    ref, y_ref, query, y_q = _split(ds, 0)
    symbols = np.asarray(ref.var_names).astype(str)
    x_ref = log_normalise(expression_matrix(ref, what="reference")).tocsr()
    x_q = log_normalise(expression_matrix(query, what="query")).tocsr()
    print(f"{'left out':<30}{'n':>5} | " + " | ".join(f"{s}: missing known AUROC" for s in SCORES))
    rows = []
    for lo in left_out_types(ds, seed=0):
        out = left_out(x_ref, y_ref, x_q, y_q, symbols, lo, per_label=args.per_label)
        rows.append([v for s in SCORES for v in out[s]])
        cells = " | ".join(_fmt(*out[s]) for s in SCORES)
        print(f"{lo[:30]:<30}{int((y_q == lo).sum()):>5} | {cells}", flush=True)
    mean = np.mean(rows, axis=0)
    print(f"{'mean':<35} | " + " | ".join(_fmt(*mean[3 * i : 3 * i + 3]) for i in range(len(SCORES))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
