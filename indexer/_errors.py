"""Errors and warnings raised by the indexer (and re-used by the annotator)."""

from __future__ import annotations


class CellvecError(ValueError):
    """Base of every error a user can cause; its message names the problem and the fix.

    The CLI prints the message as one line and exits with code 2.
    """


class InputError(CellvecError):
    """The AnnData, a file or an option given by the user is unusable."""


class MixedSpeciesError(InputError):
    """The gene names belong to two species (e.g. both ``ENSG`` and ``ENSMUSG`` ids)."""


class SpeciesMismatchError(InputError):
    """An explicit species contradicts what the gene names clearly are."""


class OrthologMappingError(InputError):
    """Too few query genes, or too little of the query's expression, map onto the reference's species."""


class StoreError(CellvecError):
    """The store is missing, locked, not a cellvec store, or does not hold what was asked for."""


class EncoderError(CellvecError):
    """An encoder name is unknown, a model cannot be loaded, or an embedding service failed."""


class DataError(CellvecError):
    """The gene description data folder is missing or malformed."""


class CellvecWarning(UserWarning):
    """Base of the soft problems cellvec reports (the run goes on)."""


class LowOverlapWarning(CellvecWarning):
    """Few of the dataset's genes have a description or appear in the reference."""


class PanelCoverageWarning(LowOverlapWarning):
    """The query lacks part of a reference panel (the genes its cells pool, or its expression panel)."""


class QueryShiftWarning(CellvecWarning):
    """The query as a whole lies farther from the reference than a batch effect explains."""


class NoCalibrationWarning(CellvecWarning):
    """The reference has no decision calibration (built before issue 14): the plain vote is used."""


class UnseenLabelWarning(CellvecWarning):
    """Cells were added with labels the reference's trained encoder never saw."""


class TruncationWarning(CellvecWarning):
    """Some gene descriptions were longer than the encoder's window and were truncated."""
