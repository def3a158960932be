"""The SupCon refinement network, its loss, and :class:`SupConModel` (save, load, encode).

A small encoder is trained on a reference's labelled cells so that cells of one type sit close together
under cosine similarity; its (L2-normalised) output is what gets stored and searched. Each cell gives two
views: its pooled vector from its top described genes, and the same with housekeeping genes removed
(Zhang et al., "Contrastive learning enhances language model-based cell embeddings for low-sample
single-cell transcriptomics"). The loss is SupCon (Khosla et al. 2020, the :math:`L_{out}` form).
Training is in :mod:`indexer.cells.supcon._train`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as _load_safetensors
from safetensors.torch import save as _save_safetensors
from torch import nn
from torch.nn import functional as F

from indexer._errors import InputError, StoreError
from schemas import RefineParams

WEIGHTS_FILE = "supcon.safetensors"
"""Name of the encoder's weights file among a reference version's artefacts."""

CONFIG_FILE = "supcon.json"
"""Name of the encoder's configuration file among a reference version's artefacts."""

_FORMAT = "cellvec-supcon"
_FORMAT_VERSION = 1

Architecture = Literal["residual-mlp/1", "mlp/1"]
"""Encoder layouts: ``"mlp/1"`` is the paper's MLP; ``"residual-mlp/1"`` adds a linear skip path
initialised to the reference's principal directions, with the MLP's last layer starting at zero, so the
untrained encoder already keeps the input's neighbourhoods."""

_ARCHITECTURES: tuple[str, ...] = ("residual-mlp/1", "mlp/1")
DEFAULT_ARCHITECTURE: Architecture = "residual-mlp/1"
_REFIT_HINT = "rebuild it with `cellvec reference refit`"


# --------------------------------------------------------------------------------------------------- loss


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, *, temperature: float) -> torch.Tensor:
    r"""Supervised contrastive loss (Khosla et al. 2020, :math:`L_{out}`).

    Every view of every cell is an anchor. Its positives are the other views of the same cell and all views
    of cells with the same label; the anchor itself is left out of both numerator and denominator:

    .. math::

        L = \frac{1}{|A|} \sum_{i \in A} \frac{-1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \neq i} \exp(z_i \cdot z_a / \tau)}

    where :math:`A` holds the anchors that have at least one positive.

    Parameters
    ----------
    features
        L2-normalised features, shape ``(batch, n_views, dim)``.
    labels
        Integer labels, shape ``(batch,)``.
    temperature
        Temperature :math:`\tau` (> 0).

    Returns
    -------
    torch.Tensor
        Scalar loss; ``0`` (still attached to the graph) when no anchor has a positive.

    Raises
    ------
    InputError
        If the shapes do not match or the temperature is not positive.

    Examples
    --------
    >>> z = F.normalize(torch.randn(4, 2, 8), dim=-1)
    >>> float(supcon_loss(z, torch.tensor([0, 0, 1, 1]), temperature=0.1)) > 0
    True
    """
    if features.ndim != 3:
        msg = (
            f"supcon_loss: `features` must have shape (batch, n_views, dim), got {tuple(features.shape)}; "
            "stack the views with `torch.stack(views, dim=1)`."
        )
        raise InputError(msg)
    batch, n_views, dim = features.shape
    if labels.ndim != 1 or labels.shape[0] != batch:
        msg = (
            f"supcon_loss: `labels` must have shape ({batch},) to match `features`, got "
            f"{tuple(labels.shape)}; pass one label per cell."
        )
        raise InputError(msg)
    if not temperature > 0:
        msg = f"supcon_loss: `temperature` must be > 0, got {temperature}; the paper uses 0.1."
        raise InputError(msg)

    device = features.device
    n = batch * n_views
    # View-major order: rows [0, batch) are view 0, [batch, 2*batch) view 1, ...
    z = features.transpose(0, 1).reshape(n, dim)
    lab = labels.to(device).repeat(n_views)
    cell = torch.arange(batch, device=device).repeat(n_views)
    self_mask = torch.eye(n, dtype=torch.bool, device=device)
    positives = ((lab[:, None] == lab[None, :]) | (cell[:, None] == cell[None, :])) & ~self_mask
    n_pos = positives.sum(dim=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return features.sum() * 0.0

    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    # where(), not multiplication: the diagonal of log_prob is -inf and -inf * 0 is nan.
    pos_sum = torch.where(positives, log_prob, torch.zeros((), dtype=log_prob.dtype, device=device)).sum(1)
    mean_log_prob_pos = pos_sum[has_pos] / n_pos[has_pos].to(log_prob.dtype)
    return -mean_log_prob_pos.mean()


# -------------------------------------------------------------------------------------------------- model


class SupConNet(nn.Module):
    """Encoder (stored output) plus projection head (loss only)."""

    def __init__(self, in_dim: int, params: RefineParams, *, architecture: str) -> None:
        super().__init__()
        hidden, out, proj = params.hidden_dim, params.out_dim, params.proj_dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out))
        self.skip = nn.Linear(in_dim, out, bias=False) if architecture == "residual-mlp/1" else None
        self.head = nn.Sequential(nn.Linear(out, out), nn.BatchNorm1d(out), nn.ReLU(), nn.Linear(out, proj))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Return the unnormalised encoder output of unit-norm inputs."""
        h = self.mlp(x)
        if self.skip is not None:
            h = h + self.skip(x)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the L2-normalised projection of unit-norm inputs (what the loss sees)."""
        return F.normalize(self.head(F.normalize(self.encode(x), dim=1)), dim=1)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    # Cosine is what the store searches, so the encoder sees directions only; zero rows stay zero.
    return F.normalize(x, dim=1)


