"""The reference's novelty p-values read against the query's own null (issue 14).

The reference-calibrated novelty p-value (:func:`indexer.cells.decide`) is uniform for a query that is
exchangeable with the reference's cells: new cells of the same donors and chemistry. A query from another
donor lies a little farther from every reference cell, so all its p-values are smaller: measured on Voigt's
donors 1-2 → donor 3, the median p-value was 0.34 and 2.3% of the cells (every type known) fell below
α = 0.01, against 1% for new cells of the reference's donors.

Efron's empirical null (Efron 2004, "Large-scale simultaneous hypothesis testing: the choice of a null
hypothesis") reads that shift off the query itself. With ``z = Φ⁻¹(p)``, the null is taken to be
``N(δ, σ²)`` with ``δ`` the median of ``z`` and ``σ`` from the spread of its upper half (the cells least like a
missing type), ``(z₇₅ − z₅₀) / 0.6745``; the adjusted p-value is ``Φ((z − δ) / σ)``. It is only allowed to
make the test more conservative (``−0.5 ≤ δ ≤ 0``, ``1 ≤ σ ≤ 1.5``): no p-value is lowered, and a query
that is unlike the reference as a whole (another tissue) is still rejected. Like the query-density test it
assumes that most of the query's cells are of types the reference has, and it needs a query large enough for
a median (:data:`EMPIRICAL_NULL_MIN_CELLS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

EMPIRICAL_NULL_MIN_CELLS = 200
"""Fewest query cells with a novelty p-value for the adjustment (the query-density test's floor)."""
_IQR_Z = 0.6744897501960817  # Φ⁻¹(0.75): the upper quartile of N(0, 1)
MAX_SHIFT = 0.5
"""Largest ``|δ|`` read as a batch effect (measured: another donor 0.40; a missing type that is a large part of
the query moves the median too, up to 0.63). A query farther from the reference is not another donor of the
same tissue: its null is capped here, so most of it is still rejected, and ``capped`` is set."""
_MAX_SCALE = 1.5  # measured on Voigt: 1.0-1.3


@dataclass(frozen=True)
class EmpiricalNull:
    """Adjusted novelty p-values and the null they were read against.

    Attributes
    ----------
    p
        The adjusted p-values (NaN where the input was NaN).
    shift
        ``δ ≤ 0``, the null's centre on the z scale (0: no shift).
    scale
        ``σ ≥ 1``, its spread.
    applied
        Whether the query was large enough to estimate them (``p`` is the input when not).
    capped
        Whether the query's shift was beyond :data:`MAX_SHIFT` (the null was capped there).
    """

    p: np.ndarray
    shift: float
    scale: float
    applied: bool
    capped: bool = False


def empirical_null(
    p: np.ndarray, *, floor: np.ndarray | None = None, min_cells: int = EMPIRICAL_NULL_MIN_CELLS
) -> EmpiricalNull:
    """Return ``p`` read against the null fitted on its own values (see the module docstring).

    Parameters
    ----------
    p
        Novelty p-values of one query, NaN for cells without one.
    floor
        Per cell, the smallest p-value its calibration table can give (:func:`indexer.cells.novelty_floor`):
        a cell at it scored beyond every calibration cell of its label, and keeps its p-value. A conformal
        p-value of ``n`` calibration cells stops at ``1 / (n + 1)``: with 150 cells a shift of 0.15 on the z
        scale would lift the floor above α = 0.01 and no cell of that label could be rejected.
    min_cells
        Fewest finite p-values to fit the null on; fewer are returned unchanged.

    Returns
    -------
    The adjusted p-values, never smaller than ``p``, and the fitted ``δ`` and ``σ``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> shifted = ndtr(rng.normal(-0.5, 1.0, size=2000))  # every cell a little farther than the reference's
    >>> null = empirical_null(shifted)
    >>> round(null.shift, 1), bool(np.all(null.p >= shifted))
    (-0.5, True)
    """
    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(p)
    if int(ok.sum()) < max(min_cells, 2):
        return EmpiricalNull(p.copy(), 0.0, 1.0, applied=False)
    z = ndtri(np.clip(p, np.finfo(np.float64).tiny, 1.0 - 1e-16))  # finite: p = 1 maps to about 8.2
    z50, z75 = np.quantile(z[ok], [0.5, 0.75])
    capped = bool(z50 < -MAX_SHIFT)
    shift = float(np.clip(z50, -MAX_SHIFT, 0.0))
    scale = float(np.clip((z75 - z50) / _IQR_Z, 1.0, _MAX_SCALE))
    adjusted = np.where(ok, np.maximum(ndtr((z - shift) / scale), p), np.nan)
    if floor is not None:
        at_floor = ok & (p <= np.asarray(floor, dtype=np.float64) * (1.0 + 1e-9))
        adjusted[at_floor] = p[at_floor]
    return EmpiricalNull(adjusted, shift, scale, applied=True, capped=capped)
