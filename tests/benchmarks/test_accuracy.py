"""Tests of ``cellvec bench``: protocol, baselines (CellTypist shim), datasets, report and CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, recall_score
from sklearn.multiclass import OneVsRestClassifier

from benchmarks.accuracy import _run
from benchmarks.accuracy._baselines import SeuratLike, is_counts
from benchmarks.accuracy._celltypist import CellTypistBaseline, OvRLogisticRegression, celltypist_compat
from benchmarks.accuracy._datasets import PAPER_CLUSTERS, PAPER_SIZES, BenchDataset, subsample_to_sizes
from benchmarks.accuracy._protocol import cv_k_accuracy, knn_predict, select_k
from benchmarks.accuracy._report import write_report
from benchmarks.accuracy._run import BenchConfig, plan_methods, run_bench
from benchmarks.accuracy._tran import load_tran_rgc, read_tran_labels, select_tran_clusters
from indexer import InputError
from indexer.cells import recall_at_k, score, stratified_split, vote

PROGRAMS = {
    "T cell": ["CD3E", "CD3D", "CD2", "IL7R", "CD28", "LCK", "ZAP70", "CD247", "CD5", "CD6"],
    "B cell": ["MS4A1", "CD79A", "CD79B", "CD19", "PAX5", "BLK", "CD22", "FCRL1", "BANK1", "CD72"],
    "Monocyte": ["CD14", "LYZ", "FCGR3A", "CSF1R", "S100A8", "S100A9", "ITGAM", "CD68", "FCN1", "VCAN"],
    "NK cell": ["NCAM1", "KLRD1", "GNLY", "NKG7", "KLRF1", "PRF1", "GZMB", "KLRC1", "KIR2DL1", "SH2D1B"],
}


@pytest.fixture(scope="module")
def symbols(data_dir: Path) -> list[str]:
    """200 real human symbols with RefSeq summaries: the program genes, then filler genes."""
    table = pd.read_csv(
        data_dir / "gene_text" / "refseq_summaries_human_by_symbol.tsv.gz", sep="\t", usecols=["symbol"]
    )
    markers = [g for prog in PROGRAMS.values() for g in prog]
    filler = [s for s in sorted(set(table["symbol"].astype(str))) if s not in markers and s.isalnum()]
    rng = np.random.default_rng(0)
    return markers + list(rng.choice(filler, 200 - len(markers), replace=False))


def synthetic(symbols: list[str], *, n_cells: int = 300, seed: int = 0) -> ad.AnnData:
    """Counts for 4 classes with class-specific programs (cells x 200 real symbols)."""
    rng = np.random.default_rng(seed)
    col = {g: i for i, g in enumerate(symbols)}
    classes = list(PROGRAMS)
    sizes = [120, 90, 60, 30]
    sizes[-1] = n_cells - sum(sizes[:-1])
    rows, labels = [], []
    for cls, n in zip(classes, sizes, strict=True):
        for _ in range(n):
            lam = rng.uniform(0.05, 1.5, len(symbols))
            lam[[col[g] for g in PROGRAMS[cls]]] = rng.uniform(3, 10, len(PROGRAMS[cls]))
            rows.append(rng.poisson(lam))
            labels.append(cls)
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(len(labels))])
    return ad.AnnData(
        sp.csr_matrix(np.asarray(rows, dtype=np.float32)), obs=obs, var=pd.DataFrame(index=symbols)
    )


@pytest.fixture(scope="module")
def cells(symbols: list[str]) -> ad.AnnData:
    return synthetic(symbols)


# ------------------------------------------------------------------------------------------ protocol


def test_split_is_stratified_disjoint_and_seeded() -> None:
    y = np.array(["a"] * 100 + ["b"] * 50 + ["c"] * 10 + ["lonely"])
    ref, query = stratified_split(y, test_size=0.2, seed=3)
    assert np.intersect1d(ref, query).size == 0
    assert np.union1d(ref, query).size == len(y)
    for cls, n in (("a", 100), ("b", 50), ("c", 10)):
        assert abs((y[query] == cls).sum() - 0.2 * n) <= 1
    assert "lonely" in y[ref]  # a single-cell class cannot be stratified: it stays in the reference
    again = stratified_split(y, test_size=0.2, seed=3)
    assert np.array_equal(again[1], query)
    assert not np.array_equal(stratified_split(y, test_size=0.2, seed=4)[1], query)


def test_split_rejects_a_bad_share() -> None:
    with pytest.raises(ValueError, match=r"test_size=1.5 is not a share"):
        stratified_split(["a", "b"], test_size=1.5)


def test_vote_majority_and_similarity_tie_break() -> None:
    classes = np.array(["x", "y", "z"])
    nl = np.array([[0, 1, 1], [0, 1, 2], [1, 0, 0]])  # x y y / x y z / y x x
    sims = np.array([[0.9, 0.8, 0.7]] * 3)  # nearest first
    assert classes[vote(nl, sims, 3)[0]].tolist() == ["y", "x", "x"]
    # The product's rule: a tie goes to the larger summed similarity, not to the nearest neighbour.
    assert classes[vote(np.array([[0, 1, 1, 0]]), np.array([[0.9, 0.85, 0.85, 0.1]]), 3)[0]].tolist() == ["y"]


def test_cv_k_table_and_selection() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack(
        [rng.normal(0, 1, (40, 5)) + 4 * np.eye(5)[0], rng.normal(0, 1, (40, 5)) + 4 * np.eye(5)[1]]
    )
    y = np.array(["a"] * 40 + ["b"] * 40)
    table = cv_k_accuracy(x, y, k_grid=(4, 6, 8), n_folds=5, seed=0)
    assert set(table) == {4, 6, 8}
    assert all(0.8 < v <= 1 for v in table.values())
    assert select_k({4: 0.5, 6: 0.9, 8: 0.9}) == 6


def test_k_selection_sees_only_reference_cells(
    cells: ad.AnnData, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The CV function receives reference vectors only: a query-only label never reaches it."""
    query = cells[:40].copy()
    query.obs["cell_type"] = np.where(np.arange(40) < 10, "query-only", query.obs["cell_type"])
    ds = BenchDataset(name="t", adata=cells[40:].copy(), query=query, label_key="cell_type")
    seen: list[tuple[int, set[str]]] = []
    real = _run.cv_k_accuracy

    def spy(vectors: np.ndarray, labels: np.ndarray, **kw: object) -> dict[int, float]:
        seen.append((len(vectors), set(map(str, labels))))
        return real(vectors, labels, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_run, "cv_k_accuracy", spy)
    cfg = BenchConfig(
        seeds=1, methods=("seurat-like",), encoders=(), supcon=False, store=str(tmp_path / "s"), umap=False
    )
    run_bench(ds, config=cfg)
    assert seen == [(ds.adata.n_obs, set(PROGRAMS))]
    import inspect

    assert list(inspect.signature(cv_k_accuracy).parameters)[:2] == ["ref_vectors", "ref_labels"]


