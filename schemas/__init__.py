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

__all__ = [
    "DEFAULT_MODE",
    "SCHEMA_VERSION",
    "AnnotationParams",
    "BuildRecord",
    "CellMode",
    "CellVectorSpec",
    "CoverageReport",
    "ExpressionParams",
    "FetchReport",
    "GeneCount",
    "GeneMapping",
    "GeneRecord",
    "GeneText",
    "IdKind",
    "Neighbour",
    "PoolingParams",
    "Record",
    "ReferenceCellPayload",
    "ReferenceManifest",
    "RefineMethod",
    "RefineParams",
    "Species",
    "TextSource",
    "Weighting",
]
