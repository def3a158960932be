"""Records describing how a refinement encoder was trained."""

from __future__ import annotations

from pydantic import Field

from schemas._base import Record


class EpochStats(Record):
    """Figures of one training epoch.

    Parameters
    ----------
    epoch
        Epoch number; ``0`` is the untrained encoder (no loss, validation only).
    loss
        Mean SupCon loss over the epoch's batches (``None`` for epoch 0).
    val_metric
        Validation metric after the epoch (``None`` without early stopping).
    val_purity
        Share of the validation cells' neighbours that carry their label, averaged per label; breaks ties
        of ``val_metric`` (``None`` without early stopping).
    seconds
        Wall-clock seconds since training started, at the end of the epoch.
    """

    epoch: int = Field(ge=0)
    loss: float | None = None
    val_metric: float | None = None
    val_purity: float | None = None
    seconds: float = Field(ge=0)


class TrainReport(Record):
    """What happened while training a SupCon refinement encoder.

    Parameters
    ----------
    epochs_run
        Number of epochs trained (early stopping may end training before ``RefineParams.epochs``).
    best_epoch
        Epoch whose weights were kept (``0``: the untrained encoder scored best on validation).
    best_val_metric
        Validation metric of the kept weights (``None`` without early stopping). Ties are broken by
        neighbour purity (see :class:`EpochStats`).
    initial_val_metric
        Validation metric of the untrained encoder (``None`` without early stopping).
    val_metric_name
        Name of the validation metric.
    early_stopping
        Whether a validation part was held out and used to pick the weights.
    stopped_early
        Whether training ended before ``RefineParams.epochs`` because validation stopped improving.
    note
        Why early stopping was off, or an empty string.
    seconds
        Wall-clock training time.
    n_train
        Cells trained on.
    n_val
        Cells held out for validation.
    n_skipped
        Cells left out because their first view is all zero (no described gene).
    n_classes
        Number of labels trained on.
    device
        Torch device that trained the encoder (``"cpu"``, ``"cuda"``…).
    history
        One entry per epoch, starting with epoch 0 (the untrained encoder).
    """

    epochs_run: int = Field(ge=0)
    best_epoch: int = Field(ge=0)
    best_val_metric: float | None = None
    initial_val_metric: float | None = None
    val_metric_name: str = "knn_macro_f1"
    early_stopping: bool
    stopped_early: bool = False
    note: str = ""
    seconds: float = Field(ge=0)
    n_train: int = Field(ge=0)
    n_val: int = Field(ge=0)
    n_skipped: int = Field(default=0, ge=0)
    n_classes: int = Field(ge=0)
    device: str
    history: list[EpochStats] = Field(default_factory=list)
