"""A biologist's first day (issue 16): outputs written whole, readers that leave the store alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cellvec.cli import main
from indexer import InputError, PanelCoverageWarning
from tests.conftest import FAST_ENCODER, make_adata


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    """A hybrid reference (the default mode) built from the synthetic cells, and a query file."""
    ref, query = tmp_path / "ref.h5ad", tmp_path / "query.h5ad"
    make_adata(25).write_h5ad(ref)
    q = make_adata(8, seed=5)
    x = q.X.toarray()
    x[:8] += x[8:16]  # eight T/B doublets: ambiguous, so some fall under a confidence threshold
    q.X = sp.csr_matrix(x)
    q.write_h5ad(query)
    store = tmp_path / "store"
    code, _, err = _run(capsys, ["reference", "build", "--store", str(store), "--name", "pbmc", "--adata",
                                 str(ref), "--label-key", "cell_type", "--encoder", FAST_ENCODER, "--json"])
    assert code == 0, err
    return {"store": store, "query": query, "tmp": tmp_path}


def _annotate(built: dict[str, Path], *extra: str) -> list[str]:
    return ["annotate", "--store", str(built["store"]), "--reference", "pbmc", "--adata", str(built["query"]),
            *extra]


def test_explain_out_writes_rectangular_explanations(built, capsys):
    """Unknown cells have no explanation: the h5ad still writes (it raised 'inhomogeneous shape')."""
    out = built["tmp"] / "out.h5ad"
    code, _, err = _run(capsys, _annotate(built, "--explain", "--min-confidence", "0.9", "--out", str(out),
                                          "--json"))
    assert code == 0, err
    a = ad.read_h5ad(out)
    unknown = (a.obs["cellvec_label"] == "Unknown").to_numpy()
    assert unknown.any()
    assert (~unknown).any()
    genes = np.asarray(a.uns["cellvec"]["explain"]["genes"])
    contrib = np.asarray(a.uns["cellvec"]["explain"]["contributions"])
    assert genes.shape == contrib.shape == (a.n_obs, 5)
    assert (genes[unknown] == "").all()
    assert np.isnan(contrib[unknown]).all()
    assert (genes[~unknown] != "").all()
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_out_in_missing_folder_fails_before_the_work(built, capsys):
    out = built["tmp"] / "no" / "such" / "out.h5ad"
    argv = _annotate(built, "--out", str(out))
    argv[argv.index("--store") + 1] = str(built["tmp"] / "no-store")  # the work would fail on this first
    code, _, err = _run(capsys, argv)
    assert code == 2
    assert err.count("\n") == 1
    assert "folder" in err
    assert "does not exist" in err
    assert not out.parent.exists()


def test_failed_write_keeps_the_old_file(built, capsys, monkeypatch):
    out = built["tmp"] / "out.h5ad"
    out.write_bytes(b"previous")

    def half_write(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        msg = "disk trouble"
        raise OSError(28, msg)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", half_write)
    code, _, err = _run(capsys, _annotate(built, "--out", str(out)))
    assert code == 2
    assert "could not be written" in err
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".out")) == []


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_readers_leave_every_store_file_untouched(built, capsys):
    """annotate (after its genes are cached), reference list/info and cell search change no byte."""
    code, _, err = _run(capsys, _annotate(built))  # may cache the query's gene vectors, deliberately
    assert code == 0, err
    before = _hashes(built["store"])
    q = ad.read_h5ad(built["query"])
    for argv in (
        _annotate(built, "--json"),
        _annotate(built, "--explain"),
        ["reference", "list", "--store", str(built["store"]), "--json"],
        ["reference", "info", "--store", str(built["store"]), "--name", "pbmc", "--json"],
        ["search", "cells", "--store", str(built["store"]), "--reference", "pbmc", "--adata",
         str(built["query"]), "--cell", str(q.obs_names[0]), "--json"],
    ):
        code, _, err = _run(capsys, argv)
        assert code == 0, (argv, err)
        after = _hashes(built["store"])
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert changed == [], argv[:2]


def test_bench_store_defaults_to_the_cache_folder(tmp_path, monkeypatch):
    from cellvec.cli._bench import bench_store_default

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert bench_store_default() == tmp_path / "cache" / "cellvec" / "bench-store"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bench_store_default() == tmp_path / "home" / ".cache" / "cellvec" / "bench-store"


def test_second_readonly_annotate_embeds_no_gene(built, capsys):
    """A query gene outside the reference is embedded once, stored, then never again."""
    q = ad.read_h5ad(built["query"])
    q.var_names = [*q.var_names[:-1], "CD8A"]  # a described gene the reference never saw
    x = q.X.toarray()
    x[:, -1] = 50  # every cell's top gene: pooled, so it needs a vector
    q.X = sp.csr_matrix(x)
    path = built["tmp"] / "q2.h5ad"
    q.write_h5ad(path)
    argv = ["annotate", "--store", str(built["store"]), "--reference", "pbmc", "--adata", str(path)]
    code, out, err = _run(capsys, [*argv, "--json"])
    assert code == 0, err
    data = json.loads(out.strip().splitlines()[-1])
    assert data["embedded_genes"] == 1
    assert data["cached_genes"] == 1
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert "embedded 0 genes" in out
    assert "nothing was written" in out


def test_genes_index_adata(built, capsys):
    code, out, err = _run(capsys, ["genes", "index", "--store", str(built["tmp"] / "gs"), "--adata",
                                   str(built["query"]), "--encoder", FAST_ENCODER, "--json"])
    assert code == 0, err
    first = json.loads(out.strip().splitlines()[-1])
    assert first["genes"] == first["embedded"] == 48
    code, out, err = _run(capsys, ["genes", "index", "--store", str(built["tmp"] / "gs"), "--adata",
                                   str(built["query"]), "--encoder", FAST_ENCODER, "--json"])
    assert json.loads(out.strip().splitlines()[-1])["embedded"] == 0


@pytest.mark.filterwarnings("always::indexer.PanelCoverageWarning")  # the CLI prints it as one line
def test_panel_coverage_recorded_warned_and_refused(built, capsys):
    q = ad.read_h5ad(built["query"])
    out = built["tmp"] / "cov.h5ad"
    code, _, err = _run(capsys, _annotate(built, "--out", str(out)))
    assert code == 0, err
    cov = ad.read_h5ad(out).uns["cellvec"]["panel_coverage"]
    assert set(cov) == {"text", "expression"}
    assert cov["text"]["present"] == cov["text"]["panel"] > 0
    assert cov["expression"]["fraction"] == 1.0
    # Half the genes gone: a named warning, counts in uns.
    half = q[:, : q.n_vars // 2].copy()
    half.write_h5ad(built["tmp"] / "half.h5ad")
    argv = ["annotate", "--store", str(built["store"]), "--reference", "pbmc", "--adata",
            str(built["tmp"] / "half.h5ad"), "--out", str(out)]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    assert "warning: the query has 24 of the reference's 48 expression-panel genes" in err
    assert ad.read_h5ad(out).uns["cellvec"]["panel_coverage"]["expression"]["fraction"] < 0.9
    # A tenth of the genes: refused in one line, before anything is written.
    out.unlink()
    q[:, :4].copy().write_h5ad(built["tmp"] / "tenth.h5ad")
    argv[argv.index(str(built["tmp"] / "half.h5ad"))] = str(built["tmp"] / "tenth.h5ad")
    code, _, err = _run(capsys, argv)
    assert code == 2
    assert err.count("\n") == 1
    assert "labels would be guesses" in err
    assert not out.exists()


def test_check_panel_coverage_warns_with_a_named_class():
    from indexer.cells import check_panel_coverage

    cov = {"expression": {"panel": 100, "present": 80, "fraction": 0.8, "missing_examples": ["CD3E"]}}
    with pytest.warns(PanelCoverageWarning, match="80 of the reference's 100 expression-panel genes"):
        check_panel_coverage(cov)
    cov["expression"].update(present=5, fraction=0.05)
    with pytest.raises(InputError, match=r"5 of the reference's 100 .* labels would be guesses"):
        check_panel_coverage(cov)


def test_csv_has_one_row_per_cell_with_runner_up(built, capsys):
    import pandas as pd

    path = built["tmp"] / "labels.csv"
    code, out, err = _run(capsys, _annotate(built, "--csv", str(path)))
    assert code == 0, err
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table.columns) == ["cell", "label", "confidence", "runner_up", "reason"]
    assert len(table) == 32
    doublets = table.iloc[:8]  # T/B doublets: the other of the two is the runner-up
    assert set(doublets["runner_up"]) - {""} <= {"T cell", "B cell"}
    assert (doublets["runner_up"] != doublets["label"]).all()
    assert f"wrote {path}" in out
    assert "B cell" in out  # per-label counts in the summary


def test_reference_is_the_option_name_everywhere(built, capsys):
    store = str(built["store"])
    code, out, err = _run(capsys, ["reference", "info", "--store", store, "--reference", "pbmc", "--json"])
    assert code == 0, err
    code, out, _ = _run(capsys, ["reference", "info", "--help"])
    assert "--reference" in out
    assert "--name" not in out  # still accepted, hidden
    code, _, err = _run(capsys, ["reference", "info", "--store", store, "--nme", "pbmc"])
    assert code == 2
    assert "Did you mean '--reference'?" in err
