"""``cellvec reference build`` infers the species and says so; ``annotate`` reports a cross-species mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellvec.cli import main
from tests.conftest import FAST_ENCODER, as_mouse, make_adata


def _build(store: Path, h5ad: Path, *extra: str) -> list[str]:
    return [
        "reference", "build", "--store", str(store), "--name", "m", "--adata", str(h5ad),
        "--label-key", "cell_type", "--encoder", FAST_ENCODER, "--mode", "paper", *extra,
    ]  # fmt: skip


def test_build_infers_mouse_and_prints_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref.h5ad"
    as_mouse(make_adata(10)).write_h5ad(ref)
    assert main(_build(tmp_path / "store", ref)) == 0
    out = capsys.readouterr().out
    assert "species: mouse (inferred from " in out
    assert main(_build(tmp_path / "store", ref, "--json")) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["species"]["species"] == "mouse"
    assert data["species"]["evidence"] == "symbols"


def test_contradicting_species_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref.h5ad"
    as_mouse(make_adata(10)).write_h5ad(ref)
    assert main(_build(tmp_path / "store", ref, "--species", "human")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "species='human' contradicts the var_names" in err
    assert err.endswith("pass --species mouse (or leave --species out to infer it)")


def test_annotate_cross_species_refusal_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, query = tmp_path / "ref.h5ad", tmp_path / "q.h5ad"
    as_mouse(make_adata(10)).write_h5ad(ref)
    make_adata(5, seed=2).write_h5ad(query)
    assert main(_build(tmp_path / "store", ref)) == 0
    capsys.readouterr()
    argv = ["annotate", "--store", str(tmp_path / "store"), "--reference", "m", "--adata", str(query)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "of the human query's 48 genes map onto mouse genes" in err
    assert "--species" not in err


def test_build_genes_of_a_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, query = tmp_path / "ref.h5ad", tmp_path / "q.h5ad"
    as_mouse(make_adata(10)).write_h5ad(ref)
    make_adata(5, seed=2).write_h5ad(query)
    assert main([*_build(tmp_path / "store", ref, "--genes-of", str(query)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 30 < data["genes_used"] <= 48


def test_build_genes_of_without_shared_genes_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, names = tmp_path / "ref.h5ad", tmp_path / "genes.txt"
    as_mouse(make_adata(10)).write_h5ad(ref)
    names.write_text("NOT_A_GENE_1\nNOT_A_GENE_2\n")
    assert main(_build(tmp_path / "store", ref, "--genes-of", str(names))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"none of the 2 gene names of --genes-of {names} resolve to human or mouse genes" in err
    assert main(_build(tmp_path / "store", ref, "--genes-of", str(tmp_path / "missing.h5ad"))) == 2
    assert "--genes-of file" in capsys.readouterr().err
