"""SupCon refinement: the encoder network and its training (imports torch)."""

from indexer.cells.supcon._train import DEFAULT_ARCHITECTURE, SupConModel, supcon_loss, train_supcon

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "SupConModel",
    "supcon_loss",
    "train_supcon",
]
