"""Natural order of labels: cluster "2" before "10", "C9" before "C10", case ignored."""

from __future__ import annotations

import re
from collections.abc import Iterable

_DIGITS = re.compile(r"(\d+)")


def natural_key(label: object) -> tuple[tuple[tuple[int, int, str], ...], str]:
    """Return a sort key that orders the digit runs of ``label`` by their value.

    Parameters
    ----------
    label
        A label (converted with ``str``).

    Returns
    -------
    A key for ``sorted``: text pieces compare case-insensitively, digit runs as numbers, and a number sorts
    before text at the same position ("2" < "10" < "B cell"); labels equal but for case keep a fixed order.
    """
    parts = _DIGITS.split(str(label))
    key = []
    for i, part in enumerate(parts):
        if not part:
            continue
        key.append((0, int(part), part) if i % 2 else (1, 0, part.casefold()))
    return tuple(key), str(label)


def natural_sorted(labels: Iterable[object]) -> list[str]:
    """Return the distinct labels of ``labels`` as strings, in natural order.

    Parameters
    ----------
    labels
        Labels, repeats allowed.

    Returns
    -------
    Sorted distinct strings.
    """
    return sorted({str(x) for x in labels}, key=natural_key)
