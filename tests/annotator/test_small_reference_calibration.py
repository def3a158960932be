"""Novelty on a tiny reference (issue 14): reference-like cells are rejected at about alpha, own cells included.

The reference is the scale benchmark's synthetic one used by ``test_chunked_build_equals_one_call`` (4 labels,
about 75 cells each, hybrid mode). Before the Mahalanobis part kept only the PCA components that hold their
variance out of sample, 11% of the reference's own cells lay farther from their label's mean than every
cross-fitted calibration cell (the PCA was fitted on them: along its 47 fitted-noise components they lie about
three times farther out than a cell it was not fitted on) and were called "Unknown" at alpha 0.01.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from annotator import UNKNOWN, annotate
from indexer import Reference, build_reference, open_store
from indexer.reference._calibrate import stable_components
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER

if TYPE_CHECKING:
    from anndata import AnnData

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


def test_the_mahalanobis_part_keeps_the_components_that_hold_out_of_sample(small) -> None:
    store, _, _ = small
    cal = Reference.open(store, "small").artifacts.calibration
    assert cal is not None
    assert cal.means is not None
    assert cal.precision is not None
    r = cal.info["pca_components"]
    # Four labels: three directions of signal; the other 47 of the 50 components are fitted noise.
    assert 2 <= r <= 6
    assert cal.means.shape[1] == r
    assert cal.precision.shape == (r, r)
    ratio = np.asarray(cal.info["pca_variance_ratio"])
    assert ratio.shape == (50,)
    assert np.median(ratio[r:]) < 0.6


def test_stable_components_counts_the_components_that_hold() -> None:
    assert stable_components(np.array([1.0, 0.95, 0.3, 0.85, 0.4, 0.5])) == 3
    assert stable_components(np.array([0.2, 0.3])) == 1  # at least one component
    assert stable_components(np.array([0.9, 0.6]), threshold=0.5) == 2
