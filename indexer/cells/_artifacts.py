"""What a reference version fitted on its cells (and every query reuses), serialised without pickle and hash-checked."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexer._errors import StoreError
from indexer.cells._calibration import CALIBRATION_FILE, Calibration, calibration_file
from indexer.cells._expression import ExpressionProjection
from indexer.cells._text_projection import TextProjection

if TYPE_CHECKING:
    from indexer.cells.supcon import SupConModel


GENE_SUBSET_FILE = "gene_subset.npz"
"""Artefact holding the genes a restricted reference reads (:attr:`Artifacts.gene_subset`)."""

GENE_VECTORS_FILE = "gene_vectors.npz"
"""Artefact holding the gene vectors a reference's queries pool (:attr:`Artifacts.gene_vectors`)."""


@dataclass(frozen=True)
class CarriedGenes:
    """Gene vectors a reference version carries, with the digest of the text each was embedded from.

    Attributes
    ----------
    symbols
        Gene symbols, sorted.
    vectors
        Their vectors (float32), as the gene collection held them at build time.
    digests
        SHA-256 of each gene's description text (:func:`indexer.genes.text_sha256`).
    """

    symbols: np.ndarray
    vectors: np.ndarray
    digests: np.ndarray

    def rows(self, symbols: list[str]) -> np.ndarray:
        """Return each symbol's row, ``-1`` for a symbol not carried."""
        want = np.asarray(symbols, dtype=str)
        if not len(self.symbols):
            return np.full(len(want), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.symbols, want), len(self.symbols) - 1)
        return np.where(self.symbols[pos] == want, pos, -1).astype(np.int64)


@dataclass
class Artifacts:
    """What a reference version fitted on its cells and what every query reuses.

    Attributes
    ----------
    idf
        Inverse-frequency weight per gene symbol (``idf`` pooling), else ``None``.
    whiten_mean
        Mean gene vector removed before pooling (``whiten`` pooling), else ``None``.
    expression
        Expression-view projection, else ``None``.
    text
        Principal directions of the text view (``spec.text_dims``), else ``None``.
    supcon
        Trained SupCon encoder, else ``None``.
    text_panel
        Symbols of the described genes the reference's cells pool (text modes), else ``None``: queries report
        how many of them they have.
    calibration
        The decision rule's calibration (``calibration.json``), else ``None`` (references built before
        issue 14: annotation falls back to the plain vote).
    gene_subset
        Reference-species symbols the reference was restricted to (``build_reference(..., genes=...)``), else
        ``None``: every view of the reference and of its queries reads only these genes.
    gene_vectors
        Text modes: the vectors of the genes the reference pooled and of its expression panel (the genes its
        queries pool, nearly all), so that annotate reads them here instead of opening the gene collection;
        ``None`` for references built before it.
    """

    idf: dict[str, float] | None = None
    whiten_mean: np.ndarray | None = None
    expression: ExpressionProjection | None = None
    text: TextProjection | None = None
    supcon: SupConModel | None = None
    text_panel: np.ndarray | None = None
    calibration: Calibration | None = None
    gene_subset: np.ndarray | None = None
    gene_vectors: CarriedGenes | None = None

    def blobs(self) -> dict[str, bytes]:
        """Return every artefact serialised (no pickle), keyed by artefact file name."""
        out: dict[str, bytes] = {}
        if self.idf is not None:
            out["idf.npz"] = _npz(
                genes=np.array(list(self.idf), dtype=str),
                weights=np.array(list(self.idf.values()), dtype=np.float32),
            )
        if self.whiten_mean is not None:
            out["whiten.npz"] = _npz(mean=self.whiten_mean.astype(np.float32))
        if self.expression is not None:
            out["expression.npz"] = self.expression.to_bytes()
        if self.text is not None:
            out["text_pca.npz"] = self.text.to_bytes()
        if self.supcon is not None:
            out.update(self.supcon.to_files())
        if self.text_panel is not None:
            out["text_panel.npz"] = _npz(genes=np.asarray(self.text_panel, dtype=str))
        if self.gene_vectors is not None:
            g = self.gene_vectors
            out[GENE_VECTORS_FILE] = _npz(
                symbols=np.asarray(g.symbols, dtype=str),
                vectors=np.asarray(g.vectors, dtype=np.float32),
                digests=np.asarray(g.digests, dtype=str),
            )
        if self.calibration is not None:
            out[CALIBRATION_FILE] = self.calibration.to_json()
        if self.gene_subset is not None:
            out[GENE_SUBSET_FILE] = _npz(genes=np.asarray(self.gene_subset, dtype=str))
        return out

    @classmethod
    def from_blobs(cls, blobs: dict[str, bytes | None], hashes: dict[str, str]) -> Artifacts:
        """Load artefacts, refusing any whose bytes do not match the hash in the build record."""
        for name, digest in hashes.items():
            data = blobs.get(name)
            if data is None:
                msg = (
                    f"the reference's artefact '{name}' is missing from the store; rebuild the reference "
                    "(`cellvec reference build`) or refit it (`cellvec reference refit`)."
                )
                raise StoreError(msg)
            if hashlib.sha256(data).hexdigest() != digest:
                msg = (
                    f"the reference's artefact '{name}' was altered or truncated (its SHA-256 differs from the "
                    "build record); rebuild or refit the reference."
                )
                raise StoreError(msg)
        art = cls()
        if "idf.npz" in hashes:
            z = _load_npz(blobs["idf.npz"])  # type: ignore[arg-type]
            art.idf = dict(zip(z["genes"].tolist(), z["weights"].tolist(), strict=True))
        if "whiten.npz" in hashes:
            art.whiten_mean = _load_npz(blobs["whiten.npz"])["mean"]  # type: ignore[arg-type]
        if "text_panel.npz" in hashes:
            art.text_panel = _load_npz(blobs["text_panel.npz"])["genes"].astype(object)  # type: ignore[arg-type]
        if GENE_SUBSET_FILE in hashes:
            art.gene_subset = _load_npz(blobs[GENE_SUBSET_FILE])["genes"].astype(object)  # type: ignore[arg-type]
        if GENE_VECTORS_FILE in hashes:
            z = _load_npz(blobs[GENE_VECTORS_FILE])  # type: ignore[arg-type]
            art.gene_vectors = CarriedGenes(z["symbols"], z["vectors"], z["digests"])
        if "expression.npz" in hashes:
            art.expression = ExpressionProjection.from_bytes(blobs["expression.npz"])  # type: ignore[arg-type]
        if "text_pca.npz" in hashes:
            art.text = TextProjection.from_bytes(blobs["text_pca.npz"])  # type: ignore[arg-type]
        if "supcon.safetensors" in hashes:
            from indexer.cells.supcon import SupConModel

            files = {k: v for k, v in blobs.items() if k.startswith("supcon.") and v is not None}
            art.supcon = SupConModel.from_files(files)
        cal_file = calibration_file(hashes)
        if cal_file is not None:
            art.calibration = Calibration.from_json(blobs[cal_file])  # type: ignore[arg-type]
        return art


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _load_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
