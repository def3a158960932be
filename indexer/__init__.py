"""Build cellvec's gene and reference collections.

The public names are re-exported here; the implementation lives in private modules. Names whose modules
import torch (the SupCon encoder) load on first use, so importing :mod:`indexer` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from ._cells import Artifacts, CellVectors, Progress, encode_cells
from ._encoders import Encoder, count_truncated, embed_texts, get_encoder
from ._errors import (
    CellvecError,
    CellvecWarning,
    DataError,
    EncoderError,
    InputError,
    LowOverlapWarning,
    StoreError,
    TruncationWarning,
    UnseenLabelWarning,
)
from ._expression import ExpressionProjection, fit_expression
from ._geneids import coverage_report, detect_id_kind, infer_species, map_var_names
from ._genes import GENE_VECTOR, GeneIndex, gene_collection_name, gene_point_id
from ._genetext import GeneCatalog
from ._housekeeping import load_housekeeping
from ._lifecycle import (
    add_cells,
    export_reference,
    import_reference,
    prune_versions,
    refit,
    relabel,
    remove_cells,
)
from ._ncbi import fetch_gene_data
from ._pool import log_normalise, pool, top_gene_weights
from ._reference import (
    CELL_VECTOR,
    INPUT_VECTOR,
    VIEW2_VECTOR,
    build_reference,
    cell_point_id,
    drop_reference,
    list_references,
    load_artifacts,
    load_manifest,
    reference_vectors,
    resolve_version,
    save_manifest,
    version_collection,
)
from ._settings import Settings
from ._store import IndexParams, SearchResult, StoredPoint, VectorStore, Where, open_store
from ._validate import expression_matrix

if TYPE_CHECKING:
    from ._supcon import SupConModel, supcon_loss, train_supcon

__all__ = [
    "CELL_VECTOR",
    "GENE_VECTOR",
    "INPUT_VECTOR",
    "VIEW2_VECTOR",
    "Artifacts",
    "CellVectors",
    "CellvecError",
    "CellvecWarning",
    "DataError",
    "Encoder",
    "EncoderError",
    "ExpressionProjection",
    "GeneCatalog",
    "GeneIndex",
    "IndexParams",
    "InputError",
    "LowOverlapWarning",
    "Progress",
    "SearchResult",
    "Settings",
    "StoreError",
    "StoredPoint",
    "SupConModel",
    "TruncationWarning",
    "UnseenLabelWarning",
    "VectorStore",
    "Where",
    "add_cells",
    "build_reference",
    "cell_point_id",
    "count_truncated",
    "coverage_report",
    "detect_id_kind",
    "drop_reference",
    "embed_texts",
    "encode_cells",
    "export_reference",
    "expression_matrix",
    "fetch_gene_data",
    "fit_expression",
    "gene_collection_name",
    "gene_point_id",
    "get_encoder",
    "import_reference",
    "infer_species",
    "list_references",
    "load_artifacts",
    "load_housekeeping",
    "load_manifest",
    "log_normalise",
    "map_var_names",
    "open_store",
    "pool",
    "prune_versions",
    "reference_vectors",
    "refit",
    "relabel",
    "remove_cells",
    "resolve_version",
    "save_manifest",
    "supcon_loss",
    "top_gene_weights",
    "train_supcon",
    "version_collection",
]

_LAZY = {"SupConModel", "supcon_loss", "train_supcon"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _supcon

        return getattr(_supcon, name)
    msg = f"module 'indexer' has no attribute '{name}'"
    raise AttributeError(msg)
