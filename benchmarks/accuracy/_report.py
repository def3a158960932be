"""Write the benchmark report: ``report.md``, ``report.html``, PNG figures and ``results.json``.

The report is built once as a list of blocks (headings, paragraphs, tables, images) and rendered to both
Markdown and HTML, so the two always say the same thing.
"""

from __future__ import annotations

import json
import platform
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy._figures import METRIC_TITLES, embed_2d, plot_confusion, plot_embedding, plot_metric_bars
from benchmarks.accuracy._order import natural_sorted
from benchmarks.accuracy._protocol import METRICS, mean_sd
from benchmarks.accuracy._render import Block, Cell, mark_best, render_html, render_markdown, write_text_atomic
from benchmarks.accuracy._run import BenchResult, MethodResult
from indexer import InputError
from schemas import DEFAULT_MODE

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
    """Mean ± sd over seeds; one seed has no spread to show, so its value stands alone (n is in the table)."""
    if not values:
        return "—"
    m, s = mean_sd(values)
    return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def _ok_runs(m: MethodResult) -> list[Any]:
    return [r for r in m.runs if r.error is None]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def default_method(encoders: list[str] | tuple[str, ...]) -> str:
    """Return the bench name of what ``cellvec reference build`` does by default (its mode, first encoder).

    Parameters
    ----------
    encoders
        The run's encoders (the first serves the non-paper modes).

    Returns
    -------
    A method name such as ``"cellvec-hybrid[minilm]"``.
    """
    if DEFAULT_MODE == "expression" or not encoders:
        return "cellvec-expression" if DEFAULT_MODE == "expression" else f"cellvec-{DEFAULT_MODE}"
    return f"cellvec-{DEFAULT_MODE}[{encoders[0]}]"


_METRIC_WORDS = {"accuracy": "accuracy", "weighted_f1": "weighted F1", "macro_f1": "macro F1", "kappa": "kappa"}


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def verdict(summary: dict[str, Any]) -> str:
    """Return the report's one-line verdict: the best method per metric and the default's rank.

    Ranks compare means as the tables show them (three decimals); equal values share a rank.

    Parameters
    ----------
    summary
        Output of :func:`summarise`.

    Returns
    -------
    One sentence, or a line saying that no method finished.
    """
    means = {
        n: {x: round(m["metrics"][x]["mean"], 3) for x in METRICS}
        for n, m in summary["methods"].items()
        if m["metrics"]["accuracy"]["values"]
    }
    if not means:
        return "No method finished: see Notes at the end."
    best: dict[str, list[str]] = {}
    for x in METRICS:
        top = max(v[x] for v in means.values())
        for n, v in means.items():
            if v[x] == top:
                best.setdefault(n, []).append(x)
    parts = []
    for n, metrics in best.items():
        what = "every metric" if len(metrics) == len(METRICS) else _and([_METRIC_WORDS[x] for x in metrics])
        vals = ", ".join(f"{_METRIC_WORDS[x]} {means[n][x]:.3f}" for x in metrics)
        parts.append(f"best on {what}: {n} ({vals})")
    seeds = max(len(m["metrics"]["accuracy"]["values"]) for m in summary["methods"].values())
    line = "; ".join(parts) + f"; n = {seeds} seed{'s' if seeds != 1 else ''}."
    line = line[0].upper() + line[1:]
    default = summary.get("default_method")
    if default in means:
        by_rank: dict[int, list[str]] = {}
        for x in METRICS:
            rank = 1 + sum(v[x] > means[default][x] for v in means.values())
            by_rank.setdefault(rank, []).append(x)
        ranks = [
            f"{_ordinal(r)}{f' of {len(means)}' if i == 0 else ''} on "
            + ("every metric" if len(by_rank[r]) == len(METRICS) else _and([_METRIC_WORDS[x] for x in by_rank[r]]))
            for i, r in enumerate(sorted(by_rank))
        ]
        line += f" The default, {default}, ranks {_and(ranks)}."
    elif default:
        line += f" The default, {default}, was not run or failed."
    return line


