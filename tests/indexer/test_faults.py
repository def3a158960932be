"""Faults along the whole path (CLI → GeneIndex / build_reference → store): kills, Ctrl-C, a failing
embeddings API, an unreachable Qdrant server, a full disk and two writers at once.

Slow encoders are the fake OpenAI server of ``tests/_openai_server.py`` holding a request (``Fault`` with a
delay); the ``openai:`` encoder is pointed at it through ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cellvec.cli import main
from indexer import GeneCatalog, open_store
from indexer.encoders import _openai as enc
from indexer.genes import gene_collection_name
from tests._openai_server import MALFORMED, SERVER_ERROR, UNAUTHORIZED, FakeOpenAIServer, Fault, timeout
from tests.conftest import FAST_ENCODER, make_adata

ADA = "openai:text-embedding-ada-002"
DIM = 8
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(dim=DIM) as fake:
        yield fake


@pytest.fixture
def openai_env(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point ``openai:`` encoders at the fake server, with fast retries; return the env for subprocesses."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    monkeypatch.setattr(enc, "OPENAI_BACKOFF_S", 0.01)
    monkeypatch.setattr(enc, "OPENAI_TIMEOUT_S", 1.0)
    monkeypatch.setattr(enc, "OPENAI_MAX_RETRIES", 2)
    return {
        **os.environ,
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": server.api_key,
        "PYTHONPATH": str(REPO),
    }


def texts_sent(server: FakeOpenAIServer, *, since: int = 0, ok_only: bool = True) -> list[str]:
    """Gene texts the server embedded (answered 200), without the encoder's dimension probe."""
    return [
        t
        for r in server.requests[since:]
        if r.status == 200 or not ok_only
        for t in r.inputs
        if t != "dimension probe"
    ]


def gene_file(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    symbols = GeneCatalog.load("human").symbols()[:n]
    path = tmp_path / "genes.txt"
    path.write_text("\n".join(symbols) + "\n")
    return path, list(symbols)


def gene_count(store: Path, encoder_id: str = ADA) -> int:
    with open_store(store, read_only=True, create=False) as st:
        name = gene_collection_name(encoder_id)
        return st.count(name) if st.has_collection(name) else 0


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, code: int, *, exit_code: int = 2) -> str:
    """The error is one ``error:`` line (after ``warning:`` lines, e.g. for retries); no traceback."""
    lines = err.strip("\n").splitlines()
    assert code == exit_code, err
    assert "Traceback" not in err, err
    assert lines, err
    assert lines[-1].startswith("error: "), err
    assert all(ln.startswith("warning: ") for ln in lines[:-1]), err
    return lines[-1]


# A runner started in the background (nohup, `cmd &`) ignores SIGINT and its children inherit that; the CLI
# is started with Python's interactive Ctrl-C handler, as in a terminal.
_CLI = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'cellvec'; runpy.run_module('cellvec.cli', run_name='__main__')"
)


def cellvec(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CLI, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str], what: str, limit: float = 120) -> None:
    end = time.monotonic() + limit
    while not cond():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"cellvec exited ({proc.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            proc.communicate()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def index_argv(store: Path, genes: Path, encoder: str = ADA) -> list[str]:
    return ["genes", "index", "--store", str(store), "--genes", str(genes), "--encoder", encoder, "--json"]


# ------------------------------------------------------------------------------ killed during embedding


