"""Where the gene description files live in the data folder and how they are read.

Includes the mouse genes' fallback text: the RefSeq summary of their best-supported human ortholog
(HGNC HCOP).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pandas as pd

from indexer._errors import DataError
from schemas import Species

GENE_INFO_NAME: Final = {"human": "Homo_sapiens.gene_info.gz", "mouse": "Mus_musculus.gene_info.gz"}
TAX_ID: Final = {"human": "9606", "mouse": "10090"}
ORTHOLOG_TABLE: Final = "orthologs/human_mouse_hcop_fifteen_column.txt.gz"
"""Path of the HGNC HCOP human-mouse ortholog table inside the data folder."""


def gene_info_path(species: Species) -> str:
    """Return the path of the species' NCBI ``gene_info`` file inside the data folder.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    A path relative to the data folder, e.g. ``"gene_text/Homo_sapiens.gene_info.gz"``.
    """
    return f"gene_text/{GENE_INFO_NAME[species]}"


def summaries_path(species: Species) -> str:
    """Return the path of the species' RefSeq summary table inside the data folder.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    A path relative to the data folder, e.g. ``"gene_text/refseq_summaries_human_by_symbol.tsv.gz"``.
    """
    return f"gene_text/refseq_summaries_{species}_by_symbol.tsv.gz"


def data_file(relative: str, *, species: Species, data_dir: Path) -> Path:
    """Return ``data_dir / relative``, or raise a :class:`DataError` that says how to get the file.

    Parameters
    ----------
    relative
        Path inside the data folder.
    species
        Species the file is needed for (named in the fix).
    data_dir
        The data folder.

    Returns
    -------
    The absolute path of an existing file.

    Raises
    ------
    DataError
        When the folder or the file does not exist.
    """
    path = data_dir / relative
    if not data_dir.is_dir():
        msg = (
            f"gene data folder {str(data_dir)!r} does not exist; run "
            f"`cellvec genes fetch --species {species}` or set CELLVEC_DATA_DIR to the folder "
            "that holds gene_text/, orthologs/ and housekeeping/"
        )
        raise DataError(msg)
    if not path.is_file():
        msg = (
            f"gene data file {relative!r} is missing from {str(data_dir)!r}; run "
            f"`cellvec genes fetch --species {species} --out {data_dir}` or set CELLVEC_DATA_DIR to a folder "
            "that has it"
        )
        raise DataError(msg)
    return path


def read_tsv(path: Path, *, usecols: Sequence[str] | None = None) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, quoting=3, usecols=usecols, low_memory=False
        )
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as e:
        msg = f"cannot read {str(path)!r} as a tab-separated table ({e}); fetch it again with `cellvec genes fetch`"
        raise DataError(msg) from e
    return frame


def clean(value: str) -> str:
    value = value.strip()
    return "" if value == "-" else value


def support_count(value: str) -> int:
    return len([s for s in value.split(",") if s.strip()])


def mouse_ortholog_summaries(data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Return the best-supported human ortholog's summary for each mouse gene (by Entrez id and by symbol)."""
    table = data_file(ORTHOLOG_TABLE, species="mouse", data_dir=data_dir)
    human = data_file(summaries_path("human"), species="human", data_dir=data_dir)
    hcop = read_tsv(
        table, usecols=["human_entrez_gene", "human_symbol", "mouse_entrez_gene", "mouse_symbol", "support"]
    )
    summaries = read_tsv(human, usecols=["entrez_id", "symbol", "summary"])
    summaries = summaries[summaries["summary"].str.strip() != ""]
    by_id = dict(zip(summaries["entrez_id"], summaries["summary"], strict=True))
    by_symbol = dict(zip(summaries["symbol"], summaries["summary"], strict=True))
    text = hcop["human_entrez_gene"].map(by_id)
    text = text.fillna(hcop["human_symbol"].map(by_symbol))
    hcop = hcop.assign(text=text, n_support=hcop["support"].map(support_count))
    hcop = hcop[hcop["text"].notna()].sort_values("n_support", ascending=False, kind="stable")
    best_id = hcop[hcop["mouse_entrez_gene"] != "-"].drop_duplicates("mouse_entrez_gene")
    best_sym = hcop[hcop["mouse_symbol"] != "-"].drop_duplicates("mouse_symbol")
    return (
        dict(zip(best_id["mouse_entrez_gene"], best_id["text"], strict=True)),
        dict(zip(best_sym["mouse_symbol"], best_sym["text"], strict=True)),
    )
