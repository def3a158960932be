"""The decision rule's calibration of a reference version, from the reference's own cells (issue 14).

How the evidence is cross-fitted (no reference cell ever sees itself):

* **modes with an expression view, not refined** (``expression``, ``hybrid``): a 5-fold refit, as measured in
  issue 14. For each fold the expression projection and class head are refitted on 4/5 of the calibration
  cells, the held-out 1/5 and the 4/5 are encoded with that fold's projection (the text part of ``hybrid``
  vectors is the build's: it is fitted on no label), and each held-out cell gets its exact cosine neighbours
  among the 4/5 and its squared Mahalanobis distance to its label's mean in the fold's raw PCA scores.
* **SupCon-refined modes with an expression view**: neighbours are the cell's among the other stored
  reference vectors (leave-self-out; the encoder was trained on them, so the probabilities are somewhat
  optimistic), the Mahalanobis part is the 5-fold refit of the PCA alone.
* **text-only modes** (``paper``, ``genept``): leave-self-out neighbours among the stored vectors; no
  Mahalanobis part (novelty uses the neighbour score alone).

At most ``max_cells`` cells (default 10,000) are used, stratified by label: every label keeps
``min(n_c, 50)`` cells and the rest is shared in proportion to the label sizes, so atlas builds stay fast.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from indexer.cells._calibration import Calibration, fit_calibration
from indexer.cells._evaluate import stratified_sample
from indexer.cells._evidence import fit_mahalanobis, mahalanobis
from indexer.cells._expression import fit_expression
from indexer.cells._pool import l2_normalise, log_normalise
from indexer.cells._validate import expression_matrix

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer.cells._artifacts import Artifacts
    from indexer.cells._encode import CellVectors
    from schemas import CellVectorSpec

logger = logging.getLogger(__name__)

MAX_CALIBRATION_CELLS = 10_000
"""Default cap on the reference cells used to fit a calibration."""
N_FOLDS = 5
K_MAX = 30
_MIN_PER_LABEL = 50


def _folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Stratified fold of each cell (labels dealt round-robin after a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (np.arange(idx.size) + offset) % n_folds
        offset += idx.size
    return fold


def exact_neighbours(
    queries: np.ndarray, reference: np.ndarray, k: int, *, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-``k`` rows of ``reference`` for each query row, best first.

    ``exclude`` (one reference row per query, or ``-1``) is left out: leave-self-out searches.
    """
    k = min(k, reference.shape[0] - (exclude is not None))
    ref = l2_normalise(np.asarray(reference, dtype=np.float32))
    q = l2_normalise(np.asarray(queries, dtype=np.float32))
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    sim = np.empty((q.shape[0], k), dtype=np.float32)
    step = max(1, int(2e7 // max(ref.shape[0], 1)))
    for s in range(0, q.shape[0], step):
        sims = q[s : s + step] @ ref.T
        if exclude is not None:
            rows = np.arange(sims.shape[0])
            ex = exclude[s : s + step]
            sims[rows[ex >= 0], ex[ex >= 0]] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        ts = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-ts, axis=1, kind="stable")
        idx[s : s + step] = np.take_along_axis(top, order, axis=1)
        sim[s : s + step] = np.take_along_axis(ts, order, axis=1)
    return idx, sim


def calibrate(
    adata: AnnData,
    *,
    spec: CellVectorSpec,
    cells: CellVectors,
    artifacts: Artifacts,
    rows: np.ndarray,
    labels: np.ndarray,
    cell_ids: np.ndarray,
    max_cells: int = MAX_CALIBRATION_CELLS,
) -> Calibration:
    """Fit the calibration of a new reference version from its cells (see the module docstring).

    Parameters
    ----------
    adata
        The reference cells (as given to the build).
    spec
        How they became vectors.
    cells
        Their vectors (from :func:`~indexer.cells.encode_cells` with the build's fitted artefacts).
    artifacts
        The build's artefacts.
    rows
        Rows of ``adata`` that are stored (cells with a vector).
    labels, cell_ids
        Label and id of every ``adata`` row.
    max_cells
        Cap on the cells used (stratified).

    Returns
    -------
    The calibration.
    """
    seed = spec.refine.seed
    names = tuple(sorted({str(v) for v in labels[rows]}))
    y_all = np.searchsorted(np.asarray(names), np.asarray(labels[rows]).astype(str))
    sizes = np.bincount(y_all, minlength=len(names))
    pick = stratified_sample(y_all, max_cells, seed=seed, floor=_MIN_PER_LABEL)
    sample = rows[pick]
    y = y_all[pick]
    n = sample.size
    proj = artifacts.expression
    with_pca = proj is not None and cells.pca_scores is not None
    refit_view = with_pca and spec.refine.method == "none"
    method = "5-fold refit" if refit_view else "leave-self-out"
    logger.info("calibration: %d of %d cells, %d labels, %s", n, rows.size, len(names), method)
    codes = np.full((n, K_MAX), -1, dtype=np.int64)
    scores = np.full((n, K_MAX), np.nan, dtype=np.float32)
    available = None
    if not refit_view:
        idx, sim = exact_neighbours(cells.final[sample], cells.final[rows], K_MAX, exclude=pick)
        codes[:, : idx.shape[1]], scores[:, : idx.shape[1]] = y_all[idx], sim
    oof = means = precision = None
    if with_pca:
        assert proj is not None
        assert cells.pca_scores is not None
        assert spec.expression is not None
        x = log_normalise(expression_matrix(adata[sample], what="reference"))
        symbols = cells.symbols
        text = cells.inputs[sample, proj.dim :] if spec.mode == "hybrid" else None
        we = np.sqrt(1.0 - spec.text_weight) if spec.mode == "hybrid" else 1.0
        fold = _folds(y, N_FOLDS, seed)
        oof = np.full(n, np.nan)
        available = np.zeros((n, len(names)), dtype=np.int64)
        fold_labels = np.asarray(names, dtype=object)[y] if refit_view else None
        for f in range(N_FOLDS):
            tr, he = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            if not tr.size or not he.size:
                continue
            fp = fit_expression(
                x[tr], symbols, spec.expression, labels=None if fold_labels is None else fold_labels[tr], seed=seed
            )
            view, raw = fp.transform_with_scores(x, symbols)
            m, prec = fit_mahalanobis(raw[tr], y[tr], len(names))
            d = mahalanobis(raw[he], y[he], means=m, precision=prec)
            has = np.bincount(y[tr], minlength=len(names))
            oof[he] = np.where(has[y[he]] > 0, d, np.nan)
            available[he] = has
            if refit_view:
                vec = view if text is None else np.hstack([we * view, text])
                idx, sim = exact_neighbours(vec[he], vec[tr], K_MAX)
                codes[he, : idx.shape[1]], scores[he, : idx.shape[1]] = y[tr][idx], sim
            logger.info("calibration fold %d/%d: %d held out, %d fitted", f + 1, N_FOLDS, he.size, tr.size)
        # A label absent from a fold's training part (a singleton) has no out-of-fold distance.
        ok = np.isfinite(oof)
        codes, scores, y, oof, available, sample = codes[ok], scores[ok], y[ok], oof[ok], available[ok], sample[ok]
        means, precision = fit_mahalanobis(cells.pca_scores[rows], y_all, len(names))
    if available is None:
        available = sizes[None, :] - np.eye(len(names), dtype=np.int64)[y]
    cal = fit_calibration(
        codes,
        scores,
        y,
        label_names=names,
        cell_ids=np.asarray(cell_ids)[sample],
        method=method,
        class_sizes=sizes,
        available=available,
        oof_distance=oof,
        means=means,
        precision=precision,
    )
    own_pca = None
    if means is not None and precision is not None and cells.pca_scores is not None:
        own_pca = -mahalanobis(cells.pca_scores[sample], y, means=means, precision=precision)
    cal = replace(cal, own_neighbours=own_neighbours(cells.final[sample], cells.final[rows], cal.k), own_pca=own_pca)
    logger.info("calibration: k=%d, cross-fitted log-loss %s", cal.k, cal.info.get("cv_log_loss"))
    return cal


def own_neighbours(cells: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """In-sample neighbour score of stored reference cells: mean similarity of their ``k`` nearest, self included.

    What ``annotate`` computes for a query that is one of the stored cells (its best hit is itself).
    """
    _, sim = exact_neighbours(cells, reference, k)
    return sim.astype(np.float64).mean(axis=1)


def recalibrate_neighbours(
    old: Calibration | None,
    *,
    vectors: np.ndarray,
    labels: np.ndarray,
    cell_ids: np.ndarray,
    max_cells: int = MAX_CALIBRATION_CELLS,
    seed: int = 0,
) -> Calibration:
    """Refit a calibration from stored vectors alone (``refit``: no expression data at hand).

    The neighbour evidence is recomputed leave-self-out among ``vectors``; the Mahalanobis part of ``old``
    (its class means, precision and its calibration cells' out-of-fold distances, matched by cell id) is
    kept, since refitting SupCon does not change the expression projection. Without ``old`` the result has
    no Mahalanobis part.
    """
    names = tuple(sorted({str(v) for v in labels}))
    y_all = np.searchsorted(np.asarray(names), np.asarray(labels).astype(str))
    sizes = np.bincount(y_all, minlength=len(names))
    ids = np.asarray(cell_ids).astype(str)
    oof = means = precision = own_pca = None
    if old is not None and old.cal_pca is not None and old.means is not None:
        pos = {c: i for i, c in enumerate(ids)}
        pairs = [(pos[c], i) for i, c in enumerate(old.cal_cells) if c in pos]
        pick = np.array([p for p, _ in pairs], dtype=np.int64)
        oof = -old.cal_pca[[i for _, i in pairs]]
        if old.own_pca is not None:
            own_pca = old.own_pca[[i for _, i in pairs]]
        # Class means follow the current labels (a relabel may have renamed or merged some).
        means = np.zeros((len(names), old.means.shape[1]))
        for c, lab in enumerate(names):
            if lab in old.labels:
                means[c] = old.means[old.labels.index(lab)]
        precision = old.precision
    else:
        pick = stratified_sample(y_all, max_cells, seed=seed, floor=_MIN_PER_LABEL)
    idx, sim = exact_neighbours(vectors[pick], vectors, K_MAX, exclude=pick)
    cal = fit_calibration(
        y_all[idx],
        sim,
        y_all[pick],
        label_names=names,
        cell_ids=ids[pick],
        method="leave-self-out",
        class_sizes=sizes,
        available=sizes[None, :] - np.eye(len(names), dtype=np.int64)[y_all[pick]],
        oof_distance=oof,
        means=means,
        precision=precision,
    )
    return replace(cal, own_neighbours=own_neighbours(vectors[pick], vectors, cal.k), own_pca=own_pca)
