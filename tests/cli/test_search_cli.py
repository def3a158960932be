"""``cellvec search genes|cells`` and ``cellvec annotate --explain``: text and JSON, filters, errors."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import pytest

import cellvec.cli._search  # noqa: F401  (registers `search genes|cells`)
from cellvec.cli import main
from indexer import GeneCatalog, GeneIndex, build_reference, get_encoder, open_store
from schemas import CellVectorSpec
from tests.conftest import make_adata

FAST = "random:32"


@pytest.fixture
def store_dir(tmp_path: Path, adata: ad.AnnData, fast_spec: CellVectorSpec, data_dir: Path) -> str:
    """An Edge store with the synthetic genes embedded and a reference 'ref' (datasets b1, b2)."""
    path = tmp_path / "store"
    with open_store(path) as st:
        catalog = GeneCatalog.load("human", data_dir=data_dir)
        GeneIndex(st, get_encoder(FAST), catalog).vectors(list(adata.var_names))
        build_reference(adata, store=st, name="ref", label_key="cell_type", spec=fast_spec,
                        dataset_key="batch")
    return str(path)


@pytest.fixture
def query_file(tmp_path: Path, query_adata: ad.AnnData) -> str:
    path = tmp_path / "query.h5ad"
    query_adata.write_h5ad(path)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ genes


def test_search_genes_by_symbol_json(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, out, _ = run(capsys, "search", "genes", "--store", store_dir, "--encoder", FAST, "--limit", "3",
                       "--json", "cd3e")
    assert code == 0
    data = json.loads(out)
    assert data["kind"] == "symbol"
    assert data["symbol"] == "CD3E"
    assert data["n_indexed"] == 48
    assert [h["rank"] for h in data["hits"]] == [1, 2, 3]
    assert "CD3E" not in [h["symbol"] for h in data["hits"]]
    assert {"symbol", "species", "similarity", "name", "summary"} <= set(data["hits"][0])


def test_search_genes_text_table(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, out, _ = run(capsys, "search", "genes", "--store", store_dir, "--encoder", FAST, "MS4A1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "genes nearest to MS4A1, among 48 indexed human genes (random:32):"
    assert lines[1].split() == ["rank", "symbol", "species", "similarity", "description"]
    assert len(lines) == 12
    assert lines[2].split()[0] == "1"


def test_search_genes_free_text_from_words(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, out, _ = run(capsys, "search", "genes", "--store", store_dir, "--encoder", FAST, "--json",
                       "B", "cell", "receptor")
    assert code == 0
    data = json.loads(out)
    assert data["kind"] == "text"
    assert data["query"] == "B cell receptor"
    assert len(data["hits"]) == 10


def test_search_genes_as_text(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, out, _ = run(capsys, "search", "genes", "--store", store_dir, "--encoder", FAST, "--as", "text",
                       "--json", "CD3E")
    assert code == 0
    assert json.loads(out)["kind"] == "text"


def test_search_genes_unknown_symbol_suggests(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, out, err = run(capsys, "search", "genes", "--store", store_dir, "--encoder", FAST, "PTPRCC")
    assert code == 2
    assert out == ""
    assert err.startswith("error: 'PTPRCC' is not a known human gene symbol")
    assert "did you mean PTPRC" in err
    assert len(err.strip().splitlines()) == 1


def test_search_genes_without_collection(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, _, err = run(capsys, "search", "genes", "--store", store_dir, "--encoder", "random:16", "CD3E")
    assert code == 2
    assert "cellvec genes index --all --encoder random:16" in err


# ------------------------------------------------------------------------------------------------ cells


def test_search_cells_json(capsys: pytest.CaptureFixture[str], store_dir: str, query_file: str) -> None:
    code, out, _ = run(capsys, "search", "cells", "--store", store_dir, "--reference", "ref",
                       "--adata", query_file, "--cell", "cell15", "--limit", "4", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["reference"] == "ref"
    assert data["version"] == 1
    assert data["query"]["cell"] == "cell15"
    assert len(data["hits"]) == 4
    assert {h["label"] for h in data["hits"]} == {"B cell"}
    scores = [h["score"] for h in data["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_cells_where(capsys: pytest.CaptureFixture[str], store_dir: str, query_file: str) -> None:
    code, out, _ = run(capsys, "search", "cells", "--store", store_dir, "--reference", "ref",
                       "--adata", query_file, "--cell", "cell15", "--limit", "100",
                       "--where", "label=NK cell", "--where", "label=T cell", "--where", "dataset=b2",
                       "--json")
    assert code == 0
    data = json.loads(out)
    assert data["where"] == {"label": ["NK cell", "T cell"], "dataset": "b2"}
    assert len(data["hits"]) == 30
    assert {h["label"] for h in data["hits"]} == {"NK cell", "T cell"}
    assert {h["dataset"] for h in data["hits"]} == {"b2"}


def test_search_cells_text(capsys: pytest.CaptureFixture[str], store_dir: str, query_file: str) -> None:
    code, out, _ = run(capsys, "search", "cells", "--store", store_dir, "--reference", "ref",
                       "--adata", query_file, "--cell", "cell0", "--limit", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "reference 'ref' v1: 2 cells nearest to cell 'cell0':"
    assert lines[2].split()[0] == "1"
    assert "T cell" in lines[2]


def test_search_cells_by_label(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, out, _ = run(capsys, "search", "cells", "--store", store_dir, "--reference", "ref",
                       "--label", "Monocyte", "--limit", "5", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["query"] == {"label": "Monocyte", "any_label": False}
    assert [h["label"] for h in data["hits"]] == ["Monocyte"] * 5


def test_search_cells_summary(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, out, _ = run(capsys, "search", "cells", "--store", store_dir, "--reference", "ref", "--summary",
                       "--limit", "3", "--json")
    assert code == 0
    labels = json.loads(out)["labels"]
    assert [s["label"] for s in labels] == ["B cell", "Monocyte", "NK cell", "T cell"]
    assert all(s["n_cells"] == 30 and len(s["top_genes"]) == 3 for s in labels)
    code, out, _ = run(capsys, "search", "cells", "--store", store_dir, "--reference", "ref", "--summary")
    assert code == 0
    assert out.splitlines()[1].startswith("  B cell (30 cells): ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "Monocyte", "--summary"], "pass exactly one of --adata with --cell, --label LABEL, or"),
        ([], "pass exactly one of"),
        (["--cell", "cell0"], "--adata and --cell go together"),
        (["--label", "Mono"], "no label 'Mono'; did you mean Monocyte"),
        (["--summary", "--where", "label"], "--where 'label' is not field=value"),
        (["--summary", "--where", "organ=eye"], "cannot filter on 'organ'"),
        (["--summary", "--version", "3"], "has no finished version 3"),
    ],
)
def test_search_cells_errors(
    capsys: pytest.CaptureFixture[str], store_dir: str, args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "search", "cells", "--store", store_dir, "--reference", "ref", *args)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------ explain


def test_annotate_explain_writes_top_genes(
    capsys: pytest.CaptureFixture[str], store_dir: str, query_file: str, tmp_path: Path
) -> None:
    out_path = tmp_path / "annotated.h5ad"
    code, _, _ = run(capsys, "annotate", "--store", store_dir, "--reference", "ref", "--adata", query_file,
                     "--out", str(out_path), "--explain", "--unknown-alpha", "0", "--json")
    assert code == 0
    annotated = ad.read_h5ad(out_path)
    top = annotated.obs["cellvec_top_genes"]
    assert all(len(s.split(", ")) == 5 for s in top)
    assert annotated.uns["cellvec"]["explain"]["method"] == "exact"


@pytest.mark.parametrize("option", ["query_density", "empirical_null"])
def test_annotate_query_side_steps_turn_off(
    capsys: pytest.CaptureFixture[str], store_dir: str, tmp_path: Path, option: str
) -> None:
    """--no-query-density and --no-empirical-null turn those steps off (both need 200 query cells to run)."""
    query_file = str(tmp_path / "query200.h5ad")
    make_adata(50, seed=1).write_h5ad(query_file)
    flag = "--" + option.replace("_", "-")
    ran = {}
    for given in (flag, flag.replace("--", "--no-", 1)):
        out_path = tmp_path / f"annotated{given}.h5ad"
        code, _, _ = run(capsys, "annotate", "--store", store_dir, "--reference", "ref", "--adata", query_file,
                         "--out", str(out_path), given, "--json")
        assert code == 0
        ran[given] = ad.read_h5ad(out_path).uns["cellvec"]
    on, off = ran[flag], ran[flag.replace("--", "--no-", 1)]
    assert on["params"][option] is True
    assert option in on  # what the step fitted (density: inflation, ...; null: shift and scale)
    assert off["params"][option] is False
    assert option not in off
