"""Pydantic records that cellvec persists or passes between its packages."""

from schemas._base import SCHEMA_VERSION, Record
from schemas._coverage import CoverageReport, FetchReport, GeneCount, GeneMapping, IdKind
from schemas._evaluation import METRICS, Scores
from schemas._genes import GeneRecord, GeneText, Species, TextSource
from schemas._index import IndexParams
from schemas._reference import (
    DEFAULT_ENCODER,
    DEFAULT_MODE,
    DEFAULT_TEXT_DIMS,
    AnnotationParams,
    BuildRecord,
    CellMode,
    CellVectorSpec,
    ExpressionParams,
    Neighbour,
    PoolingParams,
    ReferenceCellPayload,
    ReferenceManifest,
    RefineMethod,
    RefineParams,
    Weighting,
)
from schemas._search import GeneEnrichment, GeneFrequency, GeneHit, GeneSearch, LabelSummary
from schemas._species import Evidence, OrthologReport, SpeciesCall, SpeciesOption
from schemas._training import EpochStats, TrainReport

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_MODE",
    "DEFAULT_TEXT_DIMS",
    "METRICS",
    "SCHEMA_VERSION",
    "AnnotationParams",
    "BuildRecord",
    "CellMode",
    "CellVectorSpec",
    "CoverageReport",
    "EpochStats",
    "Evidence",
    "ExpressionParams",
    "FetchReport",
    "GeneCount",
    "GeneEnrichment",
    "GeneFrequency",
    "GeneHit",
    "GeneMapping",
    "GeneRecord",
    "GeneSearch",
    "GeneText",
    "IdKind",
    "IndexParams",
    "LabelSummary",
    "Neighbour",
    "OrthologReport",
    "PoolingParams",
    "Record",
    "ReferenceCellPayload",
    "ReferenceManifest",
    "RefineMethod",
    "RefineParams",
    "Scores",
    "Species",
    "SpeciesCall",
    "SpeciesOption",
    "TextSource",
    "TrainReport",
    "Weighting",
]
