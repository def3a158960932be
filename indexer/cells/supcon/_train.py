"""Supervised contrastive (SupCon) refinement of pooled cell vectors.

A small encoder is trained on a reference's labelled cells so that cells of one type sit close together
under cosine similarity; its (L2-normalised) output is what gets stored and searched. Each cell gives two
views: its pooled vector from its top described genes, and the same with housekeeping genes removed
(Zhang et al., "Contrastive learning enhances language model-based cell embeddings for low-sample
single-cell transcriptomics"). The loss is SupCon (Khosla et al. 2020, the :math:`L_{out}` form).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from indexer.cells._evaluate import score, stratified_split
from indexer.cells._knn import vote
from schemas import EpochStats, RefineParams, TrainReport

logger = logging.getLogger(__name__)

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

VAL_METRIC_NAME = "knn_macro_f1"
_MIN_VAL_CELLS = 10
_MAX_PCA_ROWS = 20_000
_VAL_CHUNK = 1024
_VAL_K = 10
_BRANCH_INIT_SCALE = 0.0
_MIN_STEPS_BEFORE_STOP = 200
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


class _Net(nn.Module):
    """Encoder (stored output) plus projection head (loss only)."""

    def __init__(self, in_dim: int, params: RefineParams, *, architecture: str) -> None:
        super().__init__()
        hidden, out, proj = params.hidden_dim, params.out_dim, params.proj_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out)
        )
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


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
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
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
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
            self._net = _Net(self.in_dim, params, architecture=architecture)
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
                h = F.normalize(self._net.encode(_unit_rows(chunk)), dim=1)
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
        if (
            config.get("format_version") != _FORMAT_VERSION
            or config.get("architecture") not in _ARCHITECTURES
        ):
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


# ----------------------------------------------------------------------------------------------- training


class _BalancedSampler:
    """Draw class-balanced mini-batches; cells are drawn with replacement within their class."""

    def __init__(self, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
        self._order = np.argsort(y, kind="stable")
        self._counts = np.bincount(y)
        self._starts = np.cumsum(self._counts) - self._counts
        self._classes = np.flatnonzero(self._counts)
        self._batch = batch_size
        self._rng = rng

    def __call__(self) -> np.ndarray:
        rng, n_classes = self._rng, self._classes.size
        # At least two cells per class present, so same-label positives exist besides the other view.
        per_class = max(2, self._batch // n_classes)
        n_chosen = min(n_classes, self._batch // per_class)
        chosen = (
            self._classes if n_chosen == n_classes else rng.choice(self._classes, n_chosen, replace=False)
        )
        slots = np.repeat(chosen, per_class)
        rest = self._batch - slots.size
        if rest > 0:
            slots = np.concatenate([slots, rng.choice(chosen, rest, replace=rest > chosen.size)])
        within = rng.integers(0, self._counts[slots])
        return self._order[self._starts[slots] + within]


def _knn_vote(
    queries: torch.Tensor, reference: torch.Tensor, y_ref: np.ndarray, n_classes: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Label unit-row queries by cellvec's vote over their cosine top-k reference rows.

    Returns the predicted class of each query and the ``(n, k)`` classes of its neighbours.
    """
    k = min(k, reference.shape[0])
    preds, codes = [], []
    for start in range(0, queries.shape[0], _VAL_CHUNK):
        top_sim, top_idx = torch.topk(queries[start : start + _VAL_CHUNK] @ reference.T, k, dim=1)
        top_lab = y_ref[top_idx.cpu().numpy()]
        preds.append(vote(top_lab, top_sim.cpu().numpy(), n_classes)[0])
        codes.append(top_lab)
    if not preds:
        return np.zeros(0, dtype=np.int64), np.zeros((0, k), dtype=np.int64)
    return np.concatenate(preds), np.concatenate(codes)


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``y_true`` or ``y_pred`` (:func:`score`'s)."""
    return score(y_true, y_pred).macro_f1


def _neighbour_purity(y_true: np.ndarray, neighbour_codes: np.ndarray, n_classes: int) -> float:
    """Share of neighbours with the true label, averaged per class then over classes."""
    own = (neighbour_codes == y_true[:, None]).mean(axis=1)
    per_class = np.bincount(y_true, weights=own, minlength=n_classes)
    n_true = np.bincount(y_true, minlength=n_classes)
    present = n_true > 0
    return float((per_class[present] / n_true[present]).mean())


def _encode_unit(net: _Net, x: torch.Tensor) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], 8192):
            out.append(F.normalize(net.encode(x[start : start + 8192]), dim=1))
    return torch.cat(out)


def _init_skip(net: _Net, x_train: np.ndarray, rng: np.random.Generator) -> None:
    """Set the skip path to the top principal directions of the (uncentred) unit training vectors."""
    if net.skip is None:
        return
    rows = x_train
    if rows.shape[0] > _MAX_PCA_ROWS:
        rows = rows[np.sort(rng.choice(rows.shape[0], _MAX_PCA_ROWS, replace=False))]
    _, _, vh = np.linalg.svd(rows.astype(np.float64), full_matrices=False)
    weight = np.zeros(tuple(net.skip.weight.shape), dtype=np.float32)
    r = min(weight.shape[0], vh.shape[0])
    weight[:r] = vh[:r]
    with torch.no_grad():
        net.skip.weight.copy_(torch.from_numpy(weight))
        # The MLP branch starts small: training adds to the principal projection instead of replacing it.
        for param in net.mlp[-1].parameters():
            param.mul_(_BRANCH_INIT_SCALE)


