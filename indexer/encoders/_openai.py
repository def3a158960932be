"""``openai[:<model>]``: the OpenAI embeddings API or any OpenAI-compatible server, with retries."""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._errors import EncoderError
from indexer._settings import Settings
from indexer.encoders._base import as_matrix

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

logger = logging.getLogger(__name__)

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
        return as_matrix(matrix, n, self._dim, self.id)

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


def openai_encoder(arg: str, settings: Settings | None) -> OpenAIEncoder:
    """Registry factory for ``"openai"`` and ``"openai:<model>"``; key and URL from settings or env."""
    settings = settings or Settings()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIEncoder(
        arg or OPENAI_DEFAULT_MODEL,
        api_key=key or os.environ.get("OPENAI_API_KEY"),
        base_url=settings.openai_base_url or os.environ.get("OPENAI_BASE_URL"),
    )
