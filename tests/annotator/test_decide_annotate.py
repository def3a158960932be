"""Calibrated decisions through the product: build stores a calibration, annotate uses it (issue 14)."""

from __future__ import annotations

import hashlib
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from annotator import UNKNOWN, annotate
from indexer import (
    InputError,
    NoCalibrationWarning,
    QueryShiftWarning,
    Reference,
    StoreError,
    add_cells,
    build_reference,
    relabel,
    remove_cells,
)
from indexer.cells import CALIBRATION_FILE, Calibration
from indexer.reference import load_manifest
from indexer.reference._versions import artifact_key
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER, PROGRAMS, SHARED

ERYTHROID = ["HBB", "HBA1", "HBA2", "ALAS2", "GYPA", "CA1", "AHSP", "HBD"]
"""A fifth program that no reference class expresses."""


def _cells(sizes: dict[str, int], *, seed: int, prefix: str) -> ad.AnnData:
    programs = {**PROGRAMS, "Erythroid": ERYTHROID}
    genes = [g for prog in programs.values() for g in prog] + SHARED
    col = {g: i for i, g in enumerate(genes)}
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for label, n in sizes.items():
        for _ in range(n):
            lam = np.full(len(genes), 0.3)
            lam[[col[g] for g in SHARED]] = rng.uniform(2, 6, len(SHARED))
            lam[[col[g] for g in programs[label]]] = rng.uniform(4, 12, len(programs[label]))
            rows.append(rng.poisson(lam))
            labels.append(label)
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"{prefix}{i}" for i in range(len(labels))])
    return ad.AnnData(sp.csr_matrix(np.asarray(rows, dtype=np.float32)), obs=obs, var=pd.DataFrame(index=genes))


