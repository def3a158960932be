import numpy as np
import pytest
import scipy.sparse as sp

from indexer import StoreError
from indexer.cells import ExpressionProjection, fit_expression, log_normalise
from schemas import ExpressionParams
from tests.conftest import make_adata


def _data(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    a = make_adata(20, seed=seed)
    return log_normalise(sp.csr_matrix(a.X)), np.asarray(a.var_names, dtype=object), a.obs["cell_type"].to_numpy()


def test_pca_head_is_unit_and_panel_limited():
    x, symbols, _ = _data()
    proj = fit_expression(x, symbols, ExpressionParams(n_genes=20, n_components=5, head="pca"))
    assert proj.genes.size == 20
    assert proj.head_coef is None
    v = proj.transform(x, symbols)
    assert v.shape == (x.shape[0], 5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)


def test_logistic_head_adds_one_score_per_class_and_separates_labels():
    x, symbols, labels = _data()
    proj = fit_expression(x, symbols, ExpressionParams(n_genes=20, n_components=5), labels=labels)
    assert proj.dim == 5 + 4
    assert sorted(proj.head_classes) == sorted(set(labels))
    xq, _, yq = _data(seed=7)
    v = proj.transform(xq, symbols)
    head = v[:, 5:]
    # The largest class score names the true label of held-out cells.
    assert np.mean(proj.head_classes[np.argmax(head, axis=1)] == yq) > 0.95


def test_query_genes_are_aligned_by_symbol_and_missing_genes_tolerated():
    x, symbols, labels = _data()
    proj = fit_expression(x, symbols, ExpressionParams(n_genes=20, n_components=5), labels=labels)
    order = np.random.default_rng(0).permutation(symbols.size)
    np.testing.assert_allclose(proj.transform(x[:, order], symbols[order]), proj.transform(x, symbols), atol=1e-5)
    keep = order[: symbols.size - 5]
    v = proj.transform(x[:, keep], symbols[keep])
    assert np.isfinite(v).all()


def test_round_trip_and_tamper_check():
    import hashlib

    x, symbols, labels = _data()
    proj = fit_expression(x, symbols, ExpressionParams(n_genes=20, n_components=5), labels=labels)
    data = proj.to_bytes()
    again = ExpressionProjection.from_bytes(data, expected_sha256=hashlib.sha256(data).hexdigest())
    np.testing.assert_allclose(again.transform(x, symbols), proj.transform(x, symbols))
    with pytest.raises(StoreError, match="altered or truncated"):
        ExpressionProjection.from_bytes(data[:-10], expected_sha256=hashlib.sha256(data).hexdigest())


def test_transform_in_blocks_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import indexer.cells._expression as expression

    x, symbols, labels = _data()
    proj = fit_expression(x, symbols, ExpressionParams(n_genes=20, n_components=5), labels=labels)
    # A query without some panel genes: their columns must stay at zero in every block.
    keep = np.arange(symbols.size) % 7 != 0
    whole, whole_raw = proj.transform_with_scores(x[:, keep], symbols[keep])
    monkeypatch.setattr(expression, "TRANSFORM_BLOCK", 7)  # several blocks and a short last one
    blocks, blocks_raw = proj.transform_with_scores(x[:, keep], symbols[keep])
    np.testing.assert_allclose(blocks, whole, atol=1e-6)
    np.testing.assert_allclose(blocks_raw, whole_raw, atol=1e-5)


def test_absent_panel_genes_scale_to_zero_and_the_head_reads_only_present_genes() -> None:
    """The projection, written out densely: absent panel genes at the reference mean, absent head genes at 0."""
    x, symbols, labels = _data()
    proj = fit_expression(x, symbols, ExpressionParams(n_genes=20, n_components=5), labels=labels)
    assert proj.head_genes is not None
    assert proj.head_coef is not None
    assert proj.head_intercept is not None
    drop = {str(g) for g in proj.genes[::3]} | {str(g) for g in proj.head_genes[1::4]}
    keep = np.array([str(s) not in drop for s in symbols])
    xq, sq = x[:, keep], symbols[keep]
    dense = xq.toarray()
    col = {str(s): i for i, s in enumerate(sq)}
    z = np.zeros((x.shape[0], proj.genes.size), dtype=np.float32)
    for j, g in enumerate(proj.genes):
        if str(g) in col:
            z[:, j] = (dense[:, col[str(g)]] - proj.mean[j]) / proj.std[j]
    want_raw = np.clip(z, -10, 10) @ proj.components.T
    coef = np.zeros((dense.shape[1], proj.head_coef.shape[0]), dtype=np.float32)
    for j, g in enumerate(proj.head_genes):
        if str(g) in col:
            coef[col[str(g)]] = proj.head_coef[:, j]
    scores = dense @ coef + proj.head_intercept
    scores -= scores.mean(axis=1, keepdims=True)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    want = unit(np.hstack([unit(want_raw), unit(scores)]))
    got, raw = proj.transform_with_scores(xq, sq)
    np.testing.assert_allclose(raw, want_raw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
