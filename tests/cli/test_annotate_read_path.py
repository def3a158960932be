"""A read-only annotate on a warm reference does no work it did on the first run (issue 16).

It reads the h5ad without anndata, reads no gene catalog once its names are memoised, and labels exactly
as the AnnData path does. ``benchmarks/scale/bench_cli_annotate.py`` measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import indexer.genes._catalog as catalog_module
from annotator import annotate
from cellvec.cli import main
from indexer import open_store
from indexer.cells import read_cells
from tests.conftest import FAST_ENCODER, forbid_catalog_reads, make_adata

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    ref, query = tmp_path / "ref.h5ad", tmp_path / "query.h5ad"
    make_adata(25).write_h5ad(ref)
    make_adata(8, seed=5).write_h5ad(query)
    store = tmp_path / "store"
    argv = ["reference", "build", "--store", str(store), "--reference", "pbmc", "--adata", str(ref),
            "--label-key", "cell_type", "--encoder", FAST_ENCODER, "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    return {"store": store, "query": query, "csv": tmp_path / "labels.csv"}


def _annotate(capsys: pytest.CaptureFixture[str], built: dict[str, Path], *extra: str) -> dict:
    argv = ["annotate", "--store", str(built["store"]), "--reference", "pbmc", "--adata", str(built["query"]),
            "--csv", str(built["csv"]), "--json", *extra]
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out.strip().splitlines()[-1])


def test_annotate_without_out_imports_neither_anndata_nor_pandas(built: dict[str, Path]) -> None:
    argv = ["annotate", "--store", str(built["store"]), "--reference", "pbmc", "--adata", str(built["query"]),
            "--csv", str(built["csv"]), "--json"]
    code = (
        "import json, sys; from cellvec.cli import main; code = main(sys.argv[1:]);"
        "print(json.dumps({'code': code, 'heavy': sorted(m for m in ('anndata', 'pandas', 'sklearn', 'torch',"
        " 'httpx', 'zarr') if m in sys.modules)}))"
    )
    home = built["store"].parent
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(ROOT),
           "CELLVEC_CACHE_DIR": str(home / "cache")}
    env |= {k: os.environ[k] for k in ("CELLVEC_DATA_DIR",) if k in os.environ}
    for _ in range(2):  # the first run parses and caches the gene catalogs (pandas reads the NCBI files)
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout.splitlines()[-1]) == {"code": 0, "heavy": []}
    assert built["csv"].read_text().splitlines()[0] == "cell,label,confidence,runner_up,reason"


def test_the_h5py_read_labels_exactly_as_the_anndata_read(built: dict[str, Path]) -> None:
    with open_store(str(built["store"]), read_only=True) as store:
        mine = annotate(read_cells(built["query"]), reference="pbmc", store=store)  # type: ignore[arg-type]
        theirs = annotate(ad.read_h5ad(built["query"]), reference="pbmc", store=store)
    assert mine.labels.tolist() == theirs.labels.tolist()
    np.testing.assert_array_equal(mine.confidence, theirs.confidence)
    np.testing.assert_array_equal(mine.vectors, theirs.vectors)
    assert mine.neighbour_ids.tolist() == theirs.neighbour_ids.tolist()


def test_a_second_annotate_reads_no_gene_catalog(
    built: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "_MEMO_MIN", 1)  # the test's 48 genes count as a dataset's names
    catalog_module._CATALOGS.clear()
    first = _annotate(capsys, built)
    table = built["csv"].read_text()

    forbid_catalog_reads(monkeypatch)
    second = _annotate(capsys, built)
    assert second["labels"] == first["labels"]
    assert second["embedded_genes"] == 0
    assert built["csv"].read_text() == table
