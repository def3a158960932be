"""Tests of the SupCon refinement: loss, encoder files and training."""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from indexer import InputError, StoreError, SupConModel
from indexer.cells import stratified_split
from indexer.cells.supcon import supcon_loss, train_supcon
from indexer.cells.supcon._model import CONFIG_FILE, WEIGHTS_FILE
from indexer.cells.supcon._train import _BalancedSampler, _knn_vote, _macro_f1, _train
from schemas import RefineParams, TrainReport

SMALL = RefineParams(hidden_dim=32, out_dim=8, proj_dim=8, epochs=5, batch_size=64, patience=5)


def reference_supcon(features: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """SupCon L_out written out with plain loops."""
    batch, n_views, _ = features.shape
    anchors = [(i, v) for v in range(n_views) for i in range(batch)]
    terms = []
    for i, v in anchors:
        z_i = features[i, v]
        others = [(j, w) for j, w in anchors if (j, w) != (i, v)]
        denominator = sum(math.exp(float(z_i @ features[j, w]) / temperature) for j, w in others)
        positives = [(j, w) for j, w in others if labels[j] == labels[i]]
        if not positives:
            continue
        log_probs = [float(z_i @ features[j, w]) / temperature - math.log(denominator) for j, w in positives]
        terms.append(-sum(log_probs) / len(positives))
    return sum(terms) / len(terms)


def clustered(
    n: int, dim: int, n_classes: int, *, seed: int, spread: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    y = np.arange(n) % n_classes
    x = centres[y] + spread * rng.normal(size=(n, dim)) * np.sqrt(1.0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x2 = x + 0.02 * rng.normal(size=x.shape)
    return x.astype(np.float32), x2.astype(np.float32), np.array([f"type{c}" for c in y])


# ------------------------------------------------------------------------------------------------- loss


def test_loss_matches_hand_computation() -> None:
    # 2 cells x 2 views in 2-d, different labels: each anchor's only positive is its other view.
    feats = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [-0.8, 0.6]]])
    tau = 0.5
    # Anchor (cell 0, view 0) = [1, 0]: dots with the others are 0 (positive), 0.6, -0.8.
    by_hand = -(0 / tau - math.log(math.exp(0) + math.exp(0.6 / tau) + math.exp(-0.8 / tau)))
    got_all = supcon_loss(torch.tensor(feats), torch.tensor([0, 1]), temperature=tau)
    expected = reference_supcon(feats, np.array([0, 1]), tau)
    assert float(got_all) == pytest.approx(expected, rel=1e-9)
    # The reference itself agrees with the hand-computed first anchor.
    one_anchor = reference_supcon(feats[:1], np.array([0]), tau)
    assert one_anchor == pytest.approx(-(0 / tau - math.log(math.exp(0))), abs=1e-12)
    assert by_hand > 0


@pytest.mark.parametrize("labels", [[0, 1], [0, 0], [1, 1, 0, 2, 2], [3, 1, 4, 1, 5]])
def test_loss_matches_reference_loops(labels: list[int]) -> None:
    rng = np.random.default_rng(len(labels))
    feats = rng.normal(size=(len(labels), 2, 5))
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    got = supcon_loss(torch.tensor(feats), torch.tensor(labels), temperature=0.1)
    assert float(got) == pytest.approx(reference_supcon(feats, np.array(labels), 0.1), rel=1e-9)


def test_loss_with_three_views_and_no_positive_anchor_excluded() -> None:
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(3, 3, 4))
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    got = supcon_loss(torch.tensor(feats), torch.tensor([0, 1, 1]), temperature=0.2)
    assert float(got) == pytest.approx(reference_supcon(feats, np.array([0, 1, 1]), 0.2), rel=1e-9)
    # One view per cell and unique labels: no anchor has a positive.
    lonely = supcon_loss(torch.tensor(feats[:, :1]), torch.tensor([0, 1, 2]), temperature=0.2)
    assert float(lonely) == 0.0


