"""References: versions and the :class:`Reference` handle, building, editing, export and import.

Each name loads its module on first use (:mod:`indexer._lazy`): listing references needs no scikit-learn.
"""

from typing import TYPE_CHECKING

from indexer._lazy import lazy_face

if TYPE_CHECKING:
    from indexer.reference._build import build_reference, drop_reference, reference_vectors
    from indexer.reference._edit import add_cells, relabel, remove_cells
    from indexer.reference._gene_codes import GeneCodes, decode_top_genes
    from indexer.reference._points import PointTable
    from indexer.reference._read import gene_codes, vector_names
    from indexer.reference._refit import refit
    from indexer.reference._transfer import export_reference, import_reference, prune_versions
    from indexer.reference._versions import (
        CELL_VECTOR,
        INPUT_VECTOR,
        TOP_GENES_FILE,
        VIEW2_VECTOR,
        Reference,
        list_references,
        load_artifacts,
        load_manifest,
        resolve_version,
        version_collection,
    )

__all__ = [
    "CELL_VECTOR",
    "INPUT_VECTOR",
    "TOP_GENES_FILE",
    "VIEW2_VECTOR",
    "GeneCodes",
    "PointTable",
    "Reference",
    "add_cells",
    "build_reference",
    "decode_top_genes",
    "drop_reference",
    "export_reference",
    "gene_codes",
    "import_reference",
    "list_references",
    "load_artifacts",
    "load_manifest",
    "prune_versions",
    "reference_vectors",
    "refit",
    "relabel",
    "remove_cells",
    "resolve_version",
    "vector_names",
    "version_collection",
]

_HOMES = {
    **dict.fromkeys(
        ["build_reference", "drop_reference", "reference_vectors"], "indexer.reference._build"
    ),
    **dict.fromkeys(["add_cells", "relabel", "remove_cells"], "indexer.reference._edit"),
    **dict.fromkeys(["GeneCodes", "decode_top_genes"], "indexer.reference._gene_codes"),
    **dict.fromkeys(["gene_codes", "vector_names"], "indexer.reference._read"),
    **dict.fromkeys(["PointTable"], "indexer.reference._points"),
    **dict.fromkeys(["refit"], "indexer.reference._refit"),
    **dict.fromkeys(["export_reference", "import_reference", "prune_versions"], "indexer.reference._transfer"),
    **dict.fromkeys(
        [
            "CELL_VECTOR",
            "INPUT_VECTOR",
            "Reference",
            "TOP_GENES_FILE",
            "VIEW2_VECTOR",
            "list_references",
            "load_artifacts",
            "load_manifest",
            "resolve_version",
            "version_collection",
        ],
        "indexer.reference._versions",
    ),
}

__getattr__, __dir__ = lazy_face(__name__, _HOMES)
