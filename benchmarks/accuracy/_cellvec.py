"""cellvec itself as a benchmark method: build a reference in a store, annotate the query through Qdrant.

Besides the labels, every prediction measures exact versus approximate search: the same stored reference
vectors are searched exhaustively in memory (cosine) and voted with cellvec's own rule
(:func:`annotator.vote`), then compared with the labels and neighbour ids that came back through the
Qdrant collection.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd

from benchmarks.accuracy._baselines import Prediction
from indexer.cells import recall_at_k
from schemas import CellMode, CellVectorSpec, ExpressionParams, RefineParams

SUPCON_BENCH = RefineParams(method="supcon", epochs=60, patience=8)
"""SupCon settings of the benchmark (the library defaults with a shorter epoch cap, for the time budget)."""


def reference_name(*parts: str) -> str:
    """Return a store-safe reference name from parts (lowercase letters, digits, ``_``).

    Parameters
    ----------
    *parts
        Pieces such as ``"bench"``, ``"s0"``, ``"paper"``, ``"random:384"``.

    Returns
    -------
    The joined name.
    """
    return "_".join(re.sub(r"[^a-z0-9]+", "", p.lower()) for p in parts if p)


class CellvecMethod:
    """One cellvec configuration (mode x encoder x refinement) run through the real library.

    Parameters
    ----------
    mode
        Cell vector mode.
    encoder
        Gene text encoder id (ignored by ``"expression"``).
    supcon
        Refine with SupCon.
    store
        Store for the reference collections (and the gene vector cache).
    species
        Species of the genes.
    tag
        Prefix that makes the reference name unique to this run and seed.
    seed
        SupCon seed.
    data_dir
        Gene description data folder.
    refine
        SupCon parameters (default :data:`SUPCON_BENCH`).
    """

    kind: Literal["knn", "classifier"] = "knn"

    def __init__(
        self,
        *,
        mode: CellMode,
        encoder: str,
        supcon: bool,
        store: Any,
        species: Literal["human", "mouse"] = "human",
        tag: str = "bench",
        seed: int = 0,
        data_dir: Path | None = None,
        refine: RefineParams | None = None,
    ) -> None:
        self.mode = mode
        self.encoder = encoder
        self.supcon = supcon
        self.store = store
        self.data_dir = data_dir
        suffix = "+supcon" if supcon else ""
        self.name = f"cellvec-{mode}{suffix}" if mode == "expression" else f"cellvec-{mode}[{encoder}]{suffix}"
        base = refine or SUPCON_BENCH
        self.spec = CellVectorSpec(
            mode=mode,
            encoder=encoder,
            species=species,
            expression=ExpressionParams() if mode in ("expression", "hybrid") else None,
            refine=base.model_copy(update={"seed": seed}) if supcon else RefineParams(method="none"),
        )
        self.ref_name = reference_name(tag, f"s{seed}", mode, "" if mode == "expression" else encoder, suffix)
        self._built = False
        self.genes: ad.AnnData | None = None
        """Cross-species runs: the query in its own species; the reference is built with ``genes=`` it."""

    def fit(self, ref: ad.AnnData, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Build the reference; return its stored vectors and labels (cells without a vector are absent)."""
        from indexer import build_reference
        from indexer.reference import reference_vectors

        adata = ad.AnnData(
            X=ref.X,
            obs=pd.DataFrame({"label": np.asarray(labels).astype(str)}, index=ref.obs_names),
            var=pd.DataFrame(index=ref.var_names),
        )
        self._built = True
        build_reference(
            adata,
            store=self.store,
            name=self.ref_name,
            label_key="label",
            spec=self.spec,
            data_dir=self.data_dir,
            genes=self.genes,
        )
        vecs, labs, ids = reference_vectors(self.store, self.ref_name)
        self.ref_vectors_ = vecs
        self.ref_labels_ = np.asarray(labs).astype(str)
        self.ref_ids_ = np.asarray(ids).astype(str)
        return vecs, self.ref_labels_

    def predict(self, query: ad.AnnData, *, k: int | None) -> Prediction:
        """Annotate through the store; compare with exact in-memory search on the same vectors."""
        from annotator import annotate

        k = k or 10
        q = ad.AnnData(X=query.X, obs=pd.DataFrame(index=query.obs_names), var=pd.DataFrame(index=query.var_names))
        res = annotate(q, reference=self.ref_name, store=self.store, k=k, data_dir=self.data_dir)
        labels = np.asarray(res.labels).astype(str)
        ann_ids = np.asarray(res.neighbour_ids).astype(str)
        exact_labels, exact_ids = self._exact(np.asarray(res.vectors, dtype=np.float32), k=k)
        has = np.isfinite(np.asarray(res.vectors)).all(axis=1) & (np.abs(res.vectors).sum(axis=1) > 0)
        # ANN versus exact search is judged on the same rule (the vote of the k neighbours): the calibrated
        # decision that labels the cells reads more neighbours and would blur the comparison.
        ann_vote = _vote_labels(np.asarray(res.neighbour_labels).astype(str), np.asarray(res.neighbour_scores))
        extra = {
            "exact_labels": exact_labels,
            "label_agreement": float(np.mean(exact_labels[has] == ann_vote[has])) if has.any() else float("nan"),
            "recall_at_k": recall_at_k(exact_ids[has], ann_ids[has]),
            "k": k,
        }
        return Prediction(labels=labels, vectors=np.asarray(res.vectors), neighbour_ids=ann_ids, extra=extra)

    def _exact(self, qv: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exhaustive cosine top-k over the stored reference vectors, voted with cellvec's rule."""
        from indexer.cells import vote

        def unit(x: np.ndarray) -> np.ndarray:
            n = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.where(n > 0, n, 1.0)

        sims = unit(qv) @ unit(self.ref_vectors_).T
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        classes, codes = np.unique(self.ref_labels_, return_inverse=True)
        winner, _, _ = vote(codes[top], np.take_along_axis(sims, top, axis=1), len(classes))
        labels = np.where(winner >= 0, classes[np.maximum(winner, 0)], "Unknown")
        return labels.astype(str), self.ref_ids_[top]

    def close(self) -> None:
        """Drop the reference from the store (the gene vector cache stays)."""
        if self._built:
            from indexer import drop_reference

            drop_reference(self.store, self.ref_name)
            self._built = False


def _vote_labels(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Today's vote over ``n × k`` neighbour labels (``""`` missing), as label strings."""
    from indexer.cells import vote

    names, inv = np.unique(labels, return_inverse=True)
    codes = inv.reshape(labels.shape)
    if names.size and names[0] == "":
        codes, names = codes - 1, names[1:]
    winner, _, _ = vote(codes, np.nan_to_num(scores), max(names.size, 1))
    return np.where(winner >= 0, names[np.maximum(winner, 0)], "Unknown").astype(str)
