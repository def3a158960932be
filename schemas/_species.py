"""Records of which species a dataset's genes are, and of how a query was mapped onto another species."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas._base import Record
from schemas._genes import Species

SpeciesOption = Literal["auto", "human", "mouse"]
"""A species, or ``"auto"``: infer it from the gene names (the default everywhere)."""

Evidence = Literal["ensembl", "genome_prefix", "entrez", "symbols", "given"]
"""What decided a :class:`SpeciesCall`."""


class SpeciesCall(Record):
    """The species of a list of gene names, and the evidence for it (in build records and ``uns['cellvec']``).

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    share
        Share of the names supporting ``species``: for catalog evidence, the share of all names that resolve
        in that species' catalog; for prefixes, the share of prefixed names with its prefix.
    n_names
        Number of names looked at.
    evidence
        ``"ensembl"``, ``"genome_prefix"``, ``"entrez"``, ``"symbols"`` (catalog resolution), or ``"given"``
        (an explicit species the names could not confirm or refute).
    shares
        Share of the names resolving in each species' catalog (empty for prefix evidence).
    decisive
        Whether the evidence is strong enough that an explicit, different species is an error.
    """

    species: Species
    share: float = Field(ge=0, le=1)
    n_names: int = Field(ge=0)
    evidence: Evidence
    shares: dict[str, float] = Field(default_factory=dict)
    decisive: bool = False

    def summary(self) -> str:
        """Return the one-line report, e.g. ``"species: mouse (inferred from 99% of 19,371 gene names)"``."""
        if self.evidence == "given":
            return f"species: {self.species} (given; the {self.n_names:,} gene names do not decide)"
        what = {
            "ensembl": "Ensembl gene ids",
            "genome_prefix": "genome-prefixed gene names",
            "entrez": "Entrez gene ids",
            "symbols": "gene names",
        }[self.evidence]
        return f"species: {self.species} (inferred from {self.share:.0%} of {self.n_names:,} {what})"


class OrthologReport(Record):
    """How a query's genes were mapped onto a reference of another species (``uns`` and the CLI output).

    Parameters
    ----------
    query_species, reference_species
        The two species.
    n_query_genes
        ``var`` rows of the query.
    n_resolved
        Rows whose name resolved to an official query-species symbol.
    n_with_ortholog
        Rows with an HCOP ortholog in the reference species (in the reference's gene list or not).
    n_mapped
        Rows mapped onto one of the reference's genes.
    n_one_to_one
        Mapped rows whose pair is reciprocal one-to-one in HCOP.
    n_one_to_many
        Mapped rows whose gene has several reference-species orthologs (the best ranked one was taken).
    n_many_to_one
        Mapped rows that share their reference gene with another row (their expression is summed).
    n_reference_genes
        Genes the query was mapped onto (the reference species' catalog).
    n_reference_covered
        Reference genes that received at least one query gene.
    expression_mass_share
        Share of the query's expression (counts per 10k) carried by the mapped rows.
    ortholog_mass_share
        Share carried by rows with any reference-species ortholog: the species-level quality of the mapping.
    unmapped_examples
        Up to 10 unmapped names, most expressed first.
    """

    query_species: Species
    reference_species: Species
    n_query_genes: int = Field(ge=0)
    n_resolved: int = Field(ge=0)
    n_with_ortholog: int = Field(ge=0)
    n_mapped: int = Field(ge=0)
    n_one_to_one: int = Field(ge=0)
    n_one_to_many: int = Field(ge=0)
    n_many_to_one: int = Field(ge=0)
    n_reference_genes: int = Field(ge=0)
    n_reference_covered: int = Field(ge=0)
    expression_mass_share: float = Field(ge=0, le=1)
    ortholog_mass_share: float = Field(ge=0, le=1)
    unmapped_examples: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """Return the one-line report printed by ``cellvec annotate``."""
        return (
            f"orthologs: {self.n_mapped:,} of {self.n_query_genes:,} {self.query_species} genes mapped onto "
            f"{self.n_reference_covered:,} {self.reference_species} genes through HCOP "
            f"({self.n_one_to_one:,} one-to-one, {self.n_one_to_many:,} one-to-many, {self.n_many_to_one:,} "
            f"summed); they carry {self.expression_mass_share:.0%} of the query's expression"
        )
