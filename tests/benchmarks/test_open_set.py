"""``cellvec bench --open-set``: leave-one-type-out, rare-class recall, ECE and AUROC beside CellTypist."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.accuracy._open_set import auroc, ece, ece_null, recall_by_size, report
from cellvec.cli import main
from tests.conftest import FAST_ENCODER, make_adata


def test_auroc_and_ece_on_known_cases() -> None:
    pos = np.array([True, True, False, False])
    assert auroc(pos, np.array([0.9, 0.8, 0.1, 0.2])) == 1.0
    assert auroc(pos, np.array([0.1, 0.2, 0.9, 0.8])) == 0.0
    assert auroc(pos, np.ones(4)) == 0.5
    assert np.isnan(auroc(np.zeros(4, dtype=bool), np.arange(4.0)))
    # confidence 0.9 everywhere, right 9 times in 10: calibrated; right 5 times in 10: off by 0.4
    assert ece(np.full(10, 0.9), np.arange(10) < 9) == pytest.approx(0.0)
    assert ece(np.full(10, 0.9), np.arange(10) < 5) == pytest.approx(0.4)
    # a calibrated confidence measured on few cells still shows an ECE: the floor shrinks with more cells
    few, many = ece_null(np.full(50, 0.8)), ece_null(np.full(5000, 0.8))
    assert few > 3 * many
    assert many < 0.02


def test_recall_by_size_bins_classes_by_reference_size() -> None:
    y_ref = np.array(["a"] * 3 + ["b"] * 30)
    y_q = np.array(["a", "a", "b", "b"])
    got = recall_by_size(y_ref, y_q, np.array(["a", "b", "b", "b"]))
    assert got["recall_1_5"] == 0.5
    assert got["recall_21_100"] == 1.0
    assert np.isnan(got["recall_6_20"])


@pytest.mark.filterwarnings("ignore")
def test_bench_open_set_cli_writes_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "cells.h5ad"
    make_adata(60).write_h5ad(data)
    out = tmp_path / "report"
    argv = [
        "bench",
        "--adata",
        str(data),
        "--label-key",
        "cell_type",
        "--open-set",
        "--seeds",
        "1",
        "--encoders",
        FAST_ENCODER,
        "--store",
        str(tmp_path / "store"),
        "--out",
        str(out),
        "--n-jobs",
        "1",
        "--json",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    rows = json.loads((out / "open_set.json").read_text())
    open_rows = [r for r in rows if "left_out" in r]
    # every type has 48 reference cells (>= 20): each is left out once, for cellvec and CellTypist alike
    assert {r["left_out"] for r in open_rows} == {"T cell", "B cell", "Monocyte", "NK cell"}
    methods = {r["method"] for r in open_rows}
    assert {"decide+novelty@0.01", "celltypist p>0.5"} <= methods
    ours = [r for r in open_rows if r["method"] == "decide+novelty@0.01"]
    # distinct programs: the missing type's cells are told apart from the known ones
    assert np.mean([r["novelty_auroc"] for r in ours]) > 0.8
    assert all(0 <= r["known_rejected"] <= 1 for r in ours)
    closed = [r for r in rows if "left_out" not in r and r["method"] == "decide+novelty@0.01"]
    assert closed[0]["accuracy"] > 0.9
    assert 0 <= closed[0]["ece"] <= 1
    md = (out / "open_set.md").read_text()
    assert "Leave-one-type-out, per type" in md
    assert "novelty_auroc" in md


def test_bench_open_set_refuses_alpha_outside_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--dataset", "pbmc68k", "--open-set", "--unknown-alpha", "0.7", "--out", str(tmp_path)])
    assert code == 2
    assert "--unknown-alpha 0.7 is outside [0, 0.5]" in capsys.readouterr().err


def test_voigt_rare_needs_open_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--dataset", "voigt-rare", "--out", str(tmp_path)]) == 2
    assert "add --open-set" in capsys.readouterr().err


def test_report_renders_means_with_missing_bins() -> None:
    rows = [
        {
            "dataset": "d",
            "method": "m",
            "accuracy": 1.0,
            "macro_f1": 1.0,
            "ece": 0.0,
            "ece_null": 0.0,
            "rejected": 0.0,
            "recall_1_5": float("nan"),
            "recall_6_20": 0.5,
            "recall_21_100": 1.0,
            "recall_101_up": float("nan"),
        },
    ]
    md = report(rows)
    assert "| d | m | 1.000 | 1.000 | 0.000 | 0.000 | 0.000 | – | 0.500 | 1.000 | – |" in md


def test_exchangeability_compares_the_three_score_sets(data_dir: Path) -> None:
    from benchmarks.accuracy.exchangeability import compare

    ref, held = make_adata(60, seed=1), make_adata(20, seed=2)
    y = ref.obs["cell_type"].astype(str).to_numpy()
    r = compare(ref, y, held, encoder=FAST_ENCODER, alpha=0.01)
    assert r["n_ref"] == ref.n_obs
    assert r["held"]["p"].shape == (held.n_obs,)
    assert r["own"]["mahalanobis"].shape == (ref.n_obs,)
    assert r["cal"]["mahalanobis"].size > 0
    assert 1 <= r["pca_components"] <= 50
    # Reference-like cells, in the reference or not, are mostly known (about alpha of them Unknown).
    assert r["own"]["unknown"].mean() <= 0.05
    assert r["held"]["unknown"].mean() <= 0.05
