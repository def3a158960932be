"""Annotate query cells against a reference: encode like the reference, search, vote."""

from __future__ import annotations

import dataclasses
import logging
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from annotator._result import UNKNOWN, AnnotationResult
from indexer import (
    InputError,
    NoCalibrationWarning,
    Progress,
    QueryShiftWarning,
    Reference,
    VectorStore,
    encode_cells,
    log_progress,
)
from indexer.cells import (
    DENSITY_FACTOR,
    DENSITY_MIN_LABEL_CELLS,
    Calibration,
    decide,
    novelty_floor,
    select_expression,
)
from indexer.cells import empirical_null as fit_empirical_null
from indexer.cells import query_density as density_test
from indexer.genes import gene_collection_name
from indexer.reference import CELL_VECTOR
from schemas import AnnotationParams, SpeciesOption

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer.cells import Decision
    from indexer.reference import PointTable

logger = logging.getLogger(__name__)

_QUERY_BATCH = 8192  # rows per store.query call: from 2,048 a read-only store searches on every core


def annotate(
    adata: AnnData,
    *,
    reference: str | Reference,
    store: VectorStore | None = None,
    k: int = 10,
    min_confidence: float = 0.0,
    unknown_alpha: float = 0.01,
    query_density: bool = True,
    empirical_null: bool = True,
    version: int | None = None,
    encoder: str | None = None,
    data_dir: Path | None = None,
    gene_column: str | None = None,
    exact: bool = False,
    explain: bool = False,
    progress: Progress | None = None,
    query_species: SpeciesOption = "auto",
    min_ortholog_genes: int = 200,
    layer: str | None = None,
    use_raw: bool | None = None,
) -> AnnotationResult:
    """Label each cell from its cosine top-k neighbours among the reference's cells.

    Query cells are encoded exactly as the reference was (same encoder, pooling, expression projection and
    SupCon encoder, all read from the reference's build record) and searched in batches against the reference
    collection's ANN index. With the reference's calibration (stored by every build since issue 14) the label
    is the class-balanced winner of :func:`indexer.cells.decide`, with its calibrated probability as the
    confidence, and cells unlike any reference cell of their label (novelty p-value below ``unknown_alpha``)
    are called ``"Unknown"``. A reference without a calibration is annotated by majority vote (ties broken
    by summed similarity) with a :class:`~indexer.NoCalibrationWarning`.

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
        Number of neighbours reported (and voting, without a calibration; the calibrated rule reads as many as
        its build-time fit chose, at least ``k``).
    min_confidence
        Cells whose confidence (calibrated probability, or vote share without a calibration) is below this
        get ``"Unknown"`` (0 turns the threshold off).
    unknown_alpha
        Novelty level in ``[0, 0.5]``: cells whose novelty p-value is below it get ``"Unknown"``; about 1-1.5
        times this share of reference-like cells is rejected (measured at 0.01 on Voigt: 1.1-1.4%, another
        donor's cells 1.3%) and, with the query-side steps (below), on Voigt coarse with one type left out in
        turn, 16-99% (mean 71%) of a cell type the reference lacks; the reference's test alone: 0-79% (mean
        21%). 0 turns it off. Cross-species
        queries (mapped through orthologs) are not checked for novelty and are labelled by a class-balanced
        vote (each of the calibration's ``k`` neighbours weighted ``n_c ** -gamma``, both fitted on the
        reference): the calibrated probabilities describe the reference's own species; ``uns`` records
        ``calibrated=False``.
    query_density
        Also test each cell against the query's own cells (:func:`indexer.cells.query_density`; with a
        calibration, ``unknown_alpha > 0`` and at least 200 query cells; cells predicted as a label with fewer
        than 20 reference cells are not tested): a cell whose 10 nearest neighbours (reference and query
        together) hold more query cells than the query's size explains, alone or averaged with its mutual
        query neighbours, is in a group the reference lacks. That p-value times 3 (a Bonferroni factor for
        the three p-values) joins the reference's: ``novelty_p`` is the smaller. It finds a type that lies
        inside a known type's spread but apart from its cells (docs/accuracy.md, "The query-density test").
        Its null is fitted on the query itself, assuming most query cells are of known types: a query made
        mostly of one missing type is not detected by it. ``False``: the reference's test alone.
    empirical_null
        Read the reference's novelty p-values against the query's own null (:func:`indexer.cells.empirical_null`;
        with a calibration, ``unknown_alpha > 0`` and at least 200 cells with a p-value): a query from another
        donor lies a little farther from every reference cell, and without it 2.3% of such a query's cells
        (all of known types) were rejected at α = 0.01 on Voigt's donors 1-2 → 3, against 1.3% with it. It
        never lowers a p-value, cells beyond every calibration cell of their label keep theirs, and a query
        farther than another donor's is still rejected, with a ``QueryShiftWarning``. ``False``: the
        reference's calibration alone.
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
        Record, per cell, its marker genes (exact shares of its label's class-head score, in modes with a
        class head) and the genes whose vectors pulled it most toward its label (the text view); see
        :func:`annotator.explain_labels`.
    progress
        Progress callback ``(step, done, total)``; ``None`` (default) logs progress lines at INFO
        (:func:`indexer.log_progress`: shown with ``logging.basicConfig(level=logging.INFO)``).
    query_species
        The query's species; ``"auto"`` (default) infers it from the gene names. An explicit species that the
        names clearly contradict is an error.
    min_ortholog_genes
        Cross-species queries: fewest query genes that must map onto reference genes.
    layer
        Read the expression from ``adata.layers[layer]`` instead of ``.X``.
    use_raw
        ``True``: read ``adata.raw.X`` (genes ``adata.raw.var_names``); ``False``: read ``.X``; ``None``
        (default): ``.X``, unless it looks scaled (negative values) and ``.raw`` exists, as CellTypist does
        (:func:`indexer.cells.select_expression`). The result still describes ``adata``'s cells.

    Returns
    -------
    The labels and their evidence; write them with :meth:`AnnotationResult.to_adata`. ``extra`` holds
    ``"panel_coverage"`` (per view, how many of the reference's panel genes the query has),
    ``"embedded_genes"`` (gene descriptions embedded for this call) and ``"pending_genes"`` (those embedded
    through a read-only store: store them with :func:`indexer.genes.save_pending_genes`).

    Raises
    ------
    InputError
        When the query has under 10% of every reference panel (:data:`indexer.cells.REFUSE_BELOW`).
    MixedSpeciesError
        When the query's gene names belong to two species.
    SpeciesMismatchError
        When ``query_species`` contradicts the gene names.
    OrthologMappingError
        When a cross-species query maps fewer than ``min_ortholog_genes`` genes, or less than half its
        expression, onto the reference's species.

    Warns
    -----
    PanelCoverageWarning
        When the query has under 90% of a reference panel (:data:`indexer.cells.WARN_BELOW`).
    NoCalibrationWarning
        When the reference has no calibration (built before it existed): labels come from the plain vote.

    Examples
    --------
    >>> result = annotate(query, reference="pbmc", store=open_store("./store"))  # doctest: +SKIP
    >>> result.to_adata(query)  # doctest: +SKIP
    """
    if progress is None:
        progress = log_progress(logger)
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
    if not 0 <= unknown_alpha <= 0.5:
        msg = f"unknown_alpha must lie in [0, 0.5] (got {unknown_alpha:g}); 0.01 is the default, 0 turns it off."
        raise InputError(msg)
    store.prefetch(ref.collection)  # opened while the query cells are encoded
    if record.spec.uses_text():
        # the query's genes that the reference does not carry are read there (a store's second annotate)
        store.prefetch(gene_collection_name(record.spec.encoder))
    art = ref.artifacts
    source = select_expression(adata, layer=layer, use_raw=use_raw, what="query")
    matrix = "X" if source is adata else (f"layers[{layer}]" if layer is not None else "raw.X")
    cells, _ = encode_cells(
        source,
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
    density_report: dict[str, float] | None = None
    null_report: dict[str, float] | None = None
    # The calibrated rule reads as many neighbours as its fit chose; k sets how many are reported.
    k_wanted = k
    if art.calibration is not None:
        k = min(max(k, art.calibration.k), record.n_cells)
    ids = np.full((n, k), "", dtype=object)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    labs = np.full((n, k), "", dtype=object)
    rows = np.flatnonzero(cells.valid)
    table = ref.points
    for start in range(0, rows.size, _QUERY_BATCH):
        sel = rows[start : start + _QUERY_BATCH]
        block_ids, block_labels, filled, block_scores = _search(
            store, collection, cells.final[sel], k=k, exact=exact, table=table
        )
        ids[sel] = block_ids
        labs[sel] = block_labels
        scores[sel] = np.where(filled, block_scores, np.nan)
        if progress is not None:
            progress("searching", min(start + _QUERY_BATCH, rows.size), rows.size)
    cal = _usable_calibration(art.calibration, labs, ref=ref)
    balanced: Calibration | None = None
    if cal is not None and cells.orthologs is not None:
        # The calibration is fitted on the reference's own species. A query mapped through orthologs sits
        # apart from every reference cell: measured on a mouse query against a human reference, the calibrated
        # rule labelled 9% of NK cells right (the vote > 50%) and the novelty check called most cells novel.
        # What still holds across species is the calibration's neighbour count and class balance
        # (docs/species.md, "Measured"): the vote reads its k neighbours, each vote weighted n_c ** -gamma.
        logger.info("cross-species query: labelled by the class-balanced vote (the calibration is within-species)")
        balanced, cal = cal, None
    if cal is None:
        # Labels present among the neighbours (labels added since the build included), coded in one pass.
        names, inverse = np.unique(labs.astype(str), return_inverse=True)
        codes = inverse.reshape(labs.shape).astype(np.int64)
        if names.size and names[0] == "":
            codes -= 1  # "" (no neighbour) sorts first: it becomes -1
            names = names[1:]
        n_vote, weights = k_wanted, None
        if balanced is not None:
            n_vote, weights = k, _balance_weights(balanced, names)
        d = decide(
            codes[:, :n_vote], np.nan_to_num(scores[:, :n_vote]), n_labels=max(len(names), 1), class_weights=weights
        )
    else:
        names = np.asarray(cal.labels, dtype=str)
        order = np.argsort(names)
        flat = labs.astype(str).ravel()
        pos = np.searchsorted(names, flat, sorter=order)
        codes = np.where(flat == "", -1, order[np.minimum(pos, names.size - 1)]).reshape(labs.shape)
        d = decide(codes, scores, calibration=cal, alpha=unknown_alpha, pca_scores=cells.pca_scores)
        if empirical_null and unknown_alpha > 0:
            null = fit_empirical_null(d.novelty_p, floor=novelty_floor(cal, d.winner))
            if null.applied:
                median_p = float(np.nanmedian(d.novelty_p))
                d = dataclasses.replace(d, novelty_p=null.p, rejected=d.rejected & (null.p < unknown_alpha))
                null_report = {"shift": null.shift, "scale": null.scale, "capped": null.capped}
                if null.capped:
                    warnings.warn(
                        f"the query as a whole is unlike reference '{ref.name}' (median novelty p "
                        f"{median_p:.2g}, farther than another donor's cells): check that "
                        "the reference covers this tissue and species; its cells are judged against a capped null.",
                        QueryShiftWarning,
                        stacklevel=2,
                    )
        if query_density and unknown_alpha > 0:
            sizes = np.asarray(cal.class_sizes, dtype=np.int64)[np.maximum(d.winner, 0)]
            tested = (d.winner >= 0) & (sizes >= DENSITY_MIN_LABEL_CELLS)
            density = density_test(
                cells.final, scores, n_reference=record.n_cells, valid=cells.valid, tested=tested
            )
            if density.tested:
                d = _with_density(d, density.p, unknown_alpha)
                density_report = {
                    "inflation": density.inflation,
                    "neighbours": density.neighbours,
                    "candidates": density.candidates,
                }
    names = np.asarray(names, dtype=object)
    winner = d.winner
    labels = np.where(winner >= 0, names[np.maximum(winner, 0)], UNKNOWN).astype(object)
    runner_up = np.where(d.runner_up >= 0, names[np.maximum(d.runner_up, 0)], "").astype(object)
    reasons = np.full(n, "", dtype=object)
    reasons[~cells.valid] = "no described expressed gene"
    confidence = d.probability
    low = cells.valid & (confidence < min_confidence)
    novel = cells.valid & d.rejected & ~low
    reasons[novel] = [f"unlike any reference cell of {lab}" for lab in labels[novel]]
    labels[low | novel] = UNKNOWN
    reasons[low] = f"confidence below {min_confidence:g}"
    params = AnnotationParams(
        reference=reference,
        version=record.version,
        k=k_wanted,
        min_confidence=min_confidence,
        spec=record.spec,
        store=str(store.location),
        query_species=cells.species_call,
        orthologs=cells.orthologs,
        unknown_alpha=unknown_alpha if cal is not None else 0.0,
        calibrated=cal is not None,
        matrix=matrix,
        query_density=density_report is not None,
        empirical_null=null_report is not None,
    )
    result = AnnotationResult(
        labels=labels,
        confidence=confidence,
        similarity=d.similarity,
        vectors=cells.final,
        neighbour_ids=ids[:, :k_wanted],
        neighbour_scores=scores[:, :k_wanted],
        neighbour_labels=labs[:, :k_wanted],
        reasons=reasons,
        params=params,
        record=record,
        vote_share=d.vote_share,
        novelty_p=d.novelty_p,
        runner_up_label=runner_up,
        runner_up_probability=d.runner_up_probability,
    )
    result.extra.update(panel_coverage=cells.coverage, embedded_genes=cells.n_embedded,
                        pending_genes=cells.pending_genes)
    if density_report is not None:
        result.extra["query_density"] = density_report
    if null_report is not None:
        result.extra["empirical_null"] = null_report
    logger.info("embedded %d genes for this annotation", cells.n_embedded)
    if cal is not None and cal.approximate:
        result.extra["calibration_approximate"] = list(cal.approximate)
    if explain:
        from annotator._explain import explain_labels

        explain_labels(result, cells=cells, store=store, artifacts=art)
    return result


def _search(
    store: VectorStore, collection: str, vectors: np.ndarray, *, k: int, exact: bool, table: PointTable | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Search one batch; return neighbour cell ids, labels, which slots hold a hit, and the scores.

    With the version's point table the search returns point ids only and the table gives each hit's label
    and cell id (a hit the table lacks, a cell added by an edit that did not finish, is read from its
    payload); without one (versions built before it), from the payloads.
    """
    n = len(vectors)
    fields = [] if table is not None else ["label", "cell_id"]
    res = store.query(
        collection, vectors, using=CELL_VECTOR, limit=k, payload_fields=fields, exact=exact, with_ids=table is not None
    )
    hits = res.id_ints if table is not None else res.payloads
    lens = np.array([len(h) for h in hits], dtype=np.int64)
    filled = np.arange(k)[None, :] < lens[:, None]
    if table is not None:
        flat = [i for row in res.id_ints for i in row]
        labels, cell_ids, missing = table.lookup_ints(flat)
        if missing.any():
            lost = [str(uuid.UUID(int=flat[j])) for j in np.flatnonzero(missing)]
            found = {p.id: p.payload for p in store.retrieve(collection, lost)}
            for j, pid in zip(np.flatnonzero(missing).tolist(), lost, strict=True):
                pay = found.get(pid, {})
                labels[j], cell_ids[j] = str(pay.get("label", "")), str(pay.get("cell_id", ""))
    else:
        labels = [h["label"] for row in res.payloads for h in row]
        cell_ids = [h["cell_id"] for row in res.payloads for h in row]
    block_ids = np.full((n, k), "", dtype=object)
    block_ids[filled] = cell_ids
    block_labels = np.full((n, k), "", dtype=object)
    block_labels[filled] = labels
    return block_ids, block_labels, filled, res.scores[:, :k]


def _with_density(d: Decision, density_p: np.ndarray, alpha: float) -> Decision:
    """Return the decision with the query-density p-value joined: the smaller of the two, that one multiplied."""
    p = np.where(np.isnan(d.novelty_p), np.nan, np.fmin(d.novelty_p, np.minimum(DENSITY_FACTOR * density_p, 1.0)))
    return dataclasses.replace(d, novelty_p=p, rejected=d.rejected | (p < alpha))


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


def _balance_weights(cal: Calibration, names: np.ndarray) -> np.ndarray:
    """Vote weight ``n_c ** -gamma`` of each label in ``names``, from the calibration's class sizes."""
    size = dict(zip(cal.labels, np.asarray(cal.class_sizes, dtype=np.float64), strict=True))
    return np.array([max(size.get(str(n), 1.0), 1.0) ** -cal.gamma for n in names], dtype=np.float64)


def _usable_calibration(cal: Calibration | None, labs: np.ndarray, *, ref: Reference) -> Calibration | None:
    """Return the calibration to decide with, warning when there is none (or it misses a neighbour label)."""
    if cal is None:
        warnings.warn(
            f"reference '{ref.name}' v{ref.version} has no calibration (built before calibrated decisions): "
            "labels come from the plain vote, with no novelty check. Add one with "
            f"`cellvec reference refit --reference {ref.name}` (neighbour evidence only) or rebuild the reference "
            "(`cellvec reference build`) for the full calibration.",
            NoCalibrationWarning,
            stacklevel=3,
        )
        return None
    missing = sorted(set(np.unique(labs.astype(str))) - set(cal.labels) - {""})
    if missing:
        warnings.warn(
            f"reference '{ref.name}' v{ref.version} has labels its calibration does not know "
            f"({', '.join(missing[:5])}): labels come from the plain vote; run `cellvec reference refit`.",
            NoCalibrationWarning,
            stacklevel=3,
        )
        return None
    return cal
