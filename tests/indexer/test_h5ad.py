"""The h5py reader of annotate's read-only path reads what anndata reads, and hands anything else back."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from indexer.cells import CellMatrix, read_cells, select_expression
from tests.conftest import make_adata


def _same(cells: CellMatrix, adata: ad.AnnData) -> None:
    assert cells.shape == adata.shape
    assert cells.var_names.tolist() == adata.var_names.tolist()
    assert cells.obs_names.tolist() == adata.obs_names.tolist()
    a = cells.X.toarray() if sp.issparse(cells.X) else np.asarray(cells.X)
    b = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["csr", "csc", "dense"])
def test_matrix_and_names_are_anndatas(tmp_path: Path, kind: str) -> None:
    adata = make_adata(6)
    adata.X = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": lambda m: m.toarray()}[kind](adata.X)
    adata.layers["counts"] = sp.csr_matrix(adata.X) * 2
    adata.raw = adata[:, ::2].copy()
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    again = ad.read_h5ad(path)
    cells = read_cells(path)
    assert cells is not None
    _same(cells, again)
    assert sorted(cells.layers) == ["counts"]
    np.testing.assert_array_equal(cells.layers["counts"].toarray(), again.layers["counts"].toarray())
    assert cells.raw is not None
    assert cells.raw.var_names.tolist() == again.raw.var_names.tolist()
    np.testing.assert_array_equal(cells.raw.X.toarray() if sp.issparse(cells.raw.X) else cells.raw.X,
                                  again.raw.X.toarray() if sp.issparse(again.raw.X) else again.raw.X)


def test_expression_is_chosen_as_for_an_anndata(tmp_path: Path) -> None:
    """A scaled .X falls back to .raw, and --layer reads the layer, with the right gene names either way."""
    adata = make_adata(6)
    adata.layers["counts"] = adata.X.copy()
    adata.raw = adata[:, 3:].copy()
    adata.X = adata.X.toarray() - 1.0  # negative values: looks scaled
    path = tmp_path / "scaled.h5ad"
    adata.write_h5ad(path)
    cells = read_cells(path)
    assert cells is not None
    for layer in (None, "counts"):
        mine = select_expression(cells, layer=layer)
        theirs = select_expression(ad.read_h5ad(path), layer=layer)
        assert mine.var_names.tolist() == theirs.var_names.tolist()
        np.testing.assert_array_equal(sp.csr_matrix(mine.X).toarray(), sp.csr_matrix(theirs.X).toarray())


def test_files_it_does_not_handle_go_back_to_anndata(tmp_path: Path) -> None:
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["X"] = np.ones((2, 2))
    assert read_cells(plain) is None  # not written by anndata
    broken = tmp_path / "broken.h5ad"
    broken.write_bytes(b"not hdf5 at all")
    assert read_cells(broken) is None
    adata = make_adata(4)
    path = tmp_path / "cat.h5ad"
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as f:
        f["X"].attrs["encoding-type"] = "something-new"
    assert read_cells(path) is None
