"""Annotate cells against a cellvec reference, and search genes and cells."""

from annotator._annotate import UNKNOWN, AnnotationResult, annotate
from annotator._explain import explain_labels
from annotator._search import label_summary, search_cells, search_genes, typical_cells
from indexer.cells._knn import vote

__all__ = [
    "UNKNOWN",
    "AnnotationResult",
    "annotate",
    "explain_labels",
    "label_summary",
    "search_cells",
    "search_genes",
    "typical_cells",
    "vote",
]
