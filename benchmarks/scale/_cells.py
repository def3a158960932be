"""Synthetic cells for the scale benchmark: per-class gene programs over real human symbols."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData


logger = logging.getLogger(__name__)

REFERENCE = "scale"
LABEL_KEY = "cell_type"
_CLASS_SEED = 20_240_601  # programs are the same for the reference and the queries


def pick_genes(n_genes: int, *, seed: int = _CLASS_SEED) -> list[str]:
    """Return ``n_genes`` real human symbols that have an NCBI summary, chosen reproducibly.

    Mitochondrial and ribosomal genes are left out so that pooling options do not change the panel.
    """
    from indexer import GeneCatalog

    catalog = GeneCatalog.load("human")
    symbols = catalog.symbols()
    src = catalog.sources(symbols)
    pool = [
        s
        for s, so in zip(symbols, src, strict=True)
        if so == "own_summary" and not s.startswith(("MT-", "RPL", "RPS")) and "-" not in s
    ]
    if len(pool) < n_genes:
        pool = [s for s in symbols if not s.startswith(("MT-", "RPL", "RPS"))]
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=min(n_genes, len(pool)), replace=False).tolist())


def synthetic_cells(
    n: int,
    symbols: Sequence[str],
    *,
    n_classes: int = 50,
    program_size: int = 30,
    n_shared: int = 40,
    n_noise: int = 15,
    seed: int = 0,
    class_seed: int = _CLASS_SEED,
    prefix: str = "c",
) -> AnnData:
    """Return ``n`` labelled cells x ``symbols`` of raw counts that cluster by class after pooling.

    Parameters
    ----------
    n
        Cells.
    symbols
        Gene symbols (``var_names``).
    n_classes
        Classes (``obs['cell_type']``: ``type00``, ``type01``…).
    program_size
        Program genes per class, each kept by a cell with probability 0.8 at a class-specific rate.
    n_shared
        Genes every cell expresses at a lower rate (housekeeping-like).
    n_noise
        Random genes per cell with a count of about 1.
    seed
        Seed of the cells.
    class_seed
        Seed of the programs; keep it fixed so that references and queries share them.
    prefix
        Prefix of the cell ids (``obs_names``).

    Returns
    -------
    Cells x genes, CSR float32 counts, ``obs['cell_type']`` categorical.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    g = len(symbols)
    crng = np.random.default_rng(class_seed)
    order = crng.permutation(g)
    shared = order[:n_shared]
    rest = order[n_shared:]
    programs = np.stack([crng.choice(rest, size=program_size, replace=False) for _ in range(n_classes)])
    rates = crng.uniform(4.0, 20.0, size=(n_classes, program_size))
    shared_rates = crng.uniform(1.0, 4.0, size=n_shared)
    rng = np.random.default_rng(seed)
    labels = rng.integers(n_classes, size=n)
    blocks = []
    chunk = 100_000
    for start in range(0, n, chunk):
        lab = labels[start : start + chunk]
        m = lab.size
        size = rng.lognormal(0.0, 0.3, size=m)[:, None]
        prog = rng.poisson(rates[lab] * size) * (rng.random((m, program_size)) < 0.8)
        sh = rng.poisson(shared_rates[None, :] * size)
        noise_cols = rng.integers(g, size=(m, n_noise))
        noise = 1 + rng.poisson(0.3, size=(m, n_noise))
        cols = np.hstack([programs[lab], np.broadcast_to(shared, (m, n_shared)), noise_cols])
        vals = np.hstack([prog, sh, noise]).astype(np.float32)
        rows = np.repeat(np.arange(m), cols.shape[1])
        block = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(m, g), dtype=np.float32)
        block.eliminate_zeros()
        blocks.append(block)
    x = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    names = np.char.add(prefix, np.arange(n).astype(str))
    obs = pd.DataFrame(
        {LABEL_KEY: pd.Categorical.from_codes(labels, [f"type{c:02d}" for c in range(n_classes)])},
        index=pd.Index(names, dtype=object),
    )
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=pd.Index(list(symbols), dtype=object)))
