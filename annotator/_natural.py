"""Natural order of labels: "cluster 2" before "cluster 10", "Unknown" last, as people read tables."""

from __future__ import annotations

import re
from collections.abc import Iterable

from annotator._result import UNKNOWN

_DIGITS = re.compile(r"(\d+)")


def natural_key(label: object) -> tuple[int, tuple[tuple[int, int | str], ...]]:
    """Return a sort key that orders labels naturally: runs of digits compare as numbers, case is ignored.

    ``"Unknown"`` (the label of cells cellvec does not label) sorts after every other label.

    Examples
    --------
    >>> sorted(["10", "2", "Unknown", "1"], key=natural_key)
    ['1', '2', '10', 'Unknown']
    >>> sorted(["RGC10", "rgc2", "Amacrine"], key=natural_key)
    ['Amacrine', 'rgc2', 'RGC10']
    """
    text = str(label)
    parts = tuple((0, int(p)) if p.isdigit() else (1, p.casefold()) for p in _DIGITS.split(text) if p)
    return (int(text == UNKNOWN), parts)


def natural_sorted(labels: Iterable[object]) -> list[str]:
    """Return the labels as strings in natural order (see :func:`natural_key`).

    Examples
    --------
    >>> natural_sorted({"c10", "c9"})
    ['c9', 'c10']
    """
    return sorted((str(s) for s in labels), key=natural_key)
