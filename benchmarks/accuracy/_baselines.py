"""Baselines that cellvec is compared with: Seurat-like PCA KNN, CellTypist, logistic regression, GenePT-w.

Every method follows one small contract (:class:`Method`): ``fit`` on the reference split returns the
reference vectors used for the k cross-validation (``None`` for methods without neighbours), and
``predict`` labels the query. All fitted state (gene panel, scaling, PCA, models) comes from the
reference split only; the query is projected.

CellTypist compatibility
------------------------
CellTypist 1.7.1 builds ``LogisticRegression(multi_class="ovr", ...)``; scikit-learn ≥ 1.8 removed that
argument. Dropping it is *not* equivalent: scikit-learn's default is now a multinomial (softmax) model,
whereas CellTypist's model is one-vs-rest — one binary logistic regression per cell type, whose
``decision_function`` CellTypist squashes with a sigmoid into per-type probabilities.
:func:`celltypist_compat` therefore swaps, for the duration of ``celltypist.train``, the
``LogisticRegression`` name inside ``celltypist.train`` for :class:`OvRLogisticRegression`: a
``LogisticRegression`` subclass that accepts ``multi_class="ovr"`` and fits one binary model per class with
the same C, solver and iteration limit, stacking their coefficients. That is the model old scikit-learn
fitted for ``multi_class="ovr"`` (the same objective per class; results agree up to solver tolerance, which
``tests/annotator/test_bench.py`` checks against ``OneVsRestClassifier``), and the resulting estimator is a
real ``LogisticRegression`` that CellTypist's own prediction code uses unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from benchmarks.accuracy._protocol import knn_predict
from indexer.cells import looks_like_counts

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """What a method returns for the query split.

    Parameters
    ----------
    labels
        Predicted label per query cell.
    vectors
        Query vectors in the method's space (``None`` for classifiers without one).
    neighbour_ids
        ``(n_query, k)`` reference cell ids of the neighbours that voted (KNN methods only).
    extra
        Anything else worth reporting (e.g. exact-vs-ANN figures).
    """

    labels: np.ndarray
    vectors: np.ndarray | None = None
    neighbour_ids: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Method(Protocol):
    """A cell-type annotation method under benchmark."""

    name: str
    """Name shown in tables and figures."""
    kind: Literal["knn", "classifier"]
    """``"knn"`` methods get k chosen by cross-validation; classifiers have no k."""

    def fit(self, ref: ad.AnnData, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Fit on the reference split; return reference vectors and their labels (KNN methods) or ``None``."""
        ...

    def predict(self, query: ad.AnnData, *, k: int | None) -> Prediction:
        """Label the query split (``k`` is the chosen neighbour count for KNN methods)."""
        ...

    def close(self) -> None:
        """Release anything the method created (store collections, models)."""
        ...


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def is_counts(adata: ad.AnnData, *, n_rows: int = 200) -> bool:
    """Return whether ``adata.X`` looks like raw counts, by the product's rule (:func:`looks_like_counts`).

    Parameters
    ----------
    adata
        Cells x genes.
    n_rows
        Number of cells inspected.

    Returns
    -------
    ``True`` for counts, ``False`` for log-normalised data.
    """
    return looks_like_counts(sp.csr_matrix(adata.X[:n_rows]))


def log_normalised(adata: ad.AnnData) -> ad.AnnData:
    """Return ``adata`` as ln(1 + CP10k): counts are normalised, log data are returned as they are.

    Parameters
    ----------
    adata
        Cells x genes, counts or log-normalised.

    Returns
    -------
    The log-normalised AnnData (a copy when normalisation was needed).
    """
    if not is_counts(adata):
        return adata
    import scanpy as sc

    out = adata.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def hvg_panel(ref: ad.AnnData, *, n_genes: int = 2000) -> np.ndarray:
    """Return the names of the ``n_genes`` most variable reference genes (Seurat dispersion on log data).

    Parameters
    ----------
    ref
        Log-normalised reference cells.
    n_genes
        Panel size; every expressed gene when the reference has fewer.

    Returns
    -------
    Gene names.
    """
    import scanpy as sc

    x = ref.X
    expressed = np.asarray((x > 0).sum(axis=0)).ravel() > 0
    genes = ref.var_names[expressed]
    if len(genes) <= n_genes:
        return np.asarray(genes)
    sub = ad.AnnData(X=x[:, expressed], var=pd.DataFrame(index=genes))
    table = sc.pp.highly_variable_genes(sub, n_top_genes=n_genes, flavor="seurat", inplace=False)
    return np.asarray(genes[np.asarray(table["highly_variable"])])


def _panel(adata: ad.AnnData, genes: np.ndarray) -> np.ndarray:
    """Dense expression of ``genes`` in ``adata``; genes the query lacks are zero."""
    pos = adata.var_names.get_indexer(genes)
    out = np.zeros((adata.n_obs, len(genes)), dtype=np.float32)
    have = pos >= 0
    out[:, have] = _dense(adata.X[:, pos[have]])
    return out


