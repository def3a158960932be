"""Whole-command time of ``cellvec annotate`` for several checkouts, in alternating fresh processes.

On a machine whose speed drifts (ours does, by up to ~40% within an hour), one checkout's runs followed by
another's compare the hours, not the code. This runs ``python -m cellvec.cli annotate`` once per
``CODE:STORE`` pair in turn, ``--repeats`` times, and prints each pair's median and minimum wall time and
median CPU seconds (children's user + system) with cells/s.

::

    python -m benchmarks.scale.bench_cli_ab --adata query.h5ad --reference voigt --repeats 8 \\
        OLD_CHECKOUT:OLD_STORE NEW_CHECKOUT:NEW_STORE [-- --out x.h5ad --csv x.csv --explain]

Run it outside a checkout (``python -m`` would import the checkout it runs in); ``PYTHONPATH`` of each run is
its ``CODE``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time


def main() -> None:
    """Time the pairs in turn and print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", help="CODE:STORE (a checkout folder and a store folder)")
    ap.add_argument("--adata", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--repeats", type=int, default=6)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1 :]
    pairs = [tuple(p.split(":", 1)) for p in args.pairs]
    n_cells = _n_cells(args.adata)
    runs: dict[tuple[str, ...], tuple[list[float], list[float]]] = {p: ([], []) for p in pairs}
    for _ in range(args.repeats):
        for code, store in pairs:
            cmd = [sys.executable, "-m", "cellvec.cli", "annotate", "--store", store, "--reference", args.reference,
                   "--adata", args.adata, "--json", *extra]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            done = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=code), capture_output=True, check=False)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                sys.exit(f"{code}:{store} failed: {done.stderr.decode()[-500:]}")
            runs[(code, store)][0].append(wall)
            runs[(code, store)][1].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    print(f"load average {os.getloadavg()[0]:.2f}; {n_cells} cells; {args.repeats} runs each, alternating")
    for (code, store), (wall, cpu) in runs.items():
        med = statistics.median(wall)
        print(f"{code} {store}: wall median {med:.3f} s (min {min(wall):.3f}), CPU median "
              f"{statistics.median(cpu):.3f} s, {n_cells / med:,.0f} cells/s")


def _n_cells(path: str) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        index = f["obs"].attrs.get("_index", "_index")
        return int(f["obs"][index].shape[0])


if __name__ == "__main__":
    main()
