"""``cellvec bench --query-adata`` with a query of the other species: one set of ortholog-mapped genes."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from benchmarks.accuracy._datasets import from_files
from indexer import OrthologMappingError

pytestmark = pytest.mark.slow


def test_human_query_on_mouse_reference_file(
    actinn: ad.AnnData, pbmc: ad.AnnData, data_dir: Path, tmp_path: Path
) -> None:
    ref_path, query_path = tmp_path / "ref.h5ad", tmp_path / "q.h5ad"
    actinn.write_h5ad(ref_path)
    q = pbmc.copy()
    q.obs["cell_type"] = "T cell"
    q.write_h5ad(query_path)
    ds = from_files(ref_path, label_key="cell_type", query_path=query_path)
    assert ds.species == "mouse"
    assert ds.query is not None
    assert set(ds.query.var_names) <= set(ds.adata.var_names)  # the reference's own names
    assert 650 < ds.query.n_vars <= 765
    report = ds.details["orthologs"]
    assert isinstance(report, dict)
    assert (report["query_species"], report["reference_species"]) == ("human", "mouse")
    assert report["n_mapped"] > 650
    # Every method reads the same genes: the reference is cut to those the mapped query has, after
    # normalising each cell over its whole library; cellvec gets the query in its own species.
    assert list(ds.adata.var_names) == [g for g in actinn.var_names if g in set(ds.query.var_names)]
    assert ds.details["shared_genes"] == ds.adata.n_vars
    assert ds.native_query is not None
    assert list(ds.native_query.var_names) == list(pbmc.var_names)
    row = np.asarray(ds.adata.X[0].todense()).ravel()
    counts = np.asarray(actinn.X[0].todense()).ravel()
    cols = [list(actinn.var_names).index(g) for g in ds.adata.var_names]
    np.testing.assert_allclose(row, np.log1p(counts[cols] / counts.sum() * 1e4), rtol=1e-5)


def test_unmappable_query_file_refused(actinn: ad.AnnData, pbmc: ad.AnnData, tmp_path: Path) -> None:
    ref_path, query_path = tmp_path / "ref.h5ad", tmp_path / "q.h5ad"
    actinn.write_h5ad(ref_path)
    q = pbmc[:, :150].copy()  # too few genes to map
    q.obs["cell_type"] = "T cell"
    q.write_h5ad(query_path)
    with pytest.raises(OrthologMappingError, match=r"^only \d+ of the human query's 150 genes map onto mouse"):
        from_files(ref_path, label_key="cell_type", query_path=query_path)
