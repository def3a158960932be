"""The decision rule (indexer.cells.decide) on synthetic neighbours: vote parity, rare labels, novelty."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from indexer import InputError, StoreError
from indexer.cells import Calibration, decide, fit_calibration, fit_mahalanobis, mahalanobis, vote
from indexer.cells._evidence import ledoit_wolf

D = 8
NAMES = ("a", "b", "rare")


def _blobs(sizes, centres, *, spread=0.35, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    raw = centres[y] + spread * rng.standard_normal((len(y), centres.shape[1]))
    return raw, raw / np.linalg.norm(raw, axis=1, keepdims=True), y


def _knn(q, r, k, *, drop_self=False):
    s = q @ r.T
    if drop_self:
        np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1)[:, :k]
    return idx, np.take_along_axis(s, idx, axis=1)


@pytest.fixture(scope="module")
def ref():
    centres = np.random.default_rng(0).standard_normal((3, D))
    raw, x, y = _blobs([400, 300, 6], centres)
    idx, s = _knn(x, x, 30, drop_self=True)
    means, prec = fit_mahalanobis(raw, y, 3)
    # Leave-one-out Mahalanobis stands in for the fold refit's out-of-fold distance.
    oof = mahalanobis(raw, y, means=means, precision=prec) * (1 + 1 / np.bincount(y)[y])
    cal = fit_calibration(
        y[idx],
        s,
        y,
        label_names=NAMES,
        cell_ids=np.arange(len(y)).astype(str),
        method="leave-self-out",
        oof_distance=oof,
        means=means,
        precision=prec,
        k=10,
    )
    return centres, raw, x, y, cal


def _query(ref, sizes, seed, centres=None):
    c0, _, x, y, _ = ref
    qraw, q, yq = _blobs(sizes, c0 if centres is None else centres, seed=seed)
    idx, s = _knn(q, x, 30)
    return y[idx], s, qraw, yq


def test_without_calibration_decide_is_todays_vote() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(-1, 4, size=(500, 10))
    scores = rng.uniform(-1, 1, size=(500, 10))
    d = decide(codes, scores, n_labels=4)
    w, c, _s = vote(codes, scores, 4)
    np.testing.assert_array_equal(d.winner, w)
    np.testing.assert_allclose(d.probability, c)
    assert np.isnan(d.novelty_p).all()
    assert not d.rejected.any()
    assert ((d.runner_up != d.winner) | (d.runner_up == -1)).all()


def test_ledoit_wolf_matches_sklearn() -> None:
    from sklearn.covariance import LedoitWolf

    x = np.random.default_rng(1).standard_normal((200, 6)) @ np.diag([3, 1, 1, 0.5, 0.2, 0.1])
    x -= x.mean(0)
    np.testing.assert_allclose(ledoit_wolf(x), LedoitWolf(assume_centered=True).fit(x).covariance_, rtol=1e-8)


def test_known_cells_labelled_and_rare_class_found(ref) -> None:
    codes, s, qraw, yq = _query(ref, [100, 100, 40], seed=2)
    d = decide(codes, s, pca_scores=qraw, calibration=ref[-1], alpha=0)
    assert (d.winner == yq).mean() > 0.9
    assert (d.winner[yq == 2] == 2).mean() > 0.9


def test_rare_class_with_3_cells_wins_where_its_neighbours_are_its_own(ref) -> None:
    cal = ref[-1]
    # 3 of the 10 neighbours are the rare label's (all it could hold at 3 cells), and the closest ones.
    codes = np.array([[2, 2, 2, 0, 0, 1, 0, 1, 0, 1]])
    scores = np.array([[0.95, 0.94, 0.93, 0.80, 0.79, 0.78, 0.77, 0.76, 0.75, 0.74]])
    small = cal.with_counts({"a": 400, "b": 300, "rare": 3}, note="test")
    assert vote(codes, scores, 3)[0][0] == 0  # today's vote: the common label
    d = decide(codes, scores, pca_scores=ref[0][[2]], calibration=small, alpha=0)
    assert d.winner[0] == 2
    assert d.runner_up[0] in (0, 1)
    assert 0 < d.runner_up_probability[0] < d.probability[0] + 1


def test_novelty_rejects_about_alpha_of_reference_like_cells(ref) -> None:
    codes, s, qraw, _ = _query(ref, [400, 300, 0], seed=3)
    d = decide(codes, s, pca_scores=qraw, calibration=ref[-1], alpha=0.01)
    for a in (0.05, 0.1, 0.25):
        assert abs((d.novelty_p < a).mean() - a) < 0.05
    assert d.rejected.mean() < 0.04


def test_missing_type_rejected_and_alpha_zero_rejects_nothing(ref) -> None:
    far = np.random.default_rng(9).standard_normal((1, D))
    codes, s, qraw, _ = _query(ref, [200], seed=4, centres=far)
    assert decide(codes, s, pca_scores=qraw, calibration=ref[-1], alpha=0.01).rejected.mean() > 0.9
    assert not decide(codes, s, pca_scores=qraw, calibration=ref[-1], alpha=0).rejected.any()


def test_probability_is_calibrated(ref) -> None:
    codes, s, qraw, yq = _query(ref, [400, 300, 6], seed=5)
    d = decide(codes, s, pca_scores=qraw, calibration=ref[-1], alpha=0)
    assert abs(d.probability.mean() - (d.winner == yq).mean()) < 0.03
    assert np.all((d.probability >= 0) & (d.probability <= 1))


def test_json_round_trip_gives_the_same_decisions(ref) -> None:
    cal = ref[-1]
    back = Calibration.from_json(cal.to_json())
    codes, s, qraw, _ = _query(ref, [30, 30, 30], seed=6)
    a = decide(codes, s, pca_scores=qraw, calibration=cal, alpha=0.05)
    b = decide(codes, s, pca_scores=qraw, calibration=back, alpha=0.05)
    np.testing.assert_array_equal(a.winner, b.winner)
    np.testing.assert_array_equal(a.novelty_p, b.novelty_p)
    np.testing.assert_array_equal(a.probability, b.probability)
    with pytest.raises(StoreError, match="schema"):
        Calibration.from_json(b'{"schema": "cellvec.calibration/0"}')


def test_text_only_calibration_uses_neighbours_alone(ref) -> None:
    _, _, x, y, _ = ref
    idx, s = _knn(x, x, 30, drop_self=True)
    cal = fit_calibration(
        y[idx], s, y, label_names=NAMES, cell_ids=np.arange(len(y)).astype(str), method="leave-self-out", k=10
    )
    codes, qs, _, yq = _query(ref, [100, 100, 0], seed=7)
    d = decide(codes, qs, calibration=cal, alpha=0.01)
    assert (d.winner == yq).mean() > 0.9
    assert d.rejected.mean() < 0.05


def test_edits_rename_merge_and_recount(ref) -> None:
    cal = ref[-1]
    renamed = cal.renamed("b", "B")
    assert renamed.labels == ("a", "B", "rare")
    assert renamed.approximate == cal.approximate
    merged = cal.renamed("rare", "a")
    assert merged.labels == ("a", "b")
    assert merged.class_sizes.tolist() == [406, 300]
    assert merged.approximate
    grown = cal.with_counts(
        {"a": 400, "b": 300, "rare": 6, "new": 5}, note="added 5", added_sums={"new": 5 * np.ones(D)}
    )
    assert grown.labels[-1] == "new"
    assert grown.class_sizes[-1] == 5
    assert grown.means is not None
    np.testing.assert_allclose(grown.means[-1], np.ones(D))
    back = Calibration.from_json(grown.to_json())
    assert back.approximate == ("added 5",)


def test_no_neighbours_and_bad_inputs(ref) -> None:
    cal = ref[-1]
    codes = np.array([[-1] * 10, [0] * 5 + [-1] * 5])
    scores = np.array([[np.nan] * 10, [0.9] * 5 + [np.nan] * 5])
    d = decide(codes, scores, pca_scores=np.zeros((2, D)), calibration=cal, alpha=0.01)
    assert d.winner.tolist() == [-1, 0]
    assert not d.rejected[0]
    assert np.isnan(d.novelty_p[0])
    with pytest.raises(InputError, match="pca_scores"):
        decide(codes, scores, pca_scores=np.zeros((2, D + 1)), calibration=cal)
    with pytest.raises(InputError, match="alpha"):
        decide(codes, scores, pca_scores=np.zeros((2, D)), calibration=cal, alpha=1.5)


def test_a_label_with_fewer_than_1_over_alpha_calibration_cells_can_still_reject() -> None:
    """A label's own table of n cells bottoms out at p = 1/(n+1): such labels use the pooled scores."""
    centres = np.random.default_rng(1).standard_normal((3, D))
    raw, x, y = _blobs([400, 300, 60], centres, seed=1)
    idx, s = _knn(x, x, 30, drop_self=True)
    means, prec = fit_mahalanobis(raw, y, 3)
    oof = mahalanobis(raw, y, means=means, precision=prec) * (1 + 1 / np.bincount(y)[y])
    args = {
        "label_names": NAMES,
        "cell_ids": np.arange(len(y)).astype(str),
        "method": "leave-self-out",
        "oof_distance": oof,
        "means": means,
        "precision": prec,
        "k": 10,
    }
    # Cells around label 2's centre, spread 2.3 times as wide as its reference cells: unlike them.
    qraw = centres[2] + 0.8 * np.random.default_rng(2).standard_normal((20, D))
    q = qraw / np.linalg.norm(qraw, axis=1, keepdims=True)
    qi, qs = _knn(q, x, 30)
    for m, expect in ((100, True), (50, False)):
        cal = fit_calibration(y[idx], s, y, min_class_calibration=m, **args)
        d = decide(y[qi], qs, calibration=cal, pca_scores=qraw, alpha=0.01)
        assert (d.winner == 2).all()
        if expect:
            assert d.rejected.mean() >= 0.5
        else:
            assert not d.rejected.any()
            assert d.novelty_p.min() >= 1 / 61  # the floor of a 60-cell table
    assert Calibration.__dataclass_fields__["min_class_calibration"].default == 100


