"""``hf:<name or path>``: a Hugging Face encoder (BERT family), mean-pooled with the attention mask."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._settings import Settings
from indexer.encoders._base import (
    InvalidEncoderArgument,
    as_matrix,
    cached_model,
    count_over,
    load_pretrained,
    resolve_device,
    to_cuda_dtype,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


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
        device = resolve_device(self._settings)
        return cached_model(self.id, device, lambda: self._load(device))

    def _load(self, device: str) -> tuple[Any, Any, str]:
        from transformers import AutoModel, AutoTokenizer

        name = self._name
        tokenizer = load_pretrained(lambda **kw: AutoTokenizer.from_pretrained(name, **kw), name, "hf")
        model = load_pretrained(lambda **kw: AutoModel.from_pretrained(name, **kw), name, "hf")
        model.eval()
        model.to(device)
        to_cuda_dtype(model, device)
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
        return as_matrix(pooled.cpu().numpy(), len(texts), hidden.shape[-1], self.id)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """Count texts longer than the model window."""
        return count_over(self._loaded()[0], texts, self.max_length)


def hf_encoder(arg: str, settings: Settings | None) -> HFEncoder:
    """Registry factory for ``"hf:<name or path>"``."""
    if not arg:
        msg = "'hf:' needs a model name or path"
        raise InvalidEncoderArgument(msg)
    return HFEncoder(arg, settings=settings or Settings())
