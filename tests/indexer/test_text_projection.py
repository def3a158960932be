"""``CellVectorSpec.text_dims``: the text view projected on directions fitted on the reference only."""

from __future__ import annotations

import numpy as np

from annotator import annotate
from indexer import build_reference
from indexer.reference import load_manifest, reference_vectors
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER


def test_text_dims_shrinks_the_stored_vector_and_queries_use_the_same_projection(edge_store, adata, query_adata):
    full = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER, text_dims=None)
    small = full.model_copy(update={"text_dims": 4})
    rec_full = build_reference(adata, store=edge_store, name="full", label_key="cell_type", spec=full)
    rec = build_reference(adata, store=edge_store, name="small", label_key="cell_type", spec=small)
    assert rec_full.dim - rec.dim == 32 - 4
    assert "text_pca.npz" in rec.artifacts
    assert load_manifest(edge_store, "small").record().spec.text_dims == 4
    vecs, _, ids = reference_vectors(edge_store, "small")
    res = annotate(adata, reference="small", store=edge_store, k=1)
    order = {c: i for i, c in enumerate(adata.obs_names)}
    # A reference cell re-encoded as a query lands on its stored vector: the query reuses the fitted axes.
    np.testing.assert_allclose(res.vectors[[order[c] for c in ids]], vecs, atol=1e-5)
    acc = np.mean(annotate(query_adata, reference="small", store=edge_store, k=5).labels
                  == query_adata.obs["cell_type"].to_numpy())
    assert acc >= 0.95
