"""The query-density novelty test (issue 14): a group of query cells apart from the reference is found."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.cells import QueryDensity, query_density


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clusters(n: int, centres: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    which = rng.integers(len(centres), size=n)
    return _unit(centres[which] + spread * rng.normal(size=(n, centres.shape[1])))


def _ref_scores(query: np.ndarray, ref: np.ndarray, k: int = 10) -> np.ndarray:
    s = query @ ref.T
    return -np.sort(-s, axis=1)[:, :k]


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, np.ndarray]:
    """Four well separated cell types in 16 dimensions, and a fifth inside the first one's spread."""
    centres = 3.0 * np.eye(16)[:4]
    novel = centres[0] + 0.9 * np.eye(16)[8]  # closer to type 0 than its own cells are to each other
    return centres, novel


def _brute_union_count(query: np.ndarray, ref: np.ndarray, m: int) -> np.ndarray:
    qs = query @ query.T
    np.fill_diagonal(qs, -np.inf)
    rs = query @ ref.T
    both = np.concatenate([qs, rs], axis=1)
    is_query = np.r_[np.ones(len(query)), np.zeros(len(ref))].astype(bool)
    order = np.argsort(-both, axis=1, kind="stable")[:, :m]
    return is_query[order].sum(axis=1)


def test_counts_the_query_cells_among_the_union_neighbours(world) -> None:
    centres, _ = world
    rng = np.random.default_rng(1)
    ref = _clusters(400, centres, 0.6, rng)
    query = _clusters(250, centres, 0.6, rng)
    d = query_density(query, _ref_scores(query, ref), n_reference=len(ref))
    assert isinstance(d, QueryDensity)
    assert d.tested
    assert d.neighbours == 10
    assert d.candidates == 250
    np.testing.assert_array_equal(d.query_neighbours, _brute_union_count(query, ref, 10))


def test_reference_like_queries_are_rarely_rejected(world) -> None:
    centres, _ = world
    rng = np.random.default_rng(2)
    ref = _clusters(2000, centres, 0.6, rng)
    query = _clusters(500, centres, 0.6, rng)
    d = query_density(query, _ref_scores(query, ref), n_reference=len(ref))
    assert (d.p < 0.01).mean() <= 0.02
    assert d.inflation < 1.5  # exchangeable cells need little or no inflation


def test_a_group_inside_a_known_types_spread_is_rejected(world) -> None:
    centres, novel = world
    rng = np.random.default_rng(3)
    ref = _clusters(2000, centres, 0.6, rng)
    known = _clusters(500, centres, 0.6, rng)
    group = _unit(novel + 0.15 * rng.normal(size=(60, 16)))
    query = np.vstack([known, group])
    scores = _ref_scores(query, ref)
    # The group's nearest reference cells are as close as a known cell's: a reference-only score misses it.
    assert np.median(scores[500:, 0]) > np.quantile(scores[:500, 0], 0.05)
    d = query_density(query, scores, n_reference=len(ref))
    assert (d.p[500:] < 0.01).mean() >= 0.9
    assert (d.p[:500] < 0.01).mean() <= 0.03


def test_a_query_from_another_batch_is_not_rejected_wholesale(world) -> None:
    centres, _ = world
    rng = np.random.default_rng(4)
    ref = _clusters(2000, centres, 0.6, rng)
    shift = 0.5 * np.eye(16)[12]  # the whole query moved off the reference, tighter too
    which = rng.integers(4, size=500)
    query = _unit(centres[which] + shift + 0.4 * rng.normal(size=(500, 16)))
    scores = _ref_scores(query, ref)
    d = query_density(query, scores, n_reference=len(ref))
    assert d.inflation > 2  # the fitted null absorbs the batch
    assert (d.p < 0.01).mean() <= 0.05


def test_small_queries_and_cells_without_a_vector_are_not_tested(world) -> None:
    centres, _ = world
    rng = np.random.default_rng(5)
    ref = _clusters(300, centres, 0.6, rng)
    query = _clusters(199, centres, 0.6, rng)
    d = query_density(query, _ref_scores(query, ref), n_reference=len(ref))
    assert not d.tested
    assert (d.p == 1).all()
    assert (d.query_neighbours == 0).all()
    query = _clusters(220, centres, 0.6, rng)
    valid = np.ones(220, dtype=bool)
    valid[:10] = False
    scores = _ref_scores(query, ref)
    scores[:10] = np.nan
    d = query_density(query, scores, n_reference=len(ref), valid=valid)
    assert d.tested
    assert (d.p[:10] == 1).all()
    assert (d.query_neighbours[:10] == 0).all()


def test_a_large_query_is_compared_with_a_seeded_sample(world) -> None:
    centres, novel = world
    rng = np.random.default_rng(6)
    ref = _clusters(1000, centres, 0.6, rng)
    query = np.vstack([_clusters(600, centres, 0.6, rng), _unit(novel + 0.15 * rng.normal(size=(200, 16)))])
    scores = _ref_scores(query, ref)
    a = query_density(query, scores, n_reference=len(ref), max_candidates=300)
    b = query_density(query, scores, n_reference=len(ref), max_candidates=300)
    assert a.candidates == 300
    np.testing.assert_array_equal(a.p, b.p)
    assert (a.p[600:] < 0.01).mean() >= 0.8
    assert (a.p[:600] < 0.01).mean() <= 0.03


def test_fewer_reference_neighbours_than_m_count_what_there_is(world) -> None:
    centres, _ = world
    rng = np.random.default_rng(7)
    ref = _clusters(500, centres, 0.6, rng)
    query = _clusters(220, centres, 0.6, rng)
    d = query_density(query, _ref_scores(query, ref, k=4), n_reference=len(ref))
    assert d.neighbours == 4
    np.testing.assert_array_equal(d.query_neighbours, _brute_union_count(query, ref, 4))


def test_untested_cells_still_count_as_query_neighbours(world) -> None:
    centres, novel = world
    rng = np.random.default_rng(8)
    ref = _clusters(2000, centres, 0.6, rng)
    query = np.vstack([_clusters(400, centres, 0.6, rng), _unit(novel + 0.15 * rng.normal(size=(60, 16)))])
    scores = _ref_scores(query, ref)
    tested = np.ones(len(query), dtype=bool)
    tested[400::2] = False  # half the group gets no p-value ...
    d = query_density(query, scores, n_reference=len(ref), tested=tested)
    full = query_density(query, scores, n_reference=len(ref))
    assert (d.p[~tested] == 1).all()
    assert (d.query_neighbours[~tested] == 0).all()
    # ... but is still found by the other half, with the same neighbour counts as without the mask
    np.testing.assert_array_equal(d.query_neighbours[tested], full.query_neighbours[tested])
    assert (d.p[401::2] < 0.01).mean() >= 0.9
