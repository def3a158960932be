"""Records describing genes and their embedded descriptions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas._base import Record

Species = Literal["human", "mouse"]
"""Species cellvec has gene descriptions for."""

TextSource = Literal["own_summary", "ortholog_summary", "full_name", "none"]
"""Where a gene's description came from, best first."""


class GeneText(Record):
    """The description of one gene, as embedded.

    Parameters
    ----------
    symbol
        Official gene symbol (case as NCBI spells it for the species).
    species
        Species of the gene.
    entrez_id
        NCBI Gene id, when known.
    full_name
        NCBI full name (the ``description`` column of ``gene_info``).
    text
        The text that is embedded: ``"SYMBOL: full name. summary"``.
    source
        Where the summary came from.
    """

    symbol: str
    species: Species
    entrez_id: int | None = None
    full_name: str = ""
    text: str
    source: TextSource


class GeneRecord(Record):
    """Payload of one point of a gene collection.

    Parameters
    ----------
    symbol
        Official gene symbol.
    species
        Species of the gene.
    entrez_id
        NCBI Gene id, when known.
    text
        The embedded text.
    text_sha256
        SHA-256 of ``text``; an unchanged hash is never embedded again.
    source
        Where the description came from.
    encoder
        Encoder id that produced the vector.
    """

    symbol: str
    species: Species
    entrez_id: int | None = None
    text: str
    text_sha256: str = Field(min_length=64, max_length=64)
    source: TextSource
    encoder: str
