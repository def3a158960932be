"""The expression view: a PCA projection of log-normalised expression on a gene panel fixed at build time."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from indexer._errors import StoreError
from indexer.cells._pool import l2_normalise
from schemas import ExpressionParams

TRANSFORM_BLOCK = 8_192
"""Cells scaled and projected at a time by :meth:`ExpressionProjection.transform_with_scores`."""


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
    head_genes: np.ndarray | None = None
    head_coef: np.ndarray | None = None
    head_intercept: np.ndarray | None = None
    head_classes: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Dimension of the view: principal components, plus one score per class with a logistic head."""
        extra = 0 if self.head_coef is None else int(self.head_coef.shape[0])
        return int(self.components.shape[0]) + extra

    def transform(self, x: sp.csr_matrix, symbols: np.ndarray) -> np.ndarray:
        """Project cells (log-normalised, columns named by ``symbols``) and L2-normalise.

        Panel genes absent from the data count as expressed at the reference mean (a zero after scaling), so
        that a query panel that differs from the reference's shifts no cell in a systematic direction.
        """
        return self.transform_with_scores(x, symbols)[0]

    def transform_with_scores(self, x: sp.csr_matrix, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return :meth:`transform`'s view and the raw PCA scores ``z @ components.T`` (before normalising).

        The raw scores are what the decision rule's Mahalanobis novelty score measures
        (:func:`indexer.cells.decide`).
        """
        pos = {s: i for i, s in enumerate(symbols) if s}
        cols = np.array([pos.get(g, -1) for g in self.genes], dtype=np.int64)
        present = cols >= 0
        chosen = x[:, cols[present]].tocsr()
        # The panel's columns in the panel's order; an absent gene is an empty column that scales to zero
        # (mean 0, std 1). Written straight into the block: assigning through a column mask cost 30 ms a
        # 1,228-cell query, five times the rest of the projection.
        panel = sp.csr_matrix((chosen.data, np.flatnonzero(present)[chosen.indices], chosen.indptr),
                              shape=(x.shape[0], self.genes.size))
        mean = np.where(present, self.mean, 0)
        std = np.where(present, self.std, 1)
        raw = np.empty((x.shape[0], self.components.shape[0]), dtype=np.float32)
        # The scaled panel is dense (cells x panel genes): built TRANSFORM_BLOCK cells at a time, so memory
        # stays bounded however many cells are encoded at once (a 100k-cell build held ~2.4 GB of it).
        z = np.empty((min(TRANSFORM_BLOCK, x.shape[0]), self.genes.size), dtype=np.float32)
        for start in range(0, x.shape[0], TRANSFORM_BLOCK):
            stop = min(start + TRANSFORM_BLOCK, x.shape[0])
            block = z[: stop - start]
            panel[start:stop].toarray(out=block)
            block -= mean
            block /= std
            np.clip(block, -10, 10, out=block)
            raw[start:stop] = block @ self.components.T
        pcs = l2_normalise(raw)
        if self.head_coef is None or self.head_genes is None or self.head_intercept is None:
            return pcs, raw
        hcols = np.array([pos.get(g, -1) for g in self.head_genes], dtype=np.int64)
        ok = np.flatnonzero(hcols >= 0)
        # Sparse product over the head's genes that the query has; absent genes count as not expressed. The
        # coefficients are laid on the query's columns (zero elsewhere), so no column of x is copied out.
        coef = np.zeros((x.shape[1], self.head_coef.shape[0]), dtype=self.head_coef.dtype)
        np.add.at(coef, hcols[ok], self.head_coef[:, ok].T)  # adds, as the product did, if a column repeats
        scores = np.asarray(x @ coef) + self.head_intercept
        # Class scores are centred per cell: only their differences carry the classifier's decision.
        scores -= scores.mean(axis=1, keepdims=True)
        return l2_normalise(np.hstack([pcs, l2_normalise(scores.astype(np.float32))])), raw

    def to_bytes(self) -> bytes:
        """Serialise without pickle (``np.savez`` of plain arrays)."""
        buf = io.BytesIO()
        head = {}
        if self.head_coef is not None:
            head = {
                "head_genes": np.asarray(self.head_genes).astype(str),
                "head_coef": self.head_coef,
                "head_intercept": self.head_intercept,
                "head_classes": np.asarray(self.head_classes).astype(str),
            }
        np.savez(
            buf,
            genes=self.genes.astype(str),
            mean=self.mean,
            std=self.std,
            components=self.components,
            **head,  # type: ignore[arg-type]
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
                has_head = "head_coef" in z.files
                return cls(
                    genes=z["genes"].astype(object),
                    mean=z["mean"],
                    std=z["std"],
                    components=z["components"],
                    head_genes=z["head_genes"].astype(object) if has_head else None,
                    head_coef=z["head_coef"] if has_head else None,
                    head_intercept=z["head_intercept"] if has_head else None,
                    head_classes=z["head_classes"].astype(object) if has_head else None,
                )
        except (ValueError, KeyError, OSError) as e:
            msg = f"the reference's expression projection cannot be read ({e}); rebuild the reference."
            raise StoreError(msg) from e


def fit_expression(
    x: sp.csr_matrix,
    symbols: np.ndarray,
    params: ExpressionParams,
    *,
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> ExpressionProjection:
    """Fit the gene panel (most variable genes), PCA and, with ``head="pca+logistic"``, the class head.

    Everything is fitted on reference cells only.

    Parameters
    ----------
    x
        Log-normalised reference expression, cells × genes.
    symbols
        Gene symbols of the columns (``""`` for unmapped genes, which are left out).
    params
        Panel size and number of components.
    labels
        Reference labels (needed by the logistic head).
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
    z = x[:, panel].toarray()
    mu = z.mean(axis=0)
    sd = z.std(axis=0)
    sd[sd < 1e-6] = 1.0
    # Scaled in place: the dense panel (cells x 2,000 genes, 800 MB at 100k cells) is held once, not three times.
    z -= mu
    z /= sd
    np.clip(z, -10, 10, out=z)
    n_comp = min(params.n_components, z.shape[0] - 1, z.shape[1])
    _, _, vt = randomized_svd(z, n_components=n_comp, random_state=seed)
    proj = ExpressionProjection(
        genes=np.asarray(symbols)[panel].astype(object),
        mean=mu.astype(np.float32),
        std=sd.astype(np.float32),
        components=vt.astype(np.float32),
    )
    if params.head == "pca" or labels is None:
        return proj
    return _fit_head(proj, x[:, np.flatnonzero(valid)], np.asarray(symbols)[valid], labels, params)


def _fit_head(
    proj: ExpressionProjection,
    x: sp.csr_matrix,
    symbols: np.ndarray,
    labels: np.ndarray,
    params: ExpressionParams,
) -> ExpressionProjection:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels).astype(str)
    if np.unique(y).size < 2:
        return proj
    model = LogisticRegression(C=params.c, max_iter=300)
    with warnings.catch_warnings():
        # An unconverged fit after max_iter still separates the labels; the view only needs its direction.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    coef = model.coef_.astype(np.float32)
    intercept = model.intercept_.astype(np.float32)
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row; make the scores symmetric
        coef = np.vstack([-coef, coef]) / 2
        intercept = np.array([-intercept[0], intercept[0]], dtype=np.float32) / 2
    return ExpressionProjection(
        genes=proj.genes,
        mean=proj.mean,
        std=proj.std,
        components=proj.components,
        head_genes=symbols.astype(object),
        head_coef=coef,
        head_intercept=intercept,
        head_classes=model.classes_.astype(object),
    )
