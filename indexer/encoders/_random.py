"""``random:<dim>``: a fixed random unit vector per gene symbol, the control that ignores the text."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from indexer.encoders._base import InvalidEncoderArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

    from indexer._settings import Settings


class RandomEncoder:
    """A fixed random unit vector per gene symbol: the control that ignores the description.

    Texts look like ``"SYMBOL: full name. summary"``; the vector depends only on the part before the
    first ``":"`` (the whole text when there is none), seeded by its SHA-256.

    Parameters
    ----------
    dim
        Vector length.
    """

    batch_size = 4096

    def __init__(self, dim: int) -> None:
        self._dim = dim

    @property
    def id(self) -> str:
        """``"random:<dim>"``."""
        return f"random:{self._dim}"

    @property
    def dim(self) -> int:
        """Vector length."""
        return self._dim

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Return one unit vector per text, a function of its gene symbol only."""
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            symbol = text.split(":", 1)[0].strip()
            seed = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(self._dim)
            out[i] = vector / np.linalg.norm(vector)
        return out

    def count_truncated(self, texts: Sequence[str]) -> int:
        """Return 0: nothing is truncated."""
        return 0


def random_encoder(arg: str, settings: Settings | None) -> RandomEncoder:
    """Registry factory for ``"random:<dim>"``."""
    if not arg.isdigit() or int(arg) == 0:
        msg = f"'random:' needs a positive integer dimension, got {arg!r}, e.g. random:384"
        raise InvalidEncoderArgument(msg)
    return RandomEncoder(int(arg))