def summarise(result: BenchResult) -> dict[str, Any]:
    """Return the JSON-ready results (what ``results.json`` holds).

    Parameters
    ----------
    result
        Output of :func:`run_bench`.

    Returns
    -------
    A dict with keys ``dataset``, ``config``, ``created``, ``splits``, ``labels`` (natural order),
    ``query_label_counts`` (seed 0), ``methods``, ``default_method``, ``verdict``, ``k_table``,
    ``exact_vs_ann``, ``celltypist_compat``, ``figures``.
    """
    labels = natural_sorted(result.labels)
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
        for cls in labels:
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
    truth = next((m.confusion[0] for m in result.methods.values() if m.confusion is not None), None)
    counts = {} if truth is None else dict(Counter(np.asarray(truth).astype(str).tolist()))
    out = {
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
        "labels": labels,
        "query_label_counts": {c: int(counts[c]) for c in labels if c in counts},
        "methods": methods,
        "default_method": default_method(result.config.encoders),
        "verdict": "",
        "k_table": k_table,
        "exact_vs_ann": ann,
        "celltypist_compat": CELLTYPIST_NOTE,
        "figures": {},
    }
    out["verdict"] = verdict(out)
    return out


# ------------------------------------------------------------------------------------------------ blocks

PLOT_DATA = "plot_data.npz"
"""What the figures are drawn from (first seed's true and predicted labels, 2-D coordinates), beside
``results.json``, so :func:`render_report` redraws the report without running the bench again."""

METHOD_NOTES = {
    "seurat-like": "log-normalised expression, 2,000 variable genes, scaling, 50 PCs, cosine KNN",
    "celltypist": "CellTypist 1.7.1 logistic regression on scaled log-expression (see CellTypist compatibility)",
    "logreg": "multinomial L2 logistic regression on log-expression of every gene expressed in the reference",
    "genept-w": "GenePT-w: expression-weighted mean of gene description vectors over all expressed genes, KNN",
    "cellvec-paper": "cellvec, the paper's mode: mean of the top-20 expressed genes' description vectors, KNN "
    "through Qdrant",
    "cellvec-genept": "cellvec with all expressed genes pooled (GenePT-w) and stored in Qdrant",
    "cellvec-hybrid": "cellvec's default: description vectors and an expression view (PCA + class scores) "
    "concatenated, KNN through Qdrant",
    "cellvec-expression": "cellvec's expression view alone (PCA of variable genes + class scores)",
}
"""One line per method family for the Methods section (matched by name prefix)."""


def _method_note(name: str) -> str | None:
    for prefix in sorted(METHOD_NOTES, key=len, reverse=True):
        if name.startswith(prefix):
            note = METHOD_NOTES[prefix]
            enc = re.search(r"\[([^\]]+)\]", name)
            extra = f"; gene vectors: {enc.group(1)}" if enc else ""
            return f"{name}: {note}{extra}" + ("; refined by SupCon" if name.endswith("+supcon") else "") + "."
    return None


def _n_seeds(m: dict[str, Any]) -> int:
    return len(m["metrics"]["accuracy"]["values"])


def _results_table(summary: dict[str, Any]) -> Block:
    names = list(summary["methods"])
    ok = [n for n in names if _n_seeds(summary["methods"][n])]
    best = {
        x: dict(zip(ok, mark_best([summary["methods"][n]["metrics"][x]["mean"] for n in ok]), strict=True))
        for x in METRICS
    }
    rows: list[list[Any]] = []
    for n in names:
        m = summary["methods"][n]
        shown = f"{n} (default)" if n == summary.get("default_method") else n
        if n not in ok:
            rows.append([shown, *(["failed"] * len(METRICS)), "0", "—", "—", "—"])
            continue
        met = [Cell(_pm(m["metrics"][x]["values"]), best=best[x][n]) for x in METRICS]
        ks = ", ".join(str(k) for k in m["k"]) if any(k is not None for k in m["k"]) else "—"
        t = m["timings"]
        fit = (
            f"{t['fit_s']['mean']:.1f} (+{t['cv_s']['mean']:.1f} CV)"
            if m["kind"] == "knn"
            else f"{t['fit_s']['mean']:.1f}"
        )
        rows.append([shown, *met, str(_n_seeds(m)), ks, fit, f"{t['annotate_s']['mean']:.2f}"])
    head = ["method", *[METRIC_TITLES[x] for x in METRICS], "n seeds", "k per seed", "train s", "annotate s"]
    return Block("table", (head, rows))