class SeuratLike:
    """Seurat-like expression baseline: log-normalise, 2,000 HVG, scale, PCA 50, cosine KNN.

    HVG, scaling (mean, sd, clipped at 10) and PCA are fitted on the reference split; the query is
    projected with them.

    Parameters
    ----------
    n_genes
        Number of highly variable genes.
    n_components
        Number of principal components.
    seed
        PCA random seed.
    """

    kind: Literal["knn", "classifier"] = "knn"

    def __init__(self, *, n_genes: int = 2000, n_components: int = 50, seed: int = 0) -> None:
        self.name = "seurat-like"
        self.n_genes = n_genes
        self.n_components = n_components
        self.seed = seed

    def _scaled(self, adata: ad.AnnData) -> np.ndarray:
        x = _panel(log_normalised(adata), self.genes_)
        return np.clip((x - self.mean_) / self.sd_, -10, 10)

    def fit(self, ref: ad.AnnData, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fit HVG, scaling and PCA on the reference; return its PCA coordinates and labels."""
        ref = log_normalised(ref)
        self.genes_ = hvg_panel(ref, n_genes=self.n_genes)
        x = _panel(ref, self.genes_)
        self.mean_ = x.mean(axis=0)
        sd = x.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        xs = np.clip((x - self.mean_) / self.sd_, -10, 10)
        n = min(self.n_components, xs.shape[0] - 1, xs.shape[1])
        self.pca_ = PCA(n_components=n, random_state=self.seed, svd_solver="randomized").fit(xs)
        self.ref_vectors_ = self.pca_.transform(xs)
        self.ref_labels_ = np.asarray(labels).astype(str)
        return self.ref_vectors_, self.ref_labels_

    def predict(self, query: ad.AnnData, *, k: int | None) -> Prediction:
        """Project the query into the reference PCA and vote among the ``k`` nearest cells."""
        v = self.pca_.transform(self._scaled(query))
        labels, nbrs = knn_predict(self.ref_vectors_, self.ref_labels_, v, k=k or 10)
        return Prediction(labels=labels, vectors=v, neighbour_ids=nbrs)

    def close(self) -> None:
        """Nothing to release."""


@contextlib.contextmanager
def quiet_convergence() -> Iterator[None]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # An lbfgs iteration cap on a baseline is a budget, not an error; the metrics show its effect.
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


class LogRegBaseline:
    """Multinomial L2 logistic regression on log-expression of every gene expressed in the reference.

    Parameters
    ----------
    c
        Inverse regularisation strength.
    max_iter
        Iteration limit of lbfgs.
    """

    kind: Literal["knn", "classifier"] = "classifier"

    def __init__(self, *, c: float = 1.0, max_iter: int = 500) -> None:
        self.name = "logreg"
        self.c = c
        self.max_iter = max_iter

    def fit(self, ref: ad.AnnData, labels: np.ndarray) -> None:
        """Fit on the reference log-expression; return ``None`` (no neighbours, no k)."""
        ref = log_normalised(ref)
        expressed = np.asarray((ref.X > 0).sum(axis=0)).ravel() > 0
        self.genes_ = np.asarray(ref.var_names[expressed])
        x = sp.csr_matrix(ref.X[:, expressed], dtype=np.float32)
        self.model_ = LogisticRegression(C=self.c, max_iter=self.max_iter)
        with quiet_convergence():
            self.model_.fit(x, np.asarray(labels).astype(str))

    def predict(self, query: ad.AnnData, *, k: int | None) -> Prediction:
        """Predict the most probable label of each query cell."""
        x = _panel(log_normalised(query), self.genes_)
        return Prediction(labels=np.asarray(self.model_.predict(x)).astype(str))

    def close(self) -> None:
        """Nothing to release."""


GeneVectorLookup = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]
"""``genes -> (vectors, found)``: an ``(n_genes, dim)`` matrix (zero rows where missing) and a mask."""


class GenePTW:
    """GenePT-w: the expression-weighted mean of gene text vectors over every expressed gene.

    ``v_cell = Σ_g x_cg e_g / Σ_g x_cg`` over genes with a vector, on ln(1 + CP10k) expression, then
    L2-normalised; labelled by cosine KNN like the other embedding methods.

    Parameters
    ----------
    lookup
        Returns gene vectors for gene names (the cellvec gene cache of one encoder).
    encoder
        Encoder id, for the method name.
    """

    kind: Literal["knn", "classifier"] = "knn"

    def __init__(self, lookup: GeneVectorLookup, *, encoder: str) -> None:
        self.name = f"genept-w[{encoder}]"
        self.lookup = lookup
        self._cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def _vectors(self, adata: ad.AnnData) -> np.ndarray:
        key = tuple(adata.var_names)
        if key not in self._cache:
            self._cache[key] = self.lookup(list(adata.var_names))
        g, found = self._cache[key]
        x = log_normalised(adata).X
        x = sp.csr_matrix(x, dtype=np.float32)[:, np.flatnonzero(found)]
        num = np.asarray(x @ g[found], dtype=np.float32)
        den = np.asarray(x.sum(axis=1)).reshape(-1, 1)
        v = num / np.where(den > 0, den, 1.0)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(norm > 0, norm, 1.0)

    def fit(self, ref: ad.AnnData, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pool the reference cells; return their vectors and labels."""
        self.ref_vectors_ = self._vectors(ref)
        self.ref_labels_ = np.asarray(labels).astype(str)
        return self.ref_vectors_, self.ref_labels_

    def predict(self, query: ad.AnnData, *, k: int | None) -> Prediction:
        """Pool the query cells and vote among the ``k`` nearest reference cells."""
        v = self._vectors(query)
        labels, nbrs = knn_predict(self.ref_vectors_, self.ref_labels_, v, k=k or 10)
        return Prediction(labels=labels, vectors=v, neighbour_ids=nbrs)

    def close(self) -> None:
        """Nothing to release."""


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` and return its result and wall-clock seconds.

    Parameters
    ----------
    fn
        Callable without arguments.

    Returns
    -------
    Result and seconds.
    """
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
