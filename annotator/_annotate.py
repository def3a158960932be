"""Annotate query cells against a reference: encode like the reference, search, vote."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from annotator._result import UNKNOWN, AnnotationResult
from indexer import InputError, Progress, Reference, VectorStore, encode_cells
from indexer.cells import vote
from indexer.reference import CELL_VECTOR
from schemas import AnnotationParams, SpeciesOption

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

_QUERY_BATCH = 1024

def annotate(
    adata: AnnData,
    *,
    reference: str | Reference,
    store: VectorStore | None = None,
    k: int = 10,
    min_confidence: float = 0.0,
    version: int | None = None,
    encoder: str | None = None,
    data_dir: Path | None = None,
    gene_column: str | None = None,
    exact: bool = False,
    explain: bool = False,
    progress: Progress | None = None,
    query_species: SpeciesOption = "auto",
    min_ortholog_genes: int = 200,
) -> AnnotationResult:
    """Label each cell by a cosine top-k vote among the reference's cells.

    Query cells are encoded exactly as the reference was (same encoder, pooling, expression projection and
    SupCon encoder, all read from the reference's build record), searched in batches against the reference
    collection's ANN index, and labelled by majority vote (ties broken by summed similarity).

    The query's species is inferred from its gene names. A query of the other species (a human query against
    a mouse reference, or the reverse) is mapped onto the reference species' genes through HCOP orthologs
    before it is encoded: each query gene goes to one reference gene (reciprocal one-to-one pairs first; a
    one-to-many gene goes to its best-supported ortholog; several query genes on one reference gene are
    summed), and every view reads the mapped matrix. The mapping is logged and recorded in
    ``params.orthologs``; see ``docs/species.md``.

    Parameters
    ----------
    adata
        Query cells × genes (counts or log-normalised).
    reference
        A :class:`~indexer.Reference` handle, or a reference name (then ``store`` is needed).
    store
        Store holding the reference, when ``reference`` is a name.
    k
        Number of neighbours that vote.
    min_confidence
        Cells whose winning vote share is below this get ``"Unknown"`` (0 turns the threshold off).
    version
        Reference version (default: the current one).
    encoder
        Expected encoder id; when given and different from the reference's, the call is refused.
    data_dir
        Gene description data folder.
    gene_column
        ``var`` column with gene names, instead of ``var_names``.
    exact
        Search exhaustively instead of through the HNSW index (for checking recall).
    explain
        Record, per cell, the genes that pulled it most toward its label.
    progress
        Progress callback ``(step, done, total)``.
    query_species
        The query's species; ``"auto"`` (default) infers it from the gene names. An explicit species that the
        names clearly contradict is an error.
    min_ortholog_genes
        Cross-species queries: fewest query genes that must map onto reference genes.

    Returns
    -------
    The labels and their evidence; write them with :meth:`AnnotationResult.to_adata`. ``extra`` holds
    ``"panel_coverage"`` (per view, how many of the reference's panel genes the query has),
    ``"embedded_genes"`` (gene descriptions embedded for this call) and ``"pending_genes"`` (those embedded
    through a read-only store: store them with :func:`indexer.genes.save_pending_genes`).

    Raises
    ------
    InputError
        When the query has under 30% of a reference panel (:data:`indexer.cells.REFUSE_BELOW`).

    Warns
    -----
    PanelCoverageWarning
        When it has under 90% of one (:data:`indexer.cells.WARN_BELOW`).

    Raises
    ------
    MixedSpeciesError
        When the query's gene names belong to two species.
    SpeciesMismatchError
        When ``query_species`` contradicts the gene names.
    OrthologMappingError
        When a cross-species query maps fewer than ``min_ortholog_genes`` genes, or less than half its
        expression, onto the reference's species.

    Examples
    --------
    >>> result = annotate(query, reference="pbmc", store=open_store("./store"))  # doctest: +SKIP
    >>> result.to_adata(query)  # doctest: +SKIP
    """
    ref = _open_reference(reference, store=store, version=version)
    store, record = ref.store, ref.record
    reference = ref.name
    if encoder is not None and encoder != record.spec.encoder:
        msg = (
            f"the query encoder '{encoder}' differs from reference '{reference}' v{record.version}'s "
            f"encoder '{record.spec.encoder}'; drop --encoder or build the reference with '{encoder}'."
        )
        raise InputError(msg)
    if k < 1:
        msg = f"k must be at least 1 (got {k}); pass --k 10, for example."
        raise InputError(msg)
    if k > record.n_cells:
        msg = (
            f"k={k} is larger than reference '{reference}' ({record.n_cells} cells); "
            f"pass --k {min(10, record.n_cells)} or fewer."
        )
        raise InputError(msg)
    if not 0 <= min_confidence <= 1:
        msg = f"min_confidence must lie in [0, 1] (got {min_confidence})."
        raise InputError(msg)
    art = ref.artifacts
    cells, _ = encode_cells(
        adata,
        spec=record.spec,
        store=store,
        artifacts=art,
        data_dir=data_dir,
        gene_column=gene_column,
        progress=progress,
        what="query",
        query_species=query_species,
        min_ortholog_genes=min_ortholog_genes,
    )
    collection = ref.collection
    n = adata.n_obs
    ids = np.full((n, k), "", dtype=object)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    labs = np.full((n, k), "", dtype=object)
    rows = np.flatnonzero(cells.valid)
    for start in range(0, rows.size, _QUERY_BATCH):
        sel = rows[start : start + _QUERY_BATCH]
        res = store.query(
            collection,
            cells.final[sel],
            using=CELL_VECTOR,
            limit=k,
            payload_fields=["label", "cell_id"],
            exact=exact,
            with_ids=False,  # the cell ids come from the payloads
        )
        lens = np.array([len(h) for h in res.payloads], dtype=np.int64)
        filled = np.arange(k)[None, :] < lens[:, None]
        block = np.full((sel.size, k), "", dtype=object)
        block[filled] = [h["cell_id"] for hits in res.payloads for h in hits]
        ids[sel] = block
        block = np.full((sel.size, k), "", dtype=object)
        block[filled] = [h["label"] for hits in res.payloads for h in hits]
        labs[sel] = block
        scores[sel] = np.where(filled, res.scores[:, :k], np.nan)
        if progress is not None:
            progress("searching", min(start + _QUERY_BATCH, rows.size), rows.size)
    # Labels present among the neighbours (labels added since the build included), coded in one pass.
    names, inverse = np.unique(labs.astype(str), return_inverse=True)
    codes = inverse.reshape(labs.shape).astype(np.int64)
    if names.size and names[0] == "":
        codes -= 1  # "" (no neighbour) sorts first: it becomes -1
        names = names[1:]
    names = names.astype(object)
    winner, confidence, similarity = vote(codes, np.nan_to_num(scores), len(names))
    labels = np.where(winner >= 0, names[np.maximum(winner, 0)], UNKNOWN).astype(object)
    reasons = np.full(n, "", dtype=object)
    reasons[~cells.valid] = "no described expressed gene"
    low = cells.valid & (confidence < min_confidence)
    labels[low] = UNKNOWN
    reasons[low] = f"confidence below {min_confidence:g}"
    params = AnnotationParams(
        reference=reference,
        version=record.version,
        k=k,
        min_confidence=min_confidence,
        spec=record.spec,
        store=str(store.location),
        query_species=cells.species_call,
        orthologs=cells.orthologs,
    )
    result = AnnotationResult(
        labels=labels,
        confidence=confidence,
        similarity=similarity,
        vectors=cells.final,
        neighbour_ids=ids,
        neighbour_scores=scores,
        neighbour_labels=labs,
        reasons=reasons,
        params=params,
        record=record,
    )
    result.extra.update(panel_coverage=cells.coverage, embedded_genes=cells.n_embedded,
                        pending_genes=cells.pending_genes)
    logger.info("embedded %d genes for this annotation", cells.n_embedded)
    if explain:
        from annotator._explain import explain_labels

        explain_labels(result, cells=cells, store=store)
    return result


def _open_reference(reference: str | Reference, *, store: VectorStore | None, version: int | None) -> Reference:
    """Return the handle to annotate against: the one given, or the named reference opened in ``store``."""
    if isinstance(reference, Reference):
        if version is not None and version != reference.version:
            return Reference.open(reference.store, reference.name, version=version)
        return reference
    if store is None:
        msg = f"annotate: reference '{reference}' is a name, so pass store=...; or pass a Reference handle."
        raise InputError(msg)
    return Reference.open(store, reference, version=version)