def test_scores_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    t = rng.choice(["a", "b", "c", "d"], 200)
    p = np.where(rng.random(200) < 0.7, t, rng.choice(["a", "b", "c", "e"], 200))
    s = score(t, p)
    assert s.accuracy == pytest.approx(accuracy_score(t, p))
    assert s.weighted_f1 == pytest.approx(f1_score(t, p, average="weighted"))
    assert s.macro_f1 == pytest.approx(f1_score(t, p, average="macro"))
    assert s.kappa == pytest.approx(cohen_kappa_score(t, p))
    rec = recall_score(t, p, labels=["a", "b", "c", "d"], average=None)
    assert [s.per_class_recall[c] for c in "abcd"] == pytest.approx(list(rec))


def test_recall_at_k() -> None:
    assert recall_at_k(np.array([["a", "b"], ["c", "d"]]), np.array([["b", "a"], ["c", "x"]])) == 0.75


# ------------------------------------------------------------------------------------------ baselines


def test_seurat_like_fits_on_reference_and_projects_query(cells: ad.AnnData) -> None:
    assert is_counts(cells)
    ref, query = stratified_split(cells.obs["cell_type"], seed=0)
    m = SeuratLike(n_genes=100, n_components=10)
    vecs, _labs = m.fit(cells[ref], cells.obs["cell_type"].to_numpy()[ref])
    assert vecs.shape == (len(ref), 10)
    assert len(m.genes_) == 100
    pred = m.predict(cells[query], k=8)
    assert accuracy_score(cells.obs["cell_type"].to_numpy()[query], pred.labels) > 0.9


