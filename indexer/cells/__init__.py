"""Cells to vectors: validation, pooling, the expression view, the one kNN vote and the one set of metrics.

SupCon (:mod:`indexer.cells.supcon`) imports torch and is not imported here.
"""

from indexer.cells._artifacts import Artifacts
from indexer.cells._calibration import CALIBRATION_FILE, Calibration, calibration_file, fit_calibration
from indexer.cells._coverage import REFUSE_BELOW, WARN_BELOW, check_panel_coverage, panel_coverage
from indexer.cells._decide import Decision, decide, novelty_floor
from indexer.cells._density import DENSITY_FACTOR, DENSITY_MIN_LABEL_CELLS, QueryDensity, query_density
from indexer.cells._empirical_null import EmpiricalNull, empirical_null
from indexer.cells._encode import CellVectors, Progress, encode_cells
from indexer.cells._evaluate import recall_at_k, score, stratified_sample, stratified_split
from indexer.cells._evidence import fit_mahalanobis, mahalanobis
from indexer.cells._expression import ExpressionProjection, fit_expression
from indexer.cells._h5ad import CellMatrix, read_cells
from indexer.cells._knn import vote
from indexer.cells._pool import l2_normalise, log_normalise, looks_like_counts, pool, top_gene_weights
from indexer.cells._source import select_expression
from indexer.cells._validate import expression_matrix, labels_of

__all__ = [
    "CALIBRATION_FILE",
    "DENSITY_FACTOR",
    "DENSITY_MIN_LABEL_CELLS",
    "REFUSE_BELOW",
    "WARN_BELOW",
    "Artifacts",
    "Calibration",
    "CellMatrix",
    "CellVectors",
    "Decision",
    "EmpiricalNull",
    "ExpressionProjection",
    "Progress",
    "QueryDensity",
    "calibration_file",
    "check_panel_coverage",
    "decide",
    "empirical_null",
    "encode_cells",
    "expression_matrix",
    "fit_calibration",
    "fit_expression",
    "fit_mahalanobis",
    "l2_normalise",
    "labels_of",
    "log_normalise",
    "looks_like_counts",
    "mahalanobis",
    "novelty_floor",
    "panel_coverage",
    "pool",
    "query_density",
    "read_cells",
    "recall_at_k",
    "score",
    "select_expression",
    "stratified_sample",
    "stratified_split",
    "top_gene_weights",
    "vote",
]
