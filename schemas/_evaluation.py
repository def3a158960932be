"""Scores of one labelling against the truth, shared by the demo, SupCon's early stopping and the benchmarks."""

from __future__ import annotations

from schemas._base import Record

METRICS: tuple[str, ...] = ("accuracy", "weighted_f1", "macro_f1", "kappa")
"""Scalar metrics reported for every method, in report order."""


class Scores(Record):
    """Metrics of one method on one split.

    Attributes
    ----------
    accuracy
        Share of query cells labelled correctly.
    weighted_f1
        F1 averaged over labels weighted by support.
    macro_f1
        Unweighted mean F1 over labels.
    kappa
        Cohen's kappa.
    per_class_recall
        Recall of every true query label.
    """

    accuracy: float
    weighted_f1: float
    macro_f1: float
    kappa: float
    per_class_recall: dict[str, float]

    def scalars(self) -> dict[str, float]:
        """Return the scalar metrics by name (see :data:`METRICS`)."""
        return {m: float(getattr(self, m)) for m in METRICS}
