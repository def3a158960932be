"""Write the benchmark report: ``report.md``, ``report.html``, PNG figures and ``results.json``.

The report is built once as a list of blocks (headings, paragraphs, tables, images) and rendered to both
Markdown and HTML, so the two always say the same thing.
"""

from __future__ import annotations

import json
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy._figures import METRIC_TITLES, embed_2d, plot_confusion, plot_embedding, plot_metric_bars
from benchmarks.accuracy._protocol import METRICS, mean_sd
from benchmarks.accuracy._render import Block, render_html, render_markdown
from benchmarks.accuracy._run import BenchResult, MethodResult

CELLTYPIST_NOTE = (
    "CellTypist 1.7.1 asks scikit-learn for `LogisticRegression(multi_class='ovr')`, an argument "
    "scikit-learn ≥ 1.8 removed. Dropping it would silently switch CellTypist to a multinomial (softmax) "
    "model, which is a different classifier. The bench instead swaps, only while `celltypist.train` runs, "
    "that name for `OvRLogisticRegression`: one binary L2 logistic regression per cell type with "
    "CellTypist's C, solver and iteration limit, coefficients stacked: the model old scikit-learn fitted "
    "for "
    "`multi_class='ovr'` (checked against `OneVsRestClassifier` in the tests). CellTypist's own scaling, "
    "gene matching and sigmoid scoring are used unchanged; `use_SGD=False`, no feature selection, majority "
    "voting off."
)



