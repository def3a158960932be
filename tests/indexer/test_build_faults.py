"""Kill ``build`` and ``add`` with SIGKILL at chosen points, rerun them, and check the store every time.

A warm worker process (this file run as a script) imports cellvec and loads the gene catalog once, then
forks one child per command, so a trial costs the command itself, not an interpreter start. The kill points
are deterministic, not timed (a timed kill lands wherever machine load puts it): the child counts the
store writes it starts (every write of the embedded store checks writability first) and SIGKILLs itself
just before the one the test chose, so trial ``n`` always dies with exactly ``n - 1`` writes done.
A calibration run counts the writes of a whole command; the trials spread their kill points over them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

N_TRIALS = 20
"""Kill trials per command (at most: one per store write)."""
N_PER_CLASS = 500
"""Reference cells per class (4 classes: 2,000 cells)."""
N_NEW_PER_CLASS = 150
"""Added cells per class (600 cells, one of them a label the reference lacks)."""
BATCH = 100
"""Upsert batch size in the worker: 20 batches per build, 6 per add."""
NAME = "ref"

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------- worker


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import warnings

    from conftest import FAST_ENCODER, make_adata

    import indexer.reference._write as ref_module
    from indexer import GeneCatalog, add_cells, build_reference, get_encoder, open_store
    from indexer.genes import map_var_names
    from indexer.store._edge import EdgeStore
    from schemas import CellVectorSpec

    warnings.simplefilter("ignore")
    ref_module._UPSERT_BATCH = BATCH
    GeneCatalog.load("human")
    ref = make_adata(N_PER_CLASS, seed=0)
    new = make_adata(N_NEW_PER_CLASS, seed=7)
    new.obs_names = "new_" + new.obs_names
    cats = new.obs["cell_type"].astype(str).replace({"NK cell": "ILC"})
    new.obs["cell_type"] = cats.to_numpy()
    spec = CellVectorSpec(mode="paper", encoder=FAST_ENCODER)
    housekeeping = frozenset({"ACTB", "GAPDH", "B2M", "EEF1A1", "TPT1"})
    # Warm what the children would otherwise each load lazily (nothing here opens a store or a thread).
    map_var_names(ref, species="human")
    get_encoder(FAST_ENCODER)

    def run(op: str, store: str) -> None:
        with open_store(store) as st:
            if op == "build":
                build_reference(
                    ref, store=st, name=NAME, label_key="cell_type", spec=spec, dataset_key="batch",
                    housekeeping=housekeeping,
                )
            else:
                add_cells(new, store=st, name=NAME, label_key="cell_type", dataset="new")

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 0
            writes = 0
            check = EdgeStore._check_writable

            def counted(
                self: EdgeStore, what: str, *, kill_at: int | None = cmd.get("kill_at"), check: Any = check
            ) -> None:
                nonlocal writes
                writes += 1
                if writes == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)  # the chosen point: before this write starts
                check(self, what)

            EdgeStore._check_writable = counted  # type: ignore[method-assign]
            try:
                run(cmd["op"], cmd["store"])
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os.write(write_fd, str(writes).encode())
            os._exit(code)
        os.close(write_fd)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_fd) as f:
            writes = int(f.read() or -1)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"code": code, "writes": writes}), flush=True)


class Worker:
    """The test side of the worker: send a command, optionally ask for a kill, read how it ended."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert json.loads(self._line())["ready"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            msg = f"fault worker died (exit {self.proc.poll()})"
            raise RuntimeError(msg)
        return line

    def run(self, op: str, store: Path, *, kill_at: int | None = None) -> dict[str, Any]:
        """Run ``op`` on ``store``; with ``kill_at``, SIGKILL it just before its ``kill_at``-th store write."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "store": str(store), "kill_at": kill_at}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Path]:
    """A folder for the trials' stores, in memory where possible: a kill loses no page cache, and the
    trials' many fsyncs would otherwise dominate the run time."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cellvec-faults-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- checks


def _state(store_path: Path) -> dict[str, Any]:
    """Read the store as a reader does (no lock) and return what the checks need."""
    from indexer import StoreError, open_store
    from indexer.reference import load_manifest, version_collection

    if not (store_path / "cellvec-store.json").is_file():  # killed before the store existed
        return {"manifest": None}
    with open_store(store_path, read_only=True, create=False) as st:
        try:
            man = load_manifest(st, NAME)
        except StoreError:
            return {"manifest": None}
        versions = {}
        for rec in man.versions:
            if rec.status != "ready":
                versions[rec.version] = {"record": rec}
                continue
            coll = version_collection(NAME, rec.version)
            ids = [p.payload["cell_id"] for b in st.scroll(coll, payload=True) for p in b]
            versions[rec.version] = {
                "record": rec, "count": st.count(coll), "ids": ids, "labels": st.facet(coll, "label"),
            }
        return {"manifest": man, "versions": versions}


