"""The scale benchmark: recall on hand examples, synthetic cells, and the command on tiny sizes."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.scale._scale import (
    REQUIRED_FIELDS,
    exact_topk,
    format_table,
    recall_by_score,
    synthetic_cells,
)
from cellvec.cli._scale import scale_cmd
from indexer import InputError
from indexer.cells import recall_at_k


def test_recall_at_k_hand_example() -> None:
    found = np.array([[1, 2, 3], [4, 5, 6], [7, -1, -1]])
    truth = np.array([[3, 2, 1], [4, 9, 8], [7, 8, 9]])
    # 3 of 3, 1 of 3, 1 of 3 (missing hits never count)
    assert recall_at_k(truth, found) == pytest.approx(5 / 9)  # the product's order: exact first
    assert recall_at_k(np.zeros((0, 3), int), np.zeros((0, 3), int)) == 1.0


def test_recall_by_score_counts_ties_as_hits() -> None:
    # Query 0: exact 2nd-best similarity 0.8; the ANN found 0.9 and another point at 0.8 (a tie) -> 2/2.
    # Query 1: exact 2nd-best 0.6; found 0.7 and 0.1 -> 1/2.
    sims = np.array([[0.9, 0.8], [0.7, 0.1]])
    assert recall_by_score(sims, np.array([0.8, 0.6])) == pytest.approx(0.75)
    assert recall_by_score(np.array([[np.nan, -np.inf]]), np.array([0.5])) == 0.0


def test_exact_topk_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((300, 8)).astype(np.float32)
    q = rng.standard_normal((50, 8)).astype(np.float32)
    sims, ids = exact_topk(ref, q, 5, block=7)
    full = q @ ref.T
    want = np.argsort(-full, axis=1)[:, :5]
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(sims, np.take_along_axis(full, want, axis=1), rtol=1e-6)


def test_synthetic_cells_are_labelled_sparse_counts() -> None:
    symbols = [f"G{i}" for i in range(200)]
    a = synthetic_cells(500, symbols, n_classes=5, program_size=10, n_shared=10, seed=3)
    b = synthetic_cells(500, symbols, n_classes=5, program_size=10, n_shared=10, seed=3)
    assert a.shape == (500, 200)
    assert a.obs["cell_type"].nunique() == 5
    assert a.obs_names[0] == "c0"
    assert (a.X != b.X).nnz == 0  # reproducible
    x = a.X.toarray()
    assert (x >= 0).all()
    assert np.array_equal(x, np.round(x))
    assert x.max() > 20


def test_format_table_puts_sizes_side_by_side() -> None:
    text = format_table([{"n": 10, "build_s": 1.5, "index": {}}, {"n": 20, "build_s": 12.25}])
    assert "n=10" in text
    assert "n=20" in text
    assert "build_s" in text
    assert "index" not in text


def test_scale_command_emits_one_json_row_per_size(tmp_path: Path, data_dir: Path) -> None:
    result = CliRunner().invoke(
        scale_cmd,
        ["--sizes", "500,1000", "--queries", "200", "--encoder", "random:32", "--skip-faiss", "--json",
         "--ef-sweep", "16,64", "--mode", "paper",
         "--work-dir", str(tmp_path / "work")],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["n"] for r in rows] == [500, 1000]
    for r in rows:
        assert set(REQUIRED_FIELDS) <= set(r)
        assert r["build_s"] > 0
        assert r["peak_rss_mb"] > 0
        assert 0 < r["peak_rss_anon_build_mb"] <= r["peak_rss_build_mb"] + 1
        assert r["disk_mb"] > 0
        assert r["annotate_cells_per_s"] > 0
        assert r["annotate_cold_cells_per_s"] > 0
        assert 0.9 <= r["recall_at_10"] <= 1.0
        assert r["sklearn_recall_at_10"] == pytest.approx(1.0)
        assert "faiss_flat_recall_at_10" not in r
        assert r["accuracy"] > 0.9
        assert r["index"]["hnsw_m"] == 16
        assert (r["encoder"], r["dim"], r["mode"]) == ("random:32", 32, "paper")
        assert r["ef16_queries_per_s"] > 0
        assert r["ef64_recall_at_10"] == pytest.approx(1.0)  # below the indexing threshold: exact search
    # The gene cache is shared by the sizes: the first embeds every gene once, the second none.
    assert rows[0]["genes_embedded"] == 2000
    assert rows[1]["genes_embedded"] == 0
    assert (tmp_path / "work" / "genes").is_dir()


def test_scale_command_measures_the_default_mode(tmp_path: Path, data_dir: Path) -> None:
    from schemas import DEFAULT_MODE, DEFAULT_TEXT_DIMS

    result = CliRunner().invoke(
        scale_cmd,
        ["--sizes", "800", "--queries", "200", "--encoder", "random:32", "--skip-faiss", "--skip-sklearn",
         "--json", "--work-dir", str(tmp_path / "work")],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert (row["mode"], row["text_dims"]) == (DEFAULT_MODE, DEFAULT_TEXT_DIMS)  # the product's default vector
    assert row["dim"] == 50 + 50 + DEFAULT_TEXT_DIMS  # principal components, a class score per label, text
    assert row["recall_at_10"] >= 0.9
    assert row["accuracy"] > 0.9  # the labels' programs show in expression: the head and PCA separate them


def test_scale_command_refuses_bad_sizes() -> None:
    with pytest.raises(InputError, match="--sizes 'ten'"):
        CliRunner().invoke(scale_cmd, ["--sizes", "ten"], catch_exceptions=False)
    with pytest.raises(InputError, match="--ef-sweep '0'"):
        CliRunner().invoke(scale_cmd, ["--sizes", "100", "--ef-sweep", "0"], catch_exceptions=False)


@pytest.mark.parametrize("mode", ["paper", "hybrid"])
def test_chunked_build_equals_one_call(tmp_path: Path, data_dir: Path, mode: str) -> None:
    from annotator import annotate
    from benchmarks.scale._scale import REFERENCE, build_chunked, pick_genes
    from indexer import NoCalibrationWarning, build_reference, open_store
    from indexer.reference import load_manifest, reference_vectors
    from schemas import CellVectorSpec

    spec = CellVectorSpec(mode=mode, encoder="random:32")  # type: ignore[arg-type]
    ref = synthetic_cells(300, pick_genes(300), n_classes=4, program_size=10, n_shared=10, seed=5)
    with open_store(tmp_path / "one") as one, open_store(tmp_path / "chunked") as chunked:
        build_reference(ref, store=one, name=REFERENCE, label_key="cell_type", spec=spec)
        rec = build_chunked(ref, store=chunked, spec=spec, chunk=70, vectors_to=tmp_path / "v.npy")
        assert rec.n_cells == 300
        v1, l1, i1 = reference_vectors(one, REFERENCE)
        v2, l2, i2 = reference_vectors(chunked, REFERENCE)
        o1, o2 = np.argsort(i1), np.argsort(i2)
        np.testing.assert_array_equal(i1[o1], i2[o2])
        np.testing.assert_array_equal(l1[o1], l2[o2])
        np.testing.assert_allclose(v1[o1], v2[o2], atol=1e-6)
        saved = np.load(tmp_path / "v.npy")  # the exact-search copy, in obs order
        row_of = {c: i for i, c in enumerate(ref.obs_names)}
        assert saved.shape == (300, rec.dim)
        np.testing.assert_allclose(saved[[row_of[c] for c in i2]], v2, atol=1e-6)
        # A chunked build fits the calibration on its fit sample (here every cell): the same as one call's.
        assert "calibration.json" in rec.artifacts
        assert rec.artifacts == next(v for v in load_manifest(one, REFERENCE).versions).artifacts
        with warnings.catch_warnings():
            warnings.simplefilter("error", NoCalibrationWarning)
            res = annotate(ref[:20].copy(), reference=REFERENCE, store=chunked)
        same = annotate(ref[:20].copy(), reference=REFERENCE, store=one)
        np.testing.assert_array_equal(res.labels, same.labels)  # chunked and one call decide alike
        np.testing.assert_allclose(res.novelty_p, same.novelty_p)
        known = res.labels != "Unknown"
        assert known.sum() >= 19  # reference-like cells: about alpha of them Unknown (issue 14)
        assert (res.labels[known] == ref.obs["cell_type"].astype(str).to_numpy()[:20][known]).all()


def test_scale_command_passes_the_server_url(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.scale._scale as scale

    seen: dict[str, object] = {}

    def fake_run_scale(sizes: list[int], **kwargs: object) -> Iterator[dict[str, object]]:
        seen.update(kwargs, sizes=sizes)
        yield {"n": sizes[0], "build_s": 1.0, "annotate_cells_per_s": 1.0, "recall_at_10": 1.0}

    monkeypatch.setattr(scale, "run_scale", fake_run_scale)
    result = CliRunner().invoke(scale_cmd, ["--sizes", "500", "--qdrant-url", "http://qdrant.example:6333",
                                            "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen["qdrant_url"] == "http://qdrant.example:6333"
    assert seen["sizes"] == [500]


@pytest.mark.server
def test_scale_against_a_server(tmp_path: Path, data_dir: Path) -> None:
    url = os.environ.get("CELLVEC_QDRANT_URL")
    if not url:
        pytest.skip("CELLVEC_QDRANT_URL is not set: no Qdrant server to test against")
    args = ["--sizes", "500", "--queries", "100", "--encoder", "random:32", "--skip-faiss", "--skip-sklearn",
            "--json", "--work-dir", str(tmp_path / "work"), "--qdrant-url", url]
    for _ in range(2):  # the second run replaces the first run's reference on the server
        result = CliRunner().invoke(scale_cmd, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert (row["store"], row["disk_mb"]) == ("server", None)
        assert row["recall_at_10"] >= 0.9
        assert not (tmp_path / "work" / "store-n500").exists()  # nothing embedded was built


def test_capacity_per_cell_hand_example() -> None:
    from benchmarks.scale.capacity import footprint, per_cell

    parts = per_cell({"cell": 100, "view2": 100}, 200.0, hnsw_m=16)
    assert parts["float32"] == 800  # 2 vectors x 100 dims x 4 bytes
    assert parts["int8"] == 216  # (100 + 8) per vector
    assert parts["graph"] == pytest.approx(2 * 16 * 2 * 4 * 1.07)
    one = footprint(parts, 1_000_000)
    assert one["ram_float32_gb"] == pytest.approx((800 + parts["graph"] + 100) / 1e3)
    assert footprint(parts, 1_000_000, replicas=2)["disk_int8_gb"] == pytest.approx(2 * one["disk_int8_gb"])


def test_capacity_reads_a_built_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_spec: object
) -> None:
    from benchmarks.scale.capacity import _main
    from indexer import build_reference, open_store
    from tests.conftest import make_adata

    with open_store(tmp_path / "store") as store:
        rec = build_reference(make_adata(20), store=store, name="pbmc", label_key="cell_type", spec=fast_spec)
    assert _main(["--store", str(tmp_path / "store"), "--reference", "pbmc", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_cells"] == rec.n_cells
    assert out["dims"]["cell"] == rec.dim
    assert 20 < out["payload_bytes"] < 2_000
    assert out["disk_bytes_per_cell"] > 0
    gb = [out["sizes"][s]["ram_float32_gb"] for s in ("1,000,000", "10,000,000", "100,000,000")]
    assert gb[1] == pytest.approx(10 * gb[0])
    assert gb[2] == pytest.approx(100 * gb[0])
