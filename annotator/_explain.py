"""Why a cell got its label: the genes that pulled its vector toward the label's centroid.

Without a SupCon encoder the text part of a cell vector is a weighted sum of gene vectors, L2-normalised,
so its cosine with a label's unit centroid ``c`` splits exactly over the pooled genes:

    cos(cell, c) = sum_g  alpha * w_g * (v_g . c_text) / (||p|| * ||final||)

with ``w_g`` the pooling weight, ``v_g`` the (whitened) gene vector, ``p = sum_g w_g v_g`` the unnormalised
pooled vector, ``alpha`` the weight of the text view (1 in the text-only modes, ``sqrt(text_weight)`` in
hybrid mode) and ``final`` the fused vector. Through a SupCon encoder this is no longer linear; each gene
is then occluded (dropped, the cell re-pooled and re-encoded) and its contribution is the drop in cosine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from annotator._cell_search import label_centroids
from annotator._markers import MARKER_NOTE, marker_contributions
from annotator._result import UNKNOWN, AnnotationResult
from indexer import CellVectors, VectorStore
from indexer.cells import Artifacts
from indexer.reference import load_artifacts, version_collection

if TYPE_CHECKING:
    from indexer import SupConModel

logger = logging.getLogger(__name__)

MAX_OCCLUDED = 64
"""Occlusion tries at most this many genes per cell: those with the largest pooling weights."""

_PAIRS_PER_BATCH = 16_384

_NOTES = {
    "exact": "exact: weight x (gene vector . unit centroid) / |pooled|; the contributions sum to the cell's "
             "cosine with its label's centroid",
    "exact-text": "exact for the text view: weight x (gene vector . unit centroid) / (|pooled| |fused|); the "
                  "expression view's share of the cosine is not attributed to genes (explain_unattributed)",
    "occlusion": "occlusion: drop the gene, re-pool, re-fuse, re-encode with the SupCon encoder; "
                 "contribution = drop in the cosine with the label's centroid (not additive)",
    "none": "expression mode pools no gene vectors, so no gene is attributed",
}


def explain_labels(
    result: AnnotationResult,
    *,
    cells: CellVectors,
    store: VectorStore,
    top: int | None = 5,
    artifacts: Artifacts | None = None,
) -> None:
    """Fill ``result.explanations`` with the genes that pulled each cell most toward its predicted label.

    The label's centroid is the normalised mean of the stored (searched) vectors of its reference cells,
    computed once per predicted label. Contributions are exact in the modes without a SupCon encoder
    (``"exact"``; in hybrid mode ``"exact-text"``: exact for the text view, whose share is attributed,
    while the expression view's share is left in ``extra["explain_unattributed"]``) and by occlusion through
    a SupCon encoder (``"occlusion"``, over each cell's :data:`MAX_OCCLUDED` heaviest genes at most). Cells
    labelled ``"Unknown"`` or without a vector get an empty list.

    Fields written
    --------------
    ``result.explanations``
        Per cell, ``(gene, contribution)`` pairs sorted by decreasing contribution (at most ``top``).
    ``result.extra["explain_method"]``
        ``"exact"``, ``"exact-text"``, ``"occlusion"`` or ``"none"`` (expression mode: no pooled genes).
    ``result.extra["explain_note"]``
        One sentence saying what the contributions are.
    ``result.extra["explain_similarity"]``
        Per cell, the cosine of its vector with its label's centroid (NaN when not explained).
    ``result.extra["explain_unattributed"]``
        Per cell, the part of that cosine not attributed to any gene (0 up to rounding in ``"exact"``; NaN
        with ``"occlusion"``, which is not additive).
    ``result.extra["explain_markers"]``
        With a class head (the default hybrid mode, ``expression_head="pca+logistic"``): ``(genes,
        contributions)``, two ``n_cells × top`` arrays (padded with ``""`` and NaN) of each cell's marker
        genes, the genes whose exact share of the label's class-head score is largest
        (:func:`annotator._markers.marker_contributions`); ``extra["explain_marker_note"]`` says so.
        Unlike the text part, which favours the genes a cell expresses most (MALAT1, MT-*), these are
        the genes that weigh for the label over the others.

    Parameters
    ----------
    result
        The annotation to explain (its labels and reference record are read).
    cells
        The query cells' vectors as :func:`indexer.encode_cells` returned them for this annotation.
    store
        Store holding the reference.
    top
        Number of genes kept per cell; ``None`` keeps every pooled gene (with ``"exact"`` they then sum to
        the cell's cosine with its centroid).
    artifacts
        The reference version's artefacts when the caller has them loaded (``annotate`` does); else read here.

    Examples
    --------
    >>> result = annotate(query, reference="pbmc", store=store, explain=True)  # doctest: +SKIP
    >>> result.explanations[0][:2]  # doctest: +SKIP
    [('MS4A1', 0.21), ('CD79A', 0.17)]
    """
    n = result.labels.size
    record = result.record
    spec = record.spec
    explanations: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    similarity = np.full(n, np.nan)
    unattributed = np.full(n, np.nan)
    if cells.weights is None or cells.gene_vectors is None:
        method = "none"
    elif spec.refine.method == "supcon":
        method = "occlusion"
    else:
        method = "exact-text" if spec.mode == "hybrid" else "exact"
    result.explanations = explanations
    result.extra.update(explain_method=method, explain_note=_NOTES[method], explain_similarity=similarity,
                        explain_unattributed=unattributed)
    if artifacts is None:
        artifacts = load_artifacts(store, record)
    markers = marker_contributions(result.labels, cells=cells, projection=artifacts.expression, top=top or 5)
    if markers is not None:
        result.extra.update(explain_markers=markers, explain_marker_note=MARKER_NOTE)
    if method == "none":
        return
    assert cells.weights is not None
    assert cells.gene_vectors is not None
    labels = result.labels.astype(str)
    rows = np.flatnonzero((labels != UNKNOWN) & cells.valid)
    if rows.size == 0:
        return
    names = sorted(set(labels[rows].tolist()))
    found = label_centroids(store, version_collection(record.reference, record.version), names)
    rows = rows[np.isin(labels[rows], list(found))]
    names = [s for s in names if s in found]
    if rows.size == 0:
        return
    centroids = np.vstack([found[s] for s in names]).astype(np.float64)
    code = np.searchsorted(np.array(names, dtype=object), labels[rows])
    final = cells.final[rows].astype(np.float64)
    fnorm = np.linalg.norm(final, axis=1)
    sim = np.einsum("ij,ij->i", final, centroids[code]) / fnorm
    similarity[rows] = sim
    alpha = float(np.sqrt(spec.text_weight)) if spec.mode == "hybrid" else 1.0
    w = sp.csr_matrix(cells.weights[rows])
    w.sort_indices()
    gv = cells.gene_vectors.astype(np.float64)
    if artifacts.text is not None:
        # The projected text view is linear in the pooled vector (uncentred), so genes project the same way.
        gv = (gv - artifacts.text.mean) @ artifacts.text.components.T.astype(np.float64)
    pooled = np.asarray(w @ gv)
    pnorm = np.linalg.norm(pooled, axis=1)
    pair_row = np.repeat(np.arange(rows.size), np.diff(w.indptr))
    if method == "occlusion":
        model = artifacts.supcon
        if model is None:
            result.extra.update(explain_method="none", explain_note="the reference has no SupCon encoder")
            return
        keep = _top_per_row(pair_row, w.data, rows.size, MAX_OCCLUDED)
        pair_row, cols, weights = pair_row[keep], w.indices[keep], w.data[keep]
        values = _occlusion(
            model, cells.inputs[rows], pooled, gv, pair_row, cols, weights, centroids[code], sim, alpha=alpha
        )
    else:
        text_dim = gv.shape[1]
        # Each gene's dot product with each label's centroid, restricted to the text view's columns.
        gene_dot = gv[np.unique(w.indices)] @ centroids[:, -text_dim:].T
        slot = np.zeros(gv.shape[0], dtype=np.int64)
        slot[np.unique(w.indices)] = np.arange(gene_dot.shape[0])
        cols, weights = w.indices, w.data
        scale = alpha / np.maximum(pnorm * fnorm, 1e-30)
        values = weights * gene_dot[slot[cols], code[pair_row]] * scale[pair_row]
        unattributed[rows] = sim - np.bincount(pair_row, weights=values, minlength=rows.size)
    pair_row, genes, values = _by_symbol(pair_row, cells.symbols[cols], values)
    keep = _top_per_row(pair_row, values, rows.size, top)
    counts = np.bincount(pair_row[keep], minlength=rows.size)
    gene_lists = np.split(genes[keep], np.cumsum(counts)[:-1])
    value_lists = np.split(values[keep], np.cumsum(counts)[:-1])
    for r, g, v in zip(rows.tolist(), gene_lists, value_lists, strict=True):
        explanations[r] = list(zip(g.tolist(), v.tolist(), strict=True))


def _occlusion(
    model: SupConModel,
    inputs: np.ndarray,
    pooled: np.ndarray,
    gene_vectors: np.ndarray,
    pair_row: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    centroid: np.ndarray,
    sim: np.ndarray,
    *,
    alpha: float,
) -> np.ndarray:
    """Return, per (cell, gene) pair, the drop in cosine with the centroid when the gene is left out."""
    text_dim = gene_vectors.shape[1]
    out = np.empty(pair_row.size, dtype=np.float64)
    for start in range(0, pair_row.size, _PAIRS_PER_BATCH):
        sl = slice(start, start + _PAIRS_PER_BATCH)
        r = pair_row[sl]
        without = pooled[r] - weights[sl, None] * gene_vectors[cols[sl]]
        norms = np.linalg.norm(without, axis=1, keepdims=True)
        text = np.divide(without, norms, out=np.zeros_like(without), where=norms > 1e-12)
        x = inputs[r].astype(np.float32, copy=True)
        x[:, -text_dim:] = alpha * text
        encoded = model.encode(x).astype(np.float64)
        out[sl] = sim[r] - np.einsum("ij,ij->i", encoded, centroid[r])
    return out


def _by_symbol(
    pair_row: np.ndarray, symbols: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum the contributions of ``var`` entries that map to the same symbol within a cell."""
    names, sym_code = np.unique(symbols.astype(str), return_inverse=True)
    key = pair_row.astype(np.int64) * names.size + sym_code
    uniq, inverse = np.unique(key, return_inverse=True)
    if uniq.size == key.size:
        return pair_row, names[sym_code].astype(object), values
    summed = np.bincount(inverse, weights=values, minlength=uniq.size)
    return uniq // names.size, names[uniq % names.size].astype(object), summed


def _top_per_row(pair_row: np.ndarray, values: np.ndarray, n_rows: int, top: int | None) -> np.ndarray:
    """Return the indices of each row's ``top`` largest values, grouped by row, largest first."""
    order = np.lexsort((-values, pair_row))
    if top is None:
        return order
    sorted_rows = pair_row[order]
    starts = np.searchsorted(sorted_rows, np.arange(n_rows))
    rank = np.arange(order.size) - starts[sorted_rows]
    return order[rank < top]
