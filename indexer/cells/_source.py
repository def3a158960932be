"""Which matrix of an AnnData holds the expression: ``.X``, a layer, or ``.raw`` (as CellTypist chooses).

A :class:`indexer.cells.CellMatrix` (an .h5ad read without anndata) is chosen from the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from indexer._errors import InputError

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

_FIX = "pass --layer NAME (a counts or log-normalised layer) or --use-raw (layer=/use_raw= in Python)"


def select_expression(
    adata: AnnData, *, layer: str | None = None, use_raw: bool | None = None, what: str = "adata"
) -> AnnData:
    """Return an AnnData whose ``.X`` is the expression matrix to read: ``.X``, a layer or ``.raw.X``.

    By default (``layer=None, use_raw=None``) ``.X`` is read unless it is missing or holds negative values
    (scaled or centred data, as ``scanpy.pp.scale`` leaves it) and ``.raw`` exists: then ``.raw.X`` with
    ``.raw.var_names`` is read instead and a warning is logged, as CellTypist does. ``use_raw=False`` reads
    ``.X`` whatever it holds.

    Parameters
    ----------
    adata
        Cells x genes.
    layer
        Read ``adata.layers[layer]`` (genes: ``var_names``).
    use_raw
        ``True``: read ``adata.raw.X`` (genes: ``adata.raw.var_names``); ``False``: read ``.X``; ``None``:
        choose as above.
    what
        Name of the input in messages (e.g. ``"query"``).

    Returns
    -------
    ``adata`` itself when ``.X`` is read, else a new AnnData with the same ``obs`` and the chosen matrix as
    ``.X`` (and ``.raw.var`` as ``var`` for ``.raw``).

    Raises
    ------
    InputError
        Both options given, an unknown layer, ``use_raw=True`` without ``.raw``, or (by default) a scaled
        ``.X`` without ``.raw``.

    Examples
    --------
    >>> import scanpy as sc  # doctest: +SKIP
    >>> select_expression(sc.datasets.pbmc68k_reduced()).n_vars  # scaled .X: reads .raw  # doctest: +SKIP
    765
    """
    if layer is not None and use_raw:
        msg = f"{what}: --layer {layer} and --use-raw were both given; pass one of them."
        raise InputError(msg)
    if layer is not None:
        if layer not in adata.layers:
            have = ", ".join(map(str, adata.layers.keys())) or "none"
            msg = f"{what} has no layer '{layer}' (layers: {have}); pass one of them to --layer, or drop --layer."
            raise InputError(msg)
        logger.info("%s: reading expression from layers[%r]", what, layer)
        return _with_matrix(adata, adata.layers[layer], genes=adata)
    if use_raw:
        if adata.raw is None:
            msg = f"{what} has no .raw (use_raw was asked); drop --use-raw, or pass --layer NAME."
            raise InputError(msg)
        logger.info("%s: reading expression from .raw.X (%d genes)", what, adata.raw.n_vars)
        return _raw(adata)
    if use_raw is False:
        return adata
    problem = _x_problem(adata.X)
    if problem is None:
        return adata
    if adata.raw is not None and _x_problem(adata.raw.X) is None:
        logger.warning(
            "%s.X %s; reading .raw.X instead (%d genes of .raw.var_names); pass --layer NAME or "
            "--no-use-raw to choose", what, problem, adata.raw.n_vars,
        )
        return _raw(adata)
    msg = f"{what}.X {problem} and {what} has no usable .raw; {_FIX}."
    raise InputError(msg)


def _x_problem(x: object) -> str | None:
    """Say why a matrix is not counts or log-normalised expression (``None`` when it may be)."""
    if x is None:
        return "is missing"
    if sp.issparse(x):
        compressed = isinstance(x, sp.csr_matrix | sp.csc_matrix | sp.csr_array | sp.csc_array)
        values = (x if compressed else sp.csr_matrix(x)).data  # type: ignore[union-attr]
    else:
        values = np.asarray(x)
    if not np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
        return None  # expression_matrix names this problem
    sample = np.ravel(values)[:2_000_000]
    if sample.size and np.nanmin(sample) < 0:
        return f"has negative values (min {float(np.nanmin(sample)):.3g}): it looks scaled or centred"
    return None


def _raw(adata: AnnData) -> AnnData:
    raw = adata.raw
    assert raw is not None
    return _with_matrix(adata, raw.X, genes=raw)


def _with_matrix(adata: AnnData, x: object, *, genes: Any) -> AnnData:
    """Return ``adata``'s cells with matrix ``x``, whose columns are the genes of ``genes`` (itself or ``.raw``)."""
    from indexer.cells._h5ad import CellMatrix

    if isinstance(adata, CellMatrix):
        return adata.with_matrix(x, np.asarray(genes.var_names, dtype=object))  # type: ignore[return-value]
    import anndata as ad
    import pandas as pd

    # obs only: the matrix readers need the cells' names (and, for builds, their labels), nothing else.
    return ad.AnnData(X=x, obs=adata.obs, var=pd.DataFrame(genes.var).copy())
