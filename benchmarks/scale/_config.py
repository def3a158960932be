"""The scale benchmark's configuration, result fields and error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer import CellvecError, IndexParams
from schemas import DEFAULT_MODE

REQUIRED_FIELDS = (
    "n",
    "build_s",
    "peak_rss_mb",
    "disk_mb",
    "annotate_cells_per_s",
    "recall_at_10",
)
"""Fields every result row has (baselines add ``sklearn_*``, ``faiss_flat_*`` and ``faiss_hnsw_*``)."""


class ScaleError(CellvecError):
    """A scale run failed (its subprocess exited with an error)."""


@dataclass(frozen=True)
class ScaleConfig:
    """One size of the scale benchmark.

    Attributes
    ----------
    n
        Reference cells.
    queries
        Query cells annotated (and searched by each baseline).
    dim
        Gene (and cell) vector dimension of the ``random:<dim>`` encoder.
    index
        HNSW, quantization and storage settings of the reference collection, as a JSON dict of
        :class:`indexer.IndexParams`.
    n_genes
        Real human symbols the synthetic cells express.
    n_classes
        Cell types.
    program_size
        Program genes per class.
    k
        Neighbours that vote and over which recall is measured.
    faiss
        Run the faiss baselines (``IndexFlatIP`` also gives the exact neighbours; without it numpy does).
    sklearn
        Run the scikit-learn brute-force baseline.
    work_dir
        Folder of this size's store (wiped first).
    seed
        Seed of the reference cells (queries use ``seed + 1``).
    encoder
        Gene text encoder; ``None`` means ``random:<dim>``.
    gene_cache
        Store (a folder) holding this encoder's gene vectors, filled on first use and reused by every size
        and run; ``None`` embeds into each size's store.
    chunk
        References larger than this are pooled and written chunk by chunk (see :func:`build_chunked`);
        smaller ones go through :func:`indexer.build_reference` in one call.
    mode
        Cell vector mode of the reference (default: the product's, :data:`schemas.DEFAULT_MODE`); modes
        with an expression view fit its PCA and class head on the synthetic counts.
    text_dims
        :attr:`schemas.CellVectorSpec.text_dims`: project the text view on its top principal directions;
        ``None``: the mode's default (:data:`schemas.DEFAULT_TEXT_DIMS` in ``hybrid``); ``0``: the full view.
    qdrant_url
        Build and annotate against this Qdrant server (``http://host:6333``) instead of an embedded Qdrant
        Edge store under ``work_dir``; the benchmark's reference is dropped from the server first. Memory
        figures are then this process's alone (the server's are not measured) and ``disk_mb`` is ``None``.
    ef_sweep
        Also search the built reference with each of these ``hnsw_ef`` values (queries/s and recall@10 of
        the store's search alone): the speed/recall trade-off without rebuilding.
    """

    n: int
    queries: int = 10_000
    dim: int = 384
    index: dict[str, Any] = field(default_factory=lambda: IndexParams().to_json())
    n_genes: int = 2_000
    n_classes: int = 50
    program_size: int = 30
    k: int = 10
    faiss: bool = True
    sklearn: bool = True
    work_dir: str = "scale-work"
    seed: int = 0
    encoder: str | None = None
    gene_cache: str | None = None
    chunk: int = 200_000
    ef_sweep: tuple[int, ...] = ()
    mode: str = DEFAULT_MODE
    text_dims: int | None = None
    qdrant_url: str | None = None

    @property
    def encoder_id(self) -> str:
        """The encoder actually used."""
        return self.encoder or f"random:{self.dim}"


# ------------------------------------------------------------------------------------------ recall
