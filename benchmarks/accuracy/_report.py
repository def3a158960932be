"""Write the benchmark report: ``report.md``, ``report.html``, PNG figures and ``results.json``.

The report is built once as a list of blocks (headings, paragraphs, tables, images) and rendered to both
Markdown and HTML, so the two always say the same thing.
"""

from __future__ import annotations

import html
import json
import platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy._protocol import METRICS, mean_sd
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

METRIC_TITLES = {
    "accuracy": "Accuracy",
    "weighted_f1": "Weighted F1",
    "macro_f1": "Macro F1",
    "kappa": "Kappa",
}


@dataclass
class Block:
    """One piece of the report: ``kind`` is heading, text, table or image."""

    kind: str
    content: Any
    level: int = 2


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


def _figure(width: float, height: float) -> Any:
    """Return a matplotlib Figure drawn by the Agg canvas; pyplot and the global backend are never touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, *, title: str, path: Path) -> None:
    """Draw a row-normalised confusion matrix with counts (the paper's Fig. 2-3).

    Parameters
    ----------
    y_true
        True labels.
    y_pred
        Predicted labels.
    title
        Figure title.
    path
        PNG to write.
    """
    from sklearn.metrics import confusion_matrix

    true_classes = list(np.unique(y_true))
    extra = [c for c in np.unique(y_pred) if c not in true_classes]
    classes = true_classes + extra
    cm = confusion_matrix(y_true, y_pred, labels=classes)[: len(true_classes)]
    rows = cm.sum(axis=1, keepdims=True)
    frac = cm / np.where(rows > 0, rows, 1)
    n = len(classes)
    fig = _figure(max(4.5, 0.45 * n + 2.5), max(4.0, 0.4 * len(true_classes) + 2.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n), [str(c)[:24] for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(true_classes)), [str(c)[:24] for c in true_classes], fontsize=7)
    for i in range(len(true_classes)):
        for j in range(n):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if frac[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def embed_2d(vectors: np.ndarray, *, use_umap: bool, seed: int = 0) -> tuple[np.ndarray, str]:
    """Project vectors to 2-D with UMAP (cosine) or, without it, PCA.

    Parameters
    ----------
    vectors
        Cell vectors.
    use_umap
        Use UMAP (slower; compiles on first use).
    seed
        Random seed.

    Returns
    -------
    Coordinates and the method's name.
    """
    x = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
    if use_umap and len(x) > 15:
        import warnings

        with warnings.catch_warnings():
            # umap-learn warns that a fixed random_state disables parallelism; that is the trade we want.
            warnings.filterwarnings("ignore", message=".*random_state.*", category=UserWarning)
            import umap

            reducer = umap.UMAP(n_neighbors=15, metric="cosine", random_state=seed, n_jobs=1)
            return np.asarray(reducer.fit_transform(x)), "UMAP"
    from sklearn.decomposition import PCA

    n = min(2, x.shape[1], len(x))
    out = PCA(n_components=n, random_state=seed).fit_transform(x)
    if out.shape[1] < 2:
        out = np.column_stack([out, np.zeros(len(out))])
    return out, "PCA"


def plot_embedding(
    coords: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, *, title: str, how: str, path: Path
) -> None:
    """Draw query cells in 2-D, coloured by true (left) and predicted (right) label.

    Parameters
    ----------
    coords
        2-D coordinates.
    y_true
        True labels.
    y_pred
        Predicted labels.
    title
        Figure title.
    how
        Projection name for the axis labels.
    path
        PNG to write.
    """
    from matplotlib import colormaps

    classes = sorted(set(y_true) | set(y_pred))
    cmap = colormaps["tab20"]
    colour = {c: cmap(i % 20) for i, c in enumerate(classes)}
    fig = _figure(11, 4.8)
    for i, (labels, sub) in enumerate(((y_true, "true label"), (y_pred, "predicted label"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for c in classes:
            sel = labels == c
            if sel.any():
                ax.scatter(
                    coords[sel, 0], coords[sel, 1], s=4, color=colour[c], label=str(c)[:24], linewidths=0
                )
        ax.set_title(f"{title}: {sub}", fontsize=9)
        ax.set_xlabel(f"{how} 1")
        ax.set_ylabel(f"{how} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def plot_metric_bars(summary: dict[str, Any], *, path: Path) -> None:
    """Draw mean ± sd of every metric per method (the paper's Fig. 4).

    Parameters
    ----------
    summary
        Output of :func:`summarise`.
    path
        PNG to write.
    """
    names = [n for n, m in summary["methods"].items() if m["metrics"]["accuracy"]["values"]]
    fig = _figure(max(7.0, 0.55 * len(names) * len(METRICS) / 2), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(METRICS), 1)
    x = np.arange(len(names))
    for i, metric in enumerate(METRICS):
        means = [summary["methods"][n]["metrics"][metric]["mean"] for n in names]
        sds = [summary["methods"][n]["metrics"][metric]["sd"] for n in names]
        ax.bar(
            x + (i - (len(METRICS) - 1) / 2) * width,
            means,
            width,
            yerr=sds,
            capsize=2,
            label=METRIC_TITLES[metric],
        )
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (mean ± sd over seeds)")
    ax.legend(fontsize=7, ncols=len(METRICS), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)


# ------------------------------------------------------------------------------------------------ report


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


def _md(blocks: list[Block]) -> str:
    out = []
    for bl in blocks:
        if bl.kind == "heading":
            out.append("#" * bl.level + " " + bl.content)
        elif bl.kind == "text":
            out.append(bl.content)
        elif bl.kind == "list":
            out.append("\n".join(f"- {x}" for x in bl.content))
        elif bl.kind == "table":
            head, rows = bl.content
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif bl.kind == "image":
            path, alt = bl.content
            out.append(f"![{alt}]({path})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _html(blocks: list[Block], title: str) -> str:
    out = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
    ]
    for bl in blocks:
        if bl.kind == "heading":
            out.append(f"<h{bl.level}>{html.escape(bl.content)}</h{bl.level}>")
        elif bl.kind == "text":
            out.append(f"<p>{_inline(bl.content)}</p>")
        elif bl.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in bl.content) + "</ul>")
        elif bl.kind == "table":
            head, rows = bl.content
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
        elif bl.kind == "image":
            path, alt = bl.content
            out.append(
                f"<figure><img src='{html.escape(path)}' alt='{html.escape(alt)}'>"
                f"<figcaption>{html.escape(alt)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


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
    (out / "report.md").write_text(_md(blocks), encoding="utf-8")
    (out / "report.html").write_text(
        _html(blocks, f"cellvec bench — {summary['dataset']['name']}"), encoding="utf-8"
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
