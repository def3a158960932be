"""Novelty on a tiny reference (issue 14): reference-like cells are rejected at about alpha, own cells included.

The reference is the scale benchmark's synthetic one used by ``test_chunked_build_equals_one_call`` (4 labels,
about 75 cells each, hybrid mode). Cells never in the reference were already rejected at about alpha; 4.7% of
the reference's own cells were not: the PCA was fitted on them, so along its fitted-noise components they lay
farther from their label's mean than every cross-fitted calibration cell. A query that is a stored reference
cell is now judged against the reference cells' in-sample scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from annotator import UNKNOWN, annotate
from indexer import Reference, build_reference, open_store
from indexer.cells import decide
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer import VectorStore

ALPHA = 0.01


def _synthetic(n: int, *, seed: int, prefix: str) -> AnnData:
    from benchmarks.scale._cells import synthetic_cells
    from benchmarks.scale._scale import pick_genes

    return synthetic_cells(n, pick_genes(300), n_classes=4, program_size=10, n_shared=10, seed=seed, prefix=prefix)


@pytest.fixture(scope="module")
def small(data_dir: Path) -> tuple:
    store = open_store(":memory:")
    ref = _synthetic(300, seed=5, prefix="c")
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(ref, store=store, name="small", label_key="cell_type", spec=spec)
    held = _synthetic(300, seed=6, prefix="h")  # same programs, other cells: never in the reference
    return store, ref, held


def test_the_reference_s_own_cells_are_rejected_at_about_alpha(small) -> None:
    store, ref, _ = small
    res = annotate(ref, reference="small", store=store, unknown_alpha=ALPHA)
    assert (res.labels == UNKNOWN).mean() <= 2 * ALPHA + 0.01
    y = ref.obs["cell_type"].astype(str).to_numpy()
    known = res.labels != UNKNOWN
    assert (res.labels[known] == y[known]).all()


def test_held_out_reference_like_cells_are_rejected_at_about_alpha(small) -> None:
    store, _, held = small
    res = annotate(held, reference="small", store=store, unknown_alpha=ALPHA)
    assert (res.labels == UNKNOWN).mean() <= 2 * ALPHA + 0.01
    # Exchangeable with the calibration: p-values of held-out cells are roughly uniform, not piled at 0 or 1.
    p = res.novelty_p
    assert 0.02 <= np.mean(p < 0.1) <= 0.2
    assert 0.3 <= np.median(p) <= 0.7


def test_a_type_missing_from_the_small_reference_is_still_rejected(small, data_dir: Path) -> None:
    _, ref, held = small
    keep = ref.obs["cell_type"].astype(str).to_numpy() != "type03"
    with open_store(":memory:") as store:
        spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
        build_reference(ref[keep].copy(), store=store, name="without3", label_key="cell_type", spec=spec)
        missing = held[held.obs["cell_type"].astype(str).to_numpy() == "type03"].copy()
        res = annotate(missing, reference="without3", store=store, unknown_alpha=ALPHA)
    assert (res.labels == UNKNOWN).mean() >= 0.9


def test_only_queries_that_are_stored_cells_are_judged_in_sample(small) -> None:
    store, ref, held = small
    cal = Reference.open(store, "small").artifacts.calibration
    assert cal is not None
    assert cal.has_own_scores
    assert cal.own_neighbours is not None
    assert cal.own_pca is not None
    assert cal.own_neighbours.shape == cal.cal_neighbours.shape
    # In-sample: each cell is its own best neighbour and the PCA was fitted on it (it lies farther out).
    assert np.median(cal.own_neighbours) > np.median(cal.cal_neighbours)
    assert np.median(-cal.own_pca) > 1.5 * np.median(-cal.cal_pca)
    own = annotate(ref[:40].copy(), reference="small", store=store, unknown_alpha=ALPHA, k=cal.k)
    assert (own.neighbour_scores[:, 0] > 0.9999).all()
    # The same neighbours without the self-hit are judged against the cross-fitted tables: lower p-values.
    codes = np.searchsorted(np.asarray(cal.labels), own.neighbour_labels.astype(str))
    scores = own.neighbour_scores.astype(np.float64)
    pca = _pca_scores(store, ref[:40].copy())
    in_sample = decide(codes, scores, calibration=cal, alpha=ALPHA, pca_scores=pca)
    np.testing.assert_allclose(in_sample.novelty_p, own.novelty_p)
    cross = decide(codes, np.minimum(scores, 0.999), calibration=cal, alpha=ALPHA, pca_scores=pca)
    assert np.median(cross.novelty_p) < np.median(in_sample.novelty_p)
    new = annotate(held[:40].copy(), reference="small", store=store, unknown_alpha=ALPHA, k=cal.k)
    assert (new.neighbour_scores[:, 0] < 0.9999).all()


def _pca_scores(store: VectorStore, cells: AnnData) -> np.ndarray:
    from indexer.cells import encode_cells

    handle = Reference.open(store, "small")
    enc, _ = encode_cells(cells, spec=handle.record.spec, store=store, artifacts=handle.artifacts, what="query")
    assert enc.pca_scores is not None
    return enc.pca_scores
