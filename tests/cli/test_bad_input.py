"""Every mistake a user can make at the CLI ends in one ``error:`` line, exit code 2 and an unchanged store.

One store is built once per module (three references: paper, hybrid and SupCon-refined, with the instant
``random:32`` encoder); each case writes a bad input, runs ``cellvec`` in-process through ``main(argv)``
and compares a digest of the store's ``meta/`` and ``blobs/`` files and its point counts before and after.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellvec.cli import main
from indexer import build_reference, open_store
from indexer.reference._versions import (
    artifact_key,
)
from indexer.store._shared import encode_key
from schemas import CellVectorSpec, ExpressionParams, RefineParams
from tests.conftest import FAST_ENCODER, as_mouse, make_adata

N_REF = 100  # make_adata(25): 4 labels x 25 cells
BUILT_STATE: dict[Path, tuple[str, dict[str, int]]] = {}
"""The state of the module's store right after it was built; every case must leave it so."""


# ------------------------------------------------------------------------------------------- helpers


def store_state(path: Path, *, read_only: bool = False) -> tuple[str, dict[str, int]]:
    """Digest of the store's meta/ and blobs/ files, and the point count of every collection.

    Counting opens the store as a writer (no private copies of the collections, which are slow to make);
    it writes nothing.
    """
    h = hashlib.sha256()
    for sub in ("meta", "blobs"):
        d = path / sub
        for f in sorted(d.iterdir()) if d.is_dir() else ():
            h.update(f"{sub}/{f.name}\0".encode())
            h.update(f.read_bytes())
    with open_store(path, read_only=read_only, create=False) as st:
        counts = {c: st.count(c) for c in st.collections()}
    return h.hexdigest(), counts


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, match: str) -> str:
    """Exactly one stderr line, starting with ``error:``, matching ``match``; no traceback; exit 2."""
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    import re

    assert re.search(match, lines[0]), f"{match!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with three references: 'pbmc' (paper), 'hyb' (hybrid) and 'sc' (SupCon, 2 epochs)."""
    path = tmp_path_factory.mktemp("bad") / "store"
    ref = make_adata(25)
    paper = CellVectorSpec(mode="paper", encoder=FAST_ENCODER)
    hybrid = CellVectorSpec(
        mode="hybrid", encoder=FAST_ENCODER, expression=ExpressionParams(n_genes=40, n_components=8)
    )
    supcon = CellVectorSpec(
        mode="paper",
        encoder=FAST_ENCODER,
        refine=RefineParams(method="supcon", epochs=2, patience=2, batch_size=32),
    )
    with open_store(path) as st:
        for name, spec in (("pbmc", paper), ("hyb", hybrid), ("sc", supcon)):
            build_reference(ref, store=st, name=name, label_key="cell_type", spec=spec)
    BUILT_STATE[path] = store_state(path)
    return path


