"""The novelty-score screen (``benchmarks/accuracy/novelty_scores.py``) on cells whose missing type is distinct."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.accuracy.novelty_scores import SCORES, _p, left_out
from indexer.cells._pool import log_normalise


def _cells(n_per: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Four types over 300 genes; each type expresses its own 40 marker genes ten times higher."""
    rng = np.random.default_rng(seed)
    rate = np.full((4, 300), 0.5)
    for t in range(4):
        rate[t, 40 * t : 40 * (t + 1)] = 5.0
    y = np.repeat(np.arange(4), n_per)
    counts = rng.poisson(rate[y]).astype(np.float32)
    return log_normalise(sp.csr_matrix(counts)).tocsr(), np.array([f"type{t}" for t in y])


@pytest.mark.parametrize("per_label", [False, True])
def test_a_distinct_missing_type_is_told_apart(per_label: bool) -> None:
    x_ref, y_ref = _cells(60, seed=0)
    x_q, y_q = _cells(20, seed=1)
    symbols = np.array([f"G{i}" for i in range(300)])
    out = left_out(x_ref, y_ref, x_q, y_q, symbols, "type3", per_label=per_label)
    assert set(out) == set(SCORES)
    for missing, known, auc in out.values():
        assert 0 <= missing <= 1
        assert 0 <= known <= 1
        assert 0 <= auc <= 1
    # The left-out type's 40 markers lie off the PCA fitted without it: its residual is far above the rest.
    missing, known, auc = out["residual"]
    assert auc > 0.95
    assert missing > 0.9
    assert known < 0.1


def test_pooled_and_per_label_p_values_agree_for_one_label() -> None:
    cal = np.array([1.0, 2.0, 3.0, 4.0])
    s = np.array([0.5, 2.5, 5.0])
    pooled = _p(cal, s)
    np.testing.assert_allclose(pooled, [5 / 5, 3 / 5, 1 / 5])
    labels = np.zeros(len(s), dtype=np.int64)
    per = _p(cal, s, cal_labels=np.zeros(4, dtype=np.int64), labels=labels, n_labels=1)
    np.testing.assert_allclose(per, pooled)