def _recall_table(summary: dict[str, Any]) -> Block:
    ok = [n for n in summary["methods"] if summary["methods"][n]["per_class_recall"]]
    counts = summary.get("query_label_counts") or {}
    rows: list[list[Any]] = []
    for cls in natural_sorted(summary["labels"]):
        vals = [summary["methods"][n]["per_class_recall"].get(cls, {}).get("mean") for n in ok]
        flags = mark_best(vals, digits=2)
        cells = [Cell("—" if v is None else f"{v:.2f}", best=f) for v, f in zip(vals, flags, strict=True)]
        rows.append([cls, *([str(counts.get(cls, 0))] if counts else []), *cells])
    return Block("table", (["label", *(["query cells (seed 0)"] if counts else []), *ok], rows))


def _setup_line(summary: dict[str, Any]) -> str:
    cfg, ds = summary["config"], summary["dataset"]
    seeds = int(cfg["seeds"])
    n_query = summary["splits"][0]["n_query"] if summary["splits"] else 0
    split = (
        "a fixed reference → query"
        if ds["fixed_query"]
        else f"{'one' if seeds == 1 else seeds} stratified {1 - cfg['test_size']:.0%}/{cfg['test_size']:.0%} "
        f"split{'s' if seeds != 1 else ''}"
    )
    return (
        f"{ds['n_cells']:,} cells, {len(summary['labels'])} labels (`{ds['label_key']}`), {split} "
        f"({n_query:,} query cells); {len(summary['methods'])} methods. Highlighted: the best value of each "
        f"column (per-class recall: of each row). "
        + ("Values are single runs (n = 1 seed)." if seeds == 1 else f"Values are mean ± sd over {seeds} seeds.")
        + " How each method was run: Methods, at the end."
    )


def _blocks(summary: dict[str, Any], figures: dict[str, Any]) -> list[Block]:
    cfg = summary["config"]
    ds = summary["dataset"]
    names = list(summary["methods"])
    seeds = int(cfg["seeds"])
    b: list[Block] = [Block("heading", f"cellvec bench — {ds['name']}", 1)]
    b.append(Block("verdict", summary["verdict"] or verdict(summary)))
    if ds["description"]:
        b.append(Block("text", ds["description"]))
    b.append(Block("text", _setup_line(summary)))
    b.append(Block("heading", "Results"))
    b.append(_results_table(summary))
    b.append(Block("heading", "Per-class recall" + (" (mean over seeds)" if seeds > 1 else "")))
    b.append(_recall_table(summary))
    b.append(Block("heading", "Figures"))
    b.append(Block("text", "Click a figure to open it full size. Seed 0's query cells."))
    if "metrics" in figures:
        b.append(Block("image", (figures["metrics"], "Scores per method")))
    conf = [(figures["confusion"][n], f"Confusion matrix, {n}") for n in names if n in figures.get("confusion", {})]
    if conf:
        b.append(Block("heading", "Confusion matrices (rows: true label, share of its cells)", 3))
        b.append(Block("gallery", conf))
    emb = [
        (figures["embedding"][n], f"{n}: true, predicted, misclassified")
        for n in names
        if n in figures.get("embedding", {})
    ]
    if emb:
        b.append(Block("heading", "Query cells in each method's space", 3))
        b.append(Block("gallery", emb, wide=True))
    b += _methods_blocks(summary)
    notes = []
    for n in names:
        m = summary["methods"][n]
        notes += [f"{n}: error: {e}" for e in m["errors"]]
        notes += [f"{n}: {w}" for w in m["warnings"][:5]]
    if notes:
        b.append(Block("heading", "Notes"))
        b.append(Block("list", notes))
    return b


