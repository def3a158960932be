"""Which matrix is read: ``.X``, ``--layer NAME`` or ``--use-raw`` (and CellTypist's fallback to ``.raw``)."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from annotator import annotate, search_cells
from indexer import InputError, build_reference
from indexer.cells import select_expression
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER


def scaled_with_raw(a: ad.AnnData) -> ad.AnnData:
    """The cells as scanpy leaves them after ``pp.scale``: z-scores in .X, the log data in .raw."""
    out = a.copy()
    out.raw = out
    x = out.X.toarray()
    out.X = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    out = out[:, :30].copy()  # like highly-variable-gene subsetting: .raw keeps every gene
    return out


def test_select_expression_reads_the_asked_matrix(adata: ad.AnnData) -> None:
    logged = adata.copy()
    logged.layers["counts"] = logged.X.copy()
    logged.X = sp.csr_matrix(np.log1p(logged.X.toarray()))
    assert select_expression(logged) is logged
    got = select_expression(logged, layer="counts")
    assert (got.X != adata.X).nnz == 0
    assert list(got.obs_names) == list(adata.obs_names)
    scaled = scaled_with_raw(adata)
    raw = select_expression(scaled, use_raw=True)
    assert raw.n_vars == adata.n_vars
    assert list(raw.var_names) == list(adata.var_names)
    assert select_expression(scaled, use_raw=False) is scaled


def test_scaled_x_falls_back_to_raw_with_a_message(
    adata: ad.AnnData, caplog: pytest.LogCaptureFixture
) -> None:
    scaled = scaled_with_raw(adata)
    with caplog.at_level(logging.WARNING, logger="indexer"):
        got = select_expression(scaled, what="query")
    assert got.n_vars == adata.n_vars
    assert "query.X has negative values" in caplog.text
    assert "reading .raw.X instead" in caplog.text


def test_unusable_choices_are_one_line_errors(adata: ad.AnnData) -> None:
    scaled = scaled_with_raw(adata)
    del scaled.raw
    with pytest.raises(InputError, match=r"query.X has negative values .* no usable .raw; pass --layer NAME .* "
                                         r"or --use-raw"):
        select_expression(scaled, what="query")
    with pytest.raises(InputError, match=r"has no .raw \(use_raw was asked\)"):
        select_expression(adata, use_raw=True)
    with pytest.raises(InputError, match=r"has no layer 'counts' \(layers: none\)"):
        select_expression(adata, layer="counts")
    with pytest.raises(InputError, match="both given"):
        select_expression(adata, layer="counts", use_raw=True)


def test_build_annotate_and_search_read_the_chosen_matrix(edge_store, adata, query_adata) -> None:
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    ref = scaled_with_raw(adata)
    build_reference(ref, store=edge_store, name="r", label_key="cell_type", spec=spec)
    want = annotate(query_adata, reference="r", store=edge_store, k=5)
    in_layer = ad.AnnData(sp.csr_matrix(query_adata.shape, dtype=np.float32), obs=query_adata.obs,
                          var=query_adata.var, layers={"counts": query_adata.X.copy()})
    got = annotate(in_layer, reference="r", store=edge_store, k=5, layer="counts")
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.params.matrix == "layers[counts]"
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)
    scaled = annotate(scaled_with_raw(query_adata), reference="r", store=edge_store, k=5)  # the fallback
    np.testing.assert_array_equal(scaled.labels, want.labels)
    cell = str(query_adata.obs_names[0])
    hits = search_cells(in_layer, cell=cell, reference="r", store=edge_store, limit=3, layer="counts")
    assert [h.cell_id for h in hits] == list(want.neighbour_ids[0, :3])


def test_pbmc68k_reduced_scaled_x_reads_its_log_normalised_raw(edge_store) -> None:
    """scanpy's pbmc68k_reduced: z-scored .X and a log-normalised .raw, as users have it."""
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = sc.datasets.pbmc68k_reduced()
    assert full.X.min() < 0
    is_query = np.arange(full.n_obs) % 5 == 0
    ref, query = full[~is_query].copy(), full[is_query].copy()
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(ref, store=edge_store, name="pbmc", label_key="bulk_labels", spec=spec)
    res = annotate(query, reference="pbmc", store=edge_store, k=10)
    explicit = annotate(query.raw.to_adata(), reference="pbmc", store=edge_store, k=10, use_raw=False)
    np.testing.assert_array_equal(res.labels, explicit.labels)
    assert (res.params.matrix, explicit.params.matrix) == ("raw.X", "X")  # recorded in uns['cellvec']
    truth = query.obs["bulk_labels"].astype(str).to_numpy()
    assert np.mean(res.labels == truth) > 0.6
    with pytest.raises(InputError, match="negative values"):
        annotate(query, reference="pbmc", store=edge_store, k=10, use_raw=False)


def test_bench_reads_the_chosen_matrix_for_every_method(adata: ad.AnnData, tmp_path) -> None:
    from benchmarks.accuracy import from_files

    scaled_with_raw(adata).write_h5ad(tmp_path / "scaled.h5ad")
    fallback = from_files(tmp_path / "scaled.h5ad", label_key="cell_type")  # the .raw fallback
    assert fallback.adata.n_vars == adata.n_vars
    assert fallback.adata.X.min() >= 0
    layered = adata.copy()
    layered.layers["counts"] = layered.X.copy()
    layered.X = layered.X * 0
    layered.write_h5ad(tmp_path / "layer.h5ad")
    got = from_files(tmp_path / "layer.h5ad", label_key="cell_type", layer="counts")
    assert (sp.csr_matrix(got.adata.X) != adata.X).nnz == 0
    as_is = from_files(tmp_path / "scaled.h5ad", label_key="cell_type", use_raw=False)  # .X whatever it holds
    assert as_is.adata.X.min() < 0
