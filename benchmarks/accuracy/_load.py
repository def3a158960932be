"""One entry for every named benchmark dataset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.accuracy._datasets import DATASETS, PAPER_CLUSTERS, BenchDataset, load_pbmc68k, load_voigt
from benchmarks.accuracy._tran import load_tran_rgc
from indexer import InputError


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    clusters: Sequence[str] | None = None,
    paper_sizes: bool = False,
    tran_matrix: str | Path | None = None,
    tran_labels: str | Path | None = None,
    seed: int = 0,
) -> BenchDataset:
    """Return a named benchmark dataset (see :data:`DATASETS`).

    Parameters
    ----------
    name
        Dataset name.
    data_dir
        Data folder for Voigt and the Tran labels.
    clusters
        Cluster selection (``voigt-paper-sizes``, ``tran-rgc``).
    paper_sizes
        Subsample ``tran-rgc`` to the paper's sizes.
    tran_matrix
        ``RGC_Atlas.csv`` for ``tran-rgc``.
    tran_labels
        Label file for ``tran-rgc`` (default: the offline copy in the data folder).
    seed
        Subsampling seed.

    Returns
    -------
    The dataset.
    """
    if name == "pbmc68k":
        return load_pbmc68k()
    if name in ("voigt-coarse", "voigt-fine", "voigt-cross-donor"):
        return load_voigt(name.removeprefix("voigt-"), data_dir=data_dir)  # type: ignore[arg-type]
    if name == "voigt-paper-sizes":
        return load_voigt("paper-sizes", data_dir=data_dir, clusters=clusters, seed=seed)
    if name == "tran-rgc":
        if tran_matrix is None:
            msg = (
                "--dataset tran-rgc needs --tran-matrix RGC_Atlas.csv (about 1 GB, Broad SCP509); it is not "
                "available offline."
            )
            raise InputError(msg)
        if tran_labels is None:
            from indexer import Settings

            tran_labels = Path(data_dir or Settings().data_dir) / "datasets" / "tran2019_rgc_atlas_labels.txt.gz"
        return load_tran_rgc(
            tran_matrix, tran_labels, clusters=clusters or PAPER_CLUSTERS, paper_sizes=paper_sizes, seed=seed
        )
    msg = f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}."
    raise InputError(msg)
