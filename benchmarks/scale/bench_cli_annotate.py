"""Where a read-only ``cellvec annotate`` spends its time, from the command line (issue 16).

Runs ``python -m cellvec.cli annotate ... --json`` ``--repeats`` times in fresh processes (after one
untimed run, so that the reference's gene vectors and the gene catalog cache are warm, as on a second
day), and prints the wall and CPU seconds of the whole command, the command's own annotate step, and the
genes it embedded. Then one more run under cProfile gives each step's cumulative seconds (profiling
inflates them; compare them with each other)::

    python -m benchmarks.scale.bench_cli_annotate --store STORE --reference voigt --adata query.h5ad \
        [--repeats 3] [-- --explain --out /tmp/a.h5ad]

The code measured is whatever ``cellvec.cli`` the interpreter imports: set ``PYTHONPATH`` to a checkout
to measure that one (e.g. before and after a change). The commands run in an empty folder, since ``python -m``
puts the working directory first on the path: run from a checkout, that checkout would be measured whatever
``PYTHONPATH`` says. ``--store`` and ``--adata`` are resolved first; give paths after ``--`` absolute.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.scale.bench_cli_start import run_timed

#: (label, file suffix, function) of the steps reported from the profile; missing ones print "-".
STEPS = [
    ("whole command", "cellvec/cli/__init__.py", "main"),
    ("imports", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("read the h5ad (anndata)", "cellvec/cli/_common.py", "read_h5ad"),
    ("read the h5ad (h5py, no --out)", "indexer/cells/_h5ad.py", "read_cells"),
    ("open the store", "indexer/store/_edge.py", "__init__"),
    ("open collections (reader copies)", "indexer/store/_edge.py", "_coll"),
    ("close the store", "indexer/store/_edge.py", "close"),
    ("annotate (library)", "annotator/_annotate.py", "annotate"),
    ("  reference and artefacts", "indexer/reference/_versions.py", "load_artifacts"),
    ("  encode query cells", "indexer/cells/_encode.py", "encode_cells"),
    ("    gene catalogs", "indexer/genes/_catalog.py", "load"),
    ("    species inference", "indexer/genes/_species.py", "resolve_species"),
    ("    gene name mapping", "indexer/genes/_ids.py", "map_var_names"),
    ("    text view", "indexer/cells/_encode.py", "_text_view"),
    ("  search (HNSW)", "indexer/store/_edge.py", "query"),
    ("  decision rule", "indexer/cells/_decide.py", "decide"),
    ("result into the AnnData", "annotator/_result.py", "to_adata"),
    ("write outputs", "cellvec/cli/_common.py", "write_atomic"),
]


def _command(args: argparse.Namespace) -> list[str]:
    store, adata = str(Path(args.store).resolve()), str(Path(args.adata).resolve())
    return [sys.executable, "-m", "cellvec.cli", "annotate", "--store", store, "--reference", args.reference,
            "--adata", adata, "--json", *args.extra]


def _timed(argv: list[str], cwd: str) -> tuple[float, float, dict]:
    wall, cpu, out = run_timed(argv, cwd=cwd)
    return wall, cpu, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Time the command, then print the profile's step breakdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--adata", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("extra", nargs="*", help="More annotate options, after --.")
    args = ap.parse_args()
    argv = _command(args)
    print(f"load average {os.getloadavg()[0]:.2f}; {' '.join(argv[1:])}")
    with tempfile.TemporaryDirectory(prefix="cellvec-bench-cwd-") as cwd:  # empty: see the docstring
        _timed(argv, cwd)  # warm: a first run may embed and store genes, and fills the gene catalog cache
        runs = [_timed(argv, cwd) for _ in range(args.repeats)]
    n = runs[0][2]["n_cells"]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    step = statistics.median(r[2]["seconds"]["annotate"] for r in runs)
    print(f"{n} cells, median of {args.repeats}: whole command {wall:.2f} s wall ({n / wall:.0f} cells/s), "
          f"{cpu:.2f} s CPU; annotate step {step:.2f} s ({n / step:.0f} cells/s); "
          f"embedded {runs[-1][2]['embedded_genes']} genes")
    with tempfile.TemporaryDirectory() as tmp:
        prof = Path(tmp) / "annotate.prof"
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), *argv[1:]], capture_output=True,
                       check=True, cwd=tmp)
        stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    print(f"{'step (one run under cProfile)':<36} {'cumulative s':>12}")
    for label, suffix, func in STEPS:
        cum = [v[3] for (file, _line, name), v in stats.items() if name == func and file.endswith(suffix)]
        print(f"{label:<36} {max(cum):12.2f}" if cum else f"{label:<36} {'-':>12}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
