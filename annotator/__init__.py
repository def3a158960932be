"""Annotate cells against a cellvec reference, and search genes and cells."""

from ._annotate import UNKNOWN, AnnotationResult, annotate
from ._explain import explain_labels
from ._search import label_summary, search_cells, search_genes, typical_cells
from ._vote import vote

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