def test_ovr_logistic_regression_is_one_vs_rest() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8))
    y = np.repeat(["a", "b", "c"], 50)
    x[y == "a", 0] += 2
    x[y == "b", 1] += 2
    ours = OvRLogisticRegression(multi_class="ovr", C=0.5, max_iter=2000, tol=1e-8).fit(x, y)
    ref = OneVsRestClassifier(LogisticRegression(C=0.5, max_iter=2000, tol=1e-8)).fit(x, y)
    np.testing.assert_allclose(ours.coef_, np.vstack([e.coef_ for e in ref.estimators_]), atol=1e-6)
    np.testing.assert_allclose(ours.decision_function(x), ref.decision_function(x), atol=1e-6)
    softmax = LogisticRegression(C=0.5, max_iter=2000, tol=1e-8).fit(x, y)
    assert not np.allclose(
        ours.coef_, softmax.coef_, atol=1e-3
    )  # dropping multi_class would change the model
    with pytest.raises(ValueError, match="one-vs-rest only"):
        OvRLogisticRegression(multi_class="multinomial")


def test_celltypist_trains_and_predicts_with_the_shim(cells: ad.AnnData) -> None:
    import importlib

    ct_train = importlib.import_module("celltypist.train")
    before = ct_train.LogisticRegression
    ref, query = stratified_split(cells.obs["cell_type"], seed=0)
    m = CellTypistBaseline(n_jobs=1)
    assert m.fit(cells[ref], cells.obs["cell_type"].to_numpy()[ref]) is None
    assert ct_train.LogisticRegression is before  # restored after training
    assert isinstance(m.model_.classifier, OvRLogisticRegression)
    assert m.model_.classifier.coef_.shape == (4, cells.n_vars)
    pred = m.predict(cells[query], k=None)
    assert accuracy_score(cells.obs["cell_type"].to_numpy()[query], pred.labels) > 0.9

    def fail_inside() -> None:
        with celltypist_compat():
            msg = "boom"
            raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert ct_train.LogisticRegression is before


# ------------------------------------------------------------------------------------------ run + report


def test_plan_methods_filters_by_prefix() -> None:
    cfg = BenchConfig(encoders=("minilm", "random:384"))
    names = plan_methods(cfg)
    assert names[:4] == ["seurat-like", "celltypist", "logreg", "genept-w[minilm]"]
    assert "cellvec-paper[random:384]+supcon" in names
    assert "cellvec-hybrid[minilm]" in names
    assert "cellvec-hybrid[minilm]+supcon" not in names
    assert "cellvec-expression" in names
    cfg = BenchConfig(encoders=("random:32",), supcon=False, methods=("cellvec-paper", "logreg"))
    assert plan_methods(cfg) == ["logreg", "cellvec-paper[random:32]"]


