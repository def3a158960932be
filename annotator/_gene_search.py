"""Similarity search over the gene collection: the nearest descriptions to a gene's own, or to free text.

The search covers the genes already embedded in the store for that encoder (``cellvec genes index --all``
fills it; ``--genes FILE`` adds a subset); free text is embedded with the same encoder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np

from indexer import GeneCatalog, InputError, Settings, StoreError, VectorStore, get_encoder
from indexer.genes import GENE_VECTOR, gene_collection_name, gene_point_id
from schemas import GeneHit, GeneSearch, Species

logger = logging.getLogger(__name__)

QueryKind = Literal["auto", "symbol", "text"]
"""How a gene query is read: decided from its form (``"auto"``), a gene symbol, or free text."""

_WORD = re.compile(r"^[a-z]+$")
_PROVIDED = re.compile(r"\s*\[provided by [^\]]*\]\.?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def search_genes(
    query: str,
    *,
    store: VectorStore,
    encoder: str | None = None,
    species: Species = "human",
    limit: int = 10,
    kind: QueryKind = "auto",
    data_dir: Path | None = None,
) -> list[GeneHit]:
    """Return the genes whose description vectors are nearest to a gene or to free text.

    A query that is one word and resolves through the gene catalog (official symbol, case variant,
    synonym, Ensembl or Entrez id) is a gene: its neighbours are searched, itself excluded. One word
    that looks like a symbol but resolves to no gene is refused with near-miss suggestions. Several
    words, or one plain lower-case word that is no gene, are free text, embedded with the collection's
    encoder. Only genes already embedded in the store for ``encoder`` and ``species`` are searched:
    ``cellvec genes index --all`` embeds every described gene (``--genes FILE`` a subset). A query gene
    that is known but not embedded yet has its description embedded for this query only.

    Parameters
    ----------
    query
        A gene symbol (or synonym, Ensembl or Entrez id) or free text such as
        ``"axon regeneration after optic nerve injury"``.
    store
        Store holding the gene collection.
    encoder
        Encoder id of the gene collection (the query text is embedded with it); default ``CELLVEC_ENCODER``
        (``minilm``).
    species
        Species of the genes searched.
    limit
        Number of genes returned.
    kind
        ``"auto"`` decides from the query's form as described above; ``"symbol"`` or ``"text"`` force it.
    data_dir
        Gene description data folder (default ``Settings().data_dir``).

    Returns
    -------
    The nearest genes, best first.

    Raises
    ------
    InputError
        An empty query, a ``limit`` below 1, or a symbol-like word that is no known gene (with suggestions).
    StoreError
        The store has no vectors of ``encoder`` for ``species``.

    Examples
    --------
    >>> hits = search_genes("RHO", store=open_store("./store"))  # doctest: +SKIP
    >>> [h.symbol for h in hits[:3]]  # doctest: +SKIP
    ['GNAT1', 'SAG', 'PDE6B']
    """
    return gene_search(
        query, store=store, encoder=encoder, species=species, limit=limit, kind=kind, data_dir=data_dir
    ).hits


def gene_search(
    query: str,
    *,
    store: VectorStore,
    encoder: str | None = None,
    species: Species = "human",
    limit: int = 10,
    kind: QueryKind = "auto",
    data_dir: Path | None = None,
) -> GeneSearch:
    """Run :func:`search_genes` and return the hits with how the query was read (for the CLI).

    Parameters
    ----------
    query, store, encoder, species, limit, kind, data_dir
        As for :func:`search_genes`.

    Returns
    -------
    The query's reading (symbol or text), the number of genes searched and the hits.
    """
    if limit < 1:
        msg = f"limit must be at least 1 (got {limit}); pass --limit 10, for example."
        raise InputError(msg)
    enc = get_encoder(encoder or Settings().encoder)
    collection = gene_collection_name(enc.id)
    n_indexed = store.count(collection, where={"species": species}) if store.has_collection(collection) else 0
    if n_indexed == 0:
        msg = (
            f"store '{store.location}' has no {species} gene vectors for encoder '{enc.id}'; embed them with "
            f"`cellvec genes index --all --encoder {enc.id} --species {species}` "
            "(or --genes FILE for a subset)."
        )
        raise StoreError(msg)
    catalog = GeneCatalog.load(species, data_dir=data_dir)
    read_as, symbol = _read_query(query, catalog, kind)
    indexed = True
    if read_as == "symbol":
        assert symbol is not None
        points = store.retrieve(collection, [gene_point_id(species, symbol)], with_vectors=[GENE_VECTOR])
        if points:
            vector = points[0].vectors[GENE_VECTOR]
        else:
            gt = catalog.gene_text(symbol)
            if gt is None:
                msg = f"gene '{symbol}' has no description to compare; search another gene or free text."
                raise InputError(msg)
            logger.info("%s is not embedded in the store; embedding its description for this query", symbol)
            vector = enc.embed_batch([gt.text])[0]
            indexed = False
    else:
        vector = enc.embed_batch([query.strip()])[0]
    res = store.query(
        collection, np.asarray(vector, dtype=np.float32)[None, :], using=GENE_VECTOR, limit=limit + 1,
        where={"species": species}, payload_fields=["symbol", "species", "entrez_id", "text"],
    )
    hits: list[GeneHit] = []
    for payload, score in zip(res.payloads[0], res.scores[0], strict=False):
        if payload["symbol"] == symbol or len(hits) == limit:
            continue
        name, summary = _describe(payload["symbol"], payload.get("text", ""), catalog)
        hits.append(GeneHit(
            rank=len(hits) + 1, symbol=payload["symbol"], species=payload["species"], similarity=float(score),
            entrez_id=payload.get("entrez_id"), name=name, summary=summary,
        ))
    return GeneSearch(
        query=query, kind=read_as, symbol=symbol, query_indexed=indexed, encoder=enc.id, species=species,
        n_indexed=n_indexed, hits=hits,
    )


def _read_query(
    query: str, catalog: GeneCatalog, kind: QueryKind
) -> tuple[Literal["symbol", "text"], str | None]:
    """Decide whether a query is a gene symbol or free text; refuse unknown symbol-like words."""
    q = query.strip()
    if not q:
        msg = "the gene query is empty; pass a gene symbol (e.g. RHO) or a few words of free text."
        raise InputError(msg)
    words = q.split()
    if kind == "text":
        return "text", None
    if kind == "symbol" and len(words) > 1:
        msg = f"'{q}' is several words, not a gene symbol; drop --as symbol to search it as free text."
        raise InputError(msg)
    if len(words) > 1:
        return "text", None
    symbol = str(catalog.resolve([q])[0])
    if symbol:
        return "symbol", symbol
    if kind == "auto" and _WORD.match(q):
        return "text", None
    hints = catalog.suggest(q)
    did_you_mean = f"did you mean {', '.join(hints)}? " if hints else ""
    msg = (
        f"'{q}' is not a known {catalog.species} gene symbol, synonym or id; {did_you_mean}"
        "to search it as free text, pass --as text (kind='text')."
    )
    raise InputError(msg)


def _describe(symbol: str, text: str, catalog: GeneCatalog) -> tuple[str, str]:
    """Split a stored ``"SYMBOL: full name. summary"`` into the name and the summary's first sentence."""
    gt = catalog.gene_text(symbol) if symbol in catalog else None
    body = text[len(symbol) + 1 :].strip() if text.startswith(f"{symbol}:") else text.strip()
    name = gt.full_name.strip() if gt is not None else ""
    if name and body.startswith(name):
        rest = body[len(name) :].lstrip(". ").strip()
    else:
        head, _, rest = body.partition(". ")
        name = name or head.rstrip(".")
    rest = _PROVIDED.sub("", rest)
    first = _SENTENCE_END.split(rest, maxsplit=1)[0].strip() if rest else ""
    return name, first


# ------------------------------------------------------------------------------------------------ cells
