"""``cellvec bench``: cellvec and its baselines on the same seeded splits, written up as a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cellvec.cli._app import cli
from cellvec.cli._common import emit, json_option, matrix_options, write_atomic
from indexer import InputError


def bench_store_default() -> Path:
    """Return where ``cellvec bench`` keeps its store by default: a cache folder, not the working folder.

    ``$XDG_CACHE_HOME/cellvec/bench-store`` when ``XDG_CACHE_HOME`` is set, else
    ``~/.cache/cellvec/bench-store`` (the XDG base-directory default).
    """
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cellvec" / "bench-store"


def _csv(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


@cli.group("bench", invoke_without_command=True)
@click.option("--adata", "adata_path", default=None, help="Labelled cells (.h5ad); the reference with --query-adata.")
@click.option("--label-key", default=None, help="obs column with the true labels.")
@click.option("--query-adata", "query_path", default=None, help="Fixed labelled query cells (.h5ad).")
@click.option(
    "--split",
    "test_size",
    type=float,
    default=0.2,
    show_default=True,
    help="Query share of the stratified split (without --query-adata).",
)
@click.option(
    "--dataset",
    type=click.Choice(
        [
            "pbmc68k",
            "voigt-coarse",
            "voigt-fine",
            "voigt-cross-donor",
            "voigt-paper-sizes",
            "voigt-rare",
            "tran-rgc",
        ]
    ),
    default=None,
    help="A built-in task instead of --adata.",
)
@click.option("--paper-sizes", is_flag=True, help="tran-rgc: subsample the clusters to 165,138,117,92,69,27 cells.")
@click.option(
    "--clusters",
    default=None,
    help="Cluster selection, e.g. C22,C28,C33,C35,C36,C43 (tran-rgc) or six cluster_label values (voigt-paper-sizes).",
)
@click.option("--tran-matrix", default=None, help="RGC_Atlas.csv (genes x cells) for tran-rgc.")
@click.option("--tran-labels", default=None, help="RGC_Atlas_coordinates.txt for tran-rgc (default: data folder).")
@click.option("--seeds", type=int, default=5, show_default=True, help="Number of seeded splits.")
@click.option(
    "--methods",
    default=None,
    help="Comma-separated method names or prefixes "
    "(seurat-like, celltypist, logreg, genept-w, cellvec-paper, cellvec-genept, cellvec-hybrid, "
    "cellvec-expression); default: all.",
)
@click.option(
    "--encoders",
    default="minilm,random:384",
    show_default=True,
    help="Gene text encoders for cellvec; the first also runs GenePT-w and the genept/hybrid modes.",
)
@click.option("--no-supcon", is_flag=True, help="Skip the SupCon-refined variants.")
@click.option(
    "--store",
    envvar="CELLVEC_BENCH_STORE",
    default=lambda: str(bench_store_default()),
    show_default="$XDG_CACHE_HOME/cellvec/bench-store, else ~/.cache/cellvec/bench-store",
    help="Store for bench references and the persistent gene vector cache (about 100 MB); env CELLVEC_BENCH_STORE.",
)
@click.option("--out", "out_dir", default="bench-report", show_default=True, help="Report folder.")
@click.option(
    "--from-results",
    "from_results",
    default=None,
    metavar="DIR",
    help="Redraw the report of an earlier run in DIR (its --out folder) from its results.json and "
    "plot_data.npz, without running anything; the other options are ignored.",
)
@click.option("--no-umap", is_flag=True, help="Draw PCA instead of UMAP projections (faster).")
@click.option("--n-jobs", type=int, default=2, show_default=True, help="Processes for CellTypist's fits.")
@matrix_options
@click.option(
    "--open-set",
    is_flag=True,
    help="Unknown and calibration instead: leave each type with >= --min-cells reference cells out in turn "
    "(missing-type rejection, known false rejection, novelty AUROC per type, known accuracy), rare-class "
    "recall by reference size, ECE; beside CellTypist (Unassigned at p 0.5). Uses the first of --encoders.",
)
@click.option(
    "--min-cells", type=int, default=20, show_default=True, help="--open-set: types left out need this many."
)
@click.option(
    "--unknown-alpha", "alpha", type=float, default=0.01, show_default=True, help="--open-set: novelty level."
)
@json_option
@click.pass_context
def bench_cmd(ctx: click.Context, **opts: Any) -> None:
    """Benchmark cellvec against Seurat-like KNN, CellTypist, logistic regression and GenePT-w.

    Writes OUT/report.html (open it in a browser), OUT/report.md, OUT/figures/*.png, OUT/results.json and
    OUT/plot_data.npz (what --from-results redraws from). ``cellvec bench scale``
    measures build, memory and search at reference sizes up to millions of cells.
    """
    if ctx.invoked_subcommand is not None:
        return
    from benchmarks.accuracy import BenchConfig, from_files, load_dataset, render_report, run_bench, write_report

    say = (lambda _m: None) if opts["as_json"] else (lambda m: click.echo(m, err=True))
    if opts["from_results"]:
        _print_summary(render_report(opts["from_results"], progress=say), Path(opts["from_results"]), opts)
        return
    if opts["seeds"] < 1:
        msg = f"--seeds {opts['seeds']} is not a number of splits; give 1 or more."
        raise InputError(msg)
    clusters = _csv(opts["clusters"])
    rare = opts["dataset"] == "voigt-rare"
    if rare and not opts["open_set"]:
        msg = "--dataset voigt-rare is a task of the open-set benchmark; add --open-set."
        raise InputError(msg)
    if not 0 <= opts["alpha"] <= 0.5:
        msg = f"--unknown-alpha {opts['alpha']:g} is outside [0, 0.5]; 0.01 is the default, 0 turns it off."
        raise InputError(msg)
    if rare:
        opts["dataset"] = "voigt-fine"
    if opts["dataset"]:
        if opts["adata_path"]:
            msg = "--dataset and --adata were both given; use one of them."
            raise InputError(msg)
        dataset = load_dataset(
            opts["dataset"],
            clusters=clusters,
            paper_sizes=opts["paper_sizes"],
            tran_matrix=opts["tran_matrix"],
            tran_labels=opts["tran_labels"],
        )
    elif opts["adata_path"]:
        if not opts["label_key"]:
            msg = "--adata needs --label-key, the obs column with the true labels."
            raise InputError(msg)
        dataset = from_files(opts["adata_path"], label_key=opts["label_key"], query_path=opts["query_path"],
                             layer=opts["layer"], use_raw=opts["use_raw"])
    else:
        msg = "nothing to benchmark: give --adata FILE --label-key KEY, or --dataset NAME."
        raise InputError(msg)
    if opts["open_set"]:
        _open_set(dataset, opts, rare=rare)
        return
    config = BenchConfig(
        seeds=opts["seeds"],
        test_size=opts["test_size"],
        methods=_csv(opts["methods"]),
        encoders=_csv(opts["encoders"]) or (),
        supcon=not opts["no_supcon"],
        store=opts["store"],
        umap=not opts["no_umap"],
        n_jobs=opts["n_jobs"],
    )
    result = run_bench(dataset, config=config, progress=say)
    _print_summary(write_report(result, opts["out_dir"], progress=say), Path(opts["out_dir"]), opts)


def _mean_sd(metric: dict[str, Any], n: int) -> str:
    """One seed has no spread: its value alone (the n column says so), else mean ± sd."""
    return f"{metric['mean']:.3f}" if n == 1 else f"{metric['mean']:.3f} ± {metric['sd']:.3f}"


def _print_summary(summary: dict[str, Any], out: Path, opts: dict[str, Any]) -> None:
    lines = [summary["verdict"], "", f"{'method':<36} {'accuracy':<15} {'macro F1':<15} n"]
    for name, m in summary["methods"].items():
        acc, f1 = m["metrics"]["accuracy"], m["metrics"]["macro_f1"]
        n = len(acc["values"])
        if not n:
            lines.append(f"{name:<36} failed")
            continue
        lines.append(f"{name:<36} {_mean_sd(acc, n):<15} {_mean_sd(f1, n):<15} {n}")
    lines.append(f"wrote {out / 'report.html'}, {out / 'report.md'}, {out / 'results.json'}")
    emit(
        {
            "out": str(out),
            "verdict": summary["verdict"],
            "methods": {n: m["metrics"] for n, m in summary["methods"].items()},
        },
        as_json=opts["as_json"],
        text="\n".join(lines),
    )


def _open_set(dataset: Any, opts: dict[str, Any], *, rare: bool) -> None:
    """``cellvec bench --open-set``: run :func:`benchmarks.accuracy._open_set.run_open_set` and write it up."""
    from benchmarks.accuracy._open_set import dump, report, run_open_set
    from indexer import open_store

    out = Path(opts["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    encoders = _csv(opts["encoders"]) or ("random:384",)
    say = (lambda _m: None) if opts["as_json"] else (lambda m: click.echo(m, err=True))
    rows = run_open_set(
        dataset,
        seeds=opts["seeds"],
        store=open_store(opts["store"]),
        encoder=encoders[0],
        alpha=opts["alpha"],
        min_cells=opts["min_cells"],
        celltypist=True,
        rare=rare,
        n_jobs=opts["n_jobs"],
        progress=say,
    )
    if rare:
        for r in rows:
            r["dataset"] = "voigt-rare"
    text = report(rows)
    write_atomic(out / "open_set.md", lambda p: p.write_text(f"# Open set: {dataset.name}\n\n{text}"))
    write_atomic(out / "open_set.json", lambda p: p.write_text(dump(rows)))
    emit(
        {"out": str(out), "rows": len(rows)},
        as_json=opts["as_json"],
        text=f"{text}\nwrote {out / 'open_set.md'}, {out / 'open_set.json'}",
    )


def _attach_scale() -> None:
    from cellvec.cli._scale import scale_cmd

    bench_cmd.add_command(scale_cmd)


_attach_scale()
