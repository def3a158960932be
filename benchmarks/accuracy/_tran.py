"""The Tran 2019 mouse retinal ganglion cell atlas (SCP509): labels, cluster selection, matrix, loader."""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.accuracy._datasets import PAPER_CLUSTERS, PAPER_SIZES, BenchDataset, clean_labels, subsample_to_sizes
from indexer import InputError


def read_tran_labels(path: str | Path) -> pd.DataFrame:
    """Read a Tran 2019 ``RGC_Atlas_coordinates.txt`` (plain or gzipped), skipping its ``TYPE`` row.

    Parameters
    ----------
    path
        The label file.

    Returns
    -------
    A frame indexed by cell name with columns ``Cluster``, ``Subcluster``, ``SampleID``, ``BatchID`` …
    """
    path = Path(path)
    if not path.is_file():
        msg = f"Tran RGC label file {str(path)!r} does not exist; download RGC_Atlas_coordinates.txt (SCP509)."
        raise InputError(msg)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        text = fh.read()
    frame = pd.read_csv(io.StringIO(text), sep="\t", skiprows=[1], dtype=str)
    if "NAME" not in frame or "Cluster" not in frame:
        msg = f"{str(path)!r} is not an RGC_Atlas_coordinates.txt: it lacks the NAME and Cluster columns."
        raise InputError(msg)
    return frame.set_index("NAME")


def select_tran_clusters(labels: pd.DataFrame, clusters: Sequence[str]) -> pd.Series:
    """Map the paper's cluster names (``C22``) to atlas clusters (``22_M5``) and select their cells.

    Parameters
    ----------
    labels
        Output of :func:`read_tran_labels`.
    clusters
        Names like ``C22`` (or ``22``, or the full ``22_M5``).

    Returns
    -------
    The full cluster name of each selected cell, indexed by cell name, in file order.
    """
    cl = labels["Cluster"].astype(str)
    number = cl.str.split("_", n=1).str[0]
    mask = np.zeros(len(cl), dtype=bool)
    for c in clusters:
        want = c[1:] if c[:1] in ("C", "c") and c[1:].isdigit() else c
        hit = ((number == want) | (cl == want)).to_numpy()
        if not hit.any():
            known = ", ".join(sorted(set(cl), key=lambda s: (len(s.split("_")[0]), s))[:10])
            msg = f"cluster {c!r} matches no cell in the atlas; clusters look like C22 or {known}, …"
            raise InputError(msg)
        mask |= hit
    return cl[mask]


def read_tran_matrix(path: str | Path, cells: Sequence[str]) -> ad.AnnData:
    """Read the selected cells' columns of a Tran 2019 ``RGC_Atlas.csv`` (genes x cells).

    Parameters
    ----------
    path
        The CSV: header ``<gene column>,cell1,cell2,…``; one gene per row, its symbol in the first column.
    cells
        Cell names to read (only these columns are parsed).

    Returns
    -------
    Cells x genes AnnData (sparse float32), cells in the order given.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"Tran RGC matrix {str(path)!r} does not exist; download RGC_Atlas.csv from SCP509 (~1 GB)."
        raise InputError(msg)
    header = pd.read_csv(path, nrows=0).columns
    present = set(header[1:])
    missing = [c for c in cells if c not in present]
    if missing:
        msg = (
            f"{len(missing)} selected cells are not columns of {str(path)!r} (e.g. {missing[0]!r}); "
            "the label file and the matrix must come from the same atlas."
        )
        raise InputError(msg)
    want = [header[0], *cells]
    frame = pd.read_csv(path, usecols=want, index_col=0, dtype=dict.fromkeys(cells, np.float32), engine="c")
    frame = frame[list(cells)]
    out = ad.AnnData(
        X=sp.csr_matrix(frame.to_numpy().T),
        obs=pd.DataFrame(index=pd.Index(list(cells), dtype=str)),
        var=pd.DataFrame(index=frame.index.astype(str)),
    )
    out.var_names_make_unique()
    return out


def load_tran_rgc(
    matrix_path: str | Path,
    labels_path: str | Path,
    *,
    clusters: Sequence[str] = PAPER_CLUSTERS,
    paper_sizes: bool = False,
    seed: int = 0,
) -> BenchDataset:
    """Return the Tran 2019 mouse RGC atlas restricted to ``clusters`` (see the module docstring).

    Parameters
    ----------
    matrix_path
        ``RGC_Atlas.csv`` (genes x cells).
    labels_path
        ``RGC_Atlas_coordinates.txt`` (gzipped is fine).
    clusters
        Paper cluster names, e.g. ``C22``.
    paper_sizes
        Subsample to the paper's sizes (165, 138, 117, 92, 69, 27 in the order of ``clusters``).
    seed
        Subsampling seed.

    Returns
    -------
    The dataset, labels in ``obs['cluster']`` (full names like ``22_M5``), species mouse.
    """
    selected = select_tran_clusters(read_tran_labels(labels_path), clusters)
    adata = read_tran_matrix(matrix_path, list(selected.index))
    adata.obs["cluster"] = selected.to_numpy()
    adata = clean_labels(adata, "cluster")
    details: dict[str, object] = {"clusters": list(clusters)}
    if paper_sizes:
        full = []
        for c in clusters:
            num = c[1:] if c[:1] in ("C", "c") else c
            full.append(next(x for x in adata.obs["cluster"].unique() if x.split("_")[0] == num or x == c))
        adata = subsample_to_sizes(adata, label_key="cluster", classes=full, sizes=PAPER_SIZES[: len(full)], seed=seed)
        details["sizes"] = list(PAPER_SIZES[: len(full)])
    counts = adata.obs["cluster"].value_counts().to_dict()
    return BenchDataset(
        name="tran-rgc",
        adata=adata,
        label_key="cluster",
        species="mouse",
        description=(
            "Tran et al. 2019 mouse RGC atlas (SCP509 / GSE137400), clusters "
            + ", ".join(f"{k} ({v})" for k, v in counts.items())
            + ". Stratified 80/20 split per seed."
        ),
        details=details,
    )
