"""Build cellvec's gene and reference collections.

The main names are re-exported here; each subject has its own subpackage with its own public names:
:mod:`indexer.store`, :mod:`indexer.encoders`, :mod:`indexer.genes`, :mod:`indexer.cells` and
:mod:`indexer.reference`. Every name but the errors and warnings loads its module on first use (SupCon's
imports torch, the genes' anndata and pandas), so importing :mod:`indexer` stays cheap.
"""

from typing import TYPE_CHECKING

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
    QueryShiftWarning,
    SpeciesMismatchError,
    StoreError,
    TruncationWarning,
    UnseenLabelWarning,
)
from indexer._lazy import lazy_face

if TYPE_CHECKING:
    from indexer._progress import ProgressLines, log_progress
    from indexer._settings import Settings
    from indexer.cells import CellVectors, Progress, encode_cells
    from indexer.cells.supcon import SupConModel
    from indexer.encoders import Encoder, get_encoder
    from indexer.genes import (
        GeneCatalog,
        GeneIndex,
        OrthologMap,
        fetch_gene_data,
        infer_species,
        resolve_species,
    )
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
    "ProgressLines",
    "QueryShiftWarning",
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
    "lazy_face",
    "list_references",
    "log_progress",
    "open_store",
    "prune_versions",
    "refit",
    "relabel",
    "remove_cells",
    "resolve_species",
]


_HOMES = {
    **dict.fromkeys(["ProgressLines", "log_progress"], "indexer._progress"),
    "Settings": "indexer._settings",
    **dict.fromkeys(["CellVectors", "Progress", "encode_cells"], "indexer.cells"),
    "SupConModel": "indexer.cells.supcon",
    **dict.fromkeys(["Encoder", "get_encoder"], "indexer.encoders"),
    **dict.fromkeys(
        ["GeneCatalog", "GeneIndex", "OrthologMap", "fetch_gene_data", "infer_species", "resolve_species"],
        "indexer.genes",
    ),
    **dict.fromkeys(
        [
            "Reference",
            "add_cells",
            "build_reference",
            "drop_reference",
            "export_reference",
            "import_reference",
            "list_references",
            "prune_versions",
            "refit",
            "relabel",
            "remove_cells",
        ],
        "indexer.reference",
    ),
    **dict.fromkeys(["IndexParams", "VectorStore", "open_store"], "indexer.store"),
}

__getattr__, __dir__ = lazy_face(__name__, _HOMES)
