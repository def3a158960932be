"""Similarity search over the gene collection and over a reference's cells.

Genes: the nearest description vectors to a gene's own, or to free text embedded with the same encoder. The
search covers the genes already embedded in the store for that encoder (``cellvec genes index --all`` fills
it; ``--genes FILE`` adds a subset). Cells: the reference cells nearest to one query cell (encoded exactly
as :func:`annotator.annotate` encodes it), or to a label's centroid, and a per-label summary of the cells'
stored top genes.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from indexer import (
    CELL_VECTOR,
    GeneCatalog,
    InputError,
    StoreError,
    VectorStore,
    encode_cells,
    gene_collection_name,
    gene_point_id,
    get_encoder,
    load_artifacts,
    load_manifest,
    log_normalise,
    resolve_version,
    version_collection,
)
from indexer.genes._index import GENE_VECTOR
from indexer.cells._validate import expression_matrix
from schemas import BuildRecord, Neighbour, ReferenceCellPayload, Species
from schemas._search import GeneFrequency, GeneHit, GeneSearch, LabelSummary

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

QueryKind = Literal["auto", "symbol", "text"]
"""How a gene query is read: decided from its form (``"auto"``), a gene symbol, or free text."""

_WORD = re.compile(r"^[a-z]+$")
_PROVIDED = re.compile(r"\s*\[provided by [^\]]*\]\.?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_PAYLOAD_FIELDS = tuple(ReferenceCellPayload.model_fields)


# ------------------------------------------------------------------------------------------------ genes


def search_genes(
    query: str,
    *,
    store: VectorStore,
    encoder: str = "minilm",
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
        Encoder id of the gene collection (the query text is embedded with it).
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
    encoder: str = "minilm",
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
    enc = get_encoder(encoder)
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


def search_cells(
    adata: AnnData,
    *,
    cell: str,
    reference: str,
    store: VectorStore,
    limit: int = 10,
    where: Mapping[str, str | Sequence[str]] | None = None,
    version: int | None = None,
    data_dir: Path | None = None,
    gene_column: str | None = None,
) -> list[Neighbour]:
    """Return the reference cells nearest to one query cell.

    The query cell is encoded exactly as :func:`annotator.annotate` encodes it: with the reference
    version's build record and fitted artefacts (pooling, idf, whitening, expression projection, SupCon
    encoder), and normalised as the whole AnnData would be (counts or log-normalised is decided on the
    whole matrix, not on the one cell).

    Parameters
    ----------
    adata
        Query cells by genes (counts or log-normalised).
    cell
        The ``obs_names`` entry of the query cell.
    reference
        Reference name.
    store
        Store holding the reference.
    limit
        Number of neighbours returned.
    where
        Payload filter: ``{field: value}`` or ``{field: [values]}`` on ``label``, ``dataset``, ``cell_id``,
        ``reference`` or ``top_genes`` (a cell matches when the gene is among its top genes).
    version
        Reference version (default: the current one).
    data_dir
        Gene description data folder.
    gene_column
        ``var`` column with gene names, instead of ``var_names``.

    Returns
    -------
    The nearest reference cells, best first (the cell itself when it is in the reference).

    Raises
    ------
    InputError
        Unknown cell id, unknown filter field or label, ``limit`` below 1, or a cell without any described
        expressed gene.

    Examples
    --------
    >>> hits = search_cells(query, cell="AAACCTG-1", reference="retina", store=store)  # doctest: +SKIP
    >>> hits[0].label  # doctest: +SKIP
    'rod'
    """
    record, collection = _reference(store, reference, version)
    flt = _check_where(where, record)
    _check_limit(limit)
    vector = query_cell_vector(
        adata, cell, record=record, store=store, data_dir=data_dir, gene_column=gene_column
    )
    return _nearest(store, collection, vector, limit=limit, where=flt)


def typical_cells(
    label: str,
    *,
    reference: str,
    store: VectorStore,
    limit: int = 10,
    where: Mapping[str, str | Sequence[str]] | None = None,
    version: int | None = None,
    any_label: bool = False,
) -> list[Neighbour]:
    """Return the reference cells nearest to a label's centroid: the most typical cells of a type.

    The centroid is the normalised mean of the stored (searched) vectors of the label's cells.

    Parameters
    ----------
    label
        A label of the reference.
    reference
        Reference name.
    store
        Store holding the reference.
    limit
        Number of cells returned.
    where
        Extra payload filter (see :func:`search_cells`).
    version
        Reference version (default: the current one).
    any_label
        Search every cell, not only the label's own: shows which other cells sit near the type's centre.

    Returns
    -------
    The cells nearest to the centroid, best first.

    Examples
    --------
    >>> [n.cell_id for n in typical_cells("rod", reference="retina", store=store, limit=3)]  # doctest: +SKIP
    ['cell12', 'cell40', 'cell7']
    """
    record, collection = _reference(store, reference, version)
    _check_label(label, record)
    _check_limit(limit)
    flt = _check_where(where, record)
    centroid = label_centroids(store, collection, [label]).get(label)
    if centroid is None:
        return []
    if not any_label:
        flt = {**flt, "label": label}
    return _nearest(store, collection, centroid, limit=limit, where=flt)


def label_summary(
    *,
    reference: str,
    store: VectorStore,
    version: int | None = None,
    top: int = 10,
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> list[LabelSummary]:
    """Return, per label, the number of reference cells and the genes most often in their top-20 lists.

    Parameters
    ----------
    reference
        Reference name.
    store
        Store holding the reference.
    version
        Reference version (default: the current one).
    top
        Number of genes listed per label.
    where
        Payload filter (see :func:`search_cells`), e.g. ``{"dataset": "donor1"}``.

    Returns
    -------
    One summary per label, sorted by label.

    Examples
    --------
    >>> summary = label_summary(reference="retina", store=store)  # doctest: +SKIP
    >>> summary[0].top_genes[0].symbol  # doctest: +SKIP
    'RHO'
    """
    import pandas as pd

    record, collection = _reference(store, reference, version)
    flt = _check_where(where, record)
    _check_limit(top, what="top")
    labels: list[str] = []
    genes: list[list[str]] = []
    for batch in store.scroll(collection, where=flt or None, batch_size=4096):
        for p in batch:
            labels.append(str(p.payload["label"]))
            genes.append(list(p.payload.get("top_genes", [])))
    if not labels:
        return []
    n_cells = pd.Series(labels).value_counts()
    frame = pd.DataFrame({"label": labels, "gene": genes}).explode("gene").dropna()
    counts = frame.groupby(["label", "gene"], sort=False).size().reset_index(name="n")
    counts = counts.sort_values(["label", "n", "gene"], ascending=[True, False, True], kind="stable")
    out = []
    for label, group in counts.groupby("label", sort=True):
        n = int(n_cells[label])
        freq = [GeneFrequency(symbol=str(g), n_cells=int(c), fraction=int(c) / n)
                for g, c in zip(group["gene"][:top], group["n"][:top], strict=True)]
        out.append(LabelSummary(label=str(label), n_cells=n, top_genes=freq))
    seen = {s.label for s in out}
    out.extend(LabelSummary(label=str(lab), n_cells=int(n)) for lab, n in n_cells.items() if lab not in seen)
    return sorted(out, key=lambda s: s.label)


def query_cell_vector(
    adata: AnnData,
    cell: str,
    *,
    record: BuildRecord,
    store: VectorStore,
    data_dir: Path | None = None,
    gene_column: str | None = None,
) -> np.ndarray:
    """Return one query cell's vector in a reference version's space, as :func:`annotator.annotate` makes it.

    Parameters
    ----------
    adata
        Query cells by genes.
    cell
        The ``obs_names`` entry of the cell.
    record
        Build record of the reference version.
    store
        Store holding the reference and the gene collection.
    data_dir
        Gene description data folder.
    gene_column
        ``var`` column with gene names, instead of ``var_names``.

    Returns
    -------
    The cell's final vector (unit length).
    """
    import anndata as ad

    names = adata.obs_names
    if cell not in names:
        close = difflib.get_close_matches(str(cell), [str(n) for n in names[:50_000]], n=3)
        hint = f" (close: {', '.join(close)})" if close else f" (e.g. {', '.join(map(str, names[:3]))})"
        msg = f"--adata has no cell '{cell}'{hint}; pass one of its obs_names to --cell."
        raise InputError(msg)
    row = names.get_loc(cell)
    if not isinstance(row, int | np.integer):
        msg = f"--adata has several cells named '{cell}'; call `adata.obs_names_make_unique()` first."
        raise InputError(msg)
    # Counts or log-normalised is decided on the whole matrix, as annotate() does; the one-cell AnnData then
    # holds log-normalised values, which encode_cells() leaves as they are.
    x = log_normalise(expression_matrix(adata, what="query"))
    one = ad.AnnData(x[int(row)], obs=adata.obs.iloc[[int(row)]][[]], var=adata.var)
    cells, _ = encode_cells(
        one, spec=record.spec, store=store, artifacts=load_artifacts(store, record), data_dir=data_dir,
        gene_column=gene_column, what="query",
    )
    if not cells.valid[0]:
        msg = (
            f"query cell '{cell}' has no described expressed gene, so it has no vector; "
            "pick another cell or check the gene names (--gene-column)."
        )
        raise InputError(msg)
    return cells.final[0]


def label_centroids(store: VectorStore, collection: str, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Return the unit centroid of the stored searched vectors of each label's reference cells.

    Parameters
    ----------
    store
        The store.
    collection
        A reference version's collection.
    labels
        Labels to compute (one scroll each).

    Returns
    -------
    ``label -> unit vector``; labels without cells are left out.
    """
    out: dict[str, np.ndarray] = {}
    for label in labels:
        total: np.ndarray | None = None
        for batch in store.scroll(collection, where={"label": label}, with_vectors=[CELL_VECTOR],
                                  payload=False, batch_size=4096):
            part = np.vstack([p.vectors[CELL_VECTOR] for p in batch]).astype(np.float64).sum(axis=0)
            total = part if total is None else total + part
        if total is None:
            continue
        norm = np.linalg.norm(total)
        out[label] = (total / norm if norm > 0 else total).astype(np.float32)
    return out


