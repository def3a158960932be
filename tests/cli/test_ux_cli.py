"""What a biologist types: --layer/--use-raw, import over an existing reference, close option names, and
labels in natural order in the tables the CLI prints."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cellvec.cli import _reference_ops as _reference_ops_cli  # noqa: F401  (registers the commands)
from cellvec.cli import main
from tests.conftest import FAST_ENCODER, make_adata

NUMBERED = {"T cell": "cluster 10", "B cell": "cluster 2", "Monocyte": "cluster 1", "NK cell": "cluster 9"}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A reference whose labels are numbered clusters, a query with its log data in a layer, a store."""
    ref = make_adata(10)
    ref.obs["cluster"] = ref.obs["cell_type"].map(NUMBERED).astype(str)
    query = make_adata(4, seed=5)
    query.layers["counts"] = query.X.copy()
    query.X = query.X * 0
    paths = {"ref": tmp_path / "ref.h5ad", "query": tmp_path / "query.h5ad", "store": tmp_path / "store"}
    ref.write_h5ad(paths["ref"])
    query.write_h5ad(paths["query"])
    code = main(["reference", "build", "--store", str(paths["store"]), "--reference", "c", "--adata",
                 str(paths["ref"]), "--label-key", "cluster", "--encoder", FAST_ENCODER, "--mode", "paper",
                 "--json"])
    assert code == 0
    return paths


def run(capsys: pytest.CaptureFixture[str], argv: list[str], *, code: int = 0) -> tuple[str, str]:
    got = main(argv)
    out = capsys.readouterr()
    assert got == code, out.err
    assert "Traceback" not in out.err
    return out.out, out.err


def last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


