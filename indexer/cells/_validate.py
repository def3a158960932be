"""Checks on user-supplied AnnData objects, done before anything is computed or stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from indexer._errors import InputError

if TYPE_CHECKING:
    from anndata import AnnData


def expression_matrix(adata: AnnData, *, what: str = "adata") -> sp.csr_matrix:
    """Return ``adata.X`` as a float32 CSR matrix after checking that it is usable.

    Parameters
    ----------
    adata
        Cells x genes.
    what
        Name of the input in error messages (e.g. ``"reference"``).

    Returns
    -------
    A canonical CSR matrix (sorted indices, no explicit zeros).

    Raises
    ------
    InputError
        Empty data, duplicate names, non-numeric, negative, NaN or infinite values.
    """
    n_obs, n_vars = adata.shape
    if n_obs == 0 or n_vars == 0:
        msg = f"{what} is empty ({n_obs} cells x {n_vars} genes); pass an AnnData with cells and genes."
        raise InputError(msg)
    _check_unique(adata.var_names, kind="gene", what=what, fix="call `adata.var_names_make_unique()` first")
    _check_unique(adata.obs_names, kind="cell", what=what, fix="call `adata.obs_names_make_unique()` first")
    x = adata.X
    if x is None:
        msg = f"{what}.X is missing; put the expression matrix (counts or log-normalised) in .X."
        raise InputError(msg)
    if sp.issparse(x):
        m = sp.csr_matrix(x)
        values = m.data
    else:
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            msg = (
                f"{what}.X holds {arr.dtype} values, not numbers; store numeric expression "
                "(counts or log-normalised) in .X."
            )
            raise InputError(msg)
        m = sp.csr_matrix(arr)
        values = m.data
    if not np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
        msg = f"{what}.X holds {values.dtype} values, not numbers; store numeric expression in .X."
        raise InputError(msg)
    if values.size and not np.all(np.isfinite(values)):
        n_bad = int(np.count_nonzero(~np.isfinite(values)))
        msg = f"{what}.X has {n_bad} NaN or infinite values; replace them (e.g. with 0) before annotating."
        raise InputError(msg)
    if values.size and values.min() < 0:
        msg = (
            f"{what}.X has negative values (min {float(values.min()):.3g}): it looks scaled or centred; "
            "pass counts or log-normalised expression (e.g. `adata.raw.to_adata()` or a counts layer)."
        )
        raise InputError(msg)
    m = m.astype(np.float32, copy=False)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def _check_unique(names: object, *, kind: str, what: str, fix: str) -> None:
    values = np.asarray(names, dtype=object)
    if len(set(map(str, values.tolist()))) == values.size:  # a hash set; the sort below only names duplicates
        return
    _, first, counts = np.unique(values.astype(str), return_index=True, return_counts=True)
    dups = values[np.sort(first[counts > 1])][:5].tolist()  # in order of first appearance
    msg = f"{what} has duplicate {kind} names (e.g. {', '.join(map(str, dups))}); {fix}."
    raise InputError(msg)


def labels_of(adata: AnnData, label_key: str, *, what: str = "reference") -> np.ndarray:
    """Return the labels in ``adata.obs[label_key]`` as strings, after checking them.

    Raises
    ------
    InputError
        Missing column (the columns that exist are listed), missing values, or a single class.
    """
    if label_key not in adata.obs.columns:
        cols = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        msg = f"{what} has no obs column '{label_key}' (columns: {cols}); pass --label-key with one of them."
        raise InputError(msg)
    if adata.n_obs == 0:
        msg = f"{what} is empty (0 cells x {adata.n_vars} genes); pass an AnnData with labelled cells."
        raise InputError(msg)
    col = adata.obs[label_key]
    missing = col.isna().to_numpy()
    if missing.any():
        msg = (
            f"{what}.obs['{label_key}'] has {int(missing.sum())} missing labels; "
            "drop those cells or label them before building the reference."
        )
        raise InputError(msg)
    labels = col.astype(str).to_numpy().astype(object)
    uniq = np.unique(labels)
    if uniq.size < 2:
        msg = (
            f"{what}.obs['{label_key}'] has a single label ('{uniq[0]}'); a reference needs at least two "
            "cell types to vote between."
        )
        raise InputError(msg)
    return labels
