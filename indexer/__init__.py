"""Build cellvec's gene and reference collections.

The public names are re-exported here; the implementation lives in private modules. Names whose modules
import torch (the SupCon encoder) load on first use, so importing :mod:`indexer` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from indexer.cells._encode import Artifacts, CellVectors, Progress, encode_cells
from indexer.encoders._registry import Encoder, count_truncated, embed_texts, get_encoder
from indexer._errors import (
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
from indexer.cells._expression import ExpressionProjection, fit_expression
from indexer.genes._ids import coverage_report, detect_id_kind, infer_species, map_var_names
from indexer.genes._index import GENE_VECTOR, GeneIndex, gene_collection_name, gene_point_id
from indexer.genes._catalog import GeneCatalog
from indexer.genes._housekeeping import load_housekeeping
from indexer.reference._edit import (
    add_cells,
    export_reference,
    import_reference,
    prune_versions,
    refit,
    relabel,
    remove_cells,
)
from indexer.genes._ncbi import fetch_gene_data
from indexer.cells._pool import log_normalise, pool, top_gene_weights
from indexer.reference._build import (
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
from indexer._settings import Settings
from indexer.store._protocol import IndexParams, SearchResult, StoredPoint, VectorStore, Where, open_store
from indexer.cells._validate import expression_matrix

if TYPE_CHECKING:
    from indexer.cells.supcon._train import SupConModel, supcon_loss, train_supcon

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
        from indexer.cells.supcon import _train as _supcon

        return getattr(_supcon, name)
    msg = f"module 'indexer' has no attribute '{name}'"
    raise AttributeError(msg)
