"""Records returned by similarity searches over genes and reference cells."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas._base import Record
from schemas._genes import Species


class GeneHit(Record):
    """One gene returned by a gene similarity search.

    Parameters
    ----------
    rank
        Position in the result, from 1.
    symbol
        Official gene symbol.
    species
        Species of the gene.
    similarity
        Cosine similarity between the gene's description vector and the query vector.
    entrez_id
        NCBI Gene id, when known.
    name
        The gene's full name (empty when the catalog does not know the gene).
    summary
        The first sentence of the gene's description after its name (empty when it has no summary).
    """

    rank: int = Field(ge=1)
    symbol: str
    species: Species
    similarity: float
    entrez_id: int | None = None
    name: str = ""
    summary: str = ""


class GeneSearch(Record):
    """A gene similarity search: how the query was read and what it found.

    Parameters
    ----------
    query
        The query as given.
    kind
        ``"symbol"``: the neighbours of a gene's description vector; ``"text"``: free text embedded with the
        gene collection's encoder.
    symbol
        The official symbol the query resolved to (``kind="symbol"`` only).
    query_indexed
        Whether the query gene's own vector was read from the store (``False``: its description was embedded
        for this query only).
    encoder
        Encoder id of the gene collection searched.
    species
        Species searched.
    n_indexed
        Number of genes of that species with a vector in the store: the search covers these only.
    hits
        The nearest genes, best first (the query gene itself excluded).
    """

    query: str
    kind: Literal["symbol", "text"]
    symbol: str | None = None
    query_indexed: bool = True
    encoder: str
    species: Species
    n_indexed: int = Field(ge=0)
    hits: list[GeneHit] = Field(default_factory=list)


class GeneFrequency(Record):
    """How often a gene is among the top genes of a label's reference cells.

    Parameters
    ----------
    symbol
        Gene symbol.
    n_cells
        Number of the label's cells that have the gene among their stored top genes.
    fraction
        ``n_cells`` divided by the label's number of cells.
    """

    symbol: str
    n_cells: int = Field(ge=0)
    fraction: float = Field(ge=0, le=1)


class GeneEnrichment(Record):
    """A gene distinctive of a label: more often among its cells' top genes than among the other labels'.

    Parameters
    ----------
    symbol
        Gene symbol.
    n_cells
        Number of the label's cells that have the gene among their stored top genes.
    fraction
        ``n_cells`` divided by the label's number of cells.
    other_fraction
        The same fraction in the other labels, averaged over them (each label weighs the same, whatever
        its size).
    enrichment
        The ranking score, ``fraction * ln((fraction + 0.01) / (other_fraction + 0.01))``: large for a gene
        in the top genes of most of the label's cells and of few other cells (positive: only genes more
        frequent in the label than elsewhere are listed).
    """

    symbol: str
    n_cells: int = Field(ge=0)
    fraction: float = Field(ge=0, le=1)
    other_fraction: float = Field(ge=0, le=1)
    enrichment: float = Field(gt=0)


class LabelSummary(Record):
    """One label of a reference: its cells, their distinctive genes and their most frequent top genes.

    Parameters
    ----------
    label
        Cell type label.
    n_cells
        Number of reference cells with the label (matching the filter, when one was given).
    top_genes
        The genes most often in the cells' stored top genes (top 20 by expression), most frequent first:
        mostly genes every cell expresses (MALAT1, MT-*, ribosomal proteins).
    distinctive_genes
        The genes whose share of the label's cells (among their stored top genes) most exceeds their share
        in the other labels (:class:`GeneEnrichment`), most enriched first; empty when the summary covers
        one label only.
    """

    label: str
    n_cells: int = Field(ge=0)
    top_genes: list[GeneFrequency] = Field(default_factory=list)
    distinctive_genes: list[GeneEnrichment] = Field(default_factory=list)