def _check_consistent(state: dict[str, Any], *, expected_ids: set[str] | None) -> None:
    """Every finished version's record matches its collection; the current one is finished."""
    man = state["manifest"]
    assert man is not None
    assert man.current is not None
    assert man.record().status == "ready"
    for v in state["versions"].values():
        rec = v["record"]
        if rec.status != "ready":
            continue
        assert v["count"] == rec.n_cells == len(v["ids"])
        assert len(set(v["ids"])) == len(v["ids"]), "duplicate cells"
        assert v["labels"] == rec.labels
    if expected_ids is not None:
        cur = state["versions"][man.current]
        assert set(cur["ids"]) == expected_ids


def _ref_ids() -> set[str]:
    return {f"cell{i}" for i in range(4 * N_PER_CLASS)}


def _new_ids() -> set[str]:
    return {f"new_cell{i}" for i in range(4 * N_NEW_PER_CLASS)}


def _kill_points(n_writes: int) -> list[int]:
    """Up to :data:`N_TRIALS` kill points spread evenly over a command's ``n_writes`` writes, first to last."""
    assert n_writes > 0
    return sorted({round(float(x)) for x in np.linspace(1, n_writes, min(N_TRIALS, n_writes))})


# ---------------------------------------------------------------------------------------------- tests


def test_killed_build_reruns_exactly(worker: Worker, stores: Path) -> None:
    """SIGKILL a build before chosen writes, rerun it: exact counts, no duplicates, consistent records."""
    full = worker.run("build", stores / "calibrate")
    assert full["code"] == 0
    outcomes = {"before the manifest": 0, "while building": 0, "after it finished": 0}
    for trial, kill_at in enumerate(_kill_points(full["writes"])):
        path = stores / f"build{trial}"
        res = worker.run("build", path, kill_at=kill_at)
        assert res["code"] == -signal.SIGKILL
        killed = _state(path)
        man = killed["manifest"]
        if man is None:
            outcomes["before the manifest"] += 1
        elif man.current is None:
            outcomes["while building"] += 1
            assert [v.status for v in man.versions] == ["building"]  # never half-visible
        else:
            outcomes["after it finished"] += 1
            _check_consistent(killed, expected_ids=_ref_ids())
        assert worker.run("build", path)["code"] == 0
        after = _state(path)
        _check_consistent(after, expected_ids=_ref_ids())
        assert all(v.status == "ready" for v in after["manifest"].versions)
        assert after["manifest"].record().n_cells == len(_ref_ids())
        shutil.rmtree(path)
    print(f"\nbuild: kills before writes {_kill_points(full['writes'])} of {full['writes']}: {outcomes}")
    assert outcomes["while building"] >= 3


def test_killed_add_reruns_exactly(worker: Worker, stores: Path) -> None:
    """SIGKILL an add before chosen writes, rerun it: exact counts, no duplicates, the version unchanged."""
    base = stores / "base"
    assert worker.run("build", base)["code"] == 0
    calib = stores / "calibrate"
    shutil.copytree(base, calib)
    full = worker.run("add", calib)
    assert full["code"] == 0
    partial = 0
    expected = _ref_ids() | _new_ids()
    for trial, kill_at in enumerate(_kill_points(full["writes"])):
        path = stores / f"add{trial}"
        shutil.copytree(base, path)
        res = worker.run("add", path, kill_at=kill_at)
        assert res["code"] == -signal.SIGKILL
        killed = _state(path)
        assert killed["manifest"].current == 1
        n = killed["versions"][1]["count"]
        assert len(_ref_ids()) <= n <= len(expected)
        assert len(set(killed["versions"][1]["ids"])) == n, "duplicate cells"
        partial += len(_ref_ids()) < n < len(expected)
        assert worker.run("add", path)["code"] == 0
        after = _state(path)
        _check_consistent(after, expected_ids=expected)
        assert [v.version for v in after["manifest"].versions] == [1]
        assert after["manifest"].record().labels["ILC"] == N_NEW_PER_CLASS
        shutil.rmtree(path)
    print(f"\nadd: kills before writes {_kill_points(full['writes'])} of {full['writes']}, {partial} mid-add")
    assert partial >= 3


if __name__ == "__main__":
    _worker()
