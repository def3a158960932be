"""Properties of pooling, voting and point ids, checked with hypothesis on small random inputs."""

from __future__ import annotations

import uuid

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from indexer.cells import expression_matrix, pool, top_gene_weights, vote
from indexer.genes import gene_point_id
from indexer.reference._versions import (
    cell_point_id,
)

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)
DIM = 6


@st.composite
def expression(draw: st.DrawFn, *, distinct: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small cells x genes matrix (non-negative, sparse-ish), a usable-gene mask and gene vectors.

    With ``distinct``, the non-zero values of each row are all different (no ties anywhere).
    """
    n_cells = draw(st.integers(1, 7))
    n_genes = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if distinct:
        x = np.stack([rng.permutation(n_genes) + 1.0 for _ in range(n_cells)]).astype(np.float32)
    else:
        x = rng.integers(1, 4, size=(n_cells, n_genes)).astype(np.float32)  # ties are common
    x[rng.random((n_cells, n_genes)) < draw(st.floats(0.0, 0.8))] = 0.0
    usable = rng.random(n_genes) < draw(st.floats(0.3, 1.0))
    vectors = rng.standard_normal((n_genes, DIM)).astype(np.float32)
    return x, usable, vectors


def encode(x: np.ndarray, usable: np.ndarray, vectors: np.ndarray, top_n: int | None) -> np.ndarray:
    return pool(top_gene_weights(sp.csr_matrix(x), usable, top_n=top_n), vectors)


top_ns = st.one_of(st.none(), st.integers(1, 6))


# ---------------------------------------------------------------------------------------------- pooling


@SETTINGS
@given(data=expression(distinct=True), top_n=top_ns, seed=st.integers(0, 1000))
def test_permuting_genes_leaves_cell_vectors_unchanged(data, top_n, seed) -> None:
    x, usable, vectors = data
    perm = np.random.default_rng(seed).permutation(x.shape[1])
    a = encode(x, usable, vectors, top_n)
    b = encode(x[:, perm], usable[perm], vectors[perm], top_n)
    np.testing.assert_allclose(a, b, atol=1e-5)


@SETTINGS
@given(data=expression(), top_n=top_ns, seed=st.integers(0, 1000))
def test_permuting_cells_permutes_cell_vectors(data, top_n, seed) -> None:
    x, usable, vectors = data
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    a = encode(x, usable, vectors, top_n)
    b = encode(x[perm], usable, vectors, top_n)
    np.testing.assert_allclose(a[perm], b, atol=1e-6)


@SETTINGS
@given(data=expression(), top_n=top_ns, scale=st.floats(0.01, 1000.0), row=st.integers(0, 6))
def test_scaling_a_cell_leaves_its_vector_unchanged(data, top_n, scale, row) -> None:
    x, usable, vectors = data
    row %= x.shape[0]
    y = x.copy()
    y[row] *= np.float32(scale)
    a = encode(x, usable, vectors, top_n)
    b = encode(y, usable, vectors, top_n)
    np.testing.assert_allclose(a, b, atol=1e-5)


@SETTINGS
@given(data=expression(), top_n=st.integers(1, 6))
def test_ties_go_to_the_lower_gene_index_deterministically(data, top_n) -> None:
    x, usable, _ = data
    w = top_gene_weights(sp.csr_matrix(x), usable, top_n=top_n)
    again = top_gene_weights(sp.csr_matrix(x), usable, top_n=top_n)
    assert (w != again).nnz == 0
    for i in range(x.shape[0]):
        cols = [j for j in range(x.shape[1]) if usable[j] and x[i, j] > 0]
        expected = sorted(sorted(cols, key=lambda j: (-x[i, j], j))[:top_n])
        assert sorted(w[i].indices.tolist()) == expected
        if expected:
            np.testing.assert_allclose(w[i].sum(), 1.0, rtol=1e-5)


@SETTINGS
@given(data=expression(), top_n=top_ns, seed=st.integers(0, 1000))
def test_sparse_and_dense_input_give_the_same_vectors(data, top_n, seed) -> None:
    x, usable, vectors = data
    rng = np.random.default_rng(seed)
    # A non-canonical CSR: explicit zeros and unsorted column indices within rows.
    coo = sp.coo_matrix(x)
    zi = rng.integers(0, x.shape[0], 3)
    zj = rng.integers(0, x.shape[1], 3)
    keep = x[zi, zj] == 0
    rows = np.concatenate([coo.row, zi[keep]])
    cols = np.concatenate([coo.col, zj[keep]])
    vals = np.concatenate([coo.data, np.zeros(keep.sum(), np.float32)])
    order = rng.permutation(rows.size)
    messy = sp.csr_matrix((vals[order], (rows[order], cols[order])), shape=x.shape)
    messy.has_sorted_indices = False
    from_dense = expression_matrix(ad.AnnData(x))
    from_sparse = expression_matrix(ad.AnnData(messy))
    assert (from_dense != from_sparse).nnz == 0
    a = pool(top_gene_weights(from_dense, usable, top_n=top_n), vectors)
    b = pool(top_gene_weights(from_sparse, usable, top_n=top_n), vectors)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------- voting


def reference_vote(codes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the label with most votes, then the larger summed similarity, then the lower code."""
    winners, confidence = [], []
    for c_row, s_row in zip(codes, scores, strict=True):
        present = c_row >= 0
        if not present.any():
            winners.append(-1)
            confidence.append(0.0)
            continue
        tally: dict[int, tuple[int, float]] = {}
        for c, s in zip(c_row[present], s_row[present], strict=True):
            n, total = tally.get(int(c), (0, 0.0))
            tally[int(c)] = (n + 1, total + float(s))
        best = min(tally, key=lambda c: (-tally[c][0], -tally[c][1], c))
        winners.append(best)
        confidence.append(tally[best][0] / present.sum())
    return np.array(winners), np.array(confidence)


@st.composite
def neighbours(draw: st.DrawFn, *, k: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    n = draw(st.integers(1, 8))
    k = k or draw(st.integers(1, 8))
    n_labels = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    codes = rng.integers(0, n_labels, size=(n, k))
    codes[rng.random((n, k)) < draw(st.floats(0.0, 0.6))] = -1
    scores = np.round(rng.uniform(-1, 1, size=(n, k)), 2).astype(np.float32)  # 2 decimals: exact ties happen
    return codes, scores, n_labels


def _near_tie(codes: np.ndarray, scores: np.ndarray) -> bool:
    """Whether two labels of a row have equal counts and summed similarities within float noise."""
    for c_row, s_row in zip(codes, scores, strict=True):
        tally: dict[int, list[float]] = {}
        for c, s in zip(c_row, s_row, strict=True):
            if c >= 0:
                tally.setdefault(int(c), []).append(float(s))
        keys = sorted(((len(v), sum(v)) for v in tally.values()), reverse=True)
        if len(keys) > 1 and keys[0][0] == keys[1][0] and 0 < abs(keys[0][1] - keys[1][1]) < 1e-4:
            return True
    return False


@SETTINGS
@given(data=neighbours())
def test_vote_majority_then_summed_similarity(data) -> None:
    codes, scores, n_labels = data
    assume(not _near_tie(codes, scores))
    winner, confidence, similarity = vote(codes, scores, n_labels)
    want, want_conf = reference_vote(codes, scores)
    np.testing.assert_array_equal(winner, want)
    np.testing.assert_allclose(confidence, want_conf)
    for i, w in enumerate(winner):
        if w >= 0:
            np.testing.assert_allclose(similarity[i], scores[i][codes[i] == w].mean(), rtol=1e-5, atol=1e-6)
        else:
            assert np.isnan(similarity[i])


def test_equal_counts_go_to_the_larger_summed_similarity() -> None:
    # Two votes each; label 1 sums 0.8 + 0.3 = 1.1 against label 0's 0.9 + 0.1 = 1.0 (then the reverse).
    codes = np.array([[0, 1, 0, 1], [1, 0, 1, 0]])
    scores = np.array([[0.9, 0.8, 0.1, 0.3], [0.9, 0.8, 0.1, 0.3]], dtype=np.float32)
    winner, confidence, similarity = vote(codes, scores, 2)
    assert winner.tolist() == [1, 0]
    assert confidence.tolist() == [0.5, 0.5]
    np.testing.assert_allclose(similarity, [0.55, 0.55], rtol=1e-6)


@SETTINGS
@given(data=neighbours(k=1))
def test_k_equal_1_takes_the_single_neighbour(data) -> None:
    codes, scores, n_labels = data
    winner, confidence, similarity = vote(codes, scores, n_labels)
    np.testing.assert_array_equal(winner, np.where(codes[:, 0] >= 0, codes[:, 0], -1))
    np.testing.assert_array_equal(confidence, (codes[:, 0] >= 0).astype(float))
    present = codes[:, 0] >= 0
    np.testing.assert_allclose(similarity[present], scores[present, 0], rtol=1e-6)


@SETTINGS
@given(n=st.integers(1, 6), k=st.integers(1, 6), n_labels=st.integers(0, 3))
def test_rows_without_neighbours_get_winner_minus_1(n, k, n_labels) -> None:
    codes = np.full((n, k), -1)
    winner, confidence, similarity = vote(codes, np.zeros((n, k), np.float32), n_labels)
    assert (winner == -1).all()
    assert (confidence == 0).all()
    assert np.isnan(similarity).all()


# -------------------------------------------------------------------------------------------- point ids

ref_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
cell_ids = st.text(min_size=0, max_size=12)


def test_point_ids_are_stable_across_releases() -> None:
    # Stored references and gene caches are addressed by these ids: a change would duplicate every point.
    assert cell_point_id("pbmc", "AAACCTGAGAAGGCCT-1") == "39ece5b6-3522-5e87-9f67-2a5f69687e04"
    assert gene_point_id("human", "CD3E") == "d57a8e69-e3e6-57ea-9dd3-e3c9f8f1ccee"
    assert gene_point_id("mouse", "Cd3e") == "33e31fbe-95ce-5652-a0b9-01ca62a160a4"


@SETTINGS
@given(pairs=st.lists(st.tuples(ref_names, cell_ids), min_size=2, max_size=30, unique=True))
def test_cell_ids_are_deterministic_uuids_without_collisions(pairs) -> None:
    ids = [cell_point_id(r, c) for r, c in pairs]
    assert ids == [cell_point_id(r, c) for r, c in pairs]
    assert all(str(uuid.UUID(i)) == i for i in ids)
    assert len(set(ids)) == len(pairs)


@SETTINGS
@given(ref_a=ref_names, ref_b=ref_names, cells=st.lists(cell_ids, min_size=1, max_size=20, unique=True))
def test_the_same_cells_in_two_references_never_share_ids(ref_a, ref_b, cells) -> None:
    assume(ref_a != ref_b)
    a = {cell_point_id(ref_a, c) for c in cells}
    b = {cell_point_id(ref_b, c) for c in cells}
    assert not a & b


@SETTINGS
@given(
    symbols=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=20, unique=True), ref=ref_names
)
def test_gene_ids_differ_by_species_and_from_cell_ids(symbols, ref) -> None:
    human = [gene_point_id("human", s) for s in symbols]
    mouse = [gene_point_id("mouse", s) for s in symbols]
    assert len(set(human)) == len(symbols)
    assert not set(human) & set(mouse)
    assert human == [gene_point_id("human", s) for s in symbols]
    assert not (set(human) | set(mouse)) & {cell_point_id(ref, s) for s in symbols}


@pytest.mark.parametrize("fn", [cell_point_id, gene_point_id])
def test_ids_are_uuid5(fn) -> None:
    assert uuid.UUID(fn("human", "X")).version == 5