def test_singleton_class_in_batch_gives_finite_loss_and_gradients() -> None:
    z = torch.randn(3, 2, 6, requires_grad=True)
    loss = supcon_loss(F.normalize(z, dim=-1), torch.tensor([0, 0, 1]), temperature=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    assert z.grad is not None
    assert torch.isfinite(z.grad).all()
    assert z.grad[2].abs().sum() > 0


def test_loss_rejects_bad_shapes() -> None:
    with pytest.raises(InputError, match=r"shape \(batch, n_views, dim\)"):
        supcon_loss(torch.zeros(4, 3), torch.zeros(4), temperature=0.1)
    with pytest.raises(InputError, match="one label per cell"):
        supcon_loss(torch.zeros(4, 2, 3), torch.zeros(3), temperature=0.1)
    with pytest.raises(InputError, match="temperature"):
        supcon_loss(torch.zeros(4, 2, 3), torch.zeros(4), temperature=0.0)


@pytest.mark.parametrize("architecture", ["residual-mlp/1", "mlp/1"])
def test_gradients_reach_every_parameter(architecture: str) -> None:
    model = SupConModel(10, SMALL, architecture=architecture)  # type: ignore[arg-type]
    net = model._net
    net.train()
    x = F.normalize(torch.randn(16, 10), dim=1)
    proj = net(torch.cat([x, x + 0.05 * torch.randn_like(x)]))
    loss = supcon_loss(proj.view(2, 16, -1).transpose(0, 1), torch.arange(16) % 3, temperature=0.1)
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


# -------------------------------------------------------------------------------------------- model files


def test_zero_rows_encode_to_zero_rows() -> None:
    model = SupConModel(6, SMALL)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    x[[1, 3]] = 0
    out = model.encode(x, batch_size=3)
    assert out.dtype == np.float32
    assert out.shape == (4, SMALL.out_dim)
    np.testing.assert_array_equal(out[[1, 3]], 0)
    np.testing.assert_allclose(np.linalg.norm(out[[0, 2]], axis=1), 1, rtol=1e-5)


def test_encode_rejects_wrong_dimension() -> None:
    with pytest.raises(InputError, match=r"expected vectors of shape \(n_cells, 6\)"):
        SupConModel(6, SMALL).encode(np.zeros((2, 5)))


@pytest.fixture(scope="module")
def trained() -> tuple[SupConModel, TrainReport, np.ndarray]:
    x, x2, y = clustered(120, 12, 3, seed=0)
    model, report = train_supcon(
        x, x2, y, params=SMALL.model_copy(update={"val_fraction": 0.2}), device="cpu"
    )
    return model, report, x


def test_round_trip_gives_identical_encodings(trained: tuple[SupConModel, TrainReport, np.ndarray]) -> None:
    model, _, x = trained
    files = model.to_files()
    assert set(files) == {WEIGHTS_FILE, CONFIG_FILE}
    loaded = SupConModel.from_files(files, expected_sha256=model.sha256())
    np.testing.assert_array_equal(loaded.encode(x), model.encode(x))
    assert loaded.sha256() == model.sha256()
    assert loaded.to_files() == files
    assert loaded.labels == ("type0", "type1", "type2")
    assert loaded.params == model.params
    assert loaded.in_dim == 12


def test_altered_weights_byte_is_refused(trained: tuple[SupConModel, TrainReport, np.ndarray]) -> None:
    files = trained[0].to_files()
    weights = bytearray(files[WEIGHTS_FILE])
    weights[-5] ^= 0xFF
    altered = {**files, WEIGHTS_FILE: bytes(weights)}
    with pytest.raises(
        StoreError, match=r"supcon\.safetensors .*altered or truncated.*cellvec reference refit"
    ):
        SupConModel.from_files(altered)
    truncated = {**files, WEIGHTS_FILE: files[WEIGHTS_FILE][:-100]}
    with pytest.raises(StoreError, match="altered or truncated"):
        SupConModel.from_files(truncated)


def test_wrong_hash_and_altered_config_are_refused(
    trained: tuple[SupConModel, TrainReport, np.ndarray],
) -> None:
    files = trained[0].to_files()
    with pytest.raises(
        StoreError, match=r"content hash \w+ differs from 000000000000.*cellvec reference refit"
    ):
        SupConModel.from_files(files, expected_sha256="0" * 64)
    with pytest.raises(StoreError, match=r"supcon\.json is not valid JSON"):
        SupConModel.from_files({**files, CONFIG_FILE: files[CONFIG_FILE][:-3]})
    # A consistent-looking but edited config: caught by the recorded hash.
    edited = files[CONFIG_FILE].replace(b'"type0"', b'"typeX"')
    assert edited != files[CONFIG_FILE]
    with pytest.raises(StoreError, match="altered or truncated"):
        SupConModel.from_files({**files, CONFIG_FILE: edited}, expected_sha256=trained[0].sha256())


@pytest.mark.parametrize("missing", [WEIGHTS_FILE, CONFIG_FILE])
def test_missing_file_is_refused(trained: tuple[SupConModel, TrainReport, np.ndarray], missing: str) -> None:
    files = trained[0].to_files()
    del files[missing]
    with pytest.raises(StoreError, match=re.escape(f"{missing!r} is missing") + ".*cellvec reference refit"):
        SupConModel.from_files(files)


def test_sha256_covers_both_files(trained: tuple[SupConModel, TrainReport, np.ndarray]) -> None:
    model = trained[0]
    digest = model.sha256()
    assert len(digest) == 64
    assert digest == model.sha256()
    assert digest != hashlib.sha256(model.to_files()[WEIGHTS_FILE]).hexdigest()


# ------------------------------------------------------------------------------------------------ training


def test_training_report(trained: tuple[SupConModel, TrainReport, np.ndarray]) -> None:
    _, report, _ = trained
    assert report.early_stopping
    assert report.n_train + report.n_val == 120
    assert report.n_val == 24
    assert report.history[0].epoch == 0
    assert len(report.history) == report.epochs_run + 1
    assert report.best_val_metric == max(h.val_metric for h in report.history if h.val_metric is not None)
    assert report.device == "cpu"
    assert TrainReport.model_validate_json(report.model_dump_json()) == report


def test_training_is_reproducible_with_a_seed() -> None:
    x, x2, y = clustered(90, 10, 3, seed=1)
    params = SMALL.model_copy(update={"epochs": 3, "val_fraction": 0.0})
    a, _ = train_supcon(x, x2, y, params=params, device="cpu")
    b, _ = train_supcon(x, x2, y, params=params, device="cpu")
    c, _ = train_supcon(x, x2, y, params=params.model_copy(update={"seed": 1}), device="cpu")
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    assert a.sha256() == b.sha256()
    assert not np.allclose(a.encode(x), c.encode(x))


def test_training_does_not_disturb_global_torch_state() -> None:
    x, x2, y = clustered(30, 6, 2, seed=2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    deterministic = torch.are_deterministic_algorithms_enabled()
    train_supcon(x, x2, y, params=SMALL.model_copy(update={"epochs": 1}), device="cpu")
    assert torch.equal(torch.rand(3), expected)
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def overlapping_classes(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes differ in 3 weak dimensions hidden under 21 strong nuisance dimensions."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    signal = np.eye(4)[y][:, :3] * 2.0 - np.array([0.5, 0.5, 0.5]) + 0.3 * rng.normal(size=(n, 3))
    nuisance = 3.0 * rng.normal(size=(n, 21)) + 4.0
    return np.hstack([signal, nuisance]).astype(np.float32), y


def knn_f1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    def unit(a: np.ndarray) -> torch.Tensor:
        return F.normalize(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)), dim=1)

    pred, _ = _knn_vote(unit(test_x), unit(train_x), train_y, 4, k=10)
    return _macro_f1(test_y, pred)


def test_training_improves_separability() -> None:
    x, y = overlapping_classes(600, seed=0)
    x_test, y_test = overlapping_classes(200, seed=1)
    rng = np.random.default_rng(2)
    x2 = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
    params = RefineParams(
        hidden_dim=64, out_dim=16, proj_dim=16, epochs=25, patience=25, batch_size=128, lr=3e-3
    )
    model, report = train_supcon(x, x2, y.astype(str), params=params, device="cpu")
    before = knn_f1(x, y, x_test, y_test)
    after = knn_f1(model.encode(x), y, model.encode(x_test), y_test)
    assert before < 0.6
    assert after > before + 0.2
    assert report.best_val_metric is not None
    assert report.initial_val_metric is not None
    assert report.best_val_metric > report.initial_val_metric


def test_without_validation_runs_every_epoch_and_says_so() -> None:
    x, x2, y = clustered(40, 6, 2, seed=3)
    seen: list[dict[str, float]] = []
    _, report = train_supcon(
        x, x2, y, params=SMALL.model_copy(update={"val_fraction": 0.0, "epochs": 3}), progress=seen.append
    )
    assert not report.early_stopping
    assert "without early stopping" in report.note
    assert report.epochs_run == 3
    assert report.best_epoch == 3
    assert report.n_val == 0
    assert [d["epoch"] for d in seen] == [1.0, 2.0, 3.0]
    assert all(math.isnan(d["val_metric"]) for d in seen)
    _, few = train_supcon(x, x2, y, params=SMALL.model_copy(update={"val_fraction": 0.1, "epochs": 2}))
    assert not few.early_stopping
    assert "could be held out" in few.note
    assert few.n_train == 40


def test_zero_rows_are_left_out_of_training_and_encode_to_zero() -> None:
    x, x2, y = clustered(40, 6, 2, seed=4)
    x[:3] = 0
    x2[5:8] = 0  # an empty second view falls back to the first
    model, report = train_supcon(x, x2, y, params=SMALL.model_copy(update={"epochs": 2, "val_fraction": 0.0}))
    assert report.n_skipped == 3
    assert report.n_train == 37
    out = model.encode(x)
    np.testing.assert_array_equal(out[:3], 0)
    assert np.isfinite(out).all()


def test_training_rejects_unusable_inputs() -> None:
    x, x2, y = clustered(20, 6, 2, seed=5)
    with pytest.raises(InputError, match="same shape"):
        train_supcon(x, x2[:, :5], y, params=SMALL)
    with pytest.raises(InputError, match="one entry per row"):
        train_supcon(x, x2, y[:5], params=SMALL)
    with pytest.raises(InputError, match=r"at least 2 labels.*method 'none'"):
        train_supcon(x, x2, np.full(20, "B"), params=SMALL)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        train_supcon(bad, x2, y, params=SMALL)


def test_singleton_class_trains_and_stays_in_training() -> None:
    x, x2, y = clustered(61, 6, 3, seed=6)
    y[-1] = "rare"
    model, report = _train(
        x,
        x2,
        y,
        params=SMALL.model_copy(update={"epochs": 2}),
        device="cpu",
        progress=None,
        architecture="mlp/1",
    )
    assert "rare" in model.labels
    assert report.n_classes == 4
    assert np.isfinite(model.encode(x)).all()


# ---------------------------------------------------------------------------------------------- internals


def test_stratified_split_keeps_singletons_in_training() -> None:
    y = np.array([0] * 50 + [1] * 5 + [2])
    train, val = stratified_split(y, test_size=0.2, seed=0)
    assert np.intersect1d(train, val).size == 0
    assert np.union1d(train, val).size == y.size
    assert np.bincount(y[val], minlength=3).tolist() == [10, 1, 0]


def test_balanced_sampler_represents_rare_classes() -> None:
    y = np.array([0] * 1000 + [1] * 20 + [2])
    sampler = _BalancedSampler(y, 90, np.random.default_rng(0))
    counts = np.bincount(y[sampler()], minlength=3)
    assert counts.tolist() == [30, 30, 30]
    many = _BalancedSampler(np.arange(100) % 50, 20, np.random.default_rng(0))
    batch_labels = (np.arange(100) % 50)[many()]
    assert batch_labels.size == 20
    assert np.bincount(batch_labels).max() >= 2
    assert set(np.bincount(batch_labels)[np.bincount(batch_labels) > 0]) == {2}
