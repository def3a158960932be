"""The PCA residual: computed by the projection, stored in the calibration, the third novelty score of decide."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from indexer import InputError
from indexer.cells import Calibration, decide, fit_calibration, fit_mahalanobis, mahalanobis
from indexer.cells._expression import ExpressionProjection
from indexer.reference._calibrate import recalibrate_neighbours

D = 6
NAMES = ("a", "b")


def _projection(n_genes: int = 12, n_comp: int = 3, seed: int = 0) -> ExpressionProjection:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n_genes, n_comp)))
    return ExpressionProjection(
        genes=np.array([f"G{i}" for i in range(n_genes)], dtype=object),
        mean=rng.uniform(0.5, 1.0, n_genes).astype(np.float32),
        std=rng.uniform(0.5, 2.0, n_genes).astype(np.float32),
        components=q.T.astype(np.float32),
    )


def test_residual_is_the_scaled_panel_left_off_the_components() -> None:
    proj = _projection()
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 3, (7, 12)).astype(np.float32)
    symbols = proj.genes.copy()
    out = proj.project(sp.csr_matrix(x), symbols)
    view, raw, residual = out.view, out.raw, out.residual
    z = np.clip((x - proj.mean) / proj.std, -10, 10).astype(np.float64)
    off = z - (z @ proj.components.T.astype(np.float64)) @ proj.components.astype(np.float64)
    np.testing.assert_allclose(residual, (off**2).sum(axis=1), rtol=1e-4, atol=1e-4)
    # The other two arrays are transform_with_scores' own.
    v2, r2 = proj.transform_with_scores(sp.csr_matrix(x), symbols)
    np.testing.assert_array_equal(view, v2)
    np.testing.assert_array_equal(raw, r2)
    # A cell that lies in the components' span has no residual.
    inside = proj.mean + proj.std * (np.array([2.0, -1.0, 0.5]) @ proj.components)
    assert proj.project(sp.csr_matrix(inside[None, :]), symbols).residual[0] < 1e-4


def _calibration(*, with_residual: bool) -> tuple[Calibration, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = 3 * rng.standard_normal((2, D))
    y = np.repeat([0, 1], [300, 300])
    raw = centres[y] + 0.5 * rng.standard_normal((len(y), D))
    x = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1)[:, :30]
    means, prec = fit_mahalanobis(raw, y, 2)
    oof = mahalanobis(raw, y, means=means, precision=prec)
    res = rng.chisquare(20, len(y))  # the reference's residuals: about 20 left-over dimensions of noise
    cal = fit_calibration(
        y[idx],
        np.take_along_axis(s, idx, axis=1),
        y,
        label_names=NAMES,
        cell_ids=np.arange(len(y)).astype(str),
        method="leave-self-out",
        oof_distance=oof,
        oof_residual=res if with_residual else None,
        means=means,
        precision=prec,
        k=10,
    )
    return cal, raw, x


def _typical_queries(raw: np.ndarray, x: np.ndarray, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Reference-like in the neighbours and the PCA: copies of reference cells, neighbours without themselves.
    s = x[:n] @ x.T
    s[np.arange(n), np.arange(n)] = -np.inf
    idx = np.argsort(-s, axis=1)[:, :30]
    y = np.repeat([0, 1], [300, 300])
    return y[idx], np.take_along_axis(s, idx, axis=1), raw[:n]


def test_a_cell_the_components_cannot_express_is_unknown_even_where_the_other_scores_are_typical() -> None:
    cal, raw, x = _calibration(with_residual=True)
    assert cal.uses_residual
    codes, s, pca = _typical_queries(raw, x)
    usual = np.random.default_rng(5).chisquare(20, len(codes))
    known = decide(codes, s, calibration=cal, alpha=0.01, pca_scores=pca, pca_residual=usual)
    assert known.rejected.mean() < 0.05
    odd = decide(codes, s, calibration=cal, alpha=0.01, pca_scores=pca, pca_residual=usual + 200)
    assert odd.rejected.mean() > 0.9
    np.testing.assert_array_equal(odd.winner, known.winner)
    np.testing.assert_array_equal(odd.probability, known.probability)
    # A calibration without the residual (fitted before it existed) ignores it.
    old = _calibration(with_residual=False)[0]
    assert not old.uses_residual
    a = decide(codes, s, calibration=old, alpha=0.01, pca_scores=pca)
    b = decide(codes, s, calibration=old, alpha=0.01, pca_scores=pca, pca_residual=usual + 200)
    np.testing.assert_array_equal(a.novelty_p, b.novelty_p)


def test_residual_is_required_and_checked_when_the_calibration_has_one() -> None:
    cal, raw, x = _calibration(with_residual=True)
    codes, s, pca = _typical_queries(raw, x, n=5)
    with pytest.raises(InputError, match="pca_residual has shape None"):
        decide(codes, s, calibration=cal, pca_scores=pca)
    with pytest.raises(InputError, match=r"pca_residual has shape \(4,\)"):
        decide(codes, s, calibration=cal, pca_scores=pca, pca_residual=np.zeros(4))
    with pytest.raises(InputError, match="oof_residual needs the PCA part"):
        fit_calibration(
            codes,
            s,
            np.zeros(5, dtype=int),
            label_names=NAMES,
            cell_ids=np.arange(5).astype(str),
            method="leave-self-out",
            oof_residual=np.ones(5),
        )


def test_residual_survives_json_and_refit_and_old_json_loads_without_it() -> None:
    cal, raw, x = _calibration(with_residual=True)
    cal = replace(cal, own_neighbours=cal.cal_neighbours + 0.01, own_pca=cal.cal_pca, own_residual=cal.cal_residual / 2)
    back = Calibration.from_json(cal.to_json())
    assert back.cal_residual is not None and back.own_residual is not None
    np.testing.assert_array_equal(back.cal_residual, cal.cal_residual)
    np.testing.assert_array_equal(back.own_residual, cal.own_residual)
    codes, s, pca = _typical_queries(raw, x, n=50)
    res = np.random.default_rng(2).chisquare(20, 50)
    a = decide(codes, s, calibration=cal, alpha=0.01, pca_scores=pca, pca_residual=res)
    b = decide(codes, s, calibration=back, alpha=0.01, pca_scores=pca, pca_residual=res)
    np.testing.assert_array_equal(a.novelty_p, b.novelty_p)
    # A calibration written before the residual existed has no such keys.
    import json

    d = json.loads(cal.to_json())
    del d["cal_residual"], d["own_residual"]
    old = Calibration.from_json(json.dumps(d).encode())
    assert not old.uses_residual
    assert old.has_own_scores
    # refit (neighbours recomputed from stored vectors) keeps each calibration cell's residuals, by id.
    labels = np.asarray(NAMES, dtype=object)[np.repeat([0, 1], [300, 300])]
    order = np.random.default_rng(3).permutation(len(labels))
    again = recalibrate_neighbours(cal, vectors=x[order], labels=labels[order], cell_ids=order.astype(str))
    assert again.uses_residual and again.has_own_scores
    by_id = dict(zip(again.cal_cells, again.cal_residual, strict=True))
    assert all(by_id[c] == v for c, v in zip(cal.cal_cells, cal.cal_residual, strict=True))
    own_by_id = dict(zip(again.cal_cells, again.own_residual, strict=True))
    assert all(own_by_id[c] == v for c, v in zip(cal.cal_cells, cal.own_residual, strict=True))


def test_tail_p_values_go_below_the_conformal_floor_only_beyond_the_table() -> None:
    from indexer.cells._evidence import _conformal, _conformal_self

    table = [np.sort(np.random.default_rng(0).standard_normal(200))]
    s = np.array([-50.0, -10.0, table[0][0] - 0.01, table[0][0], 0.0, 3.0])
    lab = np.zeros(s.size, dtype=int)
    plain = _conformal(s, lab, table, 1)
    tail = _conformal(s, lab, table, 1, tail=True)
    np.testing.assert_array_equal(tail[3:], plain[3:])  # within the table's range nothing changes
    assert plain[0] == plain[1] == plain[2] == 1 / 201
    assert tail[0] < tail[1] < tail[2] <= 1 / 201  # beyond it, farther means smaller
    assert tail[0] < 1e-10
    # A member of the table is judged against the others: what it would get as a new cell among them.
    v = table[0]
    own = _conformal_self(v, np.zeros(v.size, dtype=int), table, 1, tail=True)
    for i in (0, 1, 100, 199):
        rest = [np.delete(v, i)]
        np.testing.assert_allclose(own[i], _conformal(v[[i]], np.zeros(1, dtype=int), rest, 1, tail=True)[0])
