"""``cellvec reference add|remove|relabel|refit|export|import|prune`` (and list/info around them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anndata as ad
import pytest

from cellvec.cli import _reference_ops as _reference_ops_cli  # noqa: F401  (registers the commands)
from cellvec.cli import main
from indexer import open_store
from tests.conftest import FAST_ENCODER, make_adata


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ref = make_adata(20)
    base = ref[ref.obs["cell_type"] != "NK cell"].copy()
    nk = make_adata(20, seed=4)
    nk = nk[nk.obs["cell_type"] == "NK cell"].copy()
    nk.obs_names = "b2_" + nk.obs_names
    paths = {
        "ref": tmp_path / "ref.h5ad", "nk": tmp_path / "nk.h5ad", "query": tmp_path / "query.h5ad",
        "store": tmp_path / "store", "store2": tmp_path / "store2", "export": tmp_path / "pbmc.cellvec",
        "out": tmp_path / "out.h5ad", "ids": tmp_path / "ids.txt",
    }
    base.write_h5ad(paths["ref"])
    nk.write_h5ad(paths["nk"])
    make_adata(8, seed=5).write_h5ad(paths["query"])
    return paths


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


def run_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.out
    assert "Traceback" not in captured.err
    return captured.err.strip()


def annotate_labels(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], store: Path, *extra: str
) -> dict[str, Any]:
    out = run_json(capsys, ["annotate", "--store", str(store), "--reference", "pbmc", "--adata",
                            str(files["query"]), "--out", str(files["out"]), "--k", "5", *extra])
    return out


def test_reference_lifecycle_commands(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    store = str(files["store"])
    common = ["--store", store, "--name", "pbmc"]
    built = run_json(capsys, ["reference", "build", *common, "--adata", str(files["ref"]), "--label-key",
                              "cell_type", "--encoder", FAST_ENCODER, "--dataset", "run1", "--mode", "paper"])
    assert (built["version"], built["n_cells"]) == (1, 60)
    # (No annotation yet: a read-only annotate cannot embed the NK genes that no reference cell uses.)

    added = run_json(capsys, ["reference", "add", *common, "--adata", str(files["nk"]), "--label-key",
                              "cell_type", "--dataset", "run2"])
    assert (added["version"], added["added"], added["n_cells"]) == (1, 20, 80)
    assert annotate_labels(capsys, files, files["store"])["labels"]["NK cell"] == 8

    relabelled = run_json(capsys, ["reference", "relabel", *common, "--from", "NK cell", "--to", "NK"])
    assert relabelled["relabelled"] == 20
    assert relabelled["labels"]["NK"] == 20
    assert annotate_labels(capsys, files, files["store"])["labels"]["NK"] == 8

    removed = run_json(capsys, ["reference", "remove", *common, "--label", "B cell"])
    assert removed["removed"] == 20
    assert "B cell" not in removed["labels"]
    assert "B cell" not in annotate_labels(capsys, files, files["store"])["labels"]
    files["ids"].write_text("cell0\ncell1\n")
    assert run_json(capsys, ["reference", "remove", *common, "--cells", str(files["ids"])])["removed"] == 2
    assert run_json(capsys, ["reference", "remove", *common, "--dataset", "run2"])["removed"] == 20

    refit = run_json(capsys, ["reference", "refit", *common, "--epochs", "2", "--out-dim", "8"])
    assert (refit["previous"], refit["version"], refit["n_cells"]) == (1, 2, 38)
    assert annotate_labels(capsys, files, files["store"])["version"] == 2
    assert annotate_labels(capsys, files, files["store"], "--version", "1")["version"] == 1
    assert ad.read_h5ad(files["out"]).uns["cellvec"]["params"]["version"] == 1

    info = run_json(capsys, ["reference", "info", *common])
    assert info["manifest"]["current"] == 2
    assert [v["version"] for v in info["manifest"]["versions"]] == [1, 2]
    assert info["datasets"] == {"run1": 38}
    listed = run_json(capsys, ["reference", "list", "--store", store])
    assert listed["references"][0]["versions"] == [1, 2]

    exported = run_json(capsys, ["reference", "export", *common, "--out", str(files["export"])])
    assert exported["version"] == 2
    assert files["export"].is_file()
    want = annotate_labels(capsys, files, files["store"])
    imported = run_json(capsys, ["reference", "import", "--store", str(files["store2"]), "--file",
                                 str(files["export"])])
    assert (imported["reference"], imported["version"], imported["n_cells"]) == ("pbmc", 1, 38)
    got = annotate_labels(capsys, files, files["store2"])
    assert got["labels"] == want["labels"]

    assert run_json(capsys, ["reference", "prune", *common, "--keep", "1"])["removed"] == [1]
    assert "no finished version 1" in run_error(capsys, ["annotate", "--store", store, "--reference", "pbmc",
                                                         "--adata", str(files["query"]), "--version", "1"])


def test_reference_command_errors(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    store = str(files["store"])
    common = ["--store", store, "--name", "pbmc"]
    run_json(capsys, ["reference", "build", *common, "--adata", str(files["ref"]), "--label-key", "cell_type",
                      "--encoder", FAST_ENCODER])
    assert "exactly one of --cells, --label, --dataset" in run_error(
        capsys, ["reference", "remove", *common, "--label", "B cell", "--dataset", "x"])
    assert "no cells labelled 'Tcell'" in run_error(
        capsys, ["reference", "relabel", *common, "--from", "Tcell", "--to", "T"])
    assert "no reference named 'nope'" in run_error(
        capsys, ["reference", "add", "--store", store, "--name", "nope", "--adata", str(files["nk"]),
                 "--label-key", "cell_type"])
    assert "not a cellvec export file" in run_error(
        capsys, ["reference", "import", "--store", store, "--file", str(files["ref"])])
    with open_store(files["store"]):  # another writer holds the store
        err = run_error(capsys, ["reference", "relabel", *common, "--from", "T cell", "--to", "T"])
        assert "is locked by process" in err
        assert run_json(capsys, ["reference", "info", *common])["manifest"]["current"] == 1
        run_json(capsys, ["reference", "export", *common, "--out", str(files["export"])])


def test_build_takes_the_index_settings(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from indexer.reference import version_collection

    run_json(capsys, ["reference", "build", "--store", str(files["store"]), "--name", "pbmc", "--adata",
                      str(files["ref"]), "--label-key", "cell_type", "--encoder", FAST_ENCODER, "--mode", "paper",
                      "--hnsw-m", "8", "--ef-construct", "40", "--hnsw-ef", "64", "--quantization", "int8",
                      "--on-disk", "--segment-points", "5000", "--no-keep-views"])
    sidecar = files["store"] / "collections" / version_collection("pbmc", 1) / "cellvec-collection.json"
    assert json.loads(sidecar.read_text())["vectors"] == {"cell": 32}  # no second view stored
    index = json.loads(sidecar.read_text())["index"]
    assert (index["hnsw_m"], index["hnsw_ef_construct"], index["hnsw_ef"]) == (8, 40, 64)
    assert (index["quantization"], index["on_disk"], index["segment_points"]) == ("int8", True, 5000)
    assert annotate_labels(capsys, files, files["store"])["n_cells"] == ad.read_h5ad(files["query"]).n_obs


def test_build_in_chunks_from_the_cli(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import indexer

    real = indexer.build_reference
    seen: dict[str, Any] = {}

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(chunk_size=kwargs.get("chunk_size"), fit_cells=kwargs.get("fit_cells"))
        return real(*args, **kwargs)

    monkeypatch.setattr(indexer, "build_reference", spy)
    n_ref = ad.read_h5ad(files["ref"]).n_obs
    out = run_json(capsys, ["reference", "build", "--store", str(files["store"]), "--reference", "pbmc",
                            "--adata", str(files["ref"]), "--label-key", "cell_type", "--encoder", FAST_ENCODER,
                            "--chunk-size", "30", "--fit-cells", "40"])
    assert seen == {"chunk_size": 30, "fit_cells": 40}
    assert out["n_cells"] == n_ref  # every chunk written
    assert annotate_labels(capsys, files, files["store"])["n_cells"] == ad.read_h5ad(files["query"]).n_obs
    err = run_error(capsys, ["reference", "build", "--store", str(files["store2"]), "--reference", "pbmc",
                             "--adata", str(files["ref"]), "--label-key", "cell_type", "--chunk-size", "5"])
    assert "--chunk-size" in err
    assert "10" in err


def test_export_of_a_reference_without_second_views(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Built with --no-keep-views, the collection has only the cell vector: export must not ask for view2.
    run_json(capsys, ["reference", "build", "--store", str(files["store"]), "--reference", "pbmc", "--adata",
                      str(files["ref"]), "--label-key", "cell_type", "--encoder", FAST_ENCODER,
                      "--no-keep-views"])
    run_json(capsys, ["reference", "export", "--store", str(files["store"]), "--reference", "pbmc",
                      "--out", str(files["export"])])
    run_json(capsys, ["reference", "import", "--store", str(files["store2"]), "--file", str(files["export"])])
    assert annotate_labels(capsys, files, files["store2"])["n_cells"] == ad.read_h5ad(files["query"]).n_obs
