"""Annotate query cells against a reference: encode like the reference, search, vote."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer import (
    CELL_VECTOR,
    InputError,
    Progress,
    VectorStore,
    encode_cells,
    load_artifacts,
    load_manifest,
    resolve_version,
    version_collection,
)
from schemas import AnnotationParams, BuildRecord

from indexer.cells._knn import vote

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

UNKNOWN = "Unknown"
"""Label given to cells that cannot be annotated or fall under the confidence threshold."""

_QUERY_BATCH = 1024


@dataclass
class AnnotationResult:
    """Labels and evidence for each query cell.

    Attributes
    ----------
    labels
        Predicted label per cell (``"Unknown"`` when not confident or without a vector).
    confidence
        Share of the voting neighbours that agree with the label (0 without a vector).
    similarity
        Mean cosine similarity of the neighbours that voted for the label (NaN without a vector).
    vectors
        Query cell vectors in the reference's space.
    neighbour_ids
        ``n × k`` reference cell ids, best first (``""`` where missing).
    neighbour_scores
        ``n × k`` cosine similarities.
    neighbour_labels
        ``n × k`` labels of the neighbours.
    reasons
        Why a cell is ``"Unknown"`` (``""`` for labelled cells).
    params
        The parameters of the run.
    record
        Build record of the reference version used.
    explanations
        Per cell, the genes that pulled it most toward its label (filled by ``explain=True``).
    """

    labels: np.ndarray
    confidence: np.ndarray
    similarity: np.ndarray
    vectors: np.ndarray
    neighbour_ids: np.ndarray
    neighbour_scores: np.ndarray
    neighbour_labels: np.ndarray
    reasons: np.ndarray
    params: AnnotationParams
    record: BuildRecord
    explanations: list[list[tuple[str, float]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_adata(self, adata: AnnData, *, key_added: str = "cellvec", copy: bool = False) -> AnnData:
        """Write the result into an AnnData (the one annotated, or a copy).

        Fields written
        --------------
        ``obs[f'{key_added}_label']``
            Predicted label (categorical), ``"Unknown"`` when not confident.
        ``obs[f'{key_added}_confidence']``
            Vote share of the winning label.
        ``obs[f'{key_added}_similarity']``
            Mean cosine similarity of the winning neighbours.
        ``obs[f'{key_added}_reason']``
            Why a cell is ``"Unknown"`` (empty otherwise).
        ``obs[f'{key_added}_top_genes']``
            With ``explain=True``: the genes that pulled the cell toward its label.
        ``obsm[f'X_{key_added}']``
            Query cell vectors in the reference's space.
        ``uns[key_added]``
            The parameters (reference, version, k, threshold, cell vector spec, store) and, with
            ``explain=True``, per-cell gene contributions.

        Parameters
        ----------
        adata
            The annotated cells (same cells, same order).
        key_added
            Prefix of the written keys.
        copy
            Write into a copy and return it.

        Returns
        -------
        The AnnData written to.
        """
        import pandas as pd

        if adata.n_obs != self.labels.size:
            msg = (
                f"the result has {self.labels.size} cells but the AnnData has {adata.n_obs}; "
                "pass the AnnData that was annotated."
            )
            raise InputError(msg)
        out = adata.copy() if copy else adata
        out.obs[f"{key_added}_label"] = pd.Categorical(self.labels.astype(str))
        out.obs[f"{key_added}_confidence"] = self.confidence.astype(np.float32)
        out.obs[f"{key_added}_similarity"] = self.similarity.astype(np.float32)
        out.obs[f"{key_added}_reason"] = self.reasons.astype(str)
        out.obsm[f"X_{key_added}"] = self.vectors
        uns: dict[str, Any] = {"params": self.params.model_dump(mode="json")}
        if self.explanations is not None:
            out.obs[f"{key_added}_top_genes"] = [", ".join(g for g, _ in ex[:5]) for ex in self.explanations]
            uns["explain"] = {
                "method": self.extra.get("explain_method", ""),
                "genes": [[g for g, _ in ex] for ex in self.explanations],
                "contributions": [[float(c) for _, c in ex] for ex in self.explanations],
            }
        out.uns[key_added] = uns
        return out


def annotate(
    adata: AnnData,
    *,
    reference: str,
    store: VectorStore,
    k: int = 10,
    min_confidence: float = 0.0,
    version: int | None = None,
    encoder: str | None = None,
    data_dir: Path | None = None,
    gene_column: str | None = None,
    exact: bool = False,
    explain: bool = False,
    progress: Progress | None = None,
) -> AnnotationResult:
    """Label each cell by a cosine top-k vote among the reference's cells.

    Query cells are encoded exactly as the reference was (same encoder, pooling, expression projection and
    SupCon encoder, all read from the reference's build record), searched in batches against the reference
    collection's ANN index, and labelled by majority vote (ties broken by summed similarity).

    Parameters
    ----------
    adata
        Query cells × genes (counts or log-normalised).
    reference
        Reference name.
    store
        Store holding the reference.
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

    Returns
    -------
    The labels and their evidence; write them with :meth:`AnnotationResult.to_adata`.

    Examples
    --------
    >>> result = annotate(query, reference="pbmc", store=open_store("./store"))  # doctest: +SKIP
    >>> result.to_adata(query)  # doctest: +SKIP
    """
    manifest = load_manifest(store, reference)
    record = resolve_version(manifest, version)
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
    art = load_artifacts(store, record)
    cells, _ = encode_cells(
        adata,
        spec=record.spec,
        store=store,
        artifacts=art,
        data_dir=data_dir,
        gene_column=gene_column,
        progress=progress,
        what="query",
    )
    collection = version_collection(reference, record.version)
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
    if explain:
        from annotator._explain import explain_labels

        explain_labels(result, cells=cells, store=store)
    return result