def _methods_blocks(summary: dict[str, Any]) -> list[Block]:
    cfg = summary["config"]
    ds = summary["dataset"]
    names = list(summary["methods"])
    k_grid = [int(k) for k in cfg["k_grid"]]
    seeds = int(cfg["seeds"])
    split = (
        "fixed reference → query"
        if ds["fixed_query"]
        else f"stratified {1 - cfg['test_size']:.0%}/{cfg['test_size']:.0%} split"
    )
    b = [Block("heading", "Methods")]
    b.append(
        Block(
            "text",
            (
                f"Protocol: {split}, seed{'s' if seeds != 1 else ''} "
                + (f"0-{seeds - 1}" if seeds > 1 else "0")
                + f"; for KNN methods k ∈ {{{', '.join(map(str, k_grid))}}} chosen by {cfg['n_folds']}-fold "
                "stratified cross-validation on the reference split only (cosine KNN, majority vote); every "
                "fitted step (HVG, scaling, PCA, SupCon, classifiers) sees reference cells only. Labels: `"
                + ds["label_key"]
                + "`; encoders: "
                + (", ".join(cfg["encoders"]) or "none")
                + f"; the default is {summary.get('default_method')}, what `cellvec reference build` does "
                f"without options. Created {summary['created']}."
            ),
        )
    )
    notes = [x for x in (_method_note(n) for n in names) if x]
    if notes:
        b.append(Block("list", notes))
    kn = [n for n in names if n in summary["k_table"]]
    if kn:
        b.append(
            Block(
                "heading", "k selection (cross-validation accuracy on the reference split; cf. the paper's Table 1)", 3
            )
        )
        krows = []
        for k in k_grid:
            vals = [summary["k_table"][n].get(str(k), float("nan")) for n in kn]
            krows.append([str(k), *[f"{v:.3f}" for v in vals]])
        b.append(Block("table", (["k", *kn], krows)))
    if summary["exact_vs_ann"]:
        b.append(
            Block(
                "heading",
                "Exact vs approximate search (same cellvec vectors: in-memory exhaustive "
                "search vs the Qdrant collection)",
                3,
            )
        )
        keys = ("ann_accuracy", "exact_accuracy", "label_agreement", "recall_at_k")
        arows = []
        for n, a in summary["exact_vs_ann"].items():
            one = _n_seeds(summary["methods"][n]) == 1
            arows.append([n, *[f"{a[key]['mean']:.3f}" + ("" if one else f" ± {a[key]['sd']:.3f}") for key in keys]])
        head = ["method", "accuracy (Qdrant)", "accuracy (exact)", "label agreement", "recall@k of neighbours"]
        b.append(Block("table", (head, arows)))
        b.append(
            Block(
                "text",
                "Exact labels use cellvec's own vote (majority, ties by summed similarity) on "
                "the exhaustive top-k, so any difference comes from the neighbour search.",
            )
        )
    b.append(Block("heading", "CellTypist compatibility", 3))
    b.append(Block("text", summary.get("celltypist_compat") or CELLTYPIST_NOTE))
    return b


# ------------------------------------------------------------------------------------------------ files


def _plot_data(result: BenchResult, say: Any) -> dict[str, dict[str, Any]]:
    """Return what the figures are drawn from: per method, seed 0's labels and its 2-D projection."""
    plots: dict[str, dict[str, Any]] = {}
    for name, m in result.methods.items():
        if m.confusion is None:
            continue
        entry: dict[str, Any] = {
            "true": np.asarray(m.confusion[0]).astype(str),
            "pred": np.asarray(m.confusion[1]).astype(str),
        }
        if m.embedding is not None and m.embedding_index is not None:
            say(f"figures: {'UMAP' if result.config.umap else 'PCA'} of {name}")
            coords, how = embed_2d(m.embedding, use_umap=result.config.umap)
            entry |= {
                "coords": np.asarray(coords, dtype=np.float32),
                "index": np.asarray(m.embedding_index),
                "how": how,
            }
        plots[name] = entry
    return plots


