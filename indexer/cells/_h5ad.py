"""Read the expression of an .h5ad file without anndata: what a read-only annotate needs, and no more.

Importing anndata (with pandas and zarr) takes about a second here, more than annotating a thousand cells
against a warm reference. A command that only reads cells and prints or tabulates their labels needs the
matrix, the cell names and the gene names; :func:`read_cells` reads those with h5py from files written in
the AnnData on-disk format (``encoding-type`` attributes, anndata >= 0.8) and returns ``None`` for anything
else (older layouts, categorical indices, other matrix encodings), where the caller reads the file with
anndata as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["CellMatrix", "read_cells"]


@dataclass
class CellMatrix:
    """Cells × genes as annotate reads them: ``X``, ``var_names``, ``obs_names``, and lazily ``layers`` / ``raw``.

    Accepted wherever annotate accepts an AnnData; it is not one (no ``obs``/``var`` frames, nothing to write).

    Attributes
    ----------
    X
        The matrix: a SciPy sparse matrix or a NumPy array.
    var_names
        Gene names, one per column.
    obs_names
        Cell names, one per row.
    layers
        Other matrices of the file by name, read when asked for.
    """

    X: Any
    var_names: np.ndarray
    obs_names: np.ndarray
    layers: Mapping[str, Any] = field(default_factory=dict)
    read_raw: Callable[[], CellMatrix] | None = field(default=None, repr=False)
    """Reads the file's ``.raw`` (``None`` when it has none); :attr:`raw` calls it once."""

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return int(self.obs_names.size)

    @property
    def n_vars(self) -> int:
        """Number of genes."""
        return int(self.var_names.size)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_obs, n_vars)``."""
        return self.n_obs, self.n_vars

    @cached_property
    def raw(self) -> CellMatrix | None:
        """The file's ``.raw`` (its matrix and gene names, the same cells), read on first use; ``None`` without."""
        return None if self.read_raw is None else self.read_raw()

    def with_matrix(self, x: Any, var_names: np.ndarray) -> CellMatrix:
        """Return the same cells with another matrix and its gene names (a layer, or ``.raw``)."""
        return CellMatrix(X=x, var_names=var_names, obs_names=self.obs_names)


class _Layers(Mapping[str, Any]):
    """The file's layers by name, each read from the file when it is asked for."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self._path = path
        self._names = names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        import h5py

        with h5py.File(self._path, "r") as f:
            return _matrix(f["layers"][name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _Unsupported(Exception):
    """A part of the file this reader does not handle: the caller reads the file with anndata."""


def read_cells(path: str | Path) -> CellMatrix | None:
    """Read an .h5ad file's matrix and names with h5py, or return ``None`` when anndata must read it.

    Parameters
    ----------
    path
        An existing .h5ad file.

    Returns
    -------
    The cells, with ``X`` as stored (CSR, CSC or dense); ``None`` for a file this reader does not handle (an
    older layout, a categorical index, another encoding, or a file h5py cannot open): read it with
    ``anndata.read_h5ad``, which also names what is wrong with a damaged file.

    Examples
    --------
    >>> cells = read_cells("query.h5ad")  # doctest: +SKIP
    >>> cells.shape  # doctest: +SKIP
    (1228, 21649)
    """
    import h5py

    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("encoding-type") != "anndata" or "X" not in f:
                return None
            obs_names = _index(f["obs"])
            x = _matrix(f["X"])
            var_names = _index(f["var"])
            if x.shape != (obs_names.size, var_names.size):
                return None
            layers = _Layers(p, list(f["layers"].keys())) if "layers" in f else {}
            read_raw = partial(_read_raw, p, obs_names) if "raw" in f else None
    except (OSError, KeyError, ValueError, TypeError, _Unsupported):
        return None
    return CellMatrix(X=x, var_names=var_names, obs_names=obs_names, layers=layers, read_raw=read_raw)


def _read_raw(path: Path, obs_names: np.ndarray) -> CellMatrix:
    import h5py

    with h5py.File(path, "r") as f:
        raw = f["raw"]
        x = _matrix(raw["X"])
        var_names = _index(raw["var"])
    if x.shape != (obs_names.size, var_names.size):
        msg = f".raw of '{path}' has {x.shape} values for {obs_names.size} cells x {var_names.size} genes"
        raise _Unsupported(msg)
    return CellMatrix(X=x, var_names=var_names, obs_names=obs_names)


def _encoding(node: Any) -> str:
    value = node.attrs.get("encoding-type", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _index(frame: Any) -> np.ndarray:
    """Return a dataframe group's index (``obs_names`` / ``var_names``) as an object array of str."""
    import h5py

    if not isinstance(frame, h5py.Group) or _encoding(frame) != "dataframe":
        msg = "not a dataframe group"
        raise _Unsupported(msg)
    name = frame.attrs["_index"]
    column = frame[name.decode() if isinstance(name, bytes) else str(name)]
    if not isinstance(column, h5py.Dataset) or _encoding(column) != "string-array":
        msg = "the index is not a string array"
        raise _Unsupported(msg)
    return np.asarray(column.asstr()[()], dtype=object)


def _matrix(node: Any) -> Any:
    """Return a stored matrix: a dense array, or a CSR/CSC matrix as anndata reads them."""
    import h5py

    kind = _encoding(node)
    if isinstance(node, h5py.Dataset):
        if kind not in ("array", ""):
            msg = f"matrix encoding {kind!r}"
            raise _Unsupported(msg)
        return node[()]
    if kind not in ("csr_matrix", "csc_matrix"):
        msg = f"matrix encoding {kind!r}"
        raise _Unsupported(msg)
    shape = tuple(int(v) for v in node.attrs["shape"])
    parts = (node["data"][()], node["indices"][()], node["indptr"][()])
    return sp.csr_matrix(parts, shape=shape) if kind == "csr_matrix" else sp.csc_matrix(parts, shape=shape)
