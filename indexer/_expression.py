"""The expression view: a PCA projection of log-normalised expression on a gene panel fixed at build time."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from schemas import ExpressionParams

from ._errors import StoreError
from ._pool import l2_normalise


@dataclass(frozen=True)
class ExpressionProjection:
    """Gene panel, scaling and principal axes fitted on reference cells only.

    Attributes
    ----------
    genes
        Panel gene symbols (object array).
    mean, std
        Per-gene mean and standard deviation of log-expression over reference cells.
    components
        Principal axes, ``n_components × n_genes``.
    """

    genes: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray

    @property
    def dim(self) -> int:
        """Number of principal components."""
        return int(self.components.shape[0])

    def transform(self, x: sp.csr_matrix, symbols: np.ndarray) -> np.ndarray:
        """Project cells (log-normalised, columns named by ``symbols``) and L2-normalise.

        Panel genes absent from the data count as expressed at the reference mean (a zero after scaling), so
        that a query panel that differs from the reference's shifts no cell in a systematic direction.
        """
        pos = {s: i for i, s in enumerate(symbols) if s}
        cols = np.array([pos.get(g, -1) for g in self.genes], dtype=np.int64)
        present = cols >= 0
        sub = x[:, cols[present]].toarray()
        z = np.zeros((x.shape[0], self.genes.size), dtype=np.float32)
        z[:, present] = (sub - self.mean[present]) / self.std[present]
        np.clip(z, -10, 10, out=z)
        return l2_normalise(z @ self.components.T)

    def to_bytes(self) -> bytes:
        """Serialise without pickle (``np.savez`` of plain arrays)."""
        buf = io.BytesIO()
        np.savez(
            buf,
            genes=self.genes.astype(str),
            mean=self.mean,
            std=self.std,
            components=self.components,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, expected_sha256: str | None = None) -> ExpressionProjection:
        """Load a projection saved by :meth:`to_bytes`, checking its hash when one is given."""
        if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
            msg = (
                "the reference's expression projection was altered or truncated (hash mismatch); "
                "rebuild the reference with `cellvec reference build`."
            )
            raise StoreError(msg)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return cls(
                    genes=z["genes"].astype(object),
                    mean=z["mean"],
                    std=z["std"],
                    components=z["components"],
                )
        except (ValueError, KeyError, OSError) as e:
            msg = f"the reference's expression projection cannot be read ({e}); rebuild the reference."
            raise StoreError(msg) from e


def fit_expression(
    x: sp.csr_matrix, symbols: np.ndarray, params: ExpressionParams, *, seed: int = 0
) -> ExpressionProjection:
    """Fit the gene panel (most variable genes) and PCA on reference cells.

    Parameters
    ----------
    x
        Log-normalised reference expression, cells × genes.
    symbols
        Gene symbols of the columns (``""`` for unmapped genes, which are left out).
    params
        Panel size and number of components.
    seed
        Seed of the randomised SVD.
    """
    from sklearn.utils.extmath import randomized_svd

    valid = np.array([bool(s) for s in symbols])
    mean = np.asarray(x.mean(axis=0)).ravel()
    sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
    var = np.maximum(sq - mean**2, 0)
    # Dispersion of log data (variance / mean) ranks genes like scanpy's highly-variable-gene selection.
    disp = np.divide(var, mean, out=np.zeros_like(var), where=mean > 1e-6)
    disp[~valid] = -np.inf
    n_genes = min(params.n_genes, int(valid.sum()))
    panel = np.sort(np.argsort(-disp, kind="stable")[:n_genes])
    sub = x[:, panel].toarray()
    mu = sub.mean(axis=0)
    sd = sub.std(axis=0)
    sd[sd < 1e-6] = 1.0
    z = np.clip((sub - mu) / sd, -10, 10)
    n_comp = min(params.n_components, z.shape[0] - 1, z.shape[1])
    _, _, vt = randomized_svd(z, n_components=n_comp, random_state=seed)
    return ExpressionProjection(
        genes=np.asarray(symbols)[panel].astype(object),
        mean=mu.astype(np.float32),
        std=sd.astype(np.float32),
        components=vt.astype(np.float32),
    )