@pytest.mark.slow
def test_sigkill_during_gene_embedding_then_rerun_completes(
    tmp_path: Path, server: FakeOpenAIServer, openai_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    genes, _symbols = gene_file(tmp_path, 5000)  # 3 requests of at most 2,048 inputs
    # probe, first batch at once; the second batch is held until the process is killed.
    server.script(None, None, timeout(60))
    proc = cellvec(index_argv(store, genes), openai_env)
    wait_for(lambda: server.n_requests >= 3, proc, "the second batch request")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    first = server.requests[1].inputs  # (the held request counts as sent but was never answered)
    assert len(first) == 2048
    assert gene_count(store) == 2048  # the first batch was persisted before the second was asked for
    n_before = server.n_requests
    code, out, err = run_cli(capsys, index_argv(store, genes))
    assert code == 0, err
    data = json.loads(out.splitlines()[-1])
    assert data["genes"] == 5000
    assert data["with_vector"] == 5000
    assert data["embedded"] == 5000 - 2048
    again = texts_sent(server, since=n_before)
    assert len(again) == 5000 - 2048
    assert not set(again) & set(first)
    assert gene_count(store) == 5000  # exact: no duplicates
    code, out, _ = run_cli(capsys, index_argv(store, genes))
    assert code == 0
    assert json.loads(out.splitlines()[-1])["embedded"] == 0


# --------------------------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_during_a_build_is_one_line_130_and_resumes(
    tmp_path: Path, server: FakeOpenAIServer, openai_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ref, query = tmp_path / "store", tmp_path / "ref.h5ad", tmp_path / "q.h5ad"
    make_adata(25).write_h5ad(ref)
    make_adata(5, seed=3).write_h5ad(query)
    build = [
        "reference",
        "build",
        "--store",
        str(store),
        "--name",
        "pbmc",
        "--adata",
        str(ref),
        "--label-key",
        "cell_type",
        "--json",
    ]
    code, _, err = run_cli(capsys, [*build, "--encoder", ADA])
    assert code == 0, err
    # v2 with another model: its gene texts must be embedded, and that request is held.
    server.script(None, timeout(60))
    n0 = server.n_requests
    proc = cellvec([*build, "--encoder", "openai:text-embedding-3-small"], openai_env)
    wait_for(lambda: server.n_requests >= n0 + 2, proc, "the embedding request")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=150)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        "error: interrupted; the store is consistent and the next run resumes."
    ], err
    # The previous version is still current and readable.
    code, out, err = run_cli(
        capsys, ["annotate", "--store", str(store), "--reference", "pbmc", "--adata", str(query), "--json"]
    )
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["version"] == 1
    # The next run completes v2.
    code, out, err = run_cli(capsys, [*build, "--encoder", "openai:text-embedding-3-small"])
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["version"] == 2
    code, out, err = run_cli(capsys, ["reference", "info", "--store", str(store), "--name", "pbmc", "--json"])
    versions = json.loads(out.splitlines()[-1])["manifest"]["versions"]
    assert [(v["version"], v["status"], v["n_cells"]) for v in versions] == [
        (1, "ready", 100),
        (2, "ready", 100),
    ]


# ------------------------------------------------------------------------------------ the OpenAI API