def _content_hash(weights: bytes, config: bytes) -> str:
    digest = hashlib.sha256()
    for name, data in ((CONFIG_FILE, config), (WEIGHTS_FILE, weights)):
        digest.update(name.encode())
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch without touching the caller's random state; deterministic kernels on CPU."""
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(mode=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(mode=was_deterministic)


class SupConModel:
    """A trained SupCon refinement encoder.

    Parameters
    ----------
    in_dim
        Dimension of the pooled input vectors.
    params
        Hyper-parameters it was (or will be) trained with.
    labels
        Labels it was trained on (used to warn when cells with unseen labels are added).
    architecture
        Encoder layout (see :data:`Architecture`).
    state
        Weights to load (a ``state_dict``); ``None`` leaves the encoder freshly initialised.

    Attributes
    ----------
    in_dim
        Dimension of the pooled input vectors.
    params
        Training hyper-parameters; ``params.out_dim`` is the dimension of :meth:`encode`'s output.
    labels
        Labels seen in training.
    architecture
        Encoder layout.

    Examples
    --------
    >>> from schemas import RefineParams
    >>> model = SupConModel(8, RefineParams(hidden_dim=16, out_dim=4, proj_dim=4))
    >>> model.encode(np.ones((3, 8), dtype=np.float32)).shape
    (3, 4)
    """

    def __init__(
        self,
        in_dim: int,
        params: RefineParams,
        *,
        labels: Sequence[str] = (),
        architecture: Architecture = DEFAULT_ARCHITECTURE,
        state: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        if architecture not in _ARCHITECTURES:
            msg = f"Unknown SupCon architecture {architecture!r}; use one of {', '.join(_ARCHITECTURES)}."
            raise InputError(msg)
        if in_dim < 1:
            msg = f"SupConModel: `in_dim` must be >= 1, got {in_dim}."
            raise InputError(msg)
        self.in_dim = int(in_dim)
        self.params = params
        self.labels: tuple[str, ...] = tuple(str(label) for label in labels)
        self.architecture: Architecture = architecture
        with torch.random.fork_rng(devices=[]):
            self._net = SupConNet(self.in_dim, params, architecture=architecture)
        if state is not None:
            self._net.load_state_dict(dict(state), strict=True)
        self._net.eval()

    @property
    def out_dim(self) -> int:
        """Dimension of :meth:`encode`'s output."""
        return self.params.out_dim

    def __repr__(self) -> str:
        return (
            f"SupConModel(in_dim={self.in_dim}, out_dim={self.out_dim}, architecture={self.architecture!r}, "
            f"n_labels={len(self.labels)})"
        )

    def encode(self, x: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
        """Encode pooled vectors into refined, L2-normalised vectors.

        Parameters
        ----------
        x
            Pooled vectors, shape ``(n_cells, in_dim)``; their norm does not matter.
        batch_size
            Cells per forward pass.

        Returns
        -------
        numpy.ndarray
            ``float32`` array ``(n_cells, out_dim)`` of unit rows; rows of ``x`` that are all zero (cells with
            no described gene) give all-zero rows.

        Raises
        ------
        InputError
            If ``x`` is not 2-D with ``in_dim`` columns or holds NaN/inf.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            msg = (
                f"SupConModel.encode: expected vectors of shape (n_cells, {self.in_dim}), got {x.shape}; "
                "build query vectors the same way as the reference's."
            )
            raise InputError(msg)
        if batch_size < 1:
            msg = f"SupConModel.encode: `batch_size` must be >= 1, got {batch_size}."
            raise InputError(msg)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            msg = "SupConModel.encode: the vectors hold NaN or inf; check the pooled vectors."
            raise InputError(msg)
        out = np.zeros((x.shape[0], self.out_dim), dtype=np.float32)
        device = next(self._net.parameters()).device
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                chunk = torch.from_numpy(x[start : start + batch_size]).to(device)
                h = F.normalize(self._net.encode(unit_rows(chunk)), dim=1)
                out[start : start + batch_size] = h.cpu().numpy()
        out[~np.any(x != 0, axis=1)] = 0.0
        return out

    def _config_bytes(self, weights: bytes) -> bytes:
        config: dict[str, Any] = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "architecture": self.architecture,
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "params": self.params.model_dump(mode="json"),
            "labels": list(self.labels),
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
        }
        return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()

    def to_files(self) -> dict[str, bytes]:
        """Serialise the encoder (no pickle).

        Returns
        -------
        dict of str to bytes
            ``{"supcon.safetensors": weights, "supcon.json": configuration}``; the same model always gives
            the same bytes.
        """
        state = {k: v.detach().cpu().contiguous() for k, v in self._net.state_dict().items()}
        weights = _save_safetensors(state)
        return {WEIGHTS_FILE: weights, CONFIG_FILE: self._config_bytes(weights)}

    def sha256(self) -> str:
        """Return the content hash of :meth:`to_files`'s two files (hex SHA-256).

        Returns
        -------
        str
            Hash to record in the reference's build record and check in :meth:`from_files`.
        """
        files = self.to_files()
        return _content_hash(files[WEIGHTS_FILE], files[CONFIG_FILE])

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, expected_sha256: str | None = None) -> SupConModel:
        """Load an encoder written by :meth:`to_files`.

        Parameters
        ----------
        files
            The two files, by name.
        expected_sha256
            Content hash recorded when the reference was built; checked when given.

        Returns
        -------
        SupConModel
            The encoder, on CPU, in evaluation mode.

        Raises
        ------
        StoreError
            If a file is missing, altered, truncated or not a cellvec SupCon encoder, or the hash differs.
        """
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if name not in files:
                msg = f"The SupCon encoder file {name!r} is missing from the reference; {_REFIT_HINT}."
                raise StoreError(msg)
        weights, config_bytes = bytes(files[WEIGHTS_FILE]), bytes(files[CONFIG_FILE])
        if expected_sha256 is not None:
            actual = _content_hash(weights, config_bytes)
            if actual != expected_sha256:
                msg = (
                    f"The SupCon encoder's content hash {actual[:12]} differs from {expected_sha256[:12]} "
                    f"recorded at build time: it was altered or truncated; {_REFIT_HINT}."
                )
                raise StoreError(msg)
        try:
            config = json.loads(config_bytes)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            msg = f"{CONFIG_FILE} is not valid JSON: it was altered or truncated; {_REFIT_HINT}."
            raise StoreError(msg) from e
        if not isinstance(config, dict) or config.get("format") != _FORMAT:
            msg = f"{CONFIG_FILE} does not describe a cellvec SupCon encoder; {_REFIT_HINT}."
            raise StoreError(msg)
        if config.get("format_version") != _FORMAT_VERSION or config.get("architecture") not in _ARCHITECTURES:
            msg = (
                f"{CONFIG_FILE} has format version {config.get('format_version')!r} and architecture "
                f"{config.get('architecture')!r}, which this cellvec cannot read; upgrade cellvec or "
                f"{_REFIT_HINT}."
            )
            raise StoreError(msg)
        if hashlib.sha256(weights).hexdigest() != config.get("weights_sha256"):
            msg = f"{WEIGHTS_FILE} does not match {CONFIG_FILE}: it was altered or truncated; {_REFIT_HINT}."
            raise StoreError(msg)
        try:
            params = RefineParams.model_validate(config["params"])
            state = _load_safetensors(weights)
            return cls(
                int(config["in_dim"]),
                params,
                labels=[str(label) for label in config.get("labels", [])],
                architecture=config["architecture"],
                state=state,
            )
        except (KeyError, TypeError, ValueError, RuntimeError, ValidationError, SafetensorError) as e:
            msg = f"The SupCon encoder files are inconsistent ({type(e).__name__}); {_REFIT_HINT}."
            raise StoreError(msg) from e