def test_class_weights_balance_the_vote() -> None:
    # 6 of 10 neighbours are of a class of 400 cells, 4 of a class of 25: the plain vote takes the large class,
    # weights n_c ** -0.5 (the cross-species rule) the small one; ties between equal weights go by similarity.
    codes = np.array([[0] * 6 + [1] * 4, [0] * 5 + [1] * 5])
    scores = np.array([[0.9] * 10, [0.5] * 5 + [0.9] * 5])
    plain = decide(codes, scores)
    assert plain.winner.tolist() == [0, 1]
    w = np.array([400.0, 25.0]) ** -0.5
    weighted = decide(codes, scores, class_weights=w)
    assert weighted.winner.tolist() == [1, 1]
    np.testing.assert_allclose(weighted.vote_share, [0.4, 0.5])  # the share stays the unweighted one
    equal = decide(codes, scores, class_weights=np.array([1.0, 1.0]))
    assert equal.winner.tolist() == plain.winner.tolist()
    assert decide(np.array([[0, 0]]), np.array([[0.9, 0.8]]), class_weights=np.array([1.0, 9.0])).winner[0] == 0


def test_a_calibration_without_in_sample_scores_judges_every_query_cross_fitted(ref) -> None:
    import json

    cal = ref[-1]
    assert not cal.has_own_scores  # fitted before they existed (or without them)
    codes, s, qraw, _ = _query(ref, [50, 50, 0], seed=3)
    s = s.copy()
    s[:, 0] = 1.0  # every query looks like a stored cell: nothing to judge it against but the cross-fitted tables
    d = decide(codes, s, calibration=cal, alpha=0.01, pca_scores=qraw)
    assert np.isfinite(d.novelty_p).all()
    old = json.loads(cal.to_json())
    del old["own_neighbours"], old["own_pca"]  # a calibration.json written before this change
    back = Calibration.from_json(json.dumps(old).encode())
    assert not back.has_own_scores
    np.testing.assert_array_equal(decide(codes, s, calibration=back, pca_scores=qraw).novelty_p, d.novelty_p)
    # With in-sample scores, such queries are judged against them instead.
    with_own = replace(cal, own_neighbours=cal.cal_neighbours + 0.05, own_pca=cal.cal_pca)
    assert with_own.has_own_scores
    p_own = decide(codes, s, calibration=with_own, pca_scores=qraw).novelty_p
    # Higher in-sample neighbour scores: the same cell looks less typical against them.
    assert np.median(p_own) < np.median(d.novelty_p)


