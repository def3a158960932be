"""What every encoder shares: the :class:`Encoder` protocol, model caching and loading, batching.

Each backend module implements :meth:`Encoder.embed_batch` only; :func:`embed_texts` adds batching and
progress on top, :func:`count_truncated` asks a backend how many texts exceed its window.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from indexer._errors import EncoderError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from indexer._settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
CUDA_DTYPE: str | None = "float16"
"""Precision of ``st:``/``hf:``/``minilm`` models on CUDA; ``None`` keeps float32. float16 rather than
bfloat16: its longer mantissa keeps MiniLM's vectors at cosine > 0.999 to float32 (bfloat16: 0.997)."""

_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_MODEL_CACHE_LOCK = threading.Lock()


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into vectors; the only method to implement is :meth:`embed_batch`."""

    @property
    def id(self) -> str:
        """Canonical id, e.g. ``"minilm"``, ``"st:<name>"``, ``"hf:<name>"``, ``"openai:<model>"``."""
        ...

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed one batch of texts.

        Parameters
        ----------
        texts
            The texts, in order.

        Returns
        -------
        np.ndarray
            float32 array of shape ``(len(texts), dim)``. Rows are *not* necessarily unit-normalised
            (MiniLM, OpenAI and ``random:`` rows are; ``hf:`` mean-pooled rows are not).
        """
        ...


class InvalidEncoderArgument(ValueError):
    """Raised by a registry factory when the part after ``"<prefix>:"`` is not valid; says why."""


def resolve_device(settings: Settings) -> str:
    """Return ``settings.device``, else ``"cuda"`` when available, else ``"cpu"``."""
    if settings.device:
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cached_model(encoder_id: str, device: str, load: Callable[[], Any]) -> Any:
    """Return the model cached for ``(encoder_id, device)``, loading it once per process."""
    key = (encoder_id, device)
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            logger.info("loading encoder %s on %s", encoder_id, device)
            _MODEL_CACHE[key] = load()
        return _MODEL_CACHE[key]


def as_matrix(vectors: Any, n: int, dim: int, encoder_id: str) -> NDArray[np.float32]:
    """Check an encoder's output shape and return it as a C-contiguous float32 matrix."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.shape != (n, dim):
        msg = (
            f"encoder {encoder_id!r} returned an array of shape {array.shape} for {n} texts; "
            f"expected ({n}, {dim}). The encoder's embed_batch must return one row of length dim per text."
        )
        raise EncoderError(msg)
    return array


def _offline_hint(name: str, kind: str) -> str:
    if name.startswith(("/", ".", "~")) or "\\" in name or Path(name).suffix:
        return (
            f"could not load the {kind} model at {name!r}: it is not a model folder (expected "
            f"config.json, the tokenizer and the weights there). Fix: pass the folder the model was saved to"
        )
    return (
        f"could not load the {kind} model {name!r} offline: it is neither a model folder nor in the "
        "Hugging Face cache (cellvec never downloads models). Fix: on a machine with network, "
        f"download it once (`hf download {name} --local-dir <folder>`), "
        f"copy the folder here and pass its path: '{kind}:<folder>'"
    )


def load_pretrained(load: Callable[..., Any], name: str, kind: str) -> Any:
    """Call ``load(local_files_only=True)``: models come from a local path or the Hugging Face cache only.

    Going online is left to the user (``huggingface-cli download``): the Hub client retries for about a
    minute before failing when there is no network, which would make a typo cost a minute.
    """
    from transformers.utils import logging as hf_logging

    # transformers draws its own "Loading weights" bar: a stray bar beside cellvec's (and carriage
    # returns in logs); loading a local model takes about a second, so it is hidden while loading.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load(local_files_only=True)
    except (OSError, ValueError) as e:
        msg = f"{_offline_hint(name, kind)}. Cause: {e}"
        raise EncoderError(msg) from e
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def to_cuda_dtype(model: Any, device: str) -> None:
    """Cast a model to ``CUDA_DTYPE`` when it runs on CUDA (inference only, so no loss scaling is needed)."""
    if device.startswith("cuda") and CUDA_DTYPE is not None:
        import torch

        model.to(getattr(torch, CUDA_DTYPE))


def count_over(tokenizer: Any, texts: Sequence[str], limit: int) -> int:
    """Count texts whose token count (with special tokens) exceeds ``limit``."""
    if not texts:
        return 0
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    return sum(len(row) > limit for row in ids)


def embed_texts(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    batch_size: int | None = None,
    on_batch: Callable[[np.ndarray, int, int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embed texts in batches, handing each finished batch to ``on_batch`` before the next starts.

    Parameters
    ----------
    encoder
        Any :class:`Encoder`.
    texts
        Texts to embed.
    batch_size
        Texts per ``embed_batch`` call; by default the encoder's own ``batch_size`` (2,048 for OpenAI,
        ``Settings.embed_batch_size`` for local models), else 64.
    on_batch
        Called as ``on_batch(vectors, start, stop)`` after each batch so the caller can persist it: a
        later failure loses nothing already embedded.
    progress
        Called with the number of texts done after each batch.

    Returns
    -------
    np.ndarray
        float32 array of shape ``(len(texts), encoder.dim)``; rows are not necessarily unit-normalised.

    Examples
    --------
    >>> from indexer.encoders import embed_texts, get_encoder
    >>> done = []
    >>> vectors = embed_texts(get_encoder("random:4"), ["A: a", "B: b", "C: c"], batch_size=2,
    ...                       on_batch=lambda v, start, stop: done.append((start, stop)))
    >>> done
    [(0, 2), (2, 3)]
    """
    size = batch_size or getattr(encoder, "batch_size", None) or DEFAULT_BATCH_SIZE
    if size < 1:
        msg = f"batch_size must be a positive integer, got {size}"
        raise EncoderError(msg)
    n = len(texts)
    parts: list[NDArray[np.float32]] = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        vectors = as_matrix(encoder.embed_batch(texts[start:stop]), stop - start, encoder.dim, encoder.id)
        parts.append(vectors)
        logger.debug("embedded %d/%d texts with %s", stop, n, encoder.id)
        if on_batch is not None:
            on_batch(vectors, start, stop)
        if progress is not None:
            progress(stop)
    if not parts:
        return np.empty((0, encoder.dim), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def count_truncated(encoder: Encoder, texts: Sequence[str]) -> int:
    """Count texts longer than the encoder's window (the model truncates them).

    Parameters
    ----------
    encoder
        Any :class:`Encoder`; ones without a window (``random:``, test fakes) count 0.
    texts
        Texts to check.

    Returns
    -------
    int
        Number of texts over the window: tokenizer length above ``max_seq_length`` for ``minilm``,
        ``st:`` and ``hf:``; above 8,191 tokens for ``openai:`` (about 4 characters a token when
        tiktoken is absent). Callers warn with :class:`~indexer._errors.TruncationWarning`.
    """
    counter = getattr(encoder, "count_truncated", None)
    return int(counter(texts)) if counter is not None else 0
