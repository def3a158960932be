"""Where the gene description files live in the data folder and how they are read into gene entries.

Includes the mouse genes' fallback text: the RefSeq summary of their best-supported human ortholog
(HGNC HCOP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from indexer._errors import DataError
from schemas import Species, TextSource

if TYPE_CHECKING:
    import pandas as pd

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
    import pandas as pd

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


SOURCES: Final[tuple[TextSource, ...]] = ("own_summary", "ortholog_summary", "full_name", "none")
"""Text sources, best first."""


@dataclass(frozen=True)
class GeneEntry:
    """One gene as read from the files: its symbol, Entrez id, full name, text and where the text came from."""

    symbol: str
    entrez_id: int | None
    full_name: str
    summary: str
    source: TextSource


def read_genes(species: Species, data_dir: Path) -> tuple[dict[str, GeneEntry], dict[str, str], dict[str, set[str]]]:
    """Read a species' gene_info and summaries (and, for mouse, ortholog summaries) into gene entries.

    Returns
    -------
    The entry of each official symbol, the symbol of each Entrez and Ensembl id, and the symbols each
    alias (synonym or previous symbol) points to.
    """
    import pandas as pd

    info_file = data_file(gene_info_path(species), species=species, data_dir=data_dir)
    summary_file = data_file(summaries_path(species), species=species, data_dir=data_dir)
    info = read_tsv(info_file)
    info = info.rename(columns={"#tax_id": "tax_id"})
    required = {"GeneID", "Symbol", "Synonyms", "dbXrefs", "description"}
    if not required <= set(info.columns):
        msg = (
            f"{str(info_file)!r} lacks the gene_info columns {sorted(required - set(info.columns))}; "
            "fetch it again with `cellvec genes fetch`"
        )
        raise DataError(msg)
    if "tax_id" in info.columns:
        info = info[info["tax_id"] == TAX_ID[species]]
    summaries = read_tsv(summary_file)
    if not {"entrez_id", "symbol", "summary"} <= set(summaries.columns):
        msg = (
            f"{str(summary_file)!r} lacks the columns entrez_id, symbol, summary; "
            "fetch it again with `cellvec genes fetch`"
        )
        raise DataError(msg)
    summaries = summaries[(summaries["summary"].str.strip() != "") & (summaries["symbol"] != "")]
    summary_by_id = dict(zip(summaries["entrez_id"], summaries["summary"], strict=True))
    summary_name_by_id = dict(
        zip(
            summaries["entrez_id"],
            summaries.get("full_name", pd.Series("", index=summaries.index)),
            strict=True,
        )
    )

    ortholog_by_id: dict[str, str] = {}
    ortholog_by_symbol: dict[str, str] = {}
    if species == "mouse":
        ortholog_by_id, ortholog_by_symbol = mouse_ortholog_summaries(data_dir)

    # Official symbol: the nomenclature authority's (MT-ATP6, mt-Atp6) where NCBI's Symbol column differs.
    ncbi_symbol = info["Symbol"].to_numpy(dtype=object)
    authority = (
        info["Symbol_from_nomenclature_authority"].to_numpy(dtype=object)
        if "Symbol_from_nomenclature_authority" in info.columns
        else np.full(len(info), "-", dtype=object)
    )
    authority_name = (
        info["Full_name_from_nomenclature_authority"].to_numpy(dtype=object)
        if "Full_name_from_nomenclature_authority" in info.columns
        else np.full(len(info), "-", dtype=object)
    )
    gene_ids = info["GeneID"].to_numpy(dtype=object)
    descriptions = info["description"].to_numpy(dtype=object)
    types = (
        info["type_of_gene"].to_numpy(dtype=object)
        if "type_of_gene" in info.columns
        else np.full(len(info), "", dtype=object)
    )

    synonym_col = info["Synonyms"].to_numpy(dtype=object)
    xref_col = info["dbXrefs"].to_numpy(dtype=object)
    rows: list[tuple[int, int, int, GeneEntry, str, str, str]] = []
    for i in range(len(info)):
        gid = gene_ids[i]
        sym = ncbi_symbol[i]
        full = clean(descriptions[i])
        auth = clean(authority[i])
        if auth and auth != sym:
            sym, old = auth, sym
            full = clean(authority_name[i]) or full
        else:
            old = ""
            full = full or clean(authority_name[i])
        summary = summary_by_id.get(gid, "")
        full = full or clean(summary_name_by_id.get(gid, ""))
        source: TextSource
        if summary:
            source = "own_summary"
        else:
            summary = ortholog_by_id.get(gid, "") or ortholog_by_symbol.get(sym, "")
            source = "ortholog_summary" if summary else ("full_name" if full else "none")
        gene = GeneEntry(sym, int(gid) if gid.isdigit() else None, full, summary, source)
        rank = SOURCES.index(source)
        coding = 0 if types[i] == "protein-coding" else 1
        rows.append((rank, coding, i, gene, old, synonym_col[i], xref_col[i]))
    # Summaries of genes newer than gene_info.
    known_ids = set(gene_ids.tolist())
    extra = summaries[~summaries["entrez_id"].isin(known_ids)]
    for j, (gid, sym, syn, full, summ) in enumerate(
        zip(
            extra["entrez_id"],
            extra["symbol"],
            extra.get("Synonyms", pd.Series("", index=extra.index)),
            extra.get("full_name", pd.Series("", index=extra.index)),
            extra["summary"],
            strict=True,
        )
    ):
        gene = GeneEntry(sym, int(gid) if gid.isdigit() else None, clean(full), summ, "own_summary")
        rows.append((0, 0, len(info) + j, gene, "", syn, "-"))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))

    genes: dict[str, GeneEntry] = {}
    ids: dict[str, str] = {}
    alias_targets: dict[str, set[str]] = {}
    for _, _, _, gene, old, syn, xrefs in rows:
        if gene.symbol in genes:
            continue
        genes[gene.symbol] = gene
        if gene.entrez_id is not None:
            ids.setdefault(str(gene.entrez_id), gene.symbol)
        for xref in str(xrefs).split("|"):
            if xref.startswith("Ensembl:"):
                ids.setdefault(xref[len("Ensembl:") :], gene.symbol)
        aliases = [a for a in str(syn).split("|") if a and a != "-"]
        if old:
            aliases.append(old)
        for alias in aliases:
            alias_targets.setdefault(alias, set()).add(gene.symbol)
    return genes, ids, alias_targets