def parse_where(items: Sequence[str]) -> dict[str, str | list[str]]:
    """Turn ``field=value`` strings into a payload filter; a repeated field matches any of its values.

    Parameters
    ----------
    items
        Strings such as ``"label=rod"`` or ``"dataset=donor1"``.

    Returns
    -------
    The filter, e.g. ``{"label": ["rod", "cone"], "dataset": "donor1"}``.
    """
    out: dict[str, list[str]] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            msg = f"--where '{item}' is not field=value; write e.g. --where label=rod."
            raise InputError(msg)
        out.setdefault(field.strip(), []).append(value.strip())
    return {f: v[0] if len(v) == 1 else v for f, v in out.items()}


def _reference(store: VectorStore, reference: str, version: int | None) -> tuple[BuildRecord, str]:
    record = resolve_version(load_manifest(store, reference), version)
    return record, version_collection(reference, record.version)


def _check_limit(limit: int, *, what: str = "limit") -> None:
    if limit < 1:
        msg = f"{what} must be at least 1 (got {limit}); pass --{what} 10, for example."
        raise InputError(msg)


def _check_label(label: str, record: BuildRecord) -> None:
    if label in record.labels:
        return
    close = difflib.get_close_matches(label, list(record.labels), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    msg = (
        f"reference '{record.reference}' v{record.version} has no label '{label}'; {hint}"
        f"its labels are: {', '.join(sorted(record.labels))}."
    )
    raise InputError(msg)


def _check_where(where: Mapping[str, str | Sequence[str]] | None, record: BuildRecord) -> dict[str, Any]:
    """Refuse filters on fields cells do not store, and labels the reference does not have."""
    if not where:
        return {}
    out: dict[str, Any] = {}
    for field, value in where.items():
        if field not in _PAYLOAD_FIELDS:
            msg = f"cannot filter on '{field}': reference cells store {', '.join(_PAYLOAD_FIELDS)}."
            raise InputError(msg)
        values = [value] if isinstance(value, str) else list(value)
        if field == "label":
            for v in values:
                _check_label(v, record)
        out[field] = value if isinstance(value, str) else values
    return out


def _nearest(
    store: VectorStore, collection: str, vector: np.ndarray, *, limit: int, where: Mapping[str, Any]
) -> list[Neighbour]:
    if not np.any(vector):
        return []
    res = store.query(collection, vector[None, :], using=CELL_VECTOR, limit=limit, where=where or None,
                      payload_fields=["cell_id", "label", "dataset"])
    return [
        Neighbour(cell_id=str(p["cell_id"]), label=str(p["label"]), dataset=str(p.get("dataset", "")),
                  score=float(s))
        for p, s in zip(res.payloads[0], res.scores[0], strict=False)
    ]
