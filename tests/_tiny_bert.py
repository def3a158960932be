"""Build a tiny random BERT (and a sentence-transformers wrapper of it) on disk, with no download.

``build_tiny_bert(folder)`` writes a 2-layer, 32-wide BERT with a word-level vocabulary of a few
gene-description words, in Hugging Face format; ``build_tiny_st(folder)`` wraps it with mean pooling in
sentence-transformers format. Both are deterministic (fixed seed) and take well under a second.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "rho rhodopsin opsin retina rod cone vision light receptor protein gene encodes this the a of and in "
    "is to albumin liver plasma blood cell cells t b immune kinase binding factor transcription "
    "membrane signal pathway short wave sensitive blue pigment family member coupled g"
).split()
MAX_POSITIONS = 64


def build_tiny_bert(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny BERT model and its fast tokenizer to ``folder`` and return it."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = [*SPECIAL, *dict.fromkeys([*WORDS, ":", ".", ",", "-", "1"])]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(
        vocab_file=str(vocab_file), do_lower_case=True, model_max_length=MAX_POSITIONS
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
    )
    torch.manual_seed(seed)
    model = BertModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_st(folder: Path, *, seed: int = 0) -> Path:
    """Write a sentence-transformers model (tiny BERT + mean pooling) to ``folder`` and return it."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # pragma: no cover - older releases
        from sentence_transformers.models import Pooling, Transformer

    bert = build_tiny_bert(folder.with_name(folder.name + "-bert"), seed=seed)
    transformer = Transformer(str(bert), max_seq_length=16)
    get_dim = (
        getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    )
    pooling = Pooling(get_dim(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(folder))
    return folder
