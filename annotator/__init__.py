"""Annotate cells against a cellvec reference, and search genes and cells."""

from annotator._annotate import annotate
from annotator._cell_search import label_summary, parse_where, search_cells, typical_cells
from annotator._explain import explain_labels
from annotator._gene_search import gene_search, search_genes
from annotator._natural import natural_key, natural_sorted
from annotator._plot import check_plot_dir, plot_annotation
from annotator._result import UNKNOWN, AnnotationResult

__all__ = [
    "UNKNOWN",
    "AnnotationResult",
    "annotate",
    "check_plot_dir",
    "explain_labels",
    "gene_search",
    "label_summary",
    "natural_key",
    "natural_sorted",
    "parse_where",
    "plot_annotation",
    "search_cells",
    "search_genes",
    "typical_cells",
]