def _save_plot_data(plots: dict[str, dict[str, Any]], path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"methods": np.array(list(plots), dtype=str)}
    for i, entry in enumerate(plots.values()):
        arrays[f"true_{i}"], arrays[f"pred_{i}"] = entry["true"], entry["pred"]
        if "coords" in entry:
            arrays[f"coords_{i}"], arrays[f"index_{i}"] = entry["coords"], entry["index"]
            arrays[f"how_{i}"] = np.array(entry["how"])
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    tmp.replace(path)


def _load_plot_data(path: Path) -> dict[str, dict[str, Any]]:
    plots: dict[str, dict[str, Any]] = {}
    with np.load(path, allow_pickle=False) as z:
        for i, name in enumerate(z["methods"].tolist()):
            entry: dict[str, Any] = {"true": z[f"true_{i}"], "pred": z[f"pred_{i}"]}
            if f"coords_{i}" in z:
                entry |= {"coords": z[f"coords_{i}"], "index": z[f"index_{i}"], "how": str(z[f"how_{i}"])}
            plots[name] = entry
    return plots


def _render(summary: dict[str, Any], plots: dict[str, dict[str, Any]], out: Path, say: Any) -> dict[str, Any]:
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"confusion": {}, "embedding": {}}
    say("figures: scores, confusion matrices, projections")
    plot_metric_bars(summary, path=figs / "metrics.png")
    figures["metrics"] = "figures/metrics.png"
    for name, entry in plots.items():
        rel = f"figures/confusion_{_slug(name)}.png"
        plot_confusion(entry["true"], entry["pred"], title=f"{name} (seed 0)", path=out / rel)
        figures["confusion"][name] = rel
        if "coords" in entry:
            idx = entry["index"]
            rel = f"figures/embedding_{_slug(name)}.png"
            plot_embedding(
                entry["coords"], entry["true"][idx], entry["pred"][idx], title=name, how=entry["how"], path=out / rel
            )
            figures["embedding"][name] = rel
    summary["figures"] = figures
    summary["verdict"] = verdict(summary)
    blocks = _blocks(summary, figures)
    write_text_atomic(out / "report.md", render_markdown(blocks))
    write_text_atomic(out / "report.html", render_html(blocks, f"cellvec bench — {summary['dataset']['name']}"))
    write_text_atomic(out / "results.json", json.dumps(summary, indent=2, default=_json_default))
    return summary


def write_report(result: BenchResult, out_dir: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.html``, ``figures/*.png``, ``results.json`` and ``plot_data.npz``.

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
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    plots = _plot_data(result, say)
    _save_plot_data(plots, out / PLOT_DATA)
    return _render(summary, plots, out, say)


def render_report(results_dir: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Redraw a bench report from its saved ``results.json`` and ``plot_data.npz``, without re-running.

    The figures, ``report.md``, ``report.html`` and ``results.json`` in ``results_dir`` are rewritten
    (each file atomically) with the current renderer; the projections are not recomputed.

    Parameters
    ----------
    results_dir
        A folder written by :func:`write_report` (``cellvec bench --out``).
    progress
        Called with one line per step.

    Returns
    -------
    The summary.

    Raises
    ------
    InputError
        The folder has no ``results.json`` or it is not a bench summary.
    """
    say = progress or (lambda _msg: None)
    out = Path(results_dir)
    path = out / "results.json"
    if not path.is_file():
        msg = f"{out} has no results.json; give the --out folder of an earlier `cellvec bench` run."
        raise InputError(msg)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        msg = f"{path} is not JSON ({e}); run `cellvec bench` again to rewrite it."
        raise InputError(msg) from e
    missing = [k for k in ("methods", "config", "dataset") if not isinstance(summary, dict) or k not in summary]
    if missing:
        msg = f"{path} is not a `cellvec bench` summary (no {', '.join(missing)}); run `cellvec bench` again."
        raise InputError(msg)
    summary["labels"] = natural_sorted(summary.get("labels", []))
    summary.setdefault("default_method", default_method(summary["config"].get("encoders", [])))
    plots = _load_plot_data(out / PLOT_DATA) if (out / PLOT_DATA).is_file() else {}
    if not plots:
        say(f"{out / PLOT_DATA} not found (a run before it was saved): only the scores figure is drawn")
    return _render(summary, plots, out, say)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
