"""Training of the SupCon refinement encoder (:func:`train_supcon`): balanced batches, early stopping.

The network, the loss and the saved model are in :mod:`indexer.cells.supcon._model`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from indexer._errors import InputError
from indexer.cells._evaluate import score, stratified_split
from indexer.cells._knn import vote
from indexer.cells.supcon._model import (
    DEFAULT_ARCHITECTURE,
    Architecture,
    SupConModel,
    SupConNet,
    seeded,
    supcon_loss,
    unit_rows,
)
from schemas import EpochStats, RefineParams, TrainReport

logger = logging.getLogger(__name__)

VAL_METRIC_NAME = "knn_macro_f1"
_MIN_VAL_CELLS = 10
_MAX_PCA_ROWS = 20_000
_VAL_CHUNK = 1024
_VAL_K = 10
_BRANCH_INIT_SCALE = 0.0
_MIN_STEPS_BEFORE_STOP = 200

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
        chosen = self._classes if n_chosen == n_classes else rng.choice(self._classes, n_chosen, replace=False)
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


def _encode_unit(net: SupConNet, x: torch.Tensor) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], 8192):
            out.append(F.normalize(net.encode(x[start : start + 8192]), dim=1))
    return torch.cat(out)


def _init_skip(net: SupConNet, x_train: np.ndarray, rng: np.random.Generator) -> None:
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
    architecture: Architecture = DEFAULT_ARCHITECTURE,
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
    architecture
        Encoder layout (see :data:`~indexer.cells.supcon.Architecture`); references are built with the
        default, other layouts are for comparisons.

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
        architecture=architecture,
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
    x1_train = unit_rows(x1[train_idx]).to(dev)
    x2_train = unit_rows(x2[train_idx]).to(dev)
    y_train = y[train_idx]
    y_train_t = torch.from_numpy(y_train).to(dev)
    x1_val = unit_rows(x1[val_idx]).to(dev)
    y_val = y[val_idx]
    n_train = int(train_idx.size)
    batch = min(params.batch_size, n_train)
    n_batches = math.ceil(n_train / batch)
    sampler = _BalancedSampler(y_train, batch, rng)
    n_classes = int(classes.size)

    def validate(net: SupConNet) -> tuple[float, float]:
        net.eval()
        enc_train = _encode_unit(net, x1_train)
        enc_val = _encode_unit(net, x1_val)
        pred, neighbours = _knn_vote(enc_val, enc_train, y_train, n_classes, k=_VAL_K)
        return _macro_f1(y_val, pred), _neighbour_purity(y_val, neighbours, n_classes)

    history: list[EpochStats] = []
    with seeded(params.seed, dev):
        net = SupConNet(v1.shape[1], params, architecture=architecture)
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
