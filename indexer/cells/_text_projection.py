"""The text view made small: pooled text vectors projected on their top singular directions.

The text view (384-d with MiniLM) is the largest part of a hybrid cell vector, yet measured accuracy does not
depend on it; projecting it on the few directions along which the reference's cells actually vary keeps what
it contributes at a fraction of the stored size. The directions are fitted on reference cells only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from indexer._errors import StoreError
from indexer.cells._pool import l2_normalise


@dataclass(frozen=True)
class TextProjection:
    """Principal directions of the reference's pooled text vectors (not centred: see :func:`fit_text_projection`).

    Attributes
    ----------
    mean
        Vector subtracted before projecting (zeros for projections fitted by :func:`fit_text_projection`).
    components
        Principal directions, ``n_components × text dimension``.
    """

    mean: np.ndarray
    components: np.ndarray

    @property
    def dim(self) -> int:
        """Dimension of the projected text view."""
        return int(self.components.shape[0])

    def transform(self, pooled: np.ndarray) -> np.ndarray:
        """Project unit pooled text vectors and L2-normalise; cells without a text vector stay zero."""
        has = np.linalg.norm(pooled, axis=1) > 0
        out = np.zeros((pooled.shape[0], self.dim), dtype=np.float32)
        out[has] = (pooled[has] - self.mean) @ self.components.T
        return l2_normalise(out)

    def to_bytes(self) -> bytes:
        """Serialise (npz, no pickle)."""
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean.astype(np.float32), components=self.components.astype(np.float32))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TextProjection:
        """Load what :meth:`to_bytes` wrote."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return cls(mean=z["mean"], components=z["components"])
        except (ValueError, KeyError, OSError) as e:
            msg = f"the reference's text projection cannot be read ({e}); rebuild the reference."
            raise StoreError(msg) from e


def fit_text_projection(pooled: np.ndarray, n_components: int, *, seed: int = 0) -> TextProjection:
    """Fit the top ``n_components`` principal directions of reference cells' pooled text vectors.

    Parameters
    ----------
    pooled
        Unit pooled text vectors of the reference cells (zero rows, cells without text, are left out).
    n_components
        Directions kept (at most the number of usable cells and the text dimension).
    seed
        Seed of the randomised solver.

    Returns
    -------
    The projection.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> proj = fit_text_projection(l2_normalise(rng.normal(size=(50, 16)).astype(np.float32)), 4)
    >>> proj.transform(np.zeros((2, 16), dtype=np.float32)).shape
    (2, 4)
    """
    from sklearn.decomposition import TruncatedSVD

    rows = pooled[np.linalg.norm(pooled, axis=1) > 0]
    k = max(1, min(n_components, rows.shape[0] - 1, pooled.shape[1] - 1))
    # Not centred: the leading direction keeps the cells' shared text direction, so cosines between projected
    # cells stay close to those between full vectors (centring re-weighted the text view and cost accuracy).
    mean = np.zeros(pooled.shape[1], dtype=np.float32)
    if rows.shape[0] < 2:
        return TextProjection(mean=mean, components=np.eye(k, pooled.shape[1], dtype=np.float32))
    svd = TruncatedSVD(n_components=k, algorithm="randomized", random_state=seed).fit(rows)
    return TextProjection(mean=mean, components=svd.components_.astype(np.float32))
