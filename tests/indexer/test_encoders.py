"""Tests of the text encoders: random control, MiniLM, hf:/st: on a tiny local BERT, batching."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import EncoderError, Settings, get_encoder
from indexer.encoders import count_truncated, embed_texts
from indexer.encoders._random import RandomEncoder

CPU = Settings(device="cpu", embed_batch_size=4)


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("name", "expected_id"),
    [
        ("minilm", "minilm"),
        ("random:16", "random:16"),
        ("openai", "openai:text-embedding-ada-002"),
        ("openai:text-embedding-3-small", "openai:text-embedding-3-small"),
        ("st:some/model", "st:some/model"),
        ("hf:dmis-lab/biobert-base-cased-v1.2", "hf:dmis-lab/biobert-base-cased-v1.2"),
    ],
)
def test_get_encoder_canonical_id_is_cheap(name: str, expected_id: str) -> None:
    # No model is loaded and no key is needed just to name an encoder.
    assert get_encoder(name, settings=CPU).id == expected_id


@pytest.mark.parametrize("name", ["bert", "minilm:x", "st:", "hf:", "random", "random:0", "random:abc", ""])
def test_unknown_encoder_lists_valid_forms(name: str) -> None:
    expected = r"unknown encoder .*valid encoder names are: 'minilm', 'st:.*random:<dim>"
    with pytest.raises(EncoderError, match=expected):
        get_encoder(name, settings=CPU)


def test_known_dims_without_loading() -> None:
    assert get_encoder("minilm", settings=CPU).dim == 384
    assert get_encoder("openai", settings=CPU).dim == 1536
    assert get_encoder("openai:text-embedding-3-large", settings=CPU).dim == 3072


def test_missing_model_path_names_the_fix(tmp_path) -> None:
    encoder = get_encoder(f"hf:{tmp_path / 'no-such-model'}", settings=CPU)
    with pytest.raises(EncoderError, match=r"is not a model folder.*Fix: pass the folder"):
        encoder.embed_batch(["a"])


def test_uncached_hub_model_says_how_to_download(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = get_encoder("hf:cellvec-test/not-in-cache", settings=CPU)
    with pytest.raises(EncoderError, match=r"offline.*hf download cellvec-test/not-in-cache"):
        encoder.embed_batch(["a"])


# ------------------------------------------------------------------------------------------ random


def test_random_is_per_symbol_deterministic_unit() -> None:
    encoder = get_encoder("random:32")
    a = encoder.embed_batch(["RHO: rhodopsin. Vision.", "ALB: albumin", "RHO: something else entirely"])
    b = RandomEncoder(32).embed_batch(["RHO: rhodopsin. Vision."])
    assert a.shape == (3, 32)
    assert a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(a[0], a[2])  # same symbol, different text
    np.testing.assert_array_equal(a[0], b[0])  # same in a new instance
    assert abs(float(a[0] @ a[1])) < 0.9
    assert count_truncated(encoder, ["RHO: " + "x " * 10_000]) == 0


def test_random_known_vector_is_stable_across_versions() -> None:
    # Pins the seeding (sha256 of the symbol -> numpy default_rng) so stored indexes stay valid.
    vector = RandomEncoder(4).embed_batch(["TP53: tumor protein p53"])[0]
    again = RandomEncoder(4).embed_batch(["TP53"])[0]
    np.testing.assert_array_equal(vector, again)


# ------------------------------------------------------------------------------------------ embed_texts


def test_embed_texts_batches_and_reports() -> None:
    encoder = RandomEncoder(8)
    texts = [f"G{i}: gene {i}" for i in range(10)]
    seen: list[tuple[int, int]] = []
    done: list[int] = []
    out = embed_texts(
        encoder,
        texts,
        batch_size=4,
        on_batch=lambda vectors, start, stop: seen.append((start, stop)) or None,
        progress=done.append,
    )
    assert seen == [(0, 4), (4, 8), (8, 10)]
    assert done == [4, 8, 10]
    np.testing.assert_array_equal(out, encoder.embed_batch(texts))
    assert out.dtype == np.float32


def test_embed_texts_on_batch_gets_the_rows() -> None:
    encoder = RandomEncoder(8)
    texts = [f"G{i}: gene" for i in range(5)]
    out = np.zeros((5, 8), dtype=np.float32)

    def store(vectors: np.ndarray, start: int, stop: int) -> None:
        out[start:stop] = vectors

    np.testing.assert_array_equal(embed_texts(encoder, texts, batch_size=2, on_batch=store), out)


def test_embed_texts_empty() -> None:
    assert embed_texts(RandomEncoder(8), []).shape == (0, 8)


def test_embed_texts_rejects_wrong_shapes() -> None:
    class Bad:
        id = "bad"
        dim = 4

        def embed_batch(self, texts):
            return np.zeros((len(texts), 3))

    with pytest.raises(EncoderError, match=r"encoder 'bad' returned an array of shape \(2, 3\) for 2 texts"):
        embed_texts(Bad(), ["a", "b"])


def test_embed_texts_uses_encoder_batch_size() -> None:
    calls: list[int] = []

    class Spy(RandomEncoder):
        batch_size = 3

        def embed_batch(self, texts):
            calls.append(len(texts))
            return super().embed_batch(texts)

    embed_texts(Spy(4), [f"G{i}" for i in range(7)])
    assert calls == [3, 3, 1]


# ------------------------------------------------------------------------------------------ minilm


@pytest.fixture(scope="session")
def minilm():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        encoder = get_encoder("minilm", settings=Settings(device="cpu"))
        encoder.embed_batch(["warm up"])
        yield encoder
    finally:
        mp.undo()


@pytest.mark.slow
def test_minilm_offline_dim_and_similarity(minilm) -> None:
    texts = [
        "RHO: rhodopsin. This gene encodes a protein found in rod cells of the retina; it is a G-protein "
        "coupled receptor that absorbs light and starts visual phototransduction.",
        "OPN1SW: opsin 1, short wave sensitive. This gene belongs to the G-protein coupled receptor family; "
        "it encodes the blue cone pigment, a visual pigment of the retina.",
        "ALB: albumin. This gene encodes the most abundant protein in human blood plasma; it is made in the "
        "liver and regulates plasma oncotic pressure.",
    ]
    vectors = embed_texts(minilm, texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@pytest.mark.slow
def test_minilm_is_cached_and_counts_truncation(minilm) -> None:
    other = get_encoder("minilm", settings=Settings(device="cpu"))
    assert other._model() is minilm._model()
    assert count_truncated(minilm, ["RHO: short", "LONG: " + "receptor " * 400]) == 1


# ------------------------------------------------------------------------------------------ hf: and st:


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests._tiny_bert import build_tiny_st

    st_path = build_tiny_st(tmp_path_factory.mktemp("tiny") / "st")
    return st_path.with_name("st-bert"), st_path


def test_hf_mean_pooling_matches_manual(tiny_models) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    bert_path, _ = tiny_models
    encoder = get_encoder(f"hf:{bert_path}", settings=CPU)
    texts = ["rho: rhodopsin. a rod cell receptor of the retina", "alb: albumin"]
    vectors = embed_texts(encoder, texts)
    assert vectors.shape == (2, 32)
    assert encoder.dim == 32
    assert vectors.dtype == np.float32

    tokenizer = AutoTokenizer.from_pretrained(bert_path)
    model = AutoModel.from_pretrained(bert_path).eval()
    for text, vector in zip(texts, vectors, strict=True):
        encoded = tokenizer(text, return_tensors="pt")  # one text: no padding at all
        with torch.no_grad():
            hidden = model(**encoded).last_hidden_state[0]
        np.testing.assert_allclose(vector, hidden.mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)


def test_hf_padding_does_not_change_a_vector(tiny_models) -> None:
    bert_path, _ = tiny_models
    encoder = get_encoder(f"hf:{bert_path}", settings=CPU)
    alone = encoder.embed_batch(["alb: albumin"])[0]
    padded = encoder.embed_batch(["alb: albumin", "rho " * 40])[0]
    np.testing.assert_allclose(alone, padded, rtol=1e-5, atol=1e-6)


def test_hf_truncation_count_and_cache(tiny_models) -> None:
    bert_path, _ = tiny_models
    encoder = get_encoder(f"hf:{bert_path}", settings=CPU)
    assert encoder.max_length == 64
    assert count_truncated(encoder, ["rho", "rho " * 62, "rho " * 63]) == 1  # 62 + [CLS] + [SEP] = 64
    again = get_encoder(f"hf:{bert_path}", settings=CPU)
    assert again._loaded() is encoder._loaded()


def test_st_path_loads_and_pools(tiny_models) -> None:
    bert_path, st_path = tiny_models
    encoder = get_encoder(f"st:{st_path}", settings=CPU)
    assert encoder.id == f"st:{st_path}"
    assert encoder.dim == 32
    texts = ["rho: rhodopsin", "alb: albumin liver plasma"]
    vectors = embed_texts(encoder, texts)
    assert vectors.shape == (2, 32)
    # Same weights and mean pooling: the st: and hf: paths agree.
    hf = embed_texts(get_encoder(f"hf:{bert_path}", settings=CPU), texts)
    np.testing.assert_allclose(vectors, hf, rtol=1e-4, atol=1e-5)
    assert count_truncated(encoder, ["rho", "rho " * 20]) == 1  # max_seq_length 16
