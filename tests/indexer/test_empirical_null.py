"""The empirical null (issue 14): a query shifted as a whole is read against its own null, a novel group is not."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from indexer.cells import EmpiricalNull, empirical_null


def _p(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    return ndtr(rng.normal(shift, 1.0, size=n))


def test_an_exchangeable_query_is_left_about_as_it_is() -> None:
    p = _p(np.random.default_rng(0), 5000)
    null = empirical_null(p)
    assert isinstance(null, EmpiricalNull)
    assert null.applied
    assert -0.1 < null.shift <= 0
    assert null.scale < 1.1
    assert abs((null.p < 0.01).mean() - (p < 0.01).mean()) <= 0.003


def test_a_shifted_query_is_rejected_at_about_alpha() -> None:
    p = _p(np.random.default_rng(1), 5000, shift=-0.4)  # every cell a little farther from the reference
    assert (p < 0.01).mean() > 0.02  # about 0.025 expected
    null = empirical_null(p)
    assert abs(null.shift + 0.4) < 0.08
    assert not null.capped
    assert 0.005 <= (null.p < 0.01).mean() <= 0.016


def test_a_novel_group_is_still_rejected() -> None:
    rng = np.random.default_rng(2)
    p = np.r_[_p(rng, 1800, shift=-0.3), np.full(200, 1e-6)]  # 10% of the query far from every reference cell
    null = empirical_null(p)
    assert (null.p[1800:] < 0.01).all()
    assert (null.p[:1800] < 0.01).mean() <= 0.015


def test_it_never_lowers_a_p_value_and_keeps_nan() -> None:
    rng = np.random.default_rng(3)
    p = _p(rng, 1000, shift=0.4)  # a query closer to the reference than its own cells: no shift the other way
    p[::10] = np.nan
    null = empirical_null(p)
    assert null.shift == 0.0
    assert null.scale >= 1.0
    ok = np.isfinite(p)
    assert (null.p[ok] >= p[ok]).all()
    assert np.isnan(null.p[~ok]).all()


def test_small_queries_and_constant_p_values() -> None:
    p = _p(np.random.default_rng(4), 150, shift=-1.0)
    small = empirical_null(p)
    assert not small.applied
    np.testing.assert_array_equal(small.p, p)
    ones = empirical_null(np.ones(500))
    assert ones.applied
    np.testing.assert_array_equal(ones.p, np.ones(500))


def test_a_query_unlike_the_reference_as_a_whole_is_still_rejected() -> None:
    p = _p(np.random.default_rng(5), 1000, shift=-5.0)  # another tissue: every cell far from the reference
    null = empirical_null(p)
    assert null.capped
    assert null.shift == -0.5
    assert (null.p < 0.01).mean() >= 0.9


def test_cells_at_their_tables_floor_keep_their_p_value() -> None:
    rng = np.random.default_rng(6)
    p = _p(rng, 1000, shift=-0.4)
    floor = np.full(p.size, 1 / 151)  # a 150-cell calibration table
    p = np.maximum(p, floor)
    null = empirical_null(p, floor=floor)
    at = p <= floor
    assert at.sum() > 0
    np.testing.assert_array_equal(null.p[at], p[at])  # beyond every calibration cell: still below 0.01
    assert (null.p[~at] > p[~at]).all()