def test_bench_writes_report_files(cells: ad.AnnData, tmp_path: Path, data_dir: Path) -> None:
    ds = BenchDataset(name="synthetic", adata=cells, label_key="cell_type", description="synthetic PBMC-like")
    cfg = BenchConfig(
        seeds=2,
        encoders=("random:32",),
        supcon=False,
        store=str(tmp_path / "store"),
        umap=False,
        data_dir=data_dir,
        n_jobs=1,
        # CellTypist has its own test above; here it would only add time.
        methods=("seurat-like", "logreg", "genept-w", "cellvec-paper", "cellvec-expression"),
    )
    lines: list[str] = []
    result = run_bench(ds, config=cfg, progress=lines.append)
    summary = write_report(result, tmp_path / "out")
    out = tmp_path / "out"
    for f in (
        "report.md",
        "report.html",
        "results.json",
        "figures/metrics.png",
        "figures/confusion_seurat_like.png",
        "figures/embedding_cellvec_paper_random_32.png",
        "plot_data.npz",
    ):
        assert (out / f).is_file(), f
    data = json.loads((out / "results.json").read_text())
    assert set(data) >= {
        "dataset",
        "config",
        "splits",
        "labels",
        "methods",
        "k_table",
        "exact_vs_ann",
        "celltypist_compat",
        "figures",
    }
    assert list(data["methods"]) == [
        "seurat-like",
        "logreg",
        "genept-w[random:32]",
        "cellvec-paper[random:32]",
        "cellvec-expression",
    ]
    for name, m in data["methods"].items():
        assert m["status"] == "ok", (name, m["errors"])
        assert set(m["metrics"]) == {"accuracy", "weighted_f1", "macro_f1", "kappa"}
        assert len(m["metrics"]["accuracy"]["values"]) == 2
        assert set(m["timings"]) == {"fit_s", "cv_s", "annotate_s"}
    assert data["methods"]["logreg"]["metrics"]["accuracy"]["mean"] > 0.9
    assert set(data["k_table"]["seurat-like"]) == {"4", "6", "8", "10", "12", "14"}
    ann = data["exact_vs_ann"]["cellvec-paper[random:32]"]
    assert 0 <= ann["recall_at_k"]["mean"] <= 1
    assert summary["splits"][0]["n_query"] == 60
    md = (out / "report.md").read_text()
    assert "| k |" in md
    assert "Exact vs approximate search" in md
    assert "CellTypist compatibility" in md
    assert any("seed 1: cellvec-paper[random:32]" in line for line in lines)


def test_failing_method_is_reported_and_others_go_on(cells: ad.AnnData, tmp_path: Path) -> None:
    ds = BenchDataset(name="t", adata=cells, label_key="cell_type")
    cfg = BenchConfig(
        seeds=1,
        encoders=("no-such-encoder",),
        supcon=False,
        store=str(tmp_path / "s"),
        umap=False,
        methods=("logreg", "cellvec-paper"),
    )
    result = run_bench(ds, config=cfg)
    assert result.methods["logreg"].runs[0].error is None
    assert "no-such-encoder" in (result.methods["cellvec-paper[no-such-encoder]"].runs[0].error or "")
    data = write_report(result, tmp_path / "out")
    assert data["methods"]["cellvec-paper[no-such-encoder]"]["status"] == "failed"


# ------------------------------------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def tran_labels_path(data_dir: Path) -> Path:
    return data_dir / "datasets" / "tran2019_rgc_atlas_labels.txt.gz"


def test_tran_labels_and_paper_cluster_selection(tran_labels_path: Path) -> None:
    labels = read_tran_labels(tran_labels_path)
    assert len(labels) == 35699
    assert "TYPE" not in labels.index
    sel = select_tran_clusters(labels, PAPER_CLUSTERS)
    assert sel.value_counts().to_dict() == {
        "22_M5": 610,
        "28_FmidiOFF": 517,
        "33_M1": 323,
        "35_Novel": 310,
        "36_Novel": 236,
        "43_AlphaONS": 106,
    }
    with pytest.raises(InputError, match=r"cluster 'C99' matches no cell"):
        select_tran_clusters(labels, ["C99"])


