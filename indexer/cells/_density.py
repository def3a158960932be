"""Novelty from the query's own cells: a cell whose nearest neighbours are other query cells (issue 14).

The reference-calibrated novelty test of :func:`indexer.cells.decide` asks whether a cell is unlike the
reference cells of its label. It misses a type the reference lacks when that type's cells fall inside a known
type's spread (measured: Müller glia left out of Voigt's reference, 1% of them rejected). Such cells still form
a group of their own in the query: their nearest neighbours are other query cells, where a cell of a known type
finds reference cells and query cells in proportion to their numbers.

The test: among a query cell's ``m`` nearest neighbours in the union of the reference and the query (itself
left out), count the query cells ``x``. If query and reference cells of the cell's kind were exchangeable,
``x`` would be Binomial(``m``, ``n_q / (n_q + n_r)``). They are not quite: a reference is in sample for the
projection it is stored in (its cells lie further apart than new cells do), and a query from another donor or
chemistry lies closer to itself than to the reference. Both make query cells neighbour each other more often,
for every cell alike, so the null weighs each query cell ``c ≥ 1`` times: ``π = c·n_q / (c·n_q + n_r)``, with
``c`` fitted on the query itself so that the median cell's mid-p-value is 0.5 (most of a query's cells are
assumed to be of known types; a query dominated by one missing type is not detected by this test). A cell's
p-value is ``P(X ≥ x)`` under that null.

The neighbourhood part: a group of 15-25 query cells fills only part of each cell's ``m`` neighbours, so each
count is weak alone, but the group's cells are each other's neighbours and their counts agree. Each count's
mid-p-value becomes a z-score, averaged over the cell and its mutual counted query neighbours, and read against
a null fitted on the query (:func:`_smoothed`). The test's p-value is the smaller of the two parts.

Measured before it entered the product (``benchmarks/accuracy/decision.py --left-out``; docs/accuracy.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
from scipy.special import ndtr, ndtri

from indexer.cells._empirical_null import _IQR_Z

DENSITY_NEIGHBOURS = 10
"""Neighbours ``m`` in the union of reference and query that the test counts."""
DENSITY_MIN_CELLS = 200
"""Fewest query cells (with a vector) for the test; smaller queries are not tested (p = 1): the null is
fitted on the query's own cells (measured: a 122-cell query lost 2 correct labels to it)."""
DENSITY_MIN_LABEL_CELLS = 20
"""Cells predicted as a label with fewer reference cells are not tested by :func:`annotator.annotate`: when
such a label has more query cells than its share of the reference predicts, they find each other before its
few reference cells and look like a group the reference lacks (measured: Voigt clusters cut to 3-10 reference
cells, 12-50% of their query cells rejected)."""
DENSITY_FACTOR = 3.0
"""What :func:`annotator.annotate` multiplies the test's p-value by before taking the smaller of it and the
reference's novelty p-value (a Bonferroni factor for three p-values: the reference's, the count's and the
neighbourhood's)."""
DENSITY_CANDIDATES = 5_000
"""Query cells that every cell is compared with (a seeded sample of larger queries). The comparison is a
matrix product of the query with these: measured at 10,000 query cells of 384 dimensions on one core,
20,000 candidates (all 10,000) cost 1.0 s of annotate's 3.3 s; 5,000 halve that."""
_FIT_ROWS = 20_000
_BLOCK = 2048
_BISECT = 30


@dataclass(frozen=True)
class QueryDensity:
    """The query-density novelty test of one query.

    Parameters
    ----------
    p
        Per cell, the test's p-value: the smaller of ``p_count`` and ``p_smooth`` (1 for cells not tested).
    query_neighbours
        Per cell, ``x``: how many of its ``m`` nearest neighbours are query cells (0 for cells not tested).
    inflation
        The fitted ``c`` (1: query and reference cells exchangeable).
    neighbours
        ``m``.
    candidates
        Query cells each cell was compared with.
    tested
        Whether the test ran (a query of at least ``min_cells`` cells with a vector).
    p_count
        The count's own p-value, ``P(X ≥ x)`` (1 where not tested; ``None`` when the test did not run).
    p_smooth
        The neighbourhood part's p-value (the count's evidence averaged over the cell and its mutual counted
        query neighbours); ``p`` is the smaller of the two.
    """

    p: np.ndarray
    query_neighbours: np.ndarray
    inflation: float
    neighbours: int
    candidates: int
    tested: bool
    p_count: np.ndarray | None = None
    p_smooth: np.ndarray | None = None


