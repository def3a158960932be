"""Text encoders: one ``embed_batch`` method each, chosen by name through :func:`get_encoder`."""

from indexer.encoders._base import Encoder, count_truncated, embed_texts
from indexer.encoders._registry import get_encoder

__all__ = [
    "Encoder",
    "count_truncated",
    "embed_texts",
    "get_encoder",
]