OK = None
API_CASES = {
    # name: (script after the probe, exit code, error regex, requests for the failing batch)
    "429-retry-after": ([OK, Fault(status=429, headers={"Retry-After": "0.3"}), OK], 0, None),
    "500-then-ok": ([OK, SERVER_ERROR, SERVER_ERROR, OK], 0, None),
    "timeout-then-ok": ([OK, timeout(3.0), OK], 0, None),
    "500-gives-up": (
        [OK, SERVER_ERROR, SERVER_ERROR, SERVER_ERROR],
        2,
        r"still failed after 2 retries \(InternalServerError, HTTP 500\): try again later",
    ),
    "timeouts-give-up": (
        [OK, timeout(3.0), timeout(3.0), timeout(3.0)],
        2,
        r"still failed after 2 retries \(APITimeoutError\)",
    ),
    "401": ([OK, UNAUTHORIZED], 2, r"rejected the key \(401\): set OPENAI_API_KEY to a valid key"),
    "malformed": ([OK, MALFORMED], 2, r"malformed response.*OPENAI_BASE_URL"),
    "400": ([OK, Fault(status=400)], 2, r"refused the request for model 'text-embedding-ada-002'"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_openai_faults_through_gene_index(
    case: str,
    tmp_path: Path,
    server: FakeOpenAIServer,
    openai_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script, exit_code, match = API_CASES[case]
    monkeypatch.setattr(enc.OpenAIEncoder, "batch_size", 100)  # 250 genes: batches of 100, 100, 50
    store = tmp_path / "store"
    genes, _symbols = gene_file(tmp_path, 250)
    server.script(None, *script)  # the first request is the encoder's dimension probe
    t0 = time.monotonic()
    code, out, err = run_cli(capsys, index_argv(store, genes))
    if exit_code == 0:
        assert code == 0, err
        assert json.loads(out.splitlines()[-1])["embedded"] == 250
        assert gene_count(store) == 250
        if "timeout" not in case:  # a timed-out request was answered, too late
            assert sorted(set(texts_sent(server))) == sorted(texts_sent(server))  # each text answered once
        if case == "429-retry-after":
            assert time.monotonic() - t0 >= 0.3  # the server's Retry-After was honoured
            assert [r.status for r in server.requests] == [200, 200, 429, 200, 200]
        return
    line = one_line_error(err, code)
    assert __import__("re").search(match, line), line
    if case in ("401", "malformed", "400"):
        assert len(server.requests) == 3  # probe, batch 1, the failed batch: not retried
    # Batch 1 was stored before the failure; a rerun pays only for the other 150 genes.
    assert gene_count(store) == 100
    first = server.requests[1].inputs
    assert len(first) == 100
    assert server.requests[1].status == 200
    n_before = server.n_requests
    code, out, err = run_cli(capsys, index_argv(store, genes))
    assert code == 0, err
    again = texts_sent(server, since=n_before)
    assert len(again) == 150
    assert not set(again) & set(first)
    assert gene_count(store) == 250


# ------------------------------------------------------------------------------------- Qdrant server


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there now


def test_unreachable_qdrant_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = _refused_url()
    code, _, err = run_cli(capsys, ["reference", "list", "--store", url])
    line = one_line_error(err, code)
    assert f"cannot reach the Qdrant server at {url}" in line
    assert "is it running?" in line


@pytest.mark.server
def test_qdrant_server_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    url = os.environ.get("CELLVEC_QDRANT_URL")
    if not url:
        pytest.skip("CELLVEC_QDRANT_URL is not set: no Qdrant server to test against")
    code, _, err = run_cli(capsys, ["reference", "list", "--store", url])
    assert code == 0, err
    from urllib.parse import urlparse

    parsed = urlparse(url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    wrong = f"{parsed.scheme}://{parsed.hostname}:{free}"
    code, _, err = run_cli(capsys, ["reference", "list", "--store", wrong])
    assert "cannot reach the Qdrant server" in one_line_error(err, code)


# ----------------------------------------------------------------------------------------- disk full


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    # A first small version needs about 14 MB (Edge segments); the disk is then filled up by hand.
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here ({r.stderr.strip()}): cannot fill a disk")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_disk(path: Path, *, leave: int = 16384) -> None:
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    path.write_bytes(b"\0" * max(path.stat().st_size - leave, 0))


@pytest.mark.slow
def test_disk_full_during_a_build_keeps_the_previous_version(
    small_tmpfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, ref, query = small_tmpfs / "store", tmp_path / "ref.h5ad", tmp_path / "q.h5ad"
    make_adata(25).write_h5ad(ref)
    make_adata(5, seed=3).write_h5ad(query)
    # v1 is built on the ordinary disk and copied over: nothing in this process writes to a full disk.
    build_v1 = [
        "reference",
        "build",
        "--store",
        str(tmp_path / "v1"),
        "--name",
        "pbmc",
        "--adata",
        str(ref),
        "--label-key",
        "cell_type",
        "--encoder",
        FAST_ENCODER,
        "--json",
    ]
    code, _, err = run_cli(capsys, build_v1)
    assert code == 0, err
    subprocess.run(["cp", "-a", "--sparse=always", str(tmp_path / "v1"), str(store)], check=True)
    build = [*build_v1[:2], "--store", str(store), *build_v1[4:]]
    filler = small_tmpfs / "filler"
    fill_disk(filler)
    # In a subprocess: Qdrant Edge writes through mmap, and a full disk may kill the writer with SIGBUS.
    proc = cellvec([*build, "--top-n", "10"], {**os.environ, "PYTHONPATH": str(REPO)})
    _, full_err = proc.communicate(timeout=300)
    # Whatever happened to the writer, the previous version is current and readable ...
    code, out, err = run_cli(
        capsys, ["annotate", "--store", str(store), "--reference", "pbmc", "--adata", str(query), "--json"]
    )
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["version"] == 1
    # ... and once space is freed the build completes.
    filler.unlink()
    # (in a subprocess too: loading the shards the crashed writer left has killed this process with SIGBUS)
    rerun = cellvec([*build, "--top-n", "10"], {**os.environ, "PYTHONPATH": str(REPO)})
    out, err = rerun.communicate(timeout=300)
    assert proc.returncode == 2, full_err  # refused before writing, not killed by SIGBUS
    assert rerun.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["version"] == 2
    line = one_line_error(full_err, proc.returncode)
    assert "no space left on device" in line
    assert "free space and rerun" in line


# --------------------------------------------------------------------------------------- two writers


@pytest.mark.slow
def test_second_writer_refused_with_pid_while_readers_work(
    tmp_path: Path, server: FakeOpenAIServer, openai_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ref, query = tmp_path / "store", tmp_path / "ref.h5ad", tmp_path / "q.h5ad"
    make_adata(25).write_h5ad(ref)
    make_adata(5, seed=3).write_h5ad(query)
    build = [
        "reference",
        "build",
        "--store",
        str(store),
        "--name",
        "pbmc",
        "--adata",
        str(ref),
        "--label-key",
        "cell_type",
        "--encoder",
        FAST_ENCODER,
        "--json",
    ]
    code, _, err = run_cli(capsys, build)
    assert code == 0, err
    genes, _ = gene_file(tmp_path, 50)
    server.script(None, timeout(10))  # the writer holds the lock while its request is held
    proc = cellvec(index_argv(store, genes), openai_env)
    wait_for(lambda: server.n_requests >= 2, proc, "the writer's embedding request")
    code, _, err = run_cli(capsys, [*build, "--name", "other"])
    line = one_line_error(err, code)
    assert f"is locked by process {proc.pid}" in line
    assert "wait for it to finish" in line
    code, out, err = run_cli(
        capsys, ["annotate", "--store", str(store), "--reference", "pbmc", "--adata", str(query), "--json"]
    )
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["n_cells"] == 20
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["embedded"] == 50
