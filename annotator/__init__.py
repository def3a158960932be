"""Annotate cells against a cellvec reference, and search genes and cells."""

from ._annotate import UNKNOWN, AnnotationResult, annotate
from ._vote import vote

__all__ = ["UNKNOWN", "AnnotationResult", "annotate", "vote"]
