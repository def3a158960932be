"""Similarity search over a reference's cells: nearest to one query cell, or to a label's centroid.

A query cell is encoded exactly as :func:`annotator.annotate` encodes it; :func:`label_summary` gives each
label's cell count and the genes most often among its cells' stored top genes.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annotator._natural import natural_key
from indexer import InputError, Reference, VectorStore, encode_cells
from indexer.cells import expression_matrix, log_normalise, select_expression
from indexer.reference import CELL_VECTOR, decode_top_genes, gene_codes, load_artifacts
from schemas import BuildRecord, GeneEnrichment, GeneFrequency, LabelSummary, Neighbour, ReferenceCellPayload

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

_PAYLOAD_FIELDS = tuple(ReferenceCellPayload.model_fields)
_EPS = 0.01
"""Added to both shares in the distinctive genes' log-ratio, so a gene absent elsewhere scores finitely."""


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
    layer: str | None = None,
    use_raw: bool | None = None,
) -> list[Neighbour]:
    """Return the reference cells nearest to one query cell.

    The query cell is encoded exactly as :func:`annotator.annotate` encodes it: with the reference
    version's build record and fitted artefacts (pooling, idf, whitening, expression projection, SupCon
    encoder), and normalised as the whole AnnData would be (counts or log-normalised is decided on the
    whole matrix, not on the one cell). A cell of the other species than the reference is mapped onto the
    reference species' genes through HCOP orthologs, as ``annotate`` maps it.

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
    layer, use_raw
        Which matrix holds the expression, as in :func:`annotator.annotate`.

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
    flt = _check_where(where, record, store=store)
    _check_limit(limit)
    adata = select_expression(adata, layer=layer, use_raw=use_raw, what="query")
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
    flt = _check_where(where, record, store=store)
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
    """Return, per label, its number of reference cells, its distinctive genes and its most frequent genes.

    Each reference cell stores its top genes (the 20 most expressed described genes). A label's distinctive
    genes are those in the top genes of a larger share of its cells than of the other labels' cells (the
    share averaged over the other labels, so a large label does not set the baseline), ranked by
    ``share * ln((share + 0.01) / (other share + 0.01))``, which wants both: a gene in most of the label's
    lists (not a rare one) and in few other labels' (not the genes in everyone's). Its most frequent genes
    (``top_genes``) are mostly those every cell expresses (MALAT1, MT-*, ribosomal).

    Parameters
    ----------
    reference
        Reference name.
    store
        Store holding the reference.
    version
        Reference version (default: the current one).
    top
        Number of genes listed per label (in each list).
    where
        Payload filter (see :func:`search_cells`), e.g. ``{"dataset": "donor1"}``.

    Returns
    -------
    One summary per label, sorted by label.

    Examples
    --------
    >>> summary = label_summary(reference="retina", store=store)  # doctest: +SKIP
    >>> summary[0].distinctive_genes[0].symbol  # doctest: +SKIP
    'RHO'
    """
    import pandas as pd

    record, collection = _reference(store, reference, version)
    flt = _check_where(where, record, store=store)
    _check_limit(top, what="top")
    codes = gene_codes(store, record)
    labels: list[str] = []
    genes: list[list[str]] = []
    for batch in store.scroll(collection, where=flt or None, batch_size=4096):
        for p in batch:
            labels.append(str(p.payload["label"]))
            genes.append(decode_top_genes(p.payload.get("top_genes"), codes))
    if not labels:
        return []
    n_cells = pd.Series(labels).value_counts()
    frame = pd.DataFrame({"label": labels, "gene": genes}).explode("gene").dropna()
    counts = frame.groupby(["label", "gene"], sort=False).size().reset_index(name="n")
    counts = counts.sort_values(["label", "n", "gene"], ascending=[True, False, True], kind="stable")
    distinctive = _distinctive_genes(counts, n_cells, top=top)
    out = []
    for label, group in counts.groupby("label", sort=True):
        n = int(n_cells[label])
        freq = [GeneFrequency(symbol=str(g), n_cells=int(c), fraction=int(c) / n)
                for g, c in zip(group["gene"][:top], group["n"][:top], strict=True)]
        out.append(LabelSummary(label=str(label), n_cells=n, top_genes=freq,
                                distinctive_genes=distinctive.get(str(label), [])))
    seen = {s.label for s in out}
    out.extend(LabelSummary(label=str(lab), n_cells=int(n)) for lab, n in n_cells.items() if lab not in seen)
    return sorted(out, key=lambda s: natural_key(s.label))


def _distinctive_genes(counts: Any, n_cells: Any, *, top: int) -> dict[str, list[GeneEnrichment]]:
    """Rank each label's genes by their share of its cells times its log-ratio to the other labels' share."""
    labels = [str(s) for s in n_cells.index]
    if len(labels) < 2:
        return {}
    counts = counts.assign(label=counts["label"].astype(str))
    n = counts.pivot_table(index="label", columns="gene", values="n", aggfunc="sum", fill_value=0)
    n = n.reindex(labels, fill_value=0)
    share = n.to_numpy(dtype=np.float64) / n_cells.reindex(labels).to_numpy(dtype=np.float64)[:, None]
    other = (share.sum(axis=0, keepdims=True) - share) / (len(labels) - 1)
    score = share * np.log((share + _EPS) / (other + _EPS))  # share x log-ratio: frequent AND specific
    genes = np.asarray(n.columns, dtype=object)
    out: dict[str, list[GeneEnrichment]] = {}
    for i, label in enumerate(labels):
        order = np.lexsort((genes.astype(str), -share[i], -score[i]))
        order = order[(score[i, order] > 0) & (share[i, order] > other[i, order])][:top]
        out[label] = [
            GeneEnrichment(symbol=str(genes[j]), n_cells=int(n.iat[i, j]), fraction=float(share[i, j]),
                           other_fraction=float(other[i, j]),
                           enrichment=float(score[i, j]))
            for j in order
        ]
    return out


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
    ref = Reference.open(store, reference, version=version)
    return ref.record, ref.collection


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


def _check_where(
    where: Mapping[str, str | Sequence[str]] | None, record: BuildRecord, *, store: VectorStore
) -> dict[str, Any]:
    """Refuse filters on fields cells do not store, and labels the reference does not have.

    ``top_genes`` symbols become the version's gene ids when its payloads store ids.
    """
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
        if field == "top_genes":
            codes = gene_codes(store, record)
            if codes is not None:
                ids = [codes.id_of(v) for v in values]
                out[field] = ids[0] if isinstance(value, str) else ids
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