def _check_inputs(view1: np.ndarray, view2: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    v1 = np.asarray(view1)
    v2 = np.asarray(view2)
    lab = np.asarray(labels)
    if v1.ndim != 2 or v1.shape != v2.shape:
        msg = (
            f"train_supcon: `view1` and `view2` must be 2-D arrays of the same shape, got {v1.shape} and "
            f"{v2.shape}; pass one row per reference cell, in the same order."
        )
        raise InputError(msg)
    if lab.ndim != 1 or lab.shape[0] != v1.shape[0]:
        msg = f"train_supcon: `labels` must have one entry per row ({v1.shape[0]}), got shape {lab.shape}."
        raise InputError(msg)
    v1 = np.ascontiguousarray(v1, dtype=np.float32)
    v2 = np.ascontiguousarray(v2, dtype=np.float32)
    if not (np.isfinite(v1).all() and np.isfinite(v2).all()):
        msg = "train_supcon: the views hold NaN or inf; check the pooled vectors."
        raise InputError(msg)
    return v1, v2, lab


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        msg = f"train_supcon: unknown torch device {device!r}; use 'cpu' or 'cuda'."
        raise InputError(msg) from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        msg = "train_supcon: device 'cuda' was asked for but CUDA is not available; use device='cpu'."
        raise InputError(msg)
    return resolved


def train_supcon(
    view1: np.ndarray,
    view2: np.ndarray,
    labels: np.ndarray,
    *,
    params: RefineParams,
    device: str | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> tuple[SupConModel, TrainReport]:
    """Train a SupCon refinement encoder on a reference's labelled cells.

    Mini-batches are class-balanced (rare classes are drawn with replacement). A stratified
    ``params.val_fraction`` of the cells is held out; after every epoch the validation cells' encoded first
    view is labelled by cosine 10-NN vote against the training cells' and the weights with the best macro-F1
    are kept (the untrained encoder included), stopping after ``params.patience`` epochs without
    improvement, but never before 200 optimiser steps (a small reference has few batches per epoch, and a
    freshly initialised encoder can score worse before it scores better). Without validation
    (``val_fraction == 0`` or under 10 held-out cells) training runs ``params.epochs`` epochs and the report
    says so. One epoch is ``ceil(n_train / batch_size)`` batches.

    Parameters
    ----------
    view1
        Pooled vector of each cell from its top described genes, shape ``(n_cells, in_dim)``.
    view2
        Pooled vector of the same cells with housekeeping genes removed, same shape; all-zero rows fall
        back to ``view1``.
    labels
        Cell type of each cell, shape ``(n_cells,)``. Cells whose ``view1`` is all zero are left out.
    params
        Hyper-parameters (``params.method`` is not read).
    device
        Torch device; CUDA when available by default. Results are bit-reproducible for a seed on CPU.
    progress
        Called after each epoch with ``{"epoch", "loss", "val_metric", "seconds"}`` (``val_metric`` is nan
        without validation).

    Returns
    -------
    model : SupConModel
        The trained encoder, on CPU, in evaluation mode.
    report : TrainReport
        Epochs, validation figures and timing.

    Raises
    ------
    InputError
        If the shapes disagree, values are not finite, fewer than two labels remain, or the device is
        unusable.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["B", "T"], 20)
    >>> x = rng.normal(size=(40, 16)) + 3 * (y == "B")[:, None]
    >>> params = RefineParams(hidden_dim=16, out_dim=8, proj_dim=8, epochs=2, val_fraction=0)
    >>> model, report = train_supcon(x, x + 0.01, y, params=params, device="cpu")
    >>> model.encode(x).shape, report.epochs_run
    ((40, 8), 2)
    """
    return _train(
        view1,
        view2,
        labels,
        params=params,
        device=device,
        progress=progress,
        architecture=DEFAULT_ARCHITECTURE,
    )


def _train(
    view1: np.ndarray,
    view2: np.ndarray,
    labels: np.ndarray,
    *,
    params: RefineParams,
    device: str | None,
    progress: Callable[[dict[str, float]], None] | None,
    architecture: Architecture,
) -> tuple[SupConModel, TrainReport]:
    started = time.perf_counter()
    v1, v2, lab = _check_inputs(view1, view2, labels)
    keep = np.any(v1 != 0, axis=1)
    n_skipped = int((~keep).sum())
    v1, v2, lab = v1[keep], v2[keep], lab[keep]
    empty2 = ~np.any(v2 != 0, axis=1)
    v2[empty2] = v1[empty2]
    classes, y = np.unique(lab, return_inverse=True)
    if classes.size < 2:
        msg = (
            f"train_supcon: needs cells of at least 2 labels, got {classes.size} "
            f"({n_skipped} all-zero cells left out); use refinement method 'none' for this reference."
        )
        raise InputError(msg)
    dev = _resolve_device(device)
    rng = np.random.default_rng(params.seed)

    train_idx, val_idx = np.arange(y.size), np.zeros(0, dtype=np.int64)
    if params.val_fraction > 0:
        train_idx, val_idx = stratified_split(y, test_size=params.val_fraction, seed=params.seed)
    note = ""
    if params.val_fraction == 0:
        note = "val_fraction is 0: trained for all epochs without early stopping"
    elif val_idx.size < _MIN_VAL_CELLS:
        note = (
            f"only {val_idx.size} cells could be held out (< {_MIN_VAL_CELLS}): trained on all cells for all "
            "epochs without early stopping"
        )
    if note:
        train_idx, val_idx = np.arange(y.size), np.zeros(0, dtype=np.int64)
    early_stopping = not note

    x1 = torch.from_numpy(v1)
    x2 = torch.from_numpy(v2)
    x1_train = _unit_rows(x1[train_idx]).to(dev)
    x2_train = _unit_rows(x2[train_idx]).to(dev)
    y_train = y[train_idx]
    y_train_t = torch.from_numpy(y_train).to(dev)
    x1_val = _unit_rows(x1[val_idx]).to(dev)
    y_val = y[val_idx]
    n_train = int(train_idx.size)
    batch = min(params.batch_size, n_train)
    n_batches = math.ceil(n_train / batch)
    sampler = _BalancedSampler(y_train, batch, rng)
    n_classes = int(classes.size)

    def validate(net: _Net) -> tuple[float, float]:
        net.eval()
        enc_train = _encode_unit(net, x1_train)
        enc_val = _encode_unit(net, x1_val)
        pred, neighbours = _knn_vote(enc_val, enc_train, y_train, n_classes, k=_VAL_K)
        return _macro_f1(y_val, pred), _neighbour_purity(y_val, neighbours, n_classes)

    history: list[EpochStats] = []
    with _seeded(params.seed, dev):
        net = _Net(v1.shape[1], params, architecture=architecture)
        _init_skip(net, x1_train.cpu().numpy(), rng)
        net.to(dev)
        optimiser = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)

        # Macro-F1 saturates on easy references, so ties go to the purer neighbourhoods.
        best_score = validate(net) if early_stopping else None
        initial_metric = None if best_score is None else best_score[0]
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        best_epoch = 0
        history.append(
            EpochStats(
                epoch=0,
                val_metric=initial_metric,
                val_purity=None if best_score is None else best_score[1],
                seconds=time.perf_counter() - started,
            )
        )
        stale = 0
        stopped_early = False
        epoch = 0
        for epoch in range(1, params.epochs + 1):
            net.train()
            total = torch.zeros((), device=dev)
            for _ in range(n_batches):
                idx = torch.from_numpy(sampler()).to(dev)
                proj = net(torch.cat([x1_train[idx], x2_train[idx]]))
                features = proj.view(2, idx.shape[0], -1).transpose(0, 1)
                loss = supcon_loss(features, y_train_t[idx], temperature=params.temperature)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += loss.detach()
            mean_loss = float(total) / n_batches
            score = validate(net) if early_stopping else None
            seconds = time.perf_counter() - started
            history.append(
                EpochStats(
                    epoch=epoch,
                    loss=mean_loss,
                    val_metric=None if score is None else score[0],
                    val_purity=None if score is None else score[1],
                    seconds=seconds,
                )
            )
            logger.debug("supcon epoch %d: loss %.4f, val %s, %.1fs", epoch, mean_loss, score, seconds)
            if progress is not None:
                progress(
                    {
                        "epoch": float(epoch),
                        "loss": mean_loss,
                        "val_metric": math.nan if score is None else score[0],
                        "seconds": seconds,
                    }
                )
            if score is None or best_score is None:
                best_epoch = epoch
                continue
            if score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= params.patience and epoch * n_batches >= _MIN_STEPS_BEFORE_STOP:
                    stopped_early = epoch < params.epochs
                    break
        final_state = best_state if early_stopping else net.state_dict()
        model = SupConModel(
            int(v1.shape[1]),
            params,
            labels=[str(c) for c in classes],
            architecture=architecture,
            state={k: v.detach().cpu() for k, v in final_state.items()},
        )

    best_metric = None if best_score is None else best_score[0]
    report = TrainReport(
        epochs_run=epoch,
        best_epoch=best_epoch,
        best_val_metric=best_metric,
        initial_val_metric=initial_metric,
        val_metric_name=VAL_METRIC_NAME,
        early_stopping=early_stopping,
        stopped_early=stopped_early,
        note=note,
        seconds=time.perf_counter() - started,
        n_train=n_train,
        n_val=int(val_idx.size),
        n_skipped=n_skipped,
        n_classes=n_classes,
        device=str(dev),
        history=history,
    )
    logger.info(
        "supcon: %d epochs in %.1fs, best epoch %d (%s %s)",
        report.epochs_run,
        report.seconds,
        best_epoch,
        VAL_METRIC_NAME,
        best_metric,
    )
    return model, report
