"""What annotation returns: labels, their evidence, and how to write them into an AnnData."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer import InputError
from schemas import AnnotationParams, BuildRecord

if TYPE_CHECKING:
    from anndata import AnnData

UNKNOWN = "Unknown"
"""Label given to cells that cannot be annotated or fall under the confidence threshold."""


@dataclass
class AnnotationResult:
    """Labels and evidence for each query cell.

    Attributes
    ----------
    labels
        Predicted label per cell (``"Unknown"`` when not confident, novel, or without a vector).
    confidence
        Calibrated probability of the label when the reference has a calibration, else the share of the
        voting neighbours that agree with it (0 without a vector).
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
    vote_share
        Share of the neighbours that carry the label (the confidence of the plain vote).
    novelty_p
        Novelty p-value (NaN without a calibration or a vector).
    runner_up_label
        The most probable other label of the decision (``""`` when none); see :meth:`runner_up`.
    runner_up_probability
        Its probability (vote share without a calibration).
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
    vote_share: np.ndarray | None = None
    novelty_p: np.ndarray | None = None
    runner_up_label: np.ndarray | None = None
    runner_up_probability: np.ndarray | None = None

    def to_adata(self, adata: AnnData, *, key_added: str = "cellvec", copy: bool = False) -> AnnData:
        """Write the result into an AnnData (the one annotated, or a copy).

        Fields written
        --------------
        ``obs[f'{key_added}_label']``
            Predicted label (categorical), ``"Unknown"`` when not confident or novel.
        ``obs[f'{key_added}_confidence']``
            Calibrated probability of the label (the vote share when the reference has no calibration).
        ``obs[f'{key_added}_vote_share']``
            Share of the neighbours that carry the label.
        ``obs[f'{key_added}_novelty_p']``
            Novelty p-value: the share of the label's reference cells (cross-fitted) that look less typical,
            (read against the query's own null, :func:`indexer.cells.empirical_null`) or, where smaller, three
            times the query-density test's p-value (:func:`indexer.cells.query_density`);
            NaN without a calibration.
        ``obs[f'{key_added}_runner_up']``
            The most probable other label (empty when none).
        ``obs[f'{key_added}_runner_up_probability']``
            Its probability (vote share without a calibration).
        ``obs[f'{key_added}_similarity']``
            Mean cosine similarity of the neighbours that carry the label.
        ``obs[f'{key_added}_reason']``
            Why a cell is ``"Unknown"`` (empty otherwise): ``"confidence below …"``, ``"unlike any reference
            cell of <label>"`` or ``"no described expressed gene"``.
        ``obs[f'{key_added}_top_genes']``
            With ``explain=True``: the genes that pulled the cell toward its label (text view).
        ``obs[f'{key_added}_marker_genes']``
            With ``explain=True`` and a class head (the default mode): the cell's marker genes, the largest
            exact shares of its label's class-head score, joined by ``", "``.
        ``obsm[f'X_{key_added}']``
            Query cell vectors in the reference's space.
        ``uns[key_added]``
            ``params``: reference, version, k, ``min_confidence``, ``unknown_alpha``, ``calibrated`` (whether
            the reference's calibration was used), ``matrix`` (the query matrix read: ``X``, ``layers[NAME]``
            or ``raw.X``), ``query_density`` (whether the query-density test ran), ``empirical_null`` (whether
            the query's null was fitted), cell vector spec, store;
            ``query_density``: the test's fitted ``inflation``, ``neighbours`` and ``candidates`` (when it ran);
            ``empirical_null``: the ``shift`` and ``scale`` of the query's null and whether the shift was
            ``capped`` (when it was fitted);
            ``calibration_approximate``: what edits since the
            calibration's fit left approximate (when any);
            ``uns[key_added]['params']['query_species']`` holds the query's species call (species, share,
            evidence) and ``['params']['orthologs']`` the ortholog mapping of a cross-species query (genes
            mapped, one-to-one, share of expression); ``uns[key_added]['panel_coverage'][view]`` (``view``:
            ``text``, ``expression``): the reference's panel size, how many of its genes the query has and the
            fraction; and, with ``explain=True``, per-cell gene contributions: ``uns[key_added]['explain']['genes']``
            (strings) and ``['contributions']`` (float32), both ``n_cells × top``, padded with ``""`` and NaN for
            cells explained by fewer genes (``Unknown`` cells: none); with a class head (the default
            mode) also ``['marker_genes']`` and ``['marker_contributions']`` (same shape and padding): each
            cell's marker genes and the exact shares of its label's class-head score, with
            ``['marker_note']`` saying so.

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
        n = self.labels.size
        nan = np.full(n, np.nan, dtype=np.float32)
        share = self.confidence if self.vote_share is None else self.vote_share
        out.obs[f"{key_added}_vote_share"] = np.asarray(share, dtype=np.float32)
        out.obs[f"{key_added}_novelty_p"] = nan if self.novelty_p is None else self.novelty_p.astype(np.float32)
        out.obs[f"{key_added}_runner_up"] = self.runner_up().astype(str)
        rprob = nan if self.runner_up_probability is None else self.runner_up_probability
        out.obs[f"{key_added}_runner_up_probability"] = np.asarray(rprob, dtype=np.float32)
        out.obs[f"{key_added}_similarity"] = self.similarity.astype(np.float32)
        out.obs[f"{key_added}_reason"] = self.reasons.astype(str)
        out.obsm[f"X_{key_added}"] = self.vectors
        uns: dict[str, Any] = {"params": self.params.model_dump(mode="json")}
        coverage = self.extra.get("panel_coverage")
        if coverage:
            uns["panel_coverage"] = {
                view: {"panel": c["panel"], "present": c["present"], "fraction": c["fraction"]}
                for view, c in coverage.items()
            }
        if self.extra.get("query_density"):
            uns["query_density"] = dict(self.extra["query_density"])
        if self.extra.get("empirical_null"):
            uns["empirical_null"] = dict(self.extra["empirical_null"])
        if self.extra.get("calibration_approximate"):
            uns["calibration_approximate"] = list(self.extra["calibration_approximate"])
        if self.explanations is not None:
            out.obs[f"{key_added}_top_genes"] = [", ".join(g for g, _ in ex[:5]) for ex in self.explanations]
            genes, contributions = self.explanation_arrays()
            uns["explain"] = {
                "method": self.extra.get("explain_method", ""),
                "genes": genes,
                "contributions": contributions,
            }
            markers = self.extra.get("explain_markers")
            if markers is not None:
                uns["explain"]["marker_genes"], uns["explain"]["marker_contributions"] = markers
                uns["explain"]["marker_note"] = self.extra.get("explain_marker_note", "")
                out.obs[f"{key_added}_marker_genes"] = self.marker_genes()
        out.uns[key_added] = uns
        return out

    def marker_genes(self) -> np.ndarray:
        """Return, per cell, its marker genes joined by ``", "`` (``""`` without ``explain=True`` or a head)."""
        markers = self.extra.get("explain_markers")
        if markers is None:
            return np.full(self.labels.size, "", dtype=object)
        return np.array([", ".join(g for g in row if g) for row in markers[0]], dtype=object)

    def label_markers(self, top: int = 5) -> dict[str, list[str]]:
        """Return, per label, the genes with the largest summed marker contribution over its cells.

        Empty without ``explain=True`` or a class head; ``"Unknown"`` has none.
        """
        markers = self.extra.get("explain_markers")
        if markers is None:
            return {}
        import pandas as pd

        genes, values = markers
        frame = pd.DataFrame({
            "label": np.repeat(self.labels.astype(str), genes.shape[1]),
            "gene": genes.ravel(),
            "value": values.ravel().astype(np.float64),
        })
        frame = frame[frame["gene"] != ""]
        total = frame.groupby(["label", "gene"], sort=True)["value"].sum().reset_index()
        total = total.sort_values(["label", "value", "gene"], ascending=[True, False, True], kind="stable")
        return {str(lab): g["gene"].head(top).tolist() for lab, g in total.groupby("label", sort=True)}

    def runner_up(self) -> np.ndarray:
        """Return, per cell, the decision's most probable other label (``""`` when none).

        Results made without it (``runner_up_label`` unset) give the label with the most votes after the
        winner.
        """
        if self.runner_up_label is not None:
            return np.asarray(self.runner_up_label, dtype=object)
        names, inverse = np.unique(self.neighbour_labels.astype(str), return_inverse=True)
        codes = inverse.reshape(self.neighbour_labels.shape)
        n = codes.shape[0]
        counts = np.zeros((n, names.size), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(n), codes.shape[1]), codes.ravel()), 1)
        counts[:, names == ""] = 0
        winner = np.searchsorted(names, self.labels.astype(str))
        hit = (winner < names.size) & (names[np.minimum(winner, names.size - 1)] == self.labels.astype(str))
        counts[np.flatnonzero(hit), winner[hit]] = 0
        best = counts.argmax(axis=1)
        return np.where(counts[np.arange(n), best] > 0, names[best], "").astype(object)

    def explanation_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the explanations as two rectangular ``n_cells × top`` arrays, as h5ad can store them.

        Cells explained by fewer genes than the longest explanation (``Unknown`` cells: none) are padded
        with ``""`` genes and NaN contributions.

        Returns
        -------
        ``(genes, contributions)``: a string array and a float32 array, row ``i`` for cell ``i``.
        """
        ex = self.explanations or []
        width = max((len(e) for e in ex), default=0)
        genes = np.full((len(ex), width), "", dtype=object)
        contributions = np.full((len(ex), width), np.nan, dtype=np.float32)
        for i, e in enumerate(ex):
            if e:
                genes[i, : len(e)] = [g for g, _ in e]
                contributions[i, : len(e)] = [c for _, c in e]
        return genes.astype(str), contributions
