"""The bench report a biologist reads: verdict, highlighted bests, natural order, n for one seed, thumbnails.

The report is drawn from a results object built here (no bench run): known scores, so every assertion on
what the page says can be checked against what it must say.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from benchmarks.accuracy import render_report, verdict, write_report
from benchmarks.accuracy._datasets import BenchDataset
from benchmarks.accuracy._figures import palette, plot_confusion, plot_embedding, srgb_to_lab
from benchmarks.accuracy._order import natural_sorted
from benchmarks.accuracy._protocol import METRICS
from benchmarks.accuracy._render import Block, Cell, mark_best, render_html, render_markdown
from benchmarks.accuracy._run import BenchConfig, BenchResult, MethodResult, SeedRun
from indexer import InputError

#: Cluster-like labels whose plain string order is wrong ("10" before "2").
CLUSTERS = [str(i) for i in range(1, 13)]
#: Macro-F1-like score per method and seed; logreg is best, the default (hybrid) second.
SCORES = {
    "seurat-like": [0.80, 0.82],
    "logreg": [0.95, 0.93],
    "cellvec-hybrid[random:32]": [0.90, 0.91],
    "cellvec-paper[random:32]": [0.70, 0.72],
}


def _result(*, seeds: int, labels: list[str] = CLUSTERS, n_query: int = 120) -> BenchResult:
    rng = np.random.default_rng(0)
    y_true = np.array([labels[i % len(labels)] for i in range(n_query)])
    methods = {}
    for name, per_seed in SCORES.items():
        m = MethodResult(name=name, kind="classifier" if name == "logreg" else "knn")
        for seed in range(seeds):
            s = per_seed[seed]
            m.runs.append(
                SeedRun(
                    seed=seed,
                    scores=dict.fromkeys(METRICS, s),
                    per_class_recall=dict.fromkeys(labels, s) | {"2": 1.0 if name == "seurat-like" else 0.5},
                    k=None if name == "logreg" else 8,
                    cv={} if name == "logreg" else {4: s, 8: s},
                    fit_s=1.0,
                    annotate_s=0.1,
                )
            )
        wrong = rng.random(n_query) > per_seed[0]
        y_pred = np.where(wrong, rng.choice(labels, n_query), y_true)
        m.confusion = (y_true, y_pred)
        m.embedding = rng.normal(size=(n_query, 8)).astype(np.float32)
        m.embedding_index = np.arange(n_query)
        methods[name] = m
    cells = ad.AnnData(np.zeros((n_query * 5, 2), dtype=np.float32))
    cells.obs["cluster"] = [labels[i % len(labels)] for i in range(cells.n_obs)]
    config = BenchConfig(seeds=seeds, encoders=("random:32",), supcon=False, store=":memory:", umap=False)
    return BenchResult(
        dataset=BenchDataset(name="toy", adata=cells, label_key="cluster", description="Toy clusters."),
        config=config,
        methods=methods,
        splits=[{"seed": s, "n_reference": n_query * 4, "n_query": n_query} for s in range(seeds)],
        labels=sorted(labels),  # plain string order: the report must put it right
    )


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report1")
    write_report(_result(seeds=1), out)
    return out


def _body(out: Path) -> str:
    return (out / "report.html").read_text(encoding="utf-8")


def test_verdict_line_tops_the_page_with_the_best_method_and_the_defaults_rank(one_seed: Path) -> None:
    html = _body(one_seed)
    first = re.search(r"<h1>.*?</h1>\s*<p class='verdict'>(.*?)</p>", html, flags=re.S)
    assert first, "the verdict is not the first thing under the title"
    line = first.group(1)
    assert line.startswith("Best on every metric: logreg (accuracy 0.950, weighted F1 0.950, macro F1 0.950")
    assert "n = 1 seed" in line
    assert "The default, cellvec-hybrid[random:32], ranks 2nd of 4 on every metric." in line
    summary = json.loads((one_seed / "results.json").read_text())
    assert summary["verdict"] in (one_seed / "report.md").read_text()


def test_verdict_names_each_metrics_best_and_shared_ranks() -> None:
    summary = {
        "default_method": "b",
        "methods": {
            "a": {"metrics": {x: {"mean": 0.9 if x == "accuracy" else 0.5, "values": [0.0]} for x in METRICS}},
            "b": {"metrics": {x: {"mean": 0.6, "values": [0.0]} for x in METRICS}},
            "c": {"metrics": {x: {"mean": 0.9 if x == "accuracy" else 0.4, "values": [0.0]} for x in METRICS}},
        },
    }
    line = verdict(summary)
    assert line.startswith("Best on accuracy: a (accuracy 0.900); best on accuracy: c (accuracy 0.900); best on")
    assert "best on weighted F1, macro F1 and kappa: b (weighted F1 0.600, macro F1 0.600, kappa 0.600)" in line
    assert line.endswith("The default, b, ranks 1st of 3 on weighted F1, macro F1 and kappa and 3rd on accuracy.")


def test_best_values_are_highlighted_and_only_those(one_seed: Path) -> None:
    html = _body(one_seed)
    results = html.split("<h2>Results</h2>")[1].split("</table>")[0]
    assert results.count("<td class='best'>") == len(METRICS)  # one best per metric column
    row = next(r for r in results.split("<tr>") if r.startswith("<td>logreg</td>"))
    assert row.count("<td class='best'>0.950</td>") == len(METRICS)
    assert "<td>cellvec-hybrid[random:32] (default)</td>" in results
    recall = html.split("Per-class recall")[1].split("</table>")[0]
    assert "<th>query cells (seed 0)</th>" in recall
    row2 = next(r for r in recall.split("<tr>") if r.startswith("<td>2</td><td>10</td>"))  # 10 query cells
    assert row2.count("class='best'") == 1  # seurat-like's 1.00 is the row's best
    assert "**0.950**" in (one_seed / "report.md").read_text()


def test_mark_best_compares_shown_values_and_skips_missing() -> None:
    assert mark_best([0.9001, 0.9004, None, float("nan"), 0.5]) == [True, True, False, False, False]
    assert mark_best([3.0, 1.0], higher=False) == [False, True]
    assert mark_best([None]) == [False]
    assert mark_best([1.0, 1.0]) == [False, False]  # nothing stands out


def test_labels_in_natural_order_in_tables_and_figures(one_seed: Path, tmp_path: Path) -> None:
    assert natural_sorted(["10", "2", "C10", "C9", "b", "1"]) == ["1", "2", "10", "b", "C9", "C10"]
    summary = json.loads((one_seed / "results.json").read_text())
    assert summary["labels"] == CLUSTERS
    recall = _body(one_seed).split("Per-class recall")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>([^<]+)</td>", recall)
    assert rows == CLUSTERS
    true = np.array(["10", "2", "1", "2"])
    order = plot_confusion(true, np.array(["2", "Unknown", "1", "10"]), title="t", path=tmp_path / "c.png")
    assert order == ["1", "2", "10", "Unknown"]  # true labels first, predicted-only labels after


def test_one_seed_shows_n_instead_of_a_zero_spread(one_seed: Path, tmp_path: Path) -> None:
    for text in (_body(one_seed), (one_seed / "report.md").read_text()):
        assert "± 0.000" not in text
        assert "±" not in text.split("Methods")[0]
    assert "n = 1 seed" in _body(one_seed)
    head = re.search(r"<h2>Results</h2>\s*<table><tr>(.*?)</tr>", _body(one_seed), flags=re.S)
    assert head
    assert "<th>n seeds</th>" in head.group(1)
    write_report(_result(seeds=2), tmp_path)
    two = _body(tmp_path)
    assert "0.940 ± 0.014" in two  # logreg over two seeds: spread shown
    assert "mean ± sd over 2 seeds" in two


def test_figures_are_thumbnails_that_open_full_size(one_seed: Path) -> None:
    html = _body(one_seed)
    images = re.findall(r"<img src='([^']+)'", html)
    assert len(images) == 1 + 2 * len(SCORES)  # scores, one confusion matrix and one projection per method
    for src in images:
        assert f"<a href='{src}' target='_blank' title='open full size'><img src='{src}'" in html
        assert (one_seed / src).is_file()
    assert ".gallery img{width:100%;height:200px" in html  # drawn small, opened full size


def test_developer_notes_sit_in_methods_after_the_results(one_seed: Path) -> None:
    html = _body(one_seed)
    pos = {h: html.index(h) for h in ("Results</h2>", "Figures</h2>", "Methods</h2>", "CellTypist compatibility")}
    assert pos["Results</h2>"] < pos["Figures</h2>"] < pos["Methods</h2>"] < pos["CellTypist compatibility"]
    top = html[: pos["Results</h2>"]]
    for jargon in ("multi_class", "scikit-learn", "cross-validation", "Qdrant"):
        assert jargon not in top


def test_palette_stays_distinct_past_twenty_labels(tmp_path: Path) -> None:
    for n in (5, 21, 25, 40):
        colours = palette(n)
        lab = srgb_to_lab(np.array(colours))
        dist = np.linalg.norm(lab[:, None] - lab[None], axis=2)
        np.fill_diagonal(dist, np.inf)
        assert len(set(colours)) == n
        assert dist.min() > 20, n  # CIELAB ΔE: clearly different colours (a cycled tab20 repeats at 21)
    labels = [f"type {i}" for i in range(25)]
    y = np.array(labels * 4)
    used = plot_embedding(
        np.random.default_rng(0).normal(size=(100, 2)), y, np.roll(y, 1), title="t", how="PCA", path=tmp_path / "e.png"
    )
    assert list(used) == natural_sorted(labels)
    assert len(set(used.values())) == 25


def test_rerender_from_saved_results_draws_the_same_page(one_seed: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(one_seed, copy)
    before = _body(copy)
    shutil.rmtree(copy / "figures")
    (copy / "report.html").unlink()
    summary = render_report(copy)
    assert _body(copy) == before
    assert len(list((copy / "figures").glob("*.png"))) == 1 + 2 * len(SCORES)
    assert summary["verdict"].startswith("Best on every metric: logreg")
    with pytest.raises(InputError, match=r"has no results.json; give the --out folder of an earlier"):
        render_report(tmp_path / "nothing-here")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{}")
    with pytest.raises(InputError, match=r"is not a `cellvec bench` summary \(no methods, config, dataset\)"):
        render_report(tmp_path / "bad")


def test_cli_from_results_redraws_and_prints_the_verdict(
    one_seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import cellvec.cli._bench  # noqa: F401  (registers the command)
    from cellvec.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(one_seed, copy)
    (copy / "report.md").unlink()
    assert main(["bench", "--from-results", str(copy)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Best on every metric: logreg")
    assert "± 0.000" not in out
    assert re.search(r"^logreg\s+0\.950\s+0\.950\s+1$", out, flags=re.M)
    assert (copy / "report.md").is_file()
    assert main(["bench", "--from-results", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'none'} has no results.json; give the --out folder of an earlier `cellvec bench` run."
    )


def test_renderer_takes_new_tables_with_highlighted_cells() -> None:
    blocks = [
        Block("verdict", "Best: x."),
        Block("table", (["label", "recall"], [["rare", Cell("0.90", best=True)], ["common", "0.80"]])),
        Block("gallery", [("figures/a.png", "A")]),
    ]
    html = render_html(blocks, "t")
    assert "<p class='verdict'>Best: x.</p>" in html
    assert "<td class='best'>0.90</td>" in html
    assert "<td>0.80</td>" in html
    md = render_markdown(blocks)
    assert "| rare | **0.90** |" in md
    assert "[![A](figures/a.png)](figures/a.png)" in md
