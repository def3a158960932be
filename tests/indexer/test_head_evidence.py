"""The class head's logits as evidence of the calibrated rule: mapped per label, fitted, stored, refitted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexer import InputError
from indexer.cells import Calibration, decide, fit_calibration, head_evidence
from indexer.cells._evidence import FEATURES
from indexer.reference._calibrate import recalibrate_neighbours

NAMES = ("a", "b", "c")
HEAD = FEATURES.index("head")


def test_head_evidence_follows_the_labels_and_gives_unknown_labels_no_support() -> None:
    logits = np.array([[1.0, -2.0], [0.5, 3.0]])
    out = head_evidence(logits, np.array(["b", "a"], dtype=object), ("a", "b", "new"))
    np.testing.assert_array_equal(out, [[-2.0, 1.0, -2.0], [3.0, 0.5, 0.5]])


def _cells(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbours led by another label for 30% of the cells; a head that is right for 95% of them."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per)
    n = y.size
    lead = np.where(rng.random(n) < 0.3, (y + 1) % 3, y)
    codes = np.where(rng.random((n, 30)) < 0.6, lead[:, None], rng.integers(0, 3, (n, 30)))
    scores = np.sort(rng.uniform(0.7, 0.9, (n, 30)), axis=1)[:, ::-1]
    head = rng.normal(0, 1, (n, 3))
    sure = rng.random(n) < 0.95
    head[np.arange(n), np.where(sure, y, (y + 1) % 3)] += 4.0
    return codes, scores, y, head


def _fit(codes: np.ndarray, scores: np.ndarray, y: np.ndarray, head: np.ndarray | None) -> Calibration:
    return fit_calibration(
        codes,
        scores,
        y,
        label_names=NAMES,
        cell_ids=np.arange(y.size).astype(str),
        method="leave-self-out",
        head_logits=head,
        k=10,
    )


def test_a_class_head_that_knows_better_than_the_neighbours_is_weighed_in() -> None:
    codes, scores, y, head = _cells(300, seed=0)
    with_head, without = _fit(codes, scores, y, head), _fit(codes, scores, y, None)
    assert with_head.uses_head and not without.uses_head
    assert with_head.theta[HEAD] > 0.5
    assert without.theta[HEAD] == 0.0
    qc, qs, qy, qh = _cells(200, seed=1)
    a = decide(qc, qs, calibration=with_head, alpha=0, head_logits=qh)
    b = decide(qc, qs, calibration=without, alpha=0)
    assert (a.winner == qy).mean() > (b.winner == qy).mean() + 0.15
    # Calibrated either way: the mean probability is the accuracy.
    assert abs(a.probability.mean() - (a.winner == qy).mean()) < 0.04
    with pytest.raises(InputError, match="head_logits has shape None"):
        decide(qc, qs, calibration=with_head)
    with pytest.raises(InputError, match=r"head_logits has shape \(900, 2\)"):
        _fit(codes, scores, y, head[:, :2])


def test_head_survives_json_refit_and_old_calibrations_weigh_it_zero() -> None:
    codes, scores, y, head = _cells(100, seed=2)
    cal = _fit(codes, scores, y, head)
    back = Calibration.from_json(cal.to_json())
    assert back.uses_head
    np.testing.assert_allclose(back.cal_head, cal.cal_head, atol=1e-4)
    qc, qs, _, qh = _cells(50, seed=3)
    np.testing.assert_array_equal(
        decide(qc, qs, calibration=cal, alpha=0, head_logits=qh).winner,
        decide(qc, qs, calibration=back, alpha=0, head_logits=qh).winner,
    )
    # Written before the head feature existed: no "head" weight, no cal_head.
    d = json.loads(cal.to_json())
    for key in ("theta", "theta_decide"):
        del d[key]["head"]
    del d["cal_head"]
    old = Calibration.from_json(json.dumps(d).encode())
    assert not old.uses_head and old.theta[HEAD] == 0.0
    decide(qc, qs, calibration=old, alpha=0)  # needs no logits
    # refit (no expression at hand) keeps each calibration cell's logits, by cell id, in the new label order.
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(y.size, 8)).astype(np.float32) + 3 * np.eye(3, 8)[y]
    labels = np.asarray(NAMES, dtype=object)[y]
    order = rng.permutation(y.size)
    again = recalibrate_neighbours(cal, vectors=vectors[order], labels=labels[order], cell_ids=order.astype(str))
    assert again.uses_head
    assert again.cal_head is not None and cal.cal_head is not None
    rows = {c: i for i, c in enumerate(again.cal_cells)}
    for i, c in enumerate(cal.cal_cells):
        np.testing.assert_array_equal(again.cal_head[rows[c]], cal.cal_head[i])
