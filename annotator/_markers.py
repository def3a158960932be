"""Marker genes of a label, exactly: each gene's share of the class head's score for the cell's label.

The default (hybrid) mode's expression view ends in a multinomial logistic head fitted on the reference's
log-expression ``x``: class ``c`` scores ``s_c = sum_g x_g W[c, g] + b_c``, and the view keeps the scores
centred over classes (only their differences carry the decision). The centred score of label ``l`` splits
exactly over genes:

    s_l - mean_c s_c = sum_g  x_g (W[l, g] - mean_c W[c, g])  +  (b_l - mean_c b_c)

so ``x_g (W[l, g] - mean_c W[c, g])`` is gene ``g``'s contribution to the label, in log-odds units. Genes
with the largest positive contributions are expressed in the cell and weigh for this label over the
others: its markers (CD79A, MS4A1 for a B cell), not the genes every cell expresses most (MALAT1, MT-*).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from annotator._result import UNKNOWN
from indexer import CellVectors
from indexer.cells import ExpressionProjection

MARKER_NOTE = (
    "marker genes: log-expression x (class-head coefficient of the label - its mean over labels); exact "
    "shares of the label's centred class-head score (log-odds), largest positive first"
)


def marker_contributions(
    labels: np.ndarray, *, cells: CellVectors, projection: ExpressionProjection | None, top: int = 5
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return, per cell, the genes that weigh most for its label in the class head, and their shares.

    Parameters
    ----------
    labels
        The label of each cell (``"Unknown"`` cells and labels the head does not know get no genes).
    cells
        The cells as :func:`indexer.encode_cells` encoded them (``cells.expression`` is read).
    projection
        The reference's expression projection; ``None`` or one without a class head gives ``None``.
    top
        Genes kept per cell.

    Returns
    -------
    ``(genes, contributions)``: ``n_cells × top`` arrays (strings and float32), padded with ``""`` and NaN
    (only genes with a positive contribution are kept); ``None`` without a class head.
    """
    if (
        projection is None
        or projection.head_coef is None
        or projection.head_genes is None
        or projection.head_classes is None
        or cells.expression is None
    ):
        return None
    n = labels.size
    genes = np.full((n, top), "", dtype=object)
    values = np.full((n, top), np.nan, dtype=np.float32)
    classes = {str(c): i for i, c in enumerate(projection.head_classes)}
    lab = labels.astype(str)
    rows = np.flatnonzero(np.isin(lab, list(classes)) & (lab != UNKNOWN) & cells.valid)
    if rows.size == 0 or top < 1:
        return genes.astype(str), values
    # The head reads the query's columns as the view does: a symbol's last column (absent genes: not expressed).
    pos = {s: i for i, s in enumerate(cells.symbols) if s}
    hcols = np.array([pos.get(g, -1) for g in projection.head_genes], dtype=np.int64)
    ok = np.flatnonzero(hcols >= 0)
    coef = projection.head_coef[:, ok].astype(np.float64)
    coef -= coef.mean(axis=0, keepdims=True)
    x = sp.csr_matrix(cells.expression[rows][:, hcols[ok]])
    x.sort_indices()
    code = np.array([classes[s] for s in lab[rows]], dtype=np.int64)
    pair_row = np.repeat(np.arange(rows.size), np.diff(x.indptr))
    contrib = x.data.astype(np.float64) * coef[code[pair_row], x.indices]
    positive = contrib > 0
    pair_row, cols, contrib = pair_row[positive], x.indices[positive], contrib[positive]
    order = np.lexsort((-contrib, pair_row))
    sorted_rows = pair_row[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_rows, np.arange(rows.size))[sorted_rows]
    keep = order[rank < top]
    r, k = pair_row[keep], rank[rank < top]
    symbols = np.asarray(projection.head_genes, dtype=object)[ok]
    genes[rows[r], k] = symbols[cols[keep]]
    values[rows[r], k] = contrib[keep]
    return genes.astype(str), values
