"""SupCon refinement: the encoder network and its training (imports torch)."""

from indexer.cells.supcon._model import DEFAULT_ARCHITECTURE, Architecture, SupConModel, supcon_loss
from indexer.cells.supcon._train import train_supcon

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "Architecture",
    "SupConModel",
    "supcon_loss",
    "train_supcon",
]
