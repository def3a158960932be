"""Records describing how a dataset's genes map to symbols and how many have a description."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_serializer, field_validator

from schemas._base import Record
from schemas._genes import Species
from schemas._species import SpeciesCall

IdKind = Literal["symbol", "ensembl", "entrez"]
"""What a dataset's gene names are: gene symbols, Ensembl gene ids or NCBI Entrez ids."""


class GeneCount(Record):
    """A gene and how often it was counted.

    Parameters
    ----------
    name
        The name as the dataset writes it (the official symbol where it maps).
    count
        How many cells had it among their top genes.
    """

    name: str
    count: int = Field(ge=0)


class GeneMapping(Record):
    """How a dataset's ``var`` maps to official gene symbols.

    Parameters
    ----------
    symbols
        Official symbol for each ``var`` row, in order; ``""`` where the name did not map or repeats a symbol
        mapped by an earlier row. Read-only object array.
    species
        Species whose gene data was used.
    id_kind
        What the names were.
    gene_column
        The ``var`` column that held the names, or ``None`` for ``var_names``.
    n_genes
        Number of ``var`` rows.
    n_mapped
        Rows with a symbol (``symbols != ""``).
    n_duplicates
        Rows whose symbol was already mapped by an earlier row and were therefore left unmapped.
    duplicate_examples
        Up to 10 symbols that several rows mapped to.
    unmapped_examples
        Up to 10 unmapped names, most highly expressed (total over cells) first.
    species_call
        How ``species`` was decided.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    symbols: np.ndarray
    species: Species
    id_kind: IdKind
    gene_column: str | None = None
    n_genes: int = Field(ge=0)
    n_mapped: int = Field(ge=0)
    n_duplicates: int = Field(default=0, ge=0)
    duplicate_examples: list[str] = Field(default_factory=list)
    unmapped_examples: list[str] = Field(default_factory=list)
    species_call: SpeciesCall | None = None

    @field_validator("symbols", mode="before")
    @classmethod
    def _object_array(cls, value: Any) -> np.ndarray:
        arr = np.array(value, dtype=object).reshape(-1)
        arr.flags.writeable = False
        return arr

    @field_serializer("symbols")
    def _symbols_list(self, value: np.ndarray) -> list[str]:
        return [str(v) for v in value]

    def summary(self) -> str:
        """Return one line that says how many genes mapped and which frequent ones did not.

        Returns
        -------
        E.g. ``"18,203 of 21,649 genes (84.1%) map to human symbols; frequent unmapped: AC1, AC2"``.
        """
        share = self.n_mapped / self.n_genes if self.n_genes else 0.0
        line = (
            f"{self.n_mapped:,} of {self.n_genes:,} genes ({share:.1%}) map to {self.species} symbols "
            f"(names were {self.id_kind}s)"
        )
        if self.n_duplicates:
            line += f"; {self.n_duplicates:,} rows repeat an earlier row's symbol and were left out"
        if self.unmapped_examples:
            line += "; frequent unmapped: " + ", ".join(self.unmapped_examples)
        return line


class CoverageReport(Record):
    """How many of the cells' top expressed genes have a description, by source.

    The five shares (own summary, ortholog summary, only a full name, nothing, mitochondrial) sum to 1.
    Mitochondrial genes are counted apart from the others, whatever text they have.

    Parameters
    ----------
    species
        Species whose gene data was used.
    top_n
        Genes counted per cell (its ``top_n`` highest values; zeros never count).
    n_cells
        Cells in the dataset.
    n_genes
        Genes in the dataset.
    n_mapped
        Genes that mapped to an official symbol.
    n_counted
        Gene occurrences counted over all cells (at most ``n_cells * top_n``).
    share_own_summary
        Share of counted genes with a RefSeq summary of their own.
    share_ortholog_summary
        Share described by the human ortholog's summary (mouse only).
    share_full_name
        Share with only a full name.
    share_none
        Share with no text at all (unmapped names included).
    share_mitochondrial
        Share of mitochondrial genes (``MT-``/``mt-``).
    missing
        Up to 20 most frequent genes without text, with their counts.
    mitochondrial
        Mitochondrial genes among the top genes, with their counts.
    """

    species: Species
    top_n: int = Field(gt=0)
    n_cells: int = Field(ge=0)
    n_genes: int = Field(ge=0)
    n_mapped: int = Field(ge=0)
    n_counted: int = Field(ge=0)
    share_own_summary: float = Field(ge=0, le=1)
    share_ortholog_summary: float = Field(ge=0, le=1)
    share_full_name: float = Field(ge=0, le=1)
    share_none: float = Field(ge=0, le=1)
    share_mitochondrial: float = Field(ge=0, le=1)
    missing: list[GeneCount] = Field(default_factory=list)
    mitochondrial: list[GeneCount] = Field(default_factory=list)

    def to_text(self) -> str:
        """Return the report as the lines ``cellvec genes coverage`` prints.

        Returns
        -------
        A multi-line string.
        """
        described = self.share_own_summary + self.share_ortholog_summary + self.share_full_name
        lines = [
            f"{self.n_cells:,} cells x {self.n_genes:,} genes; {self.n_mapped:,} genes map to {self.species} "
            f"symbols; top {self.top_n} genes per cell ({self.n_counted:,} counted)",
            f"  own summary        {self.share_own_summary:7.1%}",
            f"  ortholog summary   {self.share_ortholog_summary:7.1%}",
            f"  full name only     {self.share_full_name:7.1%}",
            f"  no text            {self.share_none:7.1%}",
            f"  mitochondrial      {self.share_mitochondrial:7.1%}",
            f"  some text (non-mitochondrial): {described:.1%}",
        ]
        if self.missing:
            lines.append(
                "most frequent genes without text: "
                + ", ".join(f"{g.name} ({g.count:,})" for g in self.missing)
            )
        if self.mitochondrial:
            lines.append(
                "mitochondrial genes: " + ", ".join(f"{g.name} ({g.count:,})" for g in self.mitochondrial)
            )
        return "\n".join(lines)


class FetchReport(Record):
    """What ``cellvec genes fetch`` downloaded; also written as ``FETCHED.json`` beside the files.

    Parameters
    ----------
    species
        Species fetched.
    out_dir
        Folder written (the layout of the data folder).
    fetched_at
        UTC date and time the fetch finished, ISO 8601.
    sources
        URL of each source: ``gene_info``, ``esummary`` and, for mouse, ``orthologs``.
    files
        Files written, relative to ``out_dir``.
    n_genes
        Genes in ``gene_info``.
    n_summaries
        Genes with a non-empty summary.
    n_requests
        E-utilities requests made by this run (retries included).
    n_retries
        Requests repeated after a 429, a 5xx or a malformed answer.
    n_resumed
        Gene ids skipped because an earlier, interrupted run had fetched them.
    """

    species: Species
    out_dir: str
    fetched_at: str
    sources: dict[str, str]
    files: list[str]
    n_genes: int = Field(ge=0)
    n_summaries: int = Field(ge=0)
    n_requests: int = Field(ge=0)
    n_retries: int = Field(ge=0)
    n_resumed: int = Field(ge=0)

    def to_text(self) -> str:
        """Return a short human-readable account of the fetch.

        Returns
        -------
        A multi-line string.
        """
        lines = [
            f"fetched {self.species} gene data into {self.out_dir} at {self.fetched_at}",
            f"  {self.n_genes:,} genes in gene_info, {self.n_summaries:,} with a summary",
            f"  {self.n_requests:,} E-utilities requests ({self.n_retries:,} retries), "
            f"{self.n_resumed:,} ids resumed from an earlier run",
        ]
        lines += [f"  {name}: {url}" for name, url in sorted(self.sources.items())]
        return "\n".join(lines)
