"""Pooling of gene vectors into cell vectors: top-N described genes, weighted mean, L2 norm.

Everything here is vectorised over cells (sparse products and whole-array sorts); the same code builds the
reference and encodes query cells, so both are pooled identically.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp

from schemas import PoolingParams

_MITO = re.compile(r"^(MT-|mt-|Mt-)")
_RIBO = re.compile(r"^(RPL|RPS|Rpl|Rps)\d")
_BLOCK_VALUES = 1 << 20
"""Values laid out at once by the top-N selection (4 MB): small enough to stay in cache and be reused."""


def looks_like_counts(x: sp.csr_matrix) -> bool:
    """Return whether the matrix holds raw counts: non-negative integers, not all zero or one.

    Log-normalised data have non-integer values; a sample of the stored values decides. cellvec's encoder
    and the benchmarks' baselines both ask this function, so they normalise the same input the same way.

    Examples
    --------
    >>> looks_like_counts(sp.csr_matrix(np.array([[0.0, 3.0, 7.0]])))
    True
    >>> looks_like_counts(sp.csr_matrix(np.array([[0.0, 1.1, 2.3]])))
    False
    """
    data = x.data[: min(x.data.size, 200_000)]
    if data.size == 0:
        return False
    return bool(data.min() >= 0 and np.all(np.equal(np.mod(data, 1), 0)) and data.max() > 1)


def log_normalise(x: sp.csr_matrix) -> sp.csr_matrix:
    """Return ln(1 + counts per 10k) for counts, or the matrix unchanged when it is already normalised."""
    if not looks_like_counts(x):
        return x
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    out = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ x)
    out.data = np.log1p(out.data).astype(np.float32)
    return out


def excluded_genes(symbols: np.ndarray, params: PoolingParams) -> np.ndarray:
    """Return a boolean mask of genes that pooling leaves out (mitochondrial and/or ribosomal)."""
    out = np.zeros(len(symbols), dtype=bool)
    if params.exclude_mito:
        out |= np.fromiter((bool(_MITO.match(s)) for s in symbols), dtype=bool, count=len(symbols))
    if params.exclude_ribo:
        out |= np.fromiter((bool(_RIBO.match(s)) for s in symbols), dtype=bool, count=len(symbols))
    return out


def top_gene_weights(
    x: sp.csr_matrix,
    usable: np.ndarray,
    *,
    top_n: int | None,
    weighting: str = "expression",
    gene_weights: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Select each cell's top-N usable expressed genes and return their pooling weights.

    Parameters
    ----------
    x
        Log-normalised expression, cells × genes, canonical CSR.
    usable
        Boolean mask over genes: those with a description vector and not excluded.
    top_n
        Number of genes kept per cell; ``None`` keeps every expressed usable gene.
    weighting
        ``"expression"`` (weight = expression value) or ``"mean"`` (equal weights).
    gene_weights
        Optional per-gene multipliers (e.g. inverse frequency), applied after selection.

    Returns
    -------
    Cells × genes CSR of non-negative weights; each row sums to 1, or is empty when the cell has no usable
    expressed gene. Ties in expression are broken by gene order (lower column index first).
    """
    x = sp.csr_matrix(x)
    if not x.has_sorted_indices:
        x = x.sorted_indices()
    # The usable, expressed entries, kept in column order.
    keep = usable[x.indices] & (x.data != 0)
    m = _select(x, keep)
    if top_n is not None and m.nnz and np.diff(m.indptr).max() > top_n:
        m = _select(m, _top_entries(m.indptr, m.data, top_n))
    w = m.copy()
    if weighting == "mean":
        w.data = np.ones_like(w.data)
    return reweight(w, gene_weights)


def reweight(weights: sp.csr_matrix, gene_weights: np.ndarray | None) -> sp.csr_matrix:
    """Multiply each selected gene's weight by ``gene_weights`` and make every non-empty row sum to 1 again.

    ``top_gene_weights(x, ..., gene_weights=g)`` equals ``reweight(top_gene_weights(x, ...), g)``: the
    selection does not depend on the gene weights, so the selected genes need not be found twice.
    """
    w = weights if gene_weights is None else sp.csr_matrix(weights @ sp.diags(gene_weights.astype(np.float32)))
    sums = np.asarray(w.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ w)