@pytest.fixture
def store_copy(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built store, for cases that tamper with it."""
    dest = tmp_path / "store"
    subprocess.run(
        ["cp", "-a", "--sparse=always", str(built), str(dest)], check=True
    )  # Edge files are sparse
    return dest


def write(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


def with_x(adata: ad.AnnData, x: object) -> ad.AnnData:
    return ad.AnnData(x, obs=adata.obs.copy(), var=adata.var.copy())  # type: ignore[arg-type]


def dense(adata: ad.AnnData) -> np.ndarray:
    return np.asarray(adata.X.toarray() if sp.issparse(adata.X) else adata.X, dtype=np.float32)


def build_argv(store: Path, h5ad: Path, *extra: str, name: str = "new") -> list[str]:
    return [
        "reference",
        "build",
        "--store",
        str(store),
        "--name",
        name,
        "--adata",
        str(h5ad),
        "--label-key",
        "cell_type",
        "--encoder",
        FAST_ENCODER,
        *extra,
    ]


def annotate_argv(store: Path, h5ad: Path, *extra: str, reference: str = "pbmc") -> list[str]:
    return ["annotate", "--store", str(store), "--reference", reference, "--adata", str(h5ad), *extra]


# ------------------------------------------------------------------------------------------- the cases
# Each case: (tmp_path, store) -> argv, and a regex the one error line must match (it names the value
# and the fix).

Case = tuple[Callable[[Path, Path], list[str]], str]


def _empty_cells(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    return build_argv(s, write(a[:0].copy(), t / "a.h5ad"))


def _empty_genes(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    return build_argv(s, write(a[:, :0].copy(), t / "a.h5ad"))


def _empty_query(t: Path, s: Path) -> list[str]:
    return annotate_argv(s, write(make_adata(5)[:0].copy(), t / "q.h5ad"))


def _no_label_column(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    del a.obs["cell_type"]
    return build_argv(s, write(a, t / "a.h5ad"))


def _missing_labels(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    labels = a.obs["cell_type"].astype(object).to_numpy()
    labels[[3, 50]] = None
    a.obs["cell_type"] = pd.Categorical(labels)
    return build_argv(s, write(a, t / "a.h5ad"))


def _single_class(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    a.obs["cell_type"] = "T cell"
    return build_argv(s, write(a, t / "a.h5ad"))


def _duplicate_genes(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    names = list(a.var_names)
    names[1] = names[0]
    a.var_names = names
    return build_argv(s, write(a, t / "a.h5ad"))


def _duplicate_cells(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    names = list(a.obs_names)
    names[7] = names[3]
    a.obs_names = names
    return build_argv(s, write(a, t / "a.h5ad"))


def _duplicate_query_genes(t: Path, s: Path) -> list[str]:
    a = make_adata(5, seed=3)
    names = list(a.var_names)
    names[2] = names[0]
    a.var_names = names
    return annotate_argv(s, write(a, t / "q.h5ad"))


def _bad_values(value: float, *, query: bool = False) -> Callable[[Path, Path], list[str]]:
    def case(t: Path, s: Path) -> list[str]:
        a = make_adata(5, seed=3) if query else make_adata(25)
        x = dense(a)
        x[2, 4] = value
        b = write(with_x(a, sp.csr_matrix(x)), t / "a.h5ad")
        return annotate_argv(s, b) if query else build_argv(s, b)

    return case


def _dense_strings(dtype: type) -> Callable[[Path, Path], list[str]]:
    def case(t: Path, s: Path) -> list[str]:
        a = make_adata(25)
        x = dense(a).astype(int).astype(str).astype(dtype)
        return build_argv(s, write(with_x(a, x), t / "a.h5ad"))

    return case


def _ensembl_ids(t: Path, s: Path) -> list[str]:
    a = make_adata(25)
    a.var_names = [f"ENSG99999{i:06d}" for i in range(a.n_vars)]  # well-formed, in no gene_info
    return build_argv(s, write(a, t / "a.h5ad"), "--species", "human")


def _mouse_query(t: Path, s: Path) -> list[str]:
    return annotate_argv(s, write(as_mouse(make_adata(5, seed=3)), t / "q.h5ad"))


def _k(k: int) -> Callable[[Path, Path], list[str]]:
    def case(t: Path, s: Path) -> list[str]:
        return annotate_argv(s, write(make_adata(5, seed=3), t / "q.h5ad"), "--k", str(k))

    return case


def _query(*extra: str, reference: str = "pbmc") -> Callable[[Path, Path], list[str]]:
    def case(t: Path, s: Path) -> list[str]:
        return annotate_argv(s, write(make_adata(5, seed=3), t / "q.h5ad"), *extra, reference=reference)

    return case


def _unknown_build_encoder(t: Path, s: Path) -> list[str]:
    argv = build_argv(s, write(make_adata(25), t / "a.h5ad"))
    argv[argv.index(FAST_ENCODER)] = "bogus-model"
    return argv


def _unknown_index_encoder(t: Path, s: Path) -> list[str]:
    (t / "genes.txt").write_text("CD3E\nCD14\n")
    return ["genes", "index", "--store", str(s), "--genes", str(t / "genes.txt"), "--encoder", "bogus-model"]


def _not_a_store(t: Path, s: Path) -> list[str]:
    other = t / "not-a-store"
    other.mkdir()
    (other / "notes.txt").write_text("my thesis")
    return annotate_argv(other, write(make_adata(5, seed=3), t / "q.h5ad"))


def _missing_store(t: Path, s: Path) -> list[str]:
    return annotate_argv(t / "nowhere", write(make_adata(5, seed=3), t / "q.h5ad"))


def _store_is_a_file(t: Path, s: Path) -> list[str]:
    (t / "file").write_text("x")
    return build_argv(t / "file", write(make_adata(25), t / "a.h5ad"))


def _truncated_h5ad(t: Path, s: Path) -> list[str]:
    full = write(make_adata(25), t / "full.h5ad").read_bytes()
    (t / "a.h5ad").write_bytes(full[: len(full) // 2])
    return build_argv(s, t / "a.h5ad")


def _not_hdf5(t: Path, s: Path) -> list[str]:
    (t / "q.h5ad").write_text("cell,CD3E\nc1,3\n")
    return annotate_argv(s, t / "q.h5ad")


def _missing_h5ad(t: Path, s: Path) -> list[str]:
    return annotate_argv(s, t / "absent.h5ad")


def _bad_name(t: Path, s: Path) -> list[str]:
    return build_argv(s, write(make_adata(25), t / "a.h5ad"), name="../etc")


CASES: dict[str, Case] = {
    "empty-cells": (_empty_cells, r"reference is empty \(0 cells x 48 genes\); pass an AnnData with"),
    "empty-genes": (_empty_genes, r"empty \(100 cells x 0 genes\)"),
    "empty-query": (_empty_query, r"query is empty \(0 cells"),
    "no-label-column": (_no_label_column, r"no obs column 'cell_type' \(columns: batch\).*--label-key"),
    "missing-labels": (_missing_labels, r"2 missing labels.*drop those cells or label them"),
    "single-class": (_single_class, r"single label \('T cell'\).*at least two"),
    "duplicate-genes": (_duplicate_genes, r"duplicate gene names \(e\.g\. CD3E\).*var_names_make_unique"),
    "duplicate-cells": (
        _duplicate_cells,
        r"(duplicate cell names|repeated cell ids).*cell3.*obs_names_make_unique",
    ),
    "duplicate-query-genes": (
        _duplicate_query_genes,
        r"query has duplicate gene names.*var_names_make_unique",
    ),
    "negative": (_bad_values(-1.5), r"negative values \(min -1\.5\).*counts or log-normalised"),
    "nan": (_bad_values(np.nan), r"1 NaN or infinite values; replace them"),
    "inf": (_bad_values(np.inf), r"1 NaN or infinite values; replace them"),
    "negative-query": (_bad_values(-2.0, query=True), r"query\.X has negative values"),
    "nan-query": (_bad_values(np.nan, query=True), r"query\.X has 1 NaN"),
    "dense-strings": (_dense_strings(str), r"\.X holds object values, not numbers; store numeric expression"),
    "dense-objects": (_dense_strings(object), r"\.X holds object values, not numbers"),
    "ensembl-without-mapping": (_ensembl_ids, r"(?i)ensembl.*(gene_info|--gene-column|map)"),
    "mouse-query-vs-human-reference": (
        _mouse_query,
        r"only \d+ of the mouse query's 48 genes map onto human genes through HCOP orthologs \(at least 200 "
        r"needed.*annotate it against a mouse reference",
    ),
    "k-zero": (_k(0), r"k must be at least 1 \(got 0\); pass --k"),
    "k-negative": (_k(-3), r"k must be at least 1 \(got -3\)"),
    "k-too-large": (
        _k(N_REF + 1),
        rf"k={N_REF + 1} is larger than reference 'pbmc' \({N_REF} cells\); pass --k",
    ),
    "unknown-reference": (
        _query(reference="nope"),
        r"no reference named 'nope'.*\(references: hyb, pbmc, sc\)\.$",
    ),
    "unknown-version": (_query("--version", "7"), r"no finished version 7 \(versions: 1\); pass one of them"),
    "unknown-build-encoder": (
        _unknown_build_encoder,
        r"unknown encoder 'bogus-model'.*valid encoder names.*minilm",
    ),
    "unknown-index-encoder": (_unknown_index_encoder, r"unknown encoder 'bogus-model'.*random:<dim>"),
    "other-encoder": (_query("--encoder", "minilm"), r"query encoder 'minilm' differs from.*'random:32'"),
    "not-a-store": (_not_a_store, r"is not a cellvec store \(no cellvec-store\.json\)"),
    "missing-store": (_missing_store, r"no cellvec store at .*nowhere.*cellvec reference build"),
    "store-is-a-file": (_store_is_a_file, r"is a file, not a cellvec store directory"),
    "truncated-h5ad": (_truncated_h5ad, r"cannot be read as h5ad.*truncated.*write_h5ad"),
    "not-hdf5": (_not_hdf5, r"cannot be read as h5ad.*write_h5ad"),
    "missing-h5ad": (_missing_h5ad, r"absent\.h5ad' does not exist"),
    "bad-reference-name": (_bad_name, r"reference name '\.\./etc' is not allowed"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_store_unchanged(
    case: str, built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_argv, match = CASES[case]
    argv = make_argv(tmp_path, built)
    code, _, err = run_cli(capsys, argv)
    assert_one_line_error(code, err, match)
    assert store_state(built) == BUILT_STATE[built]


# ------------------------------------------------------------------------------- tampered artefacts


def _blob(store: Path, name: str, file: str) -> Path:
    return store / "blobs" / encode_key(artifact_key(name, 1, file))


@pytest.mark.parametrize(("ref", "file"), [("hyb", "expression.npz"), ("sc", "supcon.safetensors")])
@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_tampered_artefact_is_refused(
    ref: str, file: str, damage: str, store_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blob = _blob(store_copy, ref, file)
    assert blob.is_file(), sorted(p.name for p in (store_copy / "blobs").iterdir())
    data = blob.read_bytes()
    if damage == "missing":
        blob.unlink()
    elif damage == "truncated":
        blob.write_bytes(data[: len(data) // 2])
    else:
        blob.write_bytes(data[:-9] + bytes(b ^ 0xFF for b in data[-9:]))
    before = store_state(store_copy)
    q = write(make_adata(5, seed=3), tmp_path / "q.h5ad")
    code, _, err = run_cli(capsys, annotate_argv(store_copy, q, reference=ref))
    want = "is missing from the store" if damage == "missing" else "was altered or truncated"
    assert_one_line_error(code, err, rf"artefact '{file}' {want}.*rebuild")
    assert store_state(store_copy) == before


# ------------------------------------------------------------------------ cells without a described gene


def test_cells_without_described_genes_are_unknown_with_a_reason(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = make_adata(5, seed=3)
    x = dense(q)
    x[:3] = 0.0  # no expressed gene at all
    q = with_x(q, sp.csr_matrix(x))
    extra = ad.AnnData(
        np.full((2, 2), 5.0, np.float32),
        obs=pd.DataFrame(index=["nd0", "nd1"]),
        var=pd.DataFrame(index=["NOT_A_GENE_1", "NOT_A_GENE_2"]),
    )
    q = ad.concat([q, extra], join="outer")  # two cells expressing only undescribed genes
    q.X = sp.csr_matrix(np.nan_to_num(dense(q)))
    out = tmp_path / "out.h5ad"
    code, _, err = run_cli(capsys, annotate_argv(built, write(q, tmp_path / "q.h5ad"), "--out", str(out)))
    assert code == 0, err
    obs = ad.read_h5ad(out).obs
    bad = [*q.obs_names[:3], "nd0", "nd1"]
    assert (obs.loc[bad, "cellvec_label"] == "Unknown").all()
    assert (obs.loc[bad, "cellvec_reason"] == "no described expressed gene").all()
    good = obs.drop(index=bad)
    assert (good["cellvec_label"] != "Unknown").all()
    assert store_state(built) == BUILT_STATE[built]


# -------------------------------------------------------------------------------- read-only filesystem


@pytest.fixture
def read_only_mount(built: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the store on a tmpfs remounted read-only (as root, chmod would not stop writes)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(
            f"mounting a tmpfs is not permitted here ({r.stderr.strip()}): cannot test a read-only store"
        )
    try:
        # Edge's vector files are large and sparse: keep them sparse on the tmpfs.
        subprocess.run(["cp", "-a", "--sparse=always", str(built), str(mnt / "store")], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / "store"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_read_only_filesystem(
    read_only_mount: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = read_only_mount
    before = store_state(store, read_only=True)
    # Writing is refused with one line that says why and what to do.
    code, _, err = run_cli(capsys, build_argv(store, write(make_adata(25), tmp_path / "a.h5ad")))
    assert_one_line_error(
        code,
        err,
        r"is on a read-only file system, and this command writes to it.*annotate.*"
        r"copy the store to a writable disk",
    )
    code, _, err = run_cli(
        capsys, ["genes", "index", "--store", str(store), "--all", "--encoder", "random:8"]
    )
    assert_one_line_error(code, err, r"is on a read-only file system")
    # Reading still works: annotate, list and info need no write access.
    q = write(make_adata(5, seed=3), tmp_path / "q.h5ad")
    code, out, err = run_cli(capsys, annotate_argv(store, q, "--json"))
    assert code == 0, err
    code, out, err = run_cli(capsys, ["reference", "list", "--store", str(store)])
    assert code == 0, err
    assert "pbmc" in out
    assert store_state(store, read_only=True) == before


def test_python_m_entry_point_runs(tmp_path: Path) -> None:
    """``python -m annotator._cli`` is the same CLI (the fault tests drive it in a subprocess)."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cellvec.cli",
            "annotate",
            "--store",
            str(tmp_path / "x"),
            "--reference",
            "r",
            "--adata",
            str(tmp_path / "none.h5ad"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr
