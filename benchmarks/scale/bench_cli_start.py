"""How long the ``cellvec`` command takes to start: each command run ``--repeats`` times in fresh processes.

Prints, per command, the median and maximum wall seconds and the median CPU seconds (user + system) of
the child process; CPU time depends far less than wall time on other jobs sharing the machine::

    python -m benchmarks.scale.bench_cli_start --repeats 10 [--store STORE]

Without ``--store`` an empty store in a temporary folder is listed. ``--cli`` picks the command to run
(default: ``python -m cellvec.cli`` with this interpreter; ``.venv/bin/cellvec`` measures the console
script).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_timed(argv: list[str], *, cwd: str | Path | None = None) -> tuple[float, float, str]:
    """Run ``argv`` once; return its wall and CPU (user + system) seconds and its stdout, failing on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        msg = f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        raise SystemExit(msg)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def _run_once(argv: list[str]) -> tuple[float, float]:
    wall, cpu, _ = run_timed(argv)
    return wall, cpu


def main() -> None:
    """Time each command and print one line per command."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--store", default=None, help="Store to list (default: a new empty one).")
    ap.add_argument("--cli", default=None, help="Command to start (default: this python -m cellvec.cli).")
    args = ap.parse_args()
    cli = shlex.split(args.cli) if args.cli else [sys.executable, "-m", "cellvec.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            from indexer import open_store

            store = str(Path(tmp) / "store")
            open_store(store).close()
        commands = {
            "cellvec --help": ["--help"],
            "cellvec reference list": ["reference", "list", "--store", store],
            "cellvec reference --help": ["reference", "--help"],
        }
        print(f"{args.repeats} runs each, fresh processes; load average {os.getloadavg()[0]:.2f} at the start")
        print(f"{'command':<28} {'median s':>9} {'max s':>7} {'CPU s':>7}")
        for label, extra in commands.items():
            _run_once([*cli, *extra])  # warm the file cache; not counted
            runs = [_run_once([*cli, *extra]) for _ in range(args.repeats)]
            walls = [w for w, _ in runs]
            cpus = [c for _, c in runs]
            print(f"{label:<28} {statistics.median(walls):9.3f} {max(walls):7.3f} {statistics.median(cpus):7.3f}")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
