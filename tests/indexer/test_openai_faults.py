"""The openai: encoder with the real openai client against a local fake server with scripted faults."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from indexer import EncoderError, Settings, get_encoder
from indexer.encoders import _openai as _encoders
from indexer.encoders import count_truncated, embed_texts
from indexer.encoders._openai import OpenAIEncoder
from tests._openai_server import (
    MALFORMED,
    RATE_LIMITED,
    SERVER_ERROR,
    UNAUTHORIZED,
    FakeOpenAIServer,
    Fault,
    timeout,
)

DIM = 8


@pytest.fixture
def server():
    with FakeOpenAIServer(dim=DIM) as fake:
        yield fake


@pytest.fixture
def encoder(server: FakeOpenAIServer) -> OpenAIEncoder:
    return OpenAIEncoder(
        "text-embedding-test",
        api_key=server.api_key,
        base_url=server.base_url,
        max_retries=3,
        backoff_s=0.01,
        timeout_s=0.5,
    )


def genes(n: int) -> list[str]:
    return [f"G{i}: gene {i}. A made-up summary of gene {i}." for i in range(n)]


def expected(server: FakeOpenAIServer, texts: list[str]) -> np.ndarray:
    return np.stack([server.vector(text) for text in texts])


def test_success_returns_rows_in_order(server, encoder) -> None:
    texts = genes(5)
    vectors = encoder.embed_batch(texts)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected(server, texts), rtol=1e-6)
    assert encoder.dim == DIM  # learnt from the first answer for a model without a known dim
    assert server.n_requests == 1
    assert server.requests[0].model == "text-embedding-test"


def test_unknown_dim_is_probed_once(server, encoder) -> None:
    assert encoder.dim == DIM
    assert server.n_requests == 1
    assert embed_texts(encoder, genes(3)).shape == (3, DIM)


def test_get_encoder_reads_settings(server, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    settings = Settings(OPENAI_API_KEY=server.api_key, OPENAI_BASE_URL=server.base_url)
    encoder = get_encoder("openai", settings=settings)
    assert encoder.id == "openai:text-embedding-ada-002"
    assert encoder.embed_batch(genes(2)).shape == (2, DIM)
    assert server.requests[0].model == "text-embedding-ada-002"
    assert server.requests[0].authorization == f"Bearer {server.api_key}"


def test_get_encoder_reads_environment(server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    encoder = get_encoder("openai:text-embedding-3-small")
    assert embed_texts(encoder, genes(2)).shape == (2, DIM)
    assert server.requests[0].model == "text-embedding-3-small"


def test_batches_of_at_most_2048(server, encoder) -> None:
    texts = genes(5000)
    starts: list[tuple[int, int]] = []
    vectors = embed_texts(encoder, texts, on_batch=lambda v, start, stop: starts.append((start, stop)))
    assert server.n_requests == 3
    assert [len(r.inputs) for r in server.requests] == [2048, 2048, 904]
    assert starts == [(0, 2048), (2048, 4096), (4096, 5000)]
    np.testing.assert_allclose(
        vectors[[0, 2048, 4999]], expected(server, [texts[0], texts[2048], texts[4999]])
    )


def test_embed_batch_splits_large_calls_itself(server, encoder) -> None:
    assert encoder.embed_batch(genes(2049)).shape == (2049, DIM)
    assert [len(r.inputs) for r in server.requests] == [2048, 1]


def test_401_is_not_retried(server) -> None:
    encoder = OpenAIEncoder("m", api_key="sk-wrong", base_url=server.base_url, max_retries=3, backoff_s=0.01)
    with pytest.raises(EncoderError, match=r"rejected the key \(401\): set OPENAI_API_KEY to a valid key"):
        encoder.embed_batch(genes(2))
    assert server.n_requests == 1


def test_scripted_401_is_not_retried(server, encoder) -> None:
    server.script(UNAUTHORIZED)
    with pytest.raises(EncoderError, match=r"401"):
        encoder.embed_batch(genes(2))
    assert server.n_requests == 1


def test_missing_key(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    encoder = get_encoder("openai", settings=Settings(OPENAI_API_KEY=None, OPENAI_BASE_URL=None))
    with pytest.raises(EncoderError, match=r"needs an OpenAI API key and none is set: set OPENAI_API_KEY"):
        encoder.embed_batch(["A: a"])


@pytest.mark.parametrize("retry_after", ["0", "1"])
def test_429_honours_retry_after(server, encoder, retry_after: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The encoder's waits are recorded, not slept: the assertion is on what it chose, whatever the load.
    waits: list[float] = []
    monkeypatch.setattr(_encoders, "time", SimpleNamespace(sleep=waits.append))
    server.script(Fault(status=429, headers={"Retry-After": retry_after}))
    texts = genes(3)
    np.testing.assert_allclose(encoder.embed_batch(texts), expected(server, texts), rtol=1e-6)
    assert server.n_requests == 2
    assert len(waits) == 1
    assert waits[0] >= float(retry_after)  # the server's Retry-After, not less
    assert waits[0] < float(retry_after) + 1  # and not the long exponential backoff


def test_429_without_retry_after_backs_off(server, encoder) -> None:
    server.script(Fault(status=429), Fault(status=429))
    assert encoder.embed_batch(genes(2)).shape == (2, DIM)
    assert server.n_requests == 3


def test_500_then_success(server, encoder) -> None:
    server.script(SERVER_ERROR, Fault(status=503))
    assert encoder.embed_batch(genes(2)).shape == (2, DIM)
    assert server.n_requests == 3


def test_timeout_then_success(server, encoder) -> None:
    server.script(timeout(1.5))
    texts = genes(2)
    np.testing.assert_allclose(encoder.embed_batch(texts), expected(server, texts), rtol=1e-6)
    assert server.n_requests == 2


def test_gives_up_after_max_retries(server, encoder) -> None:
    server.script(*[SERVER_ERROR] * 10)
    with pytest.raises(EncoderError, match=r"still failed after 3 retries \(InternalServerError, HTTP 500\)"):
        encoder.embed_batch(genes(2))
    assert server.n_requests == 4


def test_malformed_response_is_not_retried(server, encoder) -> None:
    server.script(MALFORMED)
    with pytest.raises(EncoderError, match=r"malformed response .*OPENAI_BASE_URL"):
        encoder.embed_batch(genes(2))
    assert server.n_requests == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"object": "list"}',
        b'{"object": "list", "data": [{"index": 0, "embedding": [0.1, 0.2]}]}',  # 1 row for 2 texts
        b'{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 0, "embedding": [1, 2]}]}',
        b'{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 1, "embedding": [1]}]}',
        b'{"data": [{"index": 0, "embedding": "@@@"}, {"index": 1, "embedding": "@@@"}]}',
    ],
)
def test_malformed_bodies(server, encoder, body: bytes) -> None:
    server.script(Fault(status=200, body=body))
    with pytest.raises(EncoderError, match=r"malformed response"):
        encoder.embed_batch(genes(2))


def test_other_4xx_names_the_model(server, encoder) -> None:
    server.script(Fault(status=404))
    with pytest.raises(
        EncoderError, match=r"refused the request for model 'text-embedding-test' \(NotFoundError"
    ):
        encoder.embed_batch(genes(2))
    assert server.n_requests == 1


def test_on_batch_keeps_work_done_before_a_permanent_failure(server, encoder) -> None:
    texts = genes(5000)
    saved: dict[int, np.ndarray] = {}

    def persist(vectors: np.ndarray, start: int, stop: int) -> None:
        saved[start] = vectors.copy()

    server.script(None, UNAUTHORIZED)
    with pytest.raises(EncoderError, match="401"):
        embed_texts(encoder, texts, on_batch=persist)
    assert list(saved) == [0]
    assert saved[0].shape == (2048, DIM)

    # A rerun embeds only what is missing.
    before = server.n_requests
    rest = embed_texts(encoder, texts[2048:])
    assert server.n_requests - before == 2
    full = np.concatenate([saved[0], rest])
    np.testing.assert_allclose(full, expected(server, texts), rtol=1e-6)


def test_both_encoding_formats_parse(server) -> None:
    # The encoder asks for base64; a server that ignores it and sends floats also works.
    encoder = OpenAIEncoder("m", api_key=server.api_key, base_url=server.base_url)
    assert encoder.embed_batch(genes(1)).shape == (1, DIM)
    assert server.requests[0].encoding_format == "base64"
    floats = server.vector("X: x").tolist()
    body = f'{{"data": [{{"index": 0, "embedding": {floats}}}]}}'.encode()
    server.script(Fault(status=200, body=body))
    np.testing.assert_allclose(encoder.embed_batch(["X: x"])[0], server.vector("X: x"), rtol=1e-6)


def test_backoff_constant_is_used_by_default(server, monkeypatch) -> None:
    monkeypatch.setattr(_encoders, "OPENAI_BACKOFF_S", 0.0)
    encoder = OpenAIEncoder("m", api_key=server.api_key, base_url=server.base_url)
    server.script(SERVER_ERROR, RATE_LIMITED)
    assert encoder.embed_batch(genes(1)).shape == (1, DIM)
    assert server.n_requests == 3


def test_count_truncated_estimates_tokens() -> None:
    encoder = get_encoder("openai", settings=Settings(OPENAI_API_KEY="sk-x"))
    assert count_truncated(encoder, ["A: short", "B: " + "x" * 40_000]) == 1
