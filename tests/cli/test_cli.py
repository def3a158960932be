import json
from pathlib import Path

import anndata as ad
import pytest

from cellvec.cli import main
from tests.conftest import FAST_ENCODER, make_adata


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ref, query = tmp_path / "ref.h5ad", tmp_path / "query.h5ad"
    make_adata(25).write_h5ad(ref)
    make_adata(8, seed=5).write_h5ad(query)
    return {"ref": ref, "query": query, "store": tmp_path / "store", "out": tmp_path / "out.h5ad"}


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


def test_reference_build_annotate_list_info(files, capsys):
    store = str(files["store"])
    built = run_json(
        capsys,
        [
            "reference",
            "build",
            "--store",
            store,
            "--name",
            "pbmc",
            "--adata",
            str(files["ref"]),
            "--label-key",
            "cell_type",
            "--encoder",
            FAST_ENCODER,
            "--dataset-key",
            "batch",
            "--json",
        ],
    )
    assert built["n_cells"] == 100
    assert built["version"] == 1
    assert built["mode"]
    out = run_json(
        capsys,
        [
            "annotate",
            "--store",
            store,
            "--reference",
            "pbmc",
            "--adata",
            str(files["query"]),
            "--out",
            str(files["out"]),
            "--json",
        ],
    )
    assert out["n_cells"] == 32
    assert sum(out["labels"].values()) == 32
    annotated = ad.read_h5ad(files["out"])
    truth = annotated.obs["cell_type"].astype(str)
    assert (annotated.obs["cellvec_label"].astype(str) == truth).mean() >= 0.9
    assert annotated.uns["cellvec"]["params"]["reference"] == "pbmc"
    listed = run_json(capsys, ["reference", "list", "--store", store, "--json"])
    assert [r["name"] for r in listed["references"]] == ["pbmc"]
    info = run_json(capsys, ["reference", "info", "--store", store, "--name", "pbmc", "--json"])
    assert info["datasets"] == {"b1": 50, "b2": 50}
    assert info["manifest"]["versions"][0]["labels"]["T cell"] == 25


def test_genes_index_embeds_once(tmp_path, capsys):
    genes = tmp_path / "genes.txt"
    genes.write_text("CD3E\nms4a1\nNOT_A_GENE\n")
    argv = [
        "genes",
        "index",
        "--store",
        str(tmp_path / "s"),
        "--genes",
        str(genes),
        "--encoder",
        FAST_ENCODER,
        "--json",
    ]
    first = run_json(capsys, argv)
    assert first["genes"] == 2
    assert first["embedded"] == 2
    assert first["unknown"] == ["NOT_A_GENE"]
    assert run_json(capsys, argv)["embedded"] == 0


def test_demo_prints_four_metrics(tmp_path, capsys):
    out = run_json(capsys, ["demo", "--store", str(tmp_path / "demo"), "--encoder", FAST_ENCODER, "--json"])
    assert set(out["metrics"]) == {"accuracy", "weighted_f1", "macro_f1", "kappa"}
    assert out["reference_cells"] == 560
    assert out["query_cells"] == 140
    assert out["metrics"]["accuracy"] > 0.5
    assert out["store"] == str((tmp_path / "demo").resolve())


def test_demo_names_its_store_folder_and_how_to_remove_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--encoder", FAST_ENCODER])
    out = capsys.readouterr().out
    assert code == 0
    folder = tmp_path / "cellvec-demo-store"
    assert folder.is_dir()
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"store: {folder}")
    assert last.endswith(f"remove it with rm -rf {folder})")


def test_user_error_is_one_line_and_exit_2(files, capsys):
    code = main(
        ["annotate", "--store", str(files["store"]), "--reference", "x", "--adata", str(files["query"])]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "Traceback" not in err
