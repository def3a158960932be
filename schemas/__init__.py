"""Pydantic records that cellvec persists or passes between its packages."""

from ._base import SCHEMA_VERSION, Record
from ._coverage import CoverageReport, FetchReport, GeneCount, GeneMapping, IdKind
from ._genes import GeneRecord, GeneText, Species, TextSource
from ._reference import (
    DEFAULT_MODE,
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
from ._search import GeneFrequency, GeneHit, GeneSearch, LabelSummary
from ._training import EpochStats, TrainReport

__all__ = [
    "DEFAULT_MODE",
    "SCHEMA_VERSION",
    "AnnotationParams",
    "BuildRecord",
    "CellMode",
    "CellVectorSpec",
    "CoverageReport",
    "EpochStats",
    "ExpressionParams",
    "FetchReport",
    "GeneCount",
    "GeneFrequency",
    "GeneHit",
    "GeneMapping",
    "GeneRecord",
    "GeneSearch",
    "GeneText",
    "IdKind",
    "LabelSummary",
    "Neighbour",
    "PoolingParams",
    "Record",
    "ReferenceCellPayload",
    "ReferenceManifest",
    "RefineMethod",
    "RefineParams",
    "Species",
    "TextSource",
    "TrainReport",
    "Weighting",
]
