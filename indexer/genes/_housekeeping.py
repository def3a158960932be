"""Housekeeping gene lists: genes expressed in every cell, which say little about its type."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

from indexer._errors import DataError, InputError
from indexer.genes._catalog import GeneCatalog
from indexer.genes._files import data_file
from schemas import Species

__all__ = ["HOUSEKEEPING_FILES", "load_housekeeping"]

HOUSEKEEPING_FILES: Final = {
    "human": "housekeeping/HK_genes_Eisenberg2013.tsv",
    "mouse": "housekeeping/Mouse_HK_genes_HRTAtlas.tsv",
}
"""Default list per species in the data folder: Eisenberg & Levanon 2013 (human), HRT Atlas v1.0 (mouse)."""

_SYMBOL_HEADERS: Final = {"gene_symbol", "gene", "symbol", "genes", "gene_name"}


def _read_first_column(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        msg = (
            f"cannot read the housekeeping list {str(path)!r} ({e}); "
            "give a text file with one symbol per line"
        )
        raise InputError(msg) from e
    names: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        first = stripped.split("\t")[0].split(",")[0].strip().strip('"')
        if i == 0 and first.lower() in _SYMBOL_HEADERS:
            continue
        if first:
            names.append(first)
    return names


def load_housekeeping(
    species: Species, *, data_dir: Path | None = None, path: Path | None = None
) -> frozenset[str]:
    """Load a housekeeping gene list as official symbols.

    Parameters
    ----------
    species
        ``"human"`` (Eisenberg & Levanon 2013, 3,804 genes) or ``"mouse"`` (HRT Atlas v1.0).
    data_dir
        Data folder; default ``Settings().data_dir``.
    path
        A user list instead of the default: one symbol per line, or a TSV/CSV whose first column holds
        symbols (a header named ``gene``, ``symbol`` or ``gene_symbol`` is skipped).

    Returns
    -------
    The official symbols (names resolved through :class:`GeneCatalog` where possible; names that do not
    resolve are kept as written).

    Raises
    ------
    DataError
        When the default list or the gene data is missing.
    InputError
        When ``path`` cannot be read or holds no names.

    Examples
    --------
    >>> hk = load_housekeeping("human")  # doctest: +SKIP
    >>> "GAPDH" in hk  # doctest: +SKIP
    True
    """
    if data_dir is None:
        from indexer._settings import Settings

        data_dir = Settings().data_dir
    if path is None:
        if species not in HOUSEKEEPING_FILES:
            msg = f"species {species!r} has no housekeeping list; use 'human' or 'mouse' or pass path="
            raise DataError(msg)
        source = data_file(HOUSEKEEPING_FILES[species], species=species, data_dir=data_dir)
    else:
        source = Path(path)
        if not source.is_file():
            msg = f"housekeeping list {str(source)!r} does not exist; give a file with one symbol per line"
            raise InputError(msg)
    names = list(dict.fromkeys(_read_first_column(source)))
    if not names:
        msg = f"housekeeping list {str(source)!r} holds no gene names; give one symbol per line"
        raise InputError(msg)
    catalog = GeneCatalog.load(species, data_dir=data_dir)
    resolved = catalog.resolve(names)
    return frozenset(np.where(resolved == "", np.asarray(names, dtype=object), resolved).tolist())