def _pm(values: list[float], digits: int = 3) -> str:
    if not values:
        return "—"
    m, s = mean_sd(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _ok_runs(m: MethodResult) -> list[Any]:
    return [r for r in m.runs if r.error is None]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def summarise(result: BenchResult) -> dict[str, Any]:
    """Return the JSON-ready results (what ``results.json`` holds).

    Parameters
    ----------
    result
        Output of :func:`run_bench`.

    Returns
    -------
    A dict with keys ``dataset``, ``config``, ``created``, ``splits``, ``labels``, ``methods``,
    ``k_table``, ``exact_vs_ann``, ``celltypist_compat``, ``figures``.
    """
    methods: dict[str, Any] = {}
    k_table: dict[str, dict[str, float]] = {}
    ann: dict[str, Any] = {}
    for name, m in result.methods.items():
        ok = _ok_runs(m)
        entry: dict[str, Any] = {
            "kind": m.kind,
            "status": "ok" if len(ok) == len(m.runs) else ("failed" if not ok else "partial"),
            "errors": [r.error for r in m.runs if r.error],
            "warnings": m.warnings,
            "metrics": {},
            "per_class_recall": {},
            "k": [r.k for r in ok],
            "timings": {},
        }
        for metric in METRICS:
            vals = [r.scores[metric] for r in ok]
            mu, sd = mean_sd(vals) if vals else (float("nan"), float("nan"))
            entry["metrics"][metric] = {"mean": mu, "sd": sd, "values": vals}
        for cls in result.labels:
            vals = [r.per_class_recall[cls] for r in ok if cls in r.per_class_recall]
            if vals:
                mu, sd = mean_sd(vals)
                entry["per_class_recall"][cls] = {"mean": mu, "sd": sd}
        for t in ("fit_s", "cv_s", "annotate_s"):
            vals = [getattr(r, t) for r in ok]
            mu, sd = mean_sd(vals) if vals else (float("nan"), float("nan"))
            entry["timings"][t] = {"mean": mu, "sd": sd}
        if m.kind == "knn" and ok:
            table = {}
            for k in result.config.k_grid:
                vals = [r.cv[k] for r in ok if k in r.cv]
                if vals:
                    table[str(k)] = float(np.mean(vals))
            entry["cv_k_table"] = table
            k_table[name] = table
        ann_runs = [r.ann for r in ok if r.ann]
        if ann_runs:
            ann[name] = {
                key: {
                    "mean": mean_sd([a[key] for a in ann_runs])[0],
                    "sd": mean_sd([a[key] for a in ann_runs])[1],
                }
                for key in ("ann_accuracy", "exact_accuracy", "label_agreement", "recall_at_k")
            }
            entry["exact_vs_ann"] = ann[name]
        methods[name] = entry
    ds = result.dataset
    return {
        "dataset": {
            "name": ds.name,
            "label_key": ds.label_key,
            "species": ds.species,
            "n_cells": int(ds.adata.n_obs + (ds.query.n_obs if ds.query is not None else 0)),
            "fixed_query": ds.query is not None,
            "description": ds.description,
            "details": ds.details,
        },
        "config": result.config.to_json(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "splits": result.splits,
        "labels": result.labels,
        "methods": methods,
        "k_table": k_table,
        "exact_vs_ann": ann,
        "celltypist_compat": CELLTYPIST_NOTE,
        "figures": {},
    }


# ------------------------------------------------------------------------------------------------ figures


def _blocks(result: BenchResult, summary: dict[str, Any], figures: dict[str, Any]) -> list[Block]:
    cfg = result.config
    ds = summary["dataset"]
    names = list(summary["methods"])
    b: list[Block] = [Block("heading", f"cellvec bench — {ds['name']}", 1)]
    n_seeds = cfg.seeds
    split = (
        "fixed reference → query"
        if ds["fixed_query"]
        else f"stratified {1 - cfg.test_size:.0%}/{cfg.test_size:.0%} split"
    )
    b.append(Block("text", ds["description"]))
    b.append(
        Block(
            "text",
            (
                f"Protocol: {split}, seeds 0-{n_seeds - 1}; for KNN methods "
                f"k ∈ {{{', '.join(map(str, cfg.k_grid))}}} chosen by {cfg.n_folds}-fold stratified "
                "cross-validation on the reference split only (cosine KNN, majority vote); every fitted step "
                "(HVG, scaling, PCA, SupCon, classifiers) sees reference cells only. "
                "Values are mean ± sd over seeds. Labels: `"
                + ds["label_key"]
                + "`; encoders: "
                + ", ".join(cfg.encoders)
                + f". Created {summary['created']}."
            ),
        )
    )
    rows = []
    for n in names:
        m = summary["methods"][n]
        ok = m["metrics"]["accuracy"]["values"]
        if not ok:
            rows.append([n, *(["failed"] * len(METRICS)), "—", "—", "—"])
            continue
        met = [_pm(m["metrics"][x]["values"]) for x in METRICS]
        ks = ", ".join(str(k) for k in m["k"]) if any(k is not None for k in m["k"]) else "—"
        t = m["timings"]
        fit = (
            f"{t['fit_s']['mean']:.1f} (+{t['cv_s']['mean']:.1f} CV)"
            if m["kind"] == "knn"
            else f"{t['fit_s']['mean']:.1f}"
        )
        rows.append([n, *met, ks, fit, f"{t['annotate_s']['mean']:.2f}"])
    b.append(Block("heading", "Results"))
    b.append(
        Block(
            "table",
            (
                ["method", *[METRIC_TITLES[x] for x in METRICS], "k per seed", "train/build s", "annotate s"],
                rows,
            ),
        )
    )
    kn = [n for n in names if n in summary["k_table"]]
    if kn:
        b.append(
            Block("heading", "k selection (cross-validation on the reference split; cf. the paper's Table 1)")
        )
        krows = [
            [str(k), *[f"{summary['k_table'][n].get(str(k), float('nan')):.3f}" for n in kn]]
            for k in cfg.k_grid
        ]
        b.append(Block("table", (["k", *kn], krows)))
    if summary["exact_vs_ann"]:
        b.append(
            Block(
                "heading",
                "Exact vs ANN (same cellvec vectors: in-memory exhaustive search vs the Qdrant collection)",
            )
        )
        arows = []
        for n, a in summary["exact_vs_ann"].items():
            arows.append(
                [
                    n,
                    *[
                        f"{a[key]['mean']:.3f} ± {a[key]['sd']:.3f}"
                        for key in ("ann_accuracy", "exact_accuracy", "label_agreement", "recall_at_k")
                    ],
                ]
            )
        b.append(
            Block(
                "table",
                (
                    [
                        "method",
                        "accuracy (Qdrant)",
                        "accuracy (exact)",
                        "label agreement",
                        "recall@k of neighbours",
                    ],
                    arows,
                ),
            )
        )
        b.append(
            Block(
                "text",
                "Exact labels use cellvec's own vote (majority, ties by summed similarity) on "
                "the exhaustive top-k, so any difference comes from the neighbour search.",
            )
        )
    b.append(Block("heading", "Per-class recall (mean over seeds)"))
    ok_names = [n for n in names if summary["methods"][n]["per_class_recall"]]
    prow = []
    for cls in result.labels:
        prow.append(
            [
                cls,
                *[
                    f"{summary['methods'][n]['per_class_recall'][cls]['mean']:.2f}"
                    if cls in summary["methods"][n]["per_class_recall"]
                    else "—"
                    for n in ok_names
                ],
            ]
        )
    b.append(Block("table", (["class", *ok_names], prow)))
    b.append(Block("heading", "CellTypist compatibility"))
    b.append(Block("text", CELLTYPIST_NOTE))
    b.append(Block("heading", "Figures"))
    if "metrics" in figures:
        b.append(Block("image", (figures["metrics"], "Metrics per method (mean ± sd over seeds)")))
    for n in names:
        if n in figures.get("confusion", {}):
            b.append(Block("image", (figures["confusion"][n], f"Confusion matrix, {n} (seed 0)")))
    for n in names:
        if n in figures.get("embedding", {}):
            b.append(Block("image", (figures["embedding"][n], f"Query cells in the {n} space (seed 0)")))
    notes = []
    for n in names:
        m = summary["methods"][n]
        notes += [f"{n}: error: {e}" for e in m["errors"]]
        notes += [f"{n}: {w}" for w in m["warnings"][:5]]
    if notes:
        b.append(Block("heading", "Notes"))
        b.append(Block("list", notes))
    return b


def write_report(result: BenchResult, out_dir: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.html``, ``figures/*.png`` and ``results.json`` into ``out_dir``.

    Parameters
    ----------
    result
        Output of :func:`run_bench`.
    out_dir
        Folder (created).
    progress
        Called with one line per step.

    Returns
    -------
    The summary written to ``results.json``.
    """
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    figures: dict[str, Any] = {"confusion": {}, "embedding": {}}
    plot_metric_bars(summary, path=figs / "metrics.png")
    figures["metrics"] = "figures/metrics.png"
    for name, m in result.methods.items():
        if m.confusion is not None:
            rel = f"figures/confusion_{_slug(name)}.png"
            plot_confusion(*m.confusion, title=f"{name} (seed 0)", path=out / rel)
            figures["confusion"][name] = rel
        if m.embedding is not None and m.confusion is not None and m.embedding_index is not None:
            say(f"figures: embedding of {name}")
            coords, how = embed_2d(m.embedding, use_umap=result.config.umap)
            idx = m.embedding_index
            rel = f"figures/embedding_{_slug(name)}.png"
            plot_embedding(
                coords,
                np.asarray(m.confusion[0])[idx],
                np.asarray(m.confusion[1])[idx],
                title=name,
                how=how,
                path=out / rel,
            )
            figures["embedding"][name] = rel
    summary["figures"] = figures
    blocks = _blocks(result, summary, figures)
    (out / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(
        render_html(blocks, f"cellvec bench — {summary['dataset']['name']}"), encoding="utf-8"
    )
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")
    return summary


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