def _pool(n: int, seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    """Reference and held-out cells of the same four programs (one draw, split in two)."""
    both = _cells(dict.fromkeys(PROGRAMS, 2 * n), seed=seed, prefix="c")
    idx = np.arange(both.n_obs)
    return both[idx % 2 == 0].copy(), both[idx % 2 == 1].copy()


@pytest.fixture(scope="module")
def built() -> tuple:
    from indexer import open_store

    store = open_store(":memory:")
    ref, held = _pool(150, seed=0)
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(ref, store=store, name="ref", label_key="cell_type", spec=spec)
    return store, ref, held


def test_build_stores_a_hashed_calibration(built) -> None:
    store, _ref, _ = built
    handle = Reference.open(store, "ref")
    assert CALIBRATION_FILE in handle.record.artifacts
    cal = handle.artifacts.calibration
    assert cal is not None
    assert cal.method == "5-fold refit"
    assert set(cal.labels) == set(PROGRAMS)
    assert cal.uses_pca
    data = store.get_blob(artifact_key("ref", handle.version, CALIBRATION_FILE))
    assert hashlib.sha256(data).hexdigest() == handle.record.artifacts[CALIBRATION_FILE]
    assert Calibration.from_json(data).to_json() == data
    back = Calibration.from_json(data)
    assert back.own_neighbours is not None
    np.testing.assert_array_equal(back.own_neighbours, cal.own_neighbours)


def test_altered_calibration_is_refused(built) -> None:
    store, _, _ = built
    handle = Reference.open(store, "ref")
    key = artifact_key("ref", handle.version, CALIBRATION_FILE)
    good = store.get_blob(key)
    store.put_blob(key, good.replace(b'"k":', b'"k": ', 1))
    try:
        with pytest.raises(StoreError, match=r"calibration\.json.*altered"):
            _ = Reference.open(store, "ref").artifacts
    finally:
        store.put_blob(key, good)


def test_held_out_reference_like_cells_are_rarely_rejected(built) -> None:
    store, _, held = built
    res = annotate(held, reference="ref", store=store, unknown_alpha=0.01)
    y = held.obs["cell_type"].to_numpy()
    assert (res.labels == UNKNOWN).mean() <= 0.04
    assert np.mean(res.labels[res.labels != UNKNOWN] == y[res.labels != UNKNOWN]) >= 0.98
    assert res.params.calibrated
    assert res.params.unknown_alpha == 0.01
    # Calibrated: mean confidence close to accuracy, not pinned at 1 like a unanimous vote share.
    assert abs(res.confidence.mean() - np.mean(res.labels == y)) < 0.05


def test_novel_program_is_rejected_and_alpha_zero_rejects_nothing(built) -> None:
    store, _, _ = built
    novel = _cells({"Erythroid": 60}, seed=5, prefix="e")
    res = annotate(novel, reference="ref", store=store, unknown_alpha=0.01)
    assert (res.labels == UNKNOWN).mean() >= 0.9
    assert all(r.startswith("unlike any reference cell of ") for r in res.reasons[res.labels == UNKNOWN])
    off = annotate(novel, reference="ref", store=store, unknown_alpha=0)
    assert not (off.labels == UNKNOWN).any()
    assert np.isfinite(off.novelty_p).all()


def _sibling(n: int, *, seed: int) -> ad.AnnData:
    """Cells of the first program with half of its genes silent: inside that type's spread, apart from its cells."""
    first = next(iter(PROGRAMS))
    cells = _cells({first: n}, seed=seed, prefix="s")
    x = cells.X.toarray()
    genes = PROGRAMS[first]
    x[:, [cells.var_names.get_loc(g) for g in genes[: len(genes) // 2]]] = 0
    return ad.AnnData(sp.csr_matrix(x), obs=cells.obs, var=cells.var)


def test_query_density_finds_a_sibling_group_the_reference_test_misses(built) -> None:
    store, _, held = built
    query = ad.concat([held, _sibling(80, seed=9)])
    query.obs_names_make_unique()
    on = annotate(query, reference="ref", store=store)
    off = annotate(query, reference="ref", store=store, query_density=False)
    novel = np.arange(query.n_obs) >= held.n_obs
    rejected_on, rejected_off = on.labels == UNKNOWN, off.labels == UNKNOWN
    assert rejected_on[novel].mean() >= 0.6
    assert rejected_on[novel].mean() >= rejected_off[novel].mean() + 0.2
    assert rejected_on[~novel].mean() <= 0.02
    assert (on.novelty_p <= off.novelty_p).all()
    assert on.params.query_density
    assert not off.params.query_density
    out = on.to_adata(query.copy())
    assert out.uns["cellvec"]["query_density"]["neighbours"] == 10
    assert out.uns["cellvec"]["query_density"]["inflation"] >= 1
    assert "query_density" not in off.to_adata(query.copy()).uns["cellvec"]


def test_empirical_null_is_recorded_and_never_rejects_more(built) -> None:
    store, _, held = built
    rng = np.random.default_rng(11)
    noisy = held.copy()
    noisy.X = sp.csr_matrix(held.X.toarray() + rng.poisson(0.5, size=held.shape).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QueryShiftWarning)
        on = annotate(noisy, reference="ref", store=store, query_density=False)
    off = annotate(noisy, reference="ref", store=store, query_density=False, empirical_null=False)
    ok = np.isfinite(off.novelty_p)
    assert (on.novelty_p[ok] >= off.novelty_p[ok]).all()
    assert (on.novelty_p[ok] > off.novelty_p[ok]).any()
    assert set(np.flatnonzero(on.labels == UNKNOWN)) <= set(np.flatnonzero(off.labels == UNKNOWN))
    assert on.params.empirical_null
    assert not off.params.empirical_null
    null = on.to_adata(noisy.copy()).uns["cellvec"]["empirical_null"]
    assert -0.5 <= null["shift"] < 0
    assert null["scale"] >= 1
    assert "empirical_null" not in off.to_adata(noisy.copy()).uns["cellvec"]


def test_a_query_unlike_the_reference_as_a_whole_is_still_rejected_and_warned(built) -> None:
    store, _, _ = built
    novel = _cells({"Erythroid": 300}, seed=6, prefix="e")  # large enough for the query's own null
    with pytest.warns(QueryShiftWarning, match="unlike reference 'ref'"):
        res = annotate(novel, reference="ref", store=store)
    assert res.extra["empirical_null"]["capped"]
    assert (res.labels == UNKNOWN).mean() >= 0.9


def test_to_adata_writes_the_decision_fields(built) -> None:
    store, _, held = built
    res = annotate(held[:40].copy(), reference="ref", store=store)
    out = res.to_adata(held[:40].copy())
    for f in ("confidence", "vote_share", "novelty_p", "runner_up", "runner_up_probability", "similarity"):
        assert f"cellvec_{f}" in out.obs
    assert (out.obs["cellvec_runner_up"] != out.obs["cellvec_label"].astype(str)).all()
    assert out.uns["cellvec"]["params"]["calibrated"] is True
    assert out.uns["cellvec"]["params"]["unknown_alpha"] == 0.01


def test_unknown_alpha_outside_range_is_refused(built) -> None:
    store, _, held = built
    with pytest.raises(InputError, match=r"unknown_alpha must lie in \[0, 0\.5\] \(got 0\.7\)"):
        annotate(held, reference="ref", store=store, unknown_alpha=0.7)


def test_rare_class_with_3_cells_is_found() -> None:
    from indexer import open_store

    store = open_store(":memory:")
    ref, _ = _pool(100, seed=1)
    rare = _cells({"Erythroid": 4}, seed=2, prefix="r")
    ref = ad.concat([ref, rare[:3]])
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(ref, store=store, name="rare", label_key="cell_type", spec=spec)
    query = _cells({"Erythroid": 10}, seed=3, prefix="q")
    res = annotate(query, reference="rare", store=store, unknown_alpha=0)
    assert (res.labels == "Erythroid").mean() >= 0.9


def test_reference_without_calibration_warns_and_votes(built) -> None:
    from indexer import open_store

    store = open_store(":memory:")
    ref, held = _pool(30, seed=0)
    build_reference(
        ref,
        store=store,
        name="old",
        label_key="cell_type",
        spec=CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER),
        calibration_cells=0,
    )
    assert CALIBRATION_FILE not in load_manifest(store, "old").record().artifacts
    with pytest.warns(NoCalibrationWarning, match=r"no calibration.*cellvec reference refit"):
        res = annotate(held, reference="old", store=store)
    assert not res.params.calibrated
    np.testing.assert_array_equal(res.confidence, res.vote_share)
    assert np.isnan(res.novelty_p).all()


def test_edits_keep_the_calibration_consistent() -> None:
    from indexer import open_store

    store = open_store(":memory:")
    ref, held = _pool(40, seed=0)
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(ref, store=store, name="e", label_key="cell_type", spec=spec)
    relabel(store, "e", old="T cell", new="T")
    cal = Reference.open(store, "e").artifacts.calibration
    assert "T" in cal.labels
    assert "T cell" not in cal.labels
    assert not cal.approximate  # a rename is exact
    assert cal.has_own_scores
    add_cells(_cells({"Erythroid": 20}, seed=4, prefix="a"), store=store, name="e", label_key="cell_type")
    cal = Reference.open(store, "e").artifacts.calibration
    assert cal.class_sizes[cal.labels.index("Erythroid")] == 20
    assert cal.approximate
    remove_cells(store, "e", label="B cell")
    cal = Reference.open(store, "e").artifacts.calibration
    assert cal.class_sizes[cal.labels.index("B cell")] == 0
    # The in-sample scores follow the calibration cells through every edit.
    assert cal.has_own_scores
    assert cal.own_neighbours is not None
    assert cal.own_pca is not None
    assert cal.own_neighbours.shape == cal.own_pca.shape == cal.cal_codes.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoCalibrationWarning)
        res = annotate(held, reference="e", store=store, unknown_alpha=0)
    assert "B cell" not in set(res.labels)
    assert (res.labels[held.obs["cell_type"].to_numpy() == "T cell"] == "T").mean() >= 0.9


def test_refit_gives_an_old_reference_a_calibration() -> None:
    from indexer import open_store, refit
    from schemas import RefineParams

    store = open_store(":memory:")
    ref, held = _pool(30, seed=0)
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    build_reference(ref, store=store, name="old", label_key="cell_type", spec=spec, calibration_cells=0)
    rec = refit(store, "old", params=RefineParams(method="supcon", epochs=3, patience=2, out_dim=16))
    assert CALIBRATION_FILE in rec.artifacts
    cal = Reference.open(store, "old").artifacts.calibration
    assert cal.method == "leave-self-out"
    assert not cal.uses_pca  # no expression data at refit time: neighbour evidence only
    assert cal.has_own_scores  # the refit's in-sample neighbour scores
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoCalibrationWarning)
        res = annotate(held, reference="old", store=store, unknown_alpha=0.01)
        own = annotate(ref, reference="old", store=store, unknown_alpha=0.01)
    assert res.params.calibrated
    assert (own.labels == UNKNOWN).mean() <= 0.05


def test_explain_with_unknown_cells_writes_h5ad(built, tmp_path) -> None:
    store, _, held = built
    mixed = ad.concat([held[:20].copy(), _cells({"Erythroid": 10}, seed=6, prefix="x")])
    mixed.obs_names_make_unique()
    res = annotate(mixed, reference="ref", store=store, explain=True)
    assert (res.labels == UNKNOWN).any()
    out = res.to_adata(mixed.copy())
    out.write_h5ad(tmp_path / "a.h5ad")  # ragged explanations (Unknown cells have none) used to fail here
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["cellvec"]["explain"]["genes"].shape[0] == mixed.n_obs
