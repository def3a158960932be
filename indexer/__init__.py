"""Build cellvec's gene and reference collections.

The main names are re-exported here; each subject has its own subpackage with its own public names:
:mod:`indexer.store`, :mod:`indexer.encoders`, :mod:`indexer.genes`, :mod:`indexer.cells` and
:mod:`indexer.reference`. SupCon (:mod:`indexer.cells.supcon`) imports torch, so its names load on first
use and importing :mod:`indexer` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from indexer._errors import (
    CellvecError,
    CellvecWarning,
    DataError,
    EncoderError,
    InputError,
    LowOverlapWarning,
    MixedSpeciesError,
    NoCalibrationWarning,
    OrthologMappingError,
    PanelCoverageWarning,
    SpeciesMismatchError,
    StoreError,
    TruncationWarning,
    UnseenLabelWarning,
)
from indexer._settings import Settings
from indexer.cells import CellVectors, Progress, encode_cells
from indexer.encoders import Encoder, get_encoder
from indexer.genes import GeneCatalog, GeneIndex, OrthologMap, fetch_gene_data, infer_species, resolve_species
from indexer.reference import (
    Reference,
    add_cells,
    build_reference,
    drop_reference,
    export_reference,
    import_reference,
    list_references,
    prune_versions,
    refit,
    relabel,
    remove_cells,
)
from indexer.store import IndexParams, VectorStore, open_store

if TYPE_CHECKING:
    from indexer.cells.supcon import SupConModel

__all__ = [
    "CellVectors",
    "CellvecError",
    "CellvecWarning",
    "DataError",
    "Encoder",
    "EncoderError",
    "GeneCatalog",
    "GeneIndex",
    "IndexParams",
    "InputError",
    "LowOverlapWarning",
    "MixedSpeciesError",
    "NoCalibrationWarning",
    "OrthologMap",
    "OrthologMappingError",
    "PanelCoverageWarning",
    "Progress",
    "Reference",
    "Settings",
    "SpeciesMismatchError",
    "StoreError",
    "SupConModel",
    "TruncationWarning",
    "UnseenLabelWarning",
    "VectorStore",
    "add_cells",
    "build_reference",
    "drop_reference",
    "encode_cells",
    "export_reference",
    "fetch_gene_data",
    "get_encoder",
    "import_reference",
    "infer_species",
    "list_references",
    "open_store",
    "prune_versions",
    "refit",
    "relabel",
    "remove_cells",
    "resolve_species",
]


def __getattr__(name: str) -> Any:
    if name == "SupConModel":
        from indexer.cells.supcon import SupConModel

        return SupConModel
    msg = f"module 'indexer' has no attribute '{name}'"
    raise AttributeError(msg)