def _select(x: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """Return the CSR matrix of the stored entries where ``keep`` is true (same shape, same order)."""
    row = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    indptr = np.zeros(x.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[keep], minlength=x.shape[0]), out=indptr[1:])
    return sp.csr_matrix((x.data[keep], x.indices[keep], indptr), shape=x.shape)


def _top_entries(indptr: np.ndarray, data: np.ndarray, top_n: int) -> np.ndarray:
    """Mark each row's ``top_n`` largest entries; among equal values the earlier (lower column) ones win.

    The same selection as a stable sort by decreasing value within each row, without sorting: each row's
    ``top_n``-th largest value ``t`` comes from one partition of the rows laid side by side; every value
    above ``t`` is kept, and the first values equal to ``t`` fill the rest.
    """
    n_rows = indptr.size - 1
    lengths = np.diff(indptr)
    row = np.repeat(np.arange(n_rows), lengths)
    threshold = np.full(n_rows, -np.inf, dtype=np.float64)  # rows with at most top_n entries keep them all
    width = int(lengths.max())
    step = max(1, _BLOCK_VALUES // width)  # rows laid side by side per block, in one reused buffer
    buffer = np.empty(min(step, n_rows) * width, dtype=np.float32)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        lo, hi = indptr[start], indptr[stop]
        block = buffer[: (stop - start) * width].reshape(stop - start, width)
        block.fill(np.inf)
        block[row[lo:hi] - start, np.arange(lo, hi) - indptr[row[lo:hi]]] = -data[lo:hi]
        t = -np.partition(block, top_n - 1, axis=1)[:, top_n - 1]
        threshold[start:stop] = np.where(lengths[start:stop] > top_n, t, -np.inf)
    t = threshold[row]
    above = data > t
    tie = data == t
    room = top_n - np.bincount(row[above], minlength=n_rows)
    ties_seen = np.cumsum(tie)
    ties_before_row = np.concatenate([[0], ties_seen])[indptr[:-1]]
    tie_rank = ties_seen - ties_before_row[row]
    return above | (tie & (tie_rank <= room[row]))


def pool(weights: sp.csr_matrix, gene_vectors: np.ndarray) -> np.ndarray:
    """Return L2-normalised cell vectors ``weights @ gene_vectors``; cells without genes get zero rows."""
    pooled = np.asarray(weights @ gene_vectors, dtype=np.float32)
    return l2_normalise(pooled)


def l2_normalise(v: np.ndarray) -> np.ndarray:
    """Return rows scaled to unit length; zero rows stay zero."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).astype(np.float32, copy=False)


def top_genes_per_cell(weights: sp.csr_matrix, symbols: np.ndarray, *, limit: int = 20) -> list[list[str]]:
    """Return each cell's selected genes by decreasing weight (at most ``limit``), for payloads and reports.

    Equal weights keep the matrix's gene order. One sort over all stored values (no per-cell loop).
    """
    weights = sp.csr_matrix(weights)
    n = weights.shape[0]
    counts = np.diff(weights.indptr)
    rows = np.repeat(np.arange(n), counts)
    order = np.lexsort((-weights.data, rows))  # by cell, then by decreasing weight; stable for ties
    rank = np.arange(order.size) - np.repeat(weights.indptr[:-1], counts)
    keep = order[rank < limit]
    flat = np.asarray(symbols)[weights.indices[keep]].astype(str).tolist()
    ends = np.cumsum(np.minimum(counts, limit)).tolist()
    starts = [0, *ends][:-1]
    return [flat[a:b] for a, b in zip(starts, ends, strict=True)]


def inverse_frequency(weights: sp.csr_matrix) -> np.ndarray:
    """Return per-gene weights ``log((1 + n) / (1 + df)) + 1`` over the cells' selected genes.

    ``df`` counts the cells whose top list holds the gene: genes in almost every cell's list get weight
    near 1, specific genes more.
    """
    n = weights.shape[0]
    df = np.bincount(weights.indices, minlength=weights.shape[1]).astype(np.float64)
    return (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
