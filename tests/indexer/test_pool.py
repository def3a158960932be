import numpy as np
import pytest
import scipy.sparse as sp

from indexer.cells import log_normalise, looks_like_counts, pool, top_gene_weights
from indexer.cells._pool import excluded_genes, inverse_frequency, top_genes_per_cell
from schemas import PoolingParams


def test_top_n_keeps_the_most_expressed_usable_genes_with_ties_by_column():
    x = sp.csr_matrix(np.array([[5, 1, 5, 3, 9], [0, 2, 0, 0, 0]], dtype=np.float32))
    usable = np.array([True, True, True, True, False])
    w = top_gene_weights(x, usable, top_n=2).toarray()
    # Gene 4 is not usable; genes 0 and 2 tie at 5 and both beat gene 3.
    np.testing.assert_allclose(w[0], [0.5, 0, 0.5, 0, 0])
    np.testing.assert_allclose(w[1], [0, 1, 0, 0, 0])
    # A tie at the cut keeps the lower column index.
    w1 = top_gene_weights(x, usable, top_n=1).toarray()
    np.testing.assert_allclose(w1[0], [1, 0, 0, 0, 0])


def test_expression_and_mean_weighting():
    x = sp.csr_matrix(np.array([[3, 1, 0]], dtype=np.float32))
    usable = np.ones(3, bool)
    np.testing.assert_allclose(top_gene_weights(x, usable, top_n=None).toarray(), [[0.75, 0.25, 0]])
    np.testing.assert_allclose(
        top_gene_weights(x, usable, top_n=None, weighting="mean").toarray(), [[0.5, 0.5, 0]]
    )


def test_pool_is_weighted_mean_then_unit_norm_and_empty_cells_stay_zero():
    x = sp.csr_matrix(np.array([[1, 3], [0, 0]], dtype=np.float32))
    g = np.array([[1, 0], [0, 1]], dtype=np.float32)
    v = pool(top_gene_weights(x, np.ones(2, bool), top_n=20), g)
    expected = np.array([0.25, 0.75]) / np.linalg.norm([0.25, 0.75])
    np.testing.assert_allclose(v[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(v[1], [0, 0])


def test_counts_are_log_normalised_and_normalised_data_left_alone():
    counts = sp.csr_matrix(np.array([[10, 30, 60]], dtype=np.float32))
    assert looks_like_counts(counts)
    out = log_normalise(counts).toarray()
    np.testing.assert_allclose(out, np.log1p(np.array([[1000, 3000, 6000]])), rtol=1e-5)
    logged = sp.csr_matrix(np.array([[0.5, 1.7]], dtype=np.float32))
    assert log_normalise(logged) is logged


def test_excluded_genes_mito_and_ribo():
    symbols = np.array(["MT-CO1", "RPL13", "RPS6", "CD3E", "mt-Nd1", "RPLP0"], dtype=object)
    mask = excluded_genes(symbols, PoolingParams(exclude_mito=True, exclude_ribo=True))
    assert mask.tolist() == [True, True, True, False, True, False]
    assert not excluded_genes(symbols, PoolingParams()).any()


def test_inverse_frequency_downweights_ubiquitous_genes():
    w = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [1, 0, 0]], dtype=np.float32))
    idf = inverse_frequency(w)
    assert idf[0] < idf[1] == pytest.approx(idf[2])


def test_top_genes_per_cell_orders_by_weight():
    w = sp.csr_matrix(np.array([[0.2, 0.5, 0.3]], dtype=np.float32))
    assert top_genes_per_cell(w, np.array(["A", "B", "C"], dtype=object)) == [["B", "C", "A"]]


def test_top_genes_per_cell_matches_a_per_cell_sort_with_ties_and_empty_rows():
    rng = np.random.default_rng(3)
    dense = np.round(rng.random((300, 40)) * 4) / 4 * (rng.random((300, 40)) < 0.4)
    dense[7] = 0  # a cell without genes
    w = sp.csr_matrix(dense.astype(np.float32))
    symbols = np.array([f"G{i}" for i in range(40)], dtype=object)
    for limit in (1, 5, 20):
        expected = []
        for row in dense:
            nz = np.flatnonzero(row)
            order = nz[np.argsort(-row[nz], kind="stable")][:limit]
            expected.append([f"G{j}" for j in order])
        assert top_genes_per_cell(w, symbols, limit=limit) == expected
    assert top_genes_per_cell(w[7:8], symbols) == [[]]
    assert top_genes_per_cell(sp.csr_matrix((0, 40), dtype=np.float32), symbols) == []


def _top_by_sorting(x: sp.csr_matrix, usable: np.ndarray, top_n: int) -> list[list[int]]:
    """Each row's kept columns by a plain stable sort: value descending, ties by column."""
    out = []
    for i in range(x.shape[0]):
        row = x.getrow(i)
        cols = [(-v, c) for c, v in zip(row.indices, row.data, strict=True) if usable[c] and v != 0]
        out.append(sorted(c for _, c in sorted(cols)[:top_n]))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_top_n_selection_equals_a_stable_sort_with_many_ties(seed):
    """The partition-based selection keeps exactly the genes a stable sort keeps, ties and short rows included."""
    rng = np.random.default_rng(seed)
    n, g = int(rng.integers(1, 60)), int(rng.integers(1, 90))
    x = sp.random(n, g, density=float(rng.uniform(0.05, 0.9)), format="csr", random_state=seed, dtype=np.float32)
    x.data = np.round(x.data * 4) / 2  # few distinct values: ties at the cut, and explicit zeros
    usable = rng.random(g) < 0.8
    for top_n in (1, 3, 7):
        w = top_gene_weights(x, usable, top_n=top_n)
        got = [sorted(w.indices[w.indptr[i] : w.indptr[i + 1]].tolist()) for i in range(n)]
        assert got == _top_by_sorting(x, usable, top_n)
