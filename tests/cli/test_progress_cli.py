"""Progress in logs (issue 16): with stderr not a terminal, plain lines only, and no absurd first rate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cellvec.cli import main
from tests.conftest import FAST_ENCODER, make_adata

RATE = re.compile(r", ([\d,.]+)/s")


def _step_lines(err: str) -> dict[str, list[str]]:
    steps: dict[str, list[str]] = {}
    for line in err.splitlines():
        m = re.match(r"([a-zA-Z ()]+): [\d,]+/[\d,]+", line)
        if m:
            steps.setdefault(m.group(1), []).append(line)
    return steps


def test_build_and_annotate_write_plain_progress_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, query = tmp_path / "ref.h5ad", tmp_path / "query.h5ad"
    make_adata(25).write_h5ad(ref)
    make_adata(8, seed=5).write_h5ad(query)
    store = str(tmp_path / "store")
    code = main(["reference", "build", "--store", store, "--reference", "pbmc", "--adata", str(ref),
                 "--label-key", "cell_type", "--encoder", FAST_ENCODER, "--mode", "paper", "--refine", "supcon",
                 "--epochs", "3"])
    build_err = capsys.readouterr().err
    assert code == 0, build_err
    code = main(["annotate", "--store", store, "--reference", "pbmc", "--adata", str(query)])
    err = build_err + capsys.readouterr().err
    assert code == 0, err
    assert "\x1b[" not in err
    assert "\r" not in err
    steps = _step_lines(err)
    assert {"writing cells", "training SupCon (epochs)", "searching"} <= set(steps), err
    for step, lines in steps.items():
        assert not RATE.search(lines[0]), f"{step}: a rate in the first line: {lines[0]}"
        for line in lines:
            m = RATE.search(line)
            assert m is None or float(m.group(1).replace(",", "")) < 1e6, line
    assert re.search(r"training SupCon \(epochs\): 3/3 \(100%\).* in \d+ s", err)