def test_tran_loader_on_real_labels_and_a_synthetic_matrix(tran_labels_path: Path, tmp_path: Path) -> None:
    cells = list(select_tran_clusters(read_tran_labels(tran_labels_path), PAPER_CLUSTERS).index)
    others = ["aRGC1_AAACCTGAGAATCTCC-1"]  # a cell of another cluster, present in the file but not selected
    genes = ["Rbpms", "Pou4f1", "Opn4", "Spp1", "Tbr1", "Foxp2", "Cartpt", "Gapdh"]
    rng = np.random.default_rng(0)
    mat = rng.poisson(1.0, (len(genes), len(cells) + 1)).astype(int)
    frame = pd.DataFrame(mat, index=pd.Index(genes, name="GENE"), columns=others + cells)
    csv = tmp_path / "RGC_Atlas.csv"
    frame.to_csv(csv)
    ds = load_tran_rgc(csv, tran_labels_path, clusters=PAPER_CLUSTERS, paper_sizes=True, seed=0)
    assert ds.species == "mouse"
    assert list(ds.adata.var_names) == genes
    counts = ds.adata.obs["cluster"].value_counts()
    assert [
        counts[c] for c in ("22_M5", "28_FmidiOFF", "33_M1", "35_Novel", "36_Novel", "43_AlphaONS")
    ] == list(PAPER_SIZES)
    first = ds.adata.obs_names[0]
    np.testing.assert_array_equal(ds.adata[first].X.toarray().ravel(), frame[first].to_numpy())
    full = load_tran_rgc(csv, tran_labels_path, clusters=["C43"])
    assert full.adata.n_obs == 106
    bad = tmp_path / "bad.csv"
    frame[others].to_csv(bad)
    with pytest.raises(InputError, match="are not columns of"):
        load_tran_rgc(bad, tran_labels_path, clusters=["C43"])
    gz = tmp_path / "labels.txt.gz"
    with gzip.open(tran_labels_path, "rt") as src, gzip.open(gz, "wt") as dst:
        dst.write(src.read())
    assert len(read_tran_labels(gz)) == 35699


def test_subsample_to_sizes_is_seeded(cells: ad.AnnData) -> None:
    a = subsample_to_sizes(cells, label_key="cell_type", classes=["T cell", "B cell"], sizes=[20, 5], seed=1)
    b = subsample_to_sizes(cells, label_key="cell_type", classes=["T cell", "B cell"], sizes=[20, 5], seed=1)
    assert a.obs["cell_type"].value_counts().to_dict() == {"T cell": 20, "B cell": 5}
    assert list(a.obs_names) == list(b.obs_names)
    with pytest.raises(InputError, match="has 30 cells but 40 are needed"):
        subsample_to_sizes(cells, label_key="cell_type", classes=["NK cell"], sizes=[40])


# ------------------------------------------------------------------------------------------ CLI


def test_cli_bench_runs_and_reports_errors(
    cells: ad.AnnData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cellvec.cli._bench  # noqa: F401  (registers the command)
    from cellvec.cli import main

    path = tmp_path / "cells.h5ad"
    cells.write_h5ad(path)
    out = tmp_path / "out"
    rc = main(
        [
            "bench",
            "--adata",
            str(path),
            "--label-key",
            "cell_type",
            "--seeds",
            "1",
            "--methods",
            "seurat-like,logreg",
            "--encoders",
            "",
            "--store",
            str(tmp_path / "s"),
            "--out",
            str(out),
            "--no-umap",
            "--json",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["methods"]) == {"seurat-like", "logreg"}
    assert (out / "report.html").is_file()
    rc = main(["bench", "--adata", str(path), "--label-key", "nope", "--store", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"error: {path} has no obs column 'nope'; its columns are: cell_type. Pass --label-key."]


def test_knn_predict_returns_neighbours() -> None:
    ref = np.eye(3)
    labels, nbrs = knn_predict(ref, np.array(["a", "b", "c"]), np.array([[1, 0.1, 0]]), k=2)
    assert labels.tolist() == ["a"]
    assert nbrs.tolist() == [[0, 1]]