def test_annotate_reads_a_layer_and_refuses_unusable_choices(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    base = ["annotate", "--store", str(files["store"]), "--reference", "c", "--adata", str(files["query"]),
            "--k", "3"]
    out, _ = run(capsys, [*base, "--layer", "counts", "--json"])
    assert sum(last_json(out)["labels"].values()) == 16
    assert last_json(out)["labels"].get("Unknown", 0) < 16  # .X is all zeros: the layer was read
    _, err = run(capsys, [*base, "--layer", "count"], code=2)
    assert "has no layer 'count' (layers: counts)" in err
    _, err = run(capsys, [*base, "--use-raw"], code=2)
    assert "has no .raw (use_raw was asked); drop --use-raw, or pass --layer NAME" in err


def test_annotate_table_lists_labels_in_natural_order(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    out, _ = run(capsys, ["annotate", "--store", str(files["store"]), "--reference", "c", "--adata",
                          str(files["query"]), "--layer", "counts", "--k", "3", "--unknown-alpha", "0"])
    shown = [line.split("  ")[1].strip() for line in out.splitlines() if line.startswith("  cluster")]
    assert shown == ["cluster 1", "cluster 2", "cluster 9", "cluster 10"]
    out, _ = run(capsys, ["annotate", "--store", str(files["store"]), "--reference", "c", "--adata",
                          str(files["query"]), "--layer", "counts", "--k", "3", "--unknown-alpha", "0", "--json"])
    assert list(last_json(out)["labels"]) == ["cluster 1", "cluster 2", "cluster 9", "cluster 10"]
    out, _ = run(capsys, ["reference", "info", "--store", str(files["store"]), "--reference", "c"])
    labels = next(line for line in out.splitlines() if line.startswith("labels: "))
    assert labels == "labels: cluster 1=10, cluster 2=10, cluster 9=10, cluster 10=10"
    out, _ = run(capsys, ["search", "cells", "--store", str(files["store"]), "--reference", "c", "--summary",
                          "--json"])
    assert [s["label"] for s in last_json(out)["labels"]] == ["cluster 1", "cluster 2", "cluster 9", "cluster 10"]
    assert all(s["distinctive_genes"] for s in last_json(out)["labels"])
    out, _ = run(capsys, ["search", "cells", "--store", str(files["store"]), "--reference", "c", "--summary"])
    assert "distinctive genes" in out.splitlines()[0]
    assert " vs " in out.splitlines()[1]  # the label's share against the other labels'


def test_unknown_option_suggests_the_close_one(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, err = run(capsys, ["annotate", "--store", str(files["store"]), "--referenc", "c"], code=2)
    assert "No such option '--referenc'" in err
    assert "Did you mean '--reference'?" in err
    _, err = run(capsys, ["annotate", "--use-ra"], code=2)
    assert "Did you mean '--use-raw'?" in err  # the closest, not every match in alphabetical order
    _, err = run(capsys, ["reference", "build", "--labelkey", "x"], code=2)
    assert "Did you mean '--label-key'?" in err


def test_import_over_an_existing_reference_asks_for_as_or_replace(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = str(files["store"])
    export = tmp_path / "c.cellvec"
    old = os.umask(0o022)
    try:
        run(capsys, ["reference", "export", "--store", store, "--reference", "c", "--out", str(export)])
        run(capsys, ["reference", "export", "--store", store, "--reference", "c", "--out",
                     str(tmp_path / "g.cellvec"), "--mode", "640"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(export.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "g.cellvec").stat().st_mode) == 0o640
    _, err = run(capsys, ["reference", "export", "--store", store, "--reference", "c", "--out",
                          str(tmp_path / "h.cellvec"), "--mode", "rw"], code=2)
    assert "--mode rw is not an octal file mode" in err
    _, err = run(capsys, ["reference", "import", "--store", store, "--file", str(export)], code=2)
    assert err.count("\n") == 1  # one line
    assert "already has reference 'c' (versions 1, current 1); pass --as NEW" in err
    out, _ = run(capsys, ["reference", "info", "--store", store, "--reference", "c", "--json"])
    assert last_json(out)["manifest"]["current"] == 1
    out, _ = run(capsys, ["reference", "import", "--store", store, "--file", str(export), "--as", "c2", "--json"])
    assert (last_json(out)["reference"], last_json(out)["version"]) == ("c2", 1)
    out, _ = run(capsys, ["reference", "import", "--store", store, "--file", str(export), "--replace", "--json"])
    assert (last_json(out)["reference"], last_json(out)["version"]) == ("c", 2)
    out, _ = run(capsys, ["reference", "list", "--store", store, "--json"])
    assert {r["name"]: r["versions"] for r in last_json(out)["references"]} == {"c": [1, 2], "c2": [1]}


def test_annotate_explain_csv_and_plot_in_the_default_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import anndata as ad
    import pandas as pd

    make_adata(10).write_h5ad(tmp_path / "ref.h5ad")
    make_adata(2, seed=5).write_h5ad(tmp_path / "q.h5ad")  # 8 cells: the figure falls back to PCA (fast)
    store = str(tmp_path / "store")
    run(capsys, ["reference", "build", "--store", store, "--reference", "h", "--adata", str(tmp_path / "ref.h5ad"),
                 "--label-key", "cell_type", "--encoder", FAST_ENCODER, "--json"])
    base = ["annotate", "--store", store, "--reference", "h", "--adata", str(tmp_path / "q.h5ad"), "--k", "3",
            "--out", str(tmp_path / "a.h5ad")]
    _, err = run(capsys, [*base, "--plot", str(tmp_path / "no" / "figs")], code=2)
    assert "--plot" in err
    assert "does not exist; create it first" in err
    assert not (tmp_path / "a.h5ad").exists()  # refused before the work
    out, _ = run(capsys, [*base, "--explain", "--csv", str(tmp_path / "a.csv"), "--plot", str(tmp_path / "figs"),
                          "--unknown-alpha", "0"])
    assert "markers: " in out
    assert "(PCA of the query's cell vectors)" in out
    table = pd.read_csv(tmp_path / "a.csv", keep_default_na=False)
    assert list(table.columns) == ["cell", "label", "confidence", "runner_up", "reason", "marker_genes",
                                   "text_genes"]
    assert (table["marker_genes"].str.len() > 0).all()
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["label_counts.png", "umap.png"]
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["cellvec"]["explain"]["marker_genes"].shape == (8, 5)
