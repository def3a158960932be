"""The CellTypist baseline, with the compatibility shim that lets it train on current scikit-learn."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from benchmarks.accuracy._baselines import Prediction, log_normalised, quiet_convergence

logger = logging.getLogger(__name__)


class OvRLogisticRegression(LogisticRegression):
    """``LogisticRegression`` that accepts CellTypist's ``multi_class="ovr"`` and fits one-vs-rest.

    With more than two classes every class gets its own binary logistic regression (same C, solver, tol,
    iteration limit); ``coef_`` and ``intercept_`` stack them, so the inherited ``decision_function``
    returns the per-class binary scores, as old scikit-learn did for ``multi_class="ovr"``.

    Parameters
    ----------
    multi_class
        Only ``"ovr"`` (or ``None``) is accepted.
    C
        Inverse L2 regularisation strength of every binary model.
    tol
        Solver tolerance.
    fit_intercept
        Fit an intercept per class.
    class_weight
        As in :class:`~sklearn.linear_model.LogisticRegression` (applied to each binary problem).
    random_state
        Solver seed (``sag``/``saga``).
    solver
        Solver of every binary model.
    max_iter
        Iteration limit of every binary model.
    n_jobs
        Processes for the per-class fits (joblib); ``None`` is one.
    """

    def __init__(
        self,
        *,
        multi_class: str | None = "ovr",
        C: float = 1.0,
        tol: float = 1e-4,
        fit_intercept: bool = True,
        class_weight: Any = None,
        random_state: Any = None,
        solver: str = "lbfgs",
        max_iter: int = 100,
        n_jobs: int | None = None,
    ) -> None:
        if multi_class not in ("ovr", None):
            msg = f"OvRLogisticRegression got multi_class={multi_class!r}; it fits one-vs-rest only ('ovr')."
            raise ValueError(msg)
        self.multi_class = multi_class
        super().__init__(
            C=C,
            tol=tol,
            fit_intercept=fit_intercept,
            class_weight=class_weight,
            random_state=random_state,
            solver=solver,
            max_iter=max_iter,
            n_jobs=n_jobs,
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> OvRLogisticRegression:
        """Fit one binary model per class (a single one for two classes)."""
        from joblib import Parallel, delayed

        classes = np.unique(y)
        if len(classes) <= 2:
            return super().fit(X, y, sample_weight=sample_weight)
        params = {
            "C": self.C,
            "tol": self.tol,
            "fit_intercept": self.fit_intercept,
            "class_weight": self.class_weight,
            "random_state": self.random_state,
            "solver": self.solver,
            "max_iter": self.max_iter,
        }

        def one(c: Any) -> LogisticRegression:
            return LogisticRegression(**params).fit(X, (np.asarray(y) == c).astype(int), sample_weight)

        fits = Parallel(n_jobs=self.n_jobs)(delayed(one)(c) for c in classes)
        self.classes_ = classes
        self.coef_ = np.vstack([f.coef_ for f in fits])
        self.intercept_ = np.concatenate([f.intercept_ for f in fits])
        self.n_iter_ = np.concatenate([f.n_iter_ for f in fits])
        self.n_features_in_ = fits[0].n_features_in_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return normalised one-vs-rest sigmoid scores (old scikit-learn's ``ovr`` probabilities)."""
        from scipy.special import expit

        p = expit(self.decision_function(X))
        if p.ndim == 1:
            return np.column_stack([1 - p, p])
        return p / p.sum(axis=1, keepdims=True)


def _import_celltypist() -> Any:
    """Import celltypist without keeping its import-time ``logging.basicConfig`` on the root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import celltypist

    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    return celltypist


@contextlib.contextmanager
def celltypist_compat() -> Iterator[None]:
    """Let ``celltypist.train`` (1.7.1) run on scikit-learn without ``multi_class``; see module docstring.

    Within the block, ``celltypist.train.LogisticRegression`` is :class:`OvRLogisticRegression`; the
    original is restored on exit, also after an error. CellTypist's logger is lowered to warnings.

    Yields
    ------
    Nothing.
    """
    import importlib

    _import_celltypist()
    ct_train = importlib.import_module("celltypist.train")
    ct_logger = logging.getLogger("celltypist")
    level = ct_logger.level
    original = ct_train.LogisticRegression
    ct_train.LogisticRegression = OvRLogisticRegression
    ct_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ct_train.LogisticRegression = original
        ct_logger.setLevel(level)


class CellTypistBaseline:
    """CellTypist (the real package): ``celltypist.train`` on the reference split, ``annotate`` the query.

    Logistic regression (``use_SGD=False``, CellTypist's default solver choice), no feature selection,
    majority voting off. The reference and query are log-normalised to ln(1 + CP10k) first, as CellTypist
    expects; ``check_expression`` is off because benchmark panels need not hold every gene.

    Parameters
    ----------
    n_jobs
        Processes for the per-class fits.
    """

    kind: Literal["knn", "classifier"] = "classifier"

    def __init__(self, *, n_jobs: int | None = None) -> None:
        self.name = "celltypist"
        self.n_jobs = n_jobs

    def fit(self, ref: ad.AnnData, labels: np.ndarray) -> None:
        """Train a CellTypist model on the reference; return ``None``."""
        celltypist = _import_celltypist()

        ref = log_normalised(ref)
        with celltypist_compat(), quiet_convergence():
            self.model_ = celltypist.train(
                ref.X,
                labels=np.asarray(labels).astype(str),
                genes=np.asarray(ref.var_names),
                check_expression=False,
                use_SGD=False,
                n_jobs=self.n_jobs,
                feature_selection=False,
            )

    def predict(self, query: ad.AnnData, *, k: int | None) -> Prediction:
        """Annotate the query with the trained model (best match, no majority voting)."""
        celltypist = _import_celltypist()

        q = log_normalised(query)
        q = ad.AnnData(X=q.X, obs=pd.DataFrame(index=q.obs_names), var=pd.DataFrame(index=q.var_names))
        ct_logger = logging.getLogger("celltypist")
        level = ct_logger.level
        ct_logger.setLevel(logging.ERROR)
        try:
            res = celltypist.annotate(q, model=self.model_, majority_voting=False)
        finally:
            ct_logger.setLevel(level)
        return Prediction(labels=np.asarray(res.predicted_labels["predicted_labels"]).astype(str))

    def close(self) -> None:
        """Nothing to release."""
