"""Text encoders: one ``embed_batch`` method each, chosen by name through :func:`get_encoder`."""

from indexer.encoders._registry import Encoder, count_truncated, embed_texts, get_encoder

__all__ = [
    "Encoder",
    "count_truncated",
    "embed_texts",
    "get_encoder",
]
