"""``cellvec bench``: cellvec against expression and text baselines on the same seeded splits.

Heavy dependencies (celltypist, matplotlib, umap-learn, torch) are imported only when a run needs them.
"""

from benchmarks.accuracy._baselines import GenePTW, LogRegBaseline, SeuratLike
from benchmarks.accuracy._celltypist import CellTypistBaseline, OvRLogisticRegression, celltypist_compat
from benchmarks.accuracy._cellvec import CellvecMethod
from benchmarks.accuracy._datasets import DATASETS, PAPER_CLUSTERS, PAPER_SIZES, BenchDataset, from_files
from benchmarks.accuracy._load import load_dataset
from benchmarks.accuracy._protocol import K_GRID, cv_k_accuracy, select_k
from benchmarks.accuracy._report import default_method, render_report, summarise, verdict, write_report
from benchmarks.accuracy._run import BenchConfig, BenchResult, plan_methods, run_bench
from benchmarks.accuracy._tran import load_tran_rgc, read_tran_labels, select_tran_clusters

__all__ = [
    "DATASETS",
    "K_GRID",
    "PAPER_CLUSTERS",
    "PAPER_SIZES",
    "BenchConfig",
    "BenchDataset",
    "BenchResult",
    "CellTypistBaseline",
    "CellvecMethod",
    "GenePTW",
    "LogRegBaseline",
    "OvRLogisticRegression",
    "SeuratLike",
    "celltypist_compat",
    "cv_k_accuracy",
    "default_method",
    "from_files",
    "load_dataset",
    "load_tran_rgc",
    "plan_methods",
    "read_tran_labels",
    "render_report",
    "run_bench",
    "select_k",
    "select_tran_clusters",
    "summarise",
    "verdict",
    "write_report",
]
