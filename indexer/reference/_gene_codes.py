"""Top genes stored as integer ids: the version's gene list, and decoding stored payloads (old ones hold symbols)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    pass


class GeneCodes:
    """Integer ids of the gene symbols in a version's ``top_genes`` payloads.

    Qdrant Edge converts a payload string in about 4 µs and an integer in about 1 µs (measured with
    ``benchmarks/scale/bench_edge_points.py``), so each cell stores its 20 top genes as ids into the list
    kept as the version's :data:`TOP_GENES_FILE` artefact. References written before it store symbols;
    every reader accepts both (:meth:`decode`).

    Parameters
    ----------
    symbols
        The gene symbols, in id order (no repeats).
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = np.asarray(list(symbols), dtype=object)
        self._ids = {str(s): i for i, s in enumerate(self.symbols)}

    def to_bytes(self) -> bytes:
        """Return the artefact: one symbol per line, in id order."""
        return "\n".join(map(str, self.symbols)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> GeneCodes:
        """Read the artefact written by :meth:`to_bytes`."""
        return cls(data.decode().split("\n") if data else [])

    def id_of(self, symbol: str) -> int:
        """Return a symbol's id, ``-1`` (matches no cell) for a gene no cell of the version names."""
        return self._ids.get(symbol, -1)

    def encode(self, genes: Sequence[str]) -> list[int]:
        """Return the ids of ``genes`` (genes outside the list, which builds never produce, are left out)."""
        ids = self._ids
        return [ids[g] for g in genes if g in ids]

    def decode(self, stored: Sequence[Any]) -> list[str]:
        """Return the symbols of a stored ``top_genes`` value: ids, or symbols (older references)."""
        n = len(self.symbols)
        return [g if isinstance(g, str) else str(self.symbols[g]) for g in stored if isinstance(g, str) or 0 <= g < n]


def decode_top_genes(stored: Sequence[Any] | None, codes: GeneCodes | None) -> list[str]:
    """Return the symbols of a payload's ``top_genes`` (``codes``: the version's, see :func:`gene_codes`)."""
    if not stored:
        return []
    if codes is None:
        return [str(g) for g in stored]
    return codes.decode(stored)