def test_a_score_equal_to_a_calibration_score_within_float_rounding_ties_with_it() -> None:
    from indexer.cells._evidence import TIE_TOLERANCE, _conformal

    table = [np.array([0.5, 0.8, 0.9]), np.array([-40.0, -20.0])]
    rounded = np.array([0.8 - 1e-7, 0.8 + 1e-7, 0.8 - 1e-3, -20.0 * (1 + 1e-7), -np.inf])
    label = np.array([0, 0, 0, 1, 1])
    p = _conformal(rounded, label, table, min_cal=1)
    # Float32 rounding of a reference cell's own score (1e-7) does not move it across its table entry.
    np.testing.assert_allclose(p[:2], [3 / 4, 3 / 4])
    assert p[2] == 2 / 4  # a real difference (1e-3) still counts
    assert p[3] == 3 / 3
    assert p[4] == 1 / 3  # a score of -inf stays below every entry
    assert 1e-7 < TIE_TOLERANCE < 1e-3


def test_novelty_floor_is_the_smallest_p_value_a_cell_can_get(ref) -> None:
    from indexer.cells import novelty_floor

    far = np.random.default_rng(9).standard_normal((1, D))
    codes, s, qraw, _ = _query(ref, [200], seed=4, centres=far)
    cal = ref[-1]
    d = decide(codes, s, pca_scores=qraw, calibration=cal, alpha=0.01)
    floor = novelty_floor(cal, d.winner)
    assert (d.novelty_p >= floor * (1 - 1e-12)).all()
    assert np.isclose(d.novelty_p, floor).mean() > 0.5  # far cells sit beyond every calibration cell
    sizes = np.bincount(ref[3])
    # labels with a table of their own get 1 / (1 + n); the 6-cell label is judged against the pooled table
    small = sizes < cal.min_class_calibration
    expect = np.where(small, 1 / (1 + sizes.sum()), 1 / (1 + sizes))
    np.testing.assert_allclose(novelty_floor(cal, np.arange(3)), expect)
    assert np.isnan(novelty_floor(cal, np.array([-1]))).all()
