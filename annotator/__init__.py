"""Annotate cells against a cellvec reference, and search genes and cells.

Each name loads its module on first use, so ``cellvec annotate`` does not pay for the cell search, the
plots or the gene search it does not run.
"""

from typing import TYPE_CHECKING

from indexer import lazy_face

if TYPE_CHECKING:
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

_HOMES = {
    "annotate": "annotator._annotate",
    **dict.fromkeys(["label_summary", "parse_where", "search_cells", "typical_cells"], "annotator._cell_search"),
    "explain_labels": "annotator._explain",
    **dict.fromkeys(["gene_search", "search_genes"], "annotator._gene_search"),
    **dict.fromkeys(["natural_key", "natural_sorted"], "annotator._natural"),
    **dict.fromkeys(["check_plot_dir", "plot_annotation"], "annotator._plot"),
    **dict.fromkeys(["UNKNOWN", "AnnotationResult"], "annotator._result"),
}

__getattr__, __dir__ = lazy_face(__name__, _HOMES)
