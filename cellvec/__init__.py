"""cellvec: annotate single cells by cell type with language-model gene vectors and a Qdrant reference.

This is the package users import::

    import cellvec as cv

    store = cv.open_store("./store")
    ref = cv.build_reference(adata_ref, store=store, name="pbmc", label_key="cell_type")
    result = cv.annotate(adata_query, reference=cv.Reference.open(store, "pbmc"))
    result.to_adata(adata_query)

The implementation lives in three packages that import one way, ``schemas`` ← ``indexer`` ← ``annotator``;
this module re-exports the names a user needs and loads each on first use, so ``import cellvec`` (and the
``cellvec`` command's start) stays fast and has no side effects.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annotator import (
        UNKNOWN,
        AnnotationResult,
        annotate,
        label_summary,
        plot_annotation,
        search_cells,
        search_genes,
        typical_cells,
    )
    from indexer import (
        CellvecError,
        CellvecWarning,
        GeneCatalog,
        GeneIndex,
        IndexParams,
        Reference,
        Settings,
        VectorStore,
        add_cells,
        build_reference,
        drop_reference,
        export_reference,
        fetch_gene_data,
        get_encoder,
        import_reference,
        list_references,
        open_store,
        prune_versions,
        refit,
        relabel,
        remove_cells,
    )
    from schemas import CellVectorSpec, ExpressionParams, PoolingParams, RefineParams

__version__ = "0.1.0"

_HOMES: dict[str, str] = {
    **dict.fromkeys(
        ["UNKNOWN", "AnnotationResult", "annotate", "label_summary", "plot_annotation", "search_cells", "search_genes",
         "typical_cells"],
        "annotator",
    ),
    **dict.fromkeys(
        [
            "CellvecError",
            "CellvecWarning",
            "GeneCatalog",
            "GeneIndex",
            "IndexParams",
            "Reference",
            "Settings",
            "VectorStore",
            "add_cells",
            "build_reference",
            "drop_reference",
            "export_reference",
            "fetch_gene_data",
            "get_encoder",
            "import_reference",
            "list_references",
            "open_store",
            "prune_versions",
            "refit",
            "relabel",
            "remove_cells",
        ],
        "indexer",
    ),
    **dict.fromkeys(["CellVectorSpec", "ExpressionParams", "PoolingParams", "RefineParams"], "schemas"),
}

__all__ = [
    "UNKNOWN",
    "AnnotationResult",
    "CellVectorSpec",
    "CellvecError",
    "CellvecWarning",
    "ExpressionParams",
    "GeneCatalog",
    "GeneIndex",
    "IndexParams",
    "PoolingParams",
    "Reference",
    "RefineParams",
    "Settings",
    "VectorStore",
    "add_cells",
    "annotate",
    "build_reference",
    "drop_reference",
    "export_reference",
    "fetch_gene_data",
    "get_encoder",
    "import_reference",
    "label_summary",
    "list_references",
    "open_store",
    "plot_annotation",
    "prune_versions",
    "refit",
    "relabel",
    "remove_cells",
    "search_cells",
    "search_genes",
    "typical_cells",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'cellvec' has no attribute '{name}'"
        raise AttributeError(msg)
    value = getattr(import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