def _tail(x: np.ndarray, m: int, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P(X ≥ x)`` and the mid-p ``P(X > x) + P(X = x) / 2`` of Binomial(``m``, ``pi``), per row."""
    j = np.arange(m + 1)
    coef = np.array([comb(m, int(i)) for i in j], dtype=np.float64)
    pi = np.clip(pi, 0.0, 1.0)[:, None]
    pmf = coef * pi**j * (1.0 - pi) ** (m - j)
    ge = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]  # ge[:, i] = P(X >= i)
    rows = np.arange(x.size)
    at_least = ge[rows, x]
    exactly = pmf[rows, x]
    return np.minimum(at_least, 1.0), at_least - 0.5 * exactly


def _union_count(s: np.ndarray, ref: np.ndarray, m: int) -> np.ndarray:
    """Per row of query similarities ``s``, how many query cells are among the union's ``m`` best.

    ``ref`` holds each row's ``m`` best reference similarities, best first (see :func:`_union_neighbours`).
    """
    return _union_neighbours(s, ref, m)[0]


def _union_neighbours(
    s: np.ndarray, ref: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``s``, the count of query cells among the union's ``m`` best, and which they are.

    ``ref`` holds each row's ``m`` best reference similarities, best first. The j-th best query cell is among
    the union's m best when it beats the (m + 1 - j)-th best reference cell, that is, when at least j query
    cells beat that reference cell. Only similarities above a row's m-th reference one can count, and they are
    few for most cells, so they are binned against the row's reference similarities instead of sorting rows.
    Returns the counts, and the row, column and similarity of each counted query cell.
    """
    rows_n = len(s)
    flat = np.flatnonzero(s > ref[:, m - 1 : m])
    hit_rows, hit_cols = np.divmod(flat, s.shape[1])
    if hit_rows.size > 16 * m * max(rows_n, 1):  # most of the row beats the reference: sort instead
        idx = np.argpartition(s, s.shape[1] - m, axis=1)[:, -m:]
        top = np.take_along_axis(s, idx, axis=1)
        order = np.argsort(-top, axis=1)
        top, idx = np.take_along_axis(top, order, axis=1), np.take_along_axis(idx, order, axis=1)
        x = (top > ref[:, ::-1]).sum(axis=1)
        keep = np.arange(m)[None, :] < x[:, None]
        return x, np.nonzero(keep)[0], idx[keep], top[keep]
    vals = s[hit_rows, hit_cols]
    # beaten[h]: how many of its row's m reference similarities the h-th hit beats (1..m)
    beaten = (vals[:, None] > ref[hit_rows]).sum(axis=1)
    # at_least[r, i]: query cells of row r that beat its (i + 1)-th best reference similarity
    counts = np.zeros((rows_n, m + 1), dtype=np.int64)
    np.add.at(counts, (hit_rows, m - beaten), 1)
    at_least = np.cumsum(counts[:, :m], axis=1)
    j = np.arange(1, m + 1)
    x = (at_least[:, m - j] >= j).sum(axis=1)
    # the counted query cells of a row are its x best hits (hits come in row order)
    order = np.lexsort((-vals, hit_rows))
    first = np.searchsorted(hit_rows, np.arange(rows_n))
    rank = np.arange(order.size) - first[hit_rows]
    keep = order[rank < x[hit_rows]]
    return x, hit_rows[keep], hit_cols[keep], vals[keep]


def _fit_inflation(x: np.ndarray, n_q: np.ndarray, n_r: float | np.ndarray, m: int) -> float:
    """Return the smallest ``c ≥ 1`` at which at most half the cells have a mid-p-value below 0.5.

    ``n_q`` and ``n_r`` are each cell's query and reference counts of its null (``n_r`` one for all, or per cell).
    """

    def too_many(log_c: float) -> bool:
        c = np.exp(log_c)
        _, mid = _tail(x, m, c * n_q / (c * n_q + n_r))
        return bool(np.mean(mid < 0.5) > 0.5)

    lo, hi = 0.0, 16.0
    if not too_many(lo):
        return 1.0
    if too_many(hi):
        return float(np.exp(hi))
    for _ in range(_BISECT):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if too_many(mid) else (lo, mid)
    return float(np.exp(hi))


def query_density(
    vectors: np.ndarray,
    reference_scores: np.ndarray,
    *,
    n_reference: int,
    valid: np.ndarray | None = None,
    tested: np.ndarray | None = None,
    neighbours: int = DENSITY_NEIGHBOURS,
    min_cells: int = DENSITY_MIN_CELLS,
    max_candidates: int = DENSITY_CANDIDATES,
    seed: int = 0,
) -> QueryDensity:
    """Test every query cell for a neighbourhood of query cells (see the module docstring).

    Parameters
    ----------
    vectors
        Query cell vectors, ``n × d``, in the reference's space (compared by cosine).
    reference_scores
        Per cell, the cosine similarities of its nearest reference cells, best first (``n × k``; NaN where a
        neighbour is missing). The test counts ``min(neighbours, k)`` neighbours.
    n_reference
        Cells in the reference.
    valid
        Cells with a vector (default: all): every cell is compared with these; the others are not tested.
    tested
        The valid cells that get a p-value (default: all of them); the others still count as query neighbours.
    neighbours
        ``m``, the neighbours counted.
    min_cells
        Fewest valid cells for the test.
    max_candidates
        Query cells each cell is compared with; a larger query is sampled (seeded) to this many.
    seed
        Seed of that sample.

    Returns
    -------
    The p-values and what they were computed from.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref_scores = np.full((200, 10), 0.9)  # every cell has close reference neighbours
    >>> d = query_density(rng.normal(size=(200, 8)), ref_scores, n_reference=800)
    >>> bool(d.tested), bool((d.p > 0.5).all())
    (True, True)
    """
    n = len(vectors)
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    rows = np.flatnonzero(valid)
    m = min(neighbours, reference_scores.shape[1], max(rows.size - 1, 0), max_candidates - 1)
    p = np.ones(n, dtype=np.float64)
    x_all = np.zeros(n, dtype=np.int64)
    if rows.size < max(min_cells, 2) or m < 1 or n_reference < 1:
        return QueryDensity(p, x_all, 1.0, int(m), 0, tested=False)
    v = np.asarray(vectors, dtype=np.float32)[rows]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    rng = np.random.default_rng(seed)
    if rows.size > max_candidates:
        cand = np.sort(rng.choice(rows.size, size=max_candidates, replace=False))
    else:
        cand = np.arange(rows.size)
    slot = np.full(rows.size, -1)
    slot[cand] = np.arange(cand.size)
    cv = v[cand]
    ref = np.nan_to_num(np.asarray(reference_scores, dtype=np.float32)[rows, :m], nan=-np.inf)
    ref = -np.sort(-ref, axis=1)  # best first
    sel = np.arange(rows.size) if tested is None else np.flatnonzero(np.asarray(tested, dtype=bool)[rows])
    x = np.zeros(sel.size, dtype=np.int64)
    pos = np.full(rows.size, -1)
    pos[sel] = np.arange(sel.size)
    pair_from, pair_to, pair_sim = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for start in range(0, sel.size, _BLOCK):
        block = sel[start : start + _BLOCK]
        s = v[block] @ cv.T
        own = slot[block]
        mine = np.flatnonzero(own >= 0)
        s[mine, own[mine]] = -np.inf  # a cell is not its own neighbour
        x[start : start + block.size], r, col, sim = _union_neighbours(s, ref[block], m)
        pair_from.append(start + r)
        pair_to.append(pos[cand[col]])
        pair_sim.append(sim)
    n_q = np.where(slot[sel] >= 0, cand.size - 1, cand.size).astype(np.float64)
    fit = np.arange(sel.size)
    if sel.size > _FIT_ROWS:
        fit = rng.choice(sel.size, size=_FIT_ROWS, replace=False)
    c = _fit_inflation(x[fit], n_q[fit], n_reference, m) if sel.size else 1.0
    p_count, mid = _tail(x, m, c * n_q / (c * n_q + n_reference))
    src, dst, sim = np.concatenate(pair_from), np.concatenate(pair_to), np.concatenate(pair_sim)
    mutual = _mutual(x, src, dst, sim, ref[sel], m)
    p_smooth = _smoothed(mid, src[mutual], dst[mutual], fit)
    p[rows[sel]] = np.minimum(p_count, p_smooth)
    x_all[rows[sel]] = x
    parts = np.ones((2, n), dtype=np.float64)
    parts[0, rows[sel]], parts[1, rows[sel]] = p_count, p_smooth
    return QueryDensity(p, x_all, c, int(m), int(cand.size), tested=True, p_count=parts[0], p_smooth=parts[1])


def _mutual(x: np.ndarray, src: np.ndarray, dst: np.ndarray, sim: np.ndarray, ref: np.ndarray, m: int) -> np.ndarray:
    """Which counted pairs ``src → dst`` (similarity ``sim``) are mutual: ``src`` is among ``dst``'s own m nearest.

    ``x`` and ``ref`` (m best reference similarities, best first) are per tested cell; ``dst`` is -1 for a
    neighbour that is not tested. A cell's m-th best similarity in the union is the last reference or query
    cell it counts; a candidate ``src`` would be among ``dst``'s neighbours if it is at least that similar.
    """
    last = np.full(len(x), np.inf)
    np.minimum.at(last, src, sim)
    n_ref_kept = m - x
    has_ref = n_ref_kept > 0
    last[has_ref] = np.minimum(last[has_ref], ref[has_ref, n_ref_kept[has_ref] - 1])
    return (dst >= 0) & (sim >= last[np.maximum(dst, 0)])


def _smoothed(mid: np.ndarray, src: np.ndarray, dst: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Return the neighbourhood part: each cell's count evidence averaged with that of its query neighbours.

    ``mid`` holds the tested cells' mid-p-values, ``(src, dst)`` the mutual counted query neighbours among
    them (a known cell beside a group the reference lacks counts the group's cells among its neighbours, but
    they do not count it among theirs). Each mid-p-value becomes ``z = Φ⁻¹(1 − mid)``, about N(0, 1) under
    the fitted null; a cell's statistic is the mean ``z`` of itself and its neighbours. Neighbouring cells'
    counts are correlated, so the statistic's null is read off the query (the ``fit`` rows): centred on its
    median (at least 0), with the spread of its lower half, the half that a group the reference lacks does not
    reach, and at least that of the mean of the cell's terms were they independent, ``1 / √terms`` (in a small
    query most cells count no query cell and the lower half has no spread at all).
    """
    if mid.size == 0:
        return np.ones(0)
    z = ndtri(np.clip(1.0 - mid, 1e-12, 1.0 - 1e-12))
    total = z + np.bincount(src, weights=z[dst], minlength=z.size)
    terms = 1.0 + np.bincount(src, minlength=z.size)
    stat = total / terms
    q25, q50 = np.quantile(stat[fit], [0.25, 0.5])
    centre = max(0.0, float(q50))
    spread = np.maximum(float(q50 - q25) / _IQR_Z, 1.0 / np.sqrt(terms))
    return np.asarray(ndtr(-(stat - centre) / spread), dtype=np.float64)
