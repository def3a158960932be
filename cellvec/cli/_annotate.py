"""``cellvec annotate`` and ``cellvec demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from cellvec.cli._app import cli
from cellvec.cli._common import (
    Timer,
    check_out_path,
    emit,
    imports_done,
    json_option,
    matrix_options,
    open_cli_store,
    progress_bars,
    read_cells,
    read_h5ad,
    store_option,
    write_atomic,
    write_csv,
)
from indexer import InputError
from schemas import DEFAULT_ENCODER


@cli.command("annotate")
@store_option
@click.option("--reference", required=True, help="Reference name.")
@click.option("--adata", "adata_path", required=True, help="Query cells (.h5ad).")
@click.option("--out", "out_path", default=None, help="Write the annotated AnnData here (.h5ad).")
@click.option(
    "--csv",
    "csv_path",
    default=None,
    help="Write one row per cell here: cell, label, confidence, runner_up, reason.",
)
@click.option("--k", type=int, default=10, show_default=True, help="Neighbours that vote.")
@click.option(
    "--min-confidence",
    type=float,
    default=0.0,
    show_default=True,
    help="Confidence (calibrated probability; the vote share for references without a calibration) under "
    "which a cell is called Unknown (0: off).",
)
@click.option(
    "--unknown-alpha",
    type=float,
    default=0.01,
    show_default=True,
    help="Novelty level in [0, 0.5]: cells unlike any reference cell of their label at this level are called "
    "Unknown (about this share of reference-like cells; 0: off).",
)
@click.option(
    "--query-density/--no-query-density",
    default=True,
    show_default=True,
    help="Also call Unknown the cells whose nearest neighbours are other query cells more often than the "
    "query's size explains (a group the reference lacks; queries of 200 cells or more).",
)
@click.option(
    "--empirical-null/--no-empirical-null",
    default=True,
    show_default=True,
    help="Read the novelty p-values against the query's own null, so that a query from another donor or batch "
    "is not rejected wholesale (never rejects more; queries of 200 cells or more).",
)
@click.option("--version", "version", type=int, default=None, help="Reference version (default: current).")
@click.option("--encoder", default=None, help="Refuse to run unless the reference uses this encoder.")
@click.option("--gene-column", default=None, help="var column with gene names, instead of var_names.")
@click.option("--key-added", default="cellvec", show_default=True, help="Prefix of the obs/obsm/uns keys.")
@click.option("--explain", is_flag=True,
              help="Record each cell's marker genes (exact shares of its label's class-head score, default "
                   "mode) and the genes whose descriptions pulled it toward its label (text part); with --csv "
                   "they are columns too.")
@click.option("--plot", "plot_dir", default=None, metavar="DIR",
              help="Write DIR/umap.png (UMAP of the query's cell vectors by label and by confidence, Unknown "
                   "marked; PCA without umap-learn) and DIR/label_counts.png.")
@matrix_options
@json_option
def annotate_cmd(**opts: Any) -> None:
    """Label query cells from their cosine top-k neighbours in a reference (calibrated, with a novelty check)."""
    from annotator import annotate

    imports_done()
    timer = Timer()
    as_json = opts.pop("as_json")
    if opts["out_path"]:
        check_out_path(opts["out_path"])
    if opts["csv_path"]:
        check_out_path(opts["csv_path"], what="--csv")
    if opts["plot_dir"]:
        from annotator import check_plot_dir

        check_plot_dir(opts["plot_dir"])
    if not 0 <= opts["unknown_alpha"] <= 0.5:
        alpha = opts["unknown_alpha"]
        msg = f"--unknown-alpha {alpha:g} is outside [0, 0.5]; pass 0.01 (the default) or 0 to turn it off."
        raise InputError(msg)
    with timer.step("read"):
        # Only --out writes the AnnData back, and only --gene-column reads its var table: otherwise the
        # matrix and names are all annotate reads, without importing anndata.
        need_anndata = bool(opts["out_path"] or opts["gene_column"])
        adata = read_h5ad(opts["adata_path"]) if need_anndata else read_cells(opts["adata_path"])
    with (
        open_cli_store(opts["store"], read_only=True, create=False) as store,
        progress_bars(enabled=not as_json) as report,
    ):
        with timer.step("annotate"):
            res = annotate(
                adata,
                reference=opts["reference"],
                store=store,
                k=opts["k"],
                min_confidence=opts["min_confidence"],
                unknown_alpha=opts["unknown_alpha"],
                query_density=opts["query_density"],
                empirical_null=opts["empirical_null"],
                version=opts["version"],
                encoder=opts["encoder"],
                gene_column=opts["gene_column"],
                explain=opts["explain"],
                progress=report,
                layer=opts["layer"],
                use_raw=opts["use_raw"],
            )
    cached = _cache_genes(opts["store"], res.extra.get("pending_genes"))
    if opts["out_path"]:
        res.to_adata(adata, key_added=opts["key_added"])
        with timer.step("write"):
            write_atomic(opts["out_path"], adata.write_h5ad)
    if opts["csv_path"]:
        table: dict[str, list[object]] = {
            "cell": np.asarray(adata.obs_names).astype(str).tolist(),
            "label": res.labels.astype(str).tolist(),
            "confidence": np.round(res.confidence.astype(float), 4).tolist(),
            "runner_up": res.runner_up().astype(str).tolist(),
            "reason": res.reasons.astype(str).tolist(),
        }
        if opts["explain"]:
            table["marker_genes"] = res.marker_genes().astype(str).tolist()
            table["text_genes"] = [", ".join(g for g, _ in ex[:5]) for ex in res.explanations or []]
        write_csv(opts["csv_path"], table)
    plots: dict[str, str] = {}
    if opts["plot_dir"]:
        from annotator import plot_annotation

        with timer.step("plot"), progress_bars(enabled=not as_json) as report:
            plots = plot_annotation(res, opts["plot_dir"], progress=report)
    from annotator import natural_key

    labels, counts = np.unique(res.labels.astype(str), return_counts=True)
    n_unknown = int((res.labels == "Unknown").sum())
    data = {
        "n_cells": int(adata.n_obs),
        "reference": opts["reference"],
        "version": res.params.version,
        "labels": dict(sorted(zip(labels.tolist(), counts.tolist(), strict=True), key=lambda kv: natural_key(kv[0]))),
        "unknown": n_unknown,
        "novel": int(np.char.startswith(res.reasons.astype(str), "unlike any").sum()),
        "calibrated": res.params.calibrated,
        "cells_per_s": adata.n_obs / max(timer.steps["annotate"], 1e-9),
        "seconds": timer.steps,
        "out": opts["out_path"],
        "species": res.params.query_species.model_dump(mode="json") if res.params.query_species else None,
        "orthologs": res.params.orthologs.model_dump(mode="json") if res.params.orthologs else None,
        "csv": opts["csv_path"],
        "embedded_genes": res.extra.get("embedded_genes", 0),
        "cached_genes": cached,
        "panel_coverage": res.extra.get("panel_coverage", {}),
        "plots": plots,
    }
    species_lines = [r.summary() for r in (res.params.query_species, res.params.orthologs) if r is not None]
    coverage = "; ".join(
        f"{view} panel {c['present']}/{c['panel']} genes" for view, c in data["panel_coverage"].items()
    )
    markers = res.label_markers()
    if markers:
        data["label_markers"] = markers
    by_label = sorted(data["labels"].items(), key=lambda kv: natural_key(kv[0]))  # "2" before "10"
    lines = [
        f"annotated {adata.n_obs} cells against '{opts['reference']}' v{res.params.version} in "
        f"{timer.steps['annotate']:.1f} s ({data['cells_per_s']:.0f} cells/s); {n_unknown} Unknown",
        *(f"  {label:<30} {count:>7}" + (f"   markers: {', '.join(markers[label])}" if label in markers else "")
          for label, count in by_label),
        f"embedded {data['embedded_genes']} genes"
        + (f" (stored {cached} for the next run)" if cached else "")
        + (f"; {coverage}" if coverage else ""),
        "wrote " + " and ".join(p for p in (opts["out_path"], opts["csv_path"], plots.get("umap"),
                                            plots.get("label_counts")) if p)
        + (f" ({plots['embedding'].upper()} of the query's cell vectors)" if plots else "")
        if opts["out_path"] or opts["csv_path"] or plots
        else "nothing was written (pass --out FILE.h5ad or --csv FILE.csv to save the labels)",
        *species_lines,
    ]
    emit(data, as_json=as_json, text="\n".join(lines))


def _cache_genes(location: str, pending: Any) -> int:
    """Store the gene vectors this read-only run embedded, when the store can be written now; else 0.

    The store is opened for writing only for this short step, so a concurrent writer (the lock) or a
    read-only disk just means the genes are embedded again next time.
    """
    import logging

    from indexer import StoreError
    from indexer.genes import save_pending_genes

    if pending is None or not len(pending) or location == ":memory:":  # a new :memory: store would not keep them
        return 0
    try:
        with open_cli_store(location, create=False) as st:
            return save_pending_genes(st, pending)
    except StoreError as e:
        logging.getLogger("indexer").warning(
            "the %d gene vectors embedded for this run were not stored (%s); the next run embeds them again",
            len(pending), str(e).splitlines()[0],
        )
        return 0


def demo_split(adata: Any, label_key: str, *, test_size: float = 0.2, seed: int = 0) -> tuple[Any, Any]:
    """Split cells into reference and query with cellvec's one seeded, stratified split."""
    from indexer.cells import stratified_split

    ref_idx, query_idx = stratified_split(adata.obs[label_key].to_numpy(), test_size=test_size, seed=seed)
    return adata[ref_idx].copy(), adata[query_idx].copy()


def _store_line(store: str) -> str:
    """Say where the demo's store is and how to remove it (a server or :memory: store keeps no folder)."""
    import shlex

    if store == ":memory:" or "://" in store:
        return f"store: {store}"
    return (
        f"store: {store} (kept so that the next run reuses its gene vectors; "
        f"remove it with rm -rf {shlex.quote(store)})"
    )


@cli.command("demo")
@click.option("--store", default="./cellvec-demo-store", show_default=True, help="Store for the demo.")
@click.option(
    "--encoder", envvar="CELLVEC_ENCODER", default=DEFAULT_ENCODER, show_default=True, help="Gene text encoder."
)
@click.option(
    "--mode",
    type=click.Choice(["paper", "genept", "expression", "hybrid"]),
    default=None,
    help="Cell vector mode (default: the build default).",
)
@click.option("--refine", type=click.Choice(["none", "supcon"]), default="none", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the 80/20 split.")
@json_option
def demo_cmd(*, store: str, encoder: str, mode: str | None, refine: str, seed: int, as_json: bool) -> None:
    """Build a reference from 80% of pbmc68k_reduced, annotate the other 20% and print the metrics."""
    import warnings

    import scanpy as sc

    from annotator import annotate
    from indexer import Settings, build_reference, drop_reference, list_references
    from indexer.cells import score
    from schemas import DEFAULT_MODE, CellVectorSpec, RefineParams

    data_dir = Settings().data_dir
    if not (Path(data_dir) / "gene_text").is_dir():
        msg = (
            f"the gene description folder '{data_dir}' is missing; set CELLVEC_DATA_DIR to it, or fetch the "
            "data from NCBI with `cellvec genes fetch --species human`."
        )
        raise InputError(msg)
    timer = Timer()
    with timer.step("load"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = sc.datasets.pbmc68k_reduced().raw.to_adata()
    ref, query = demo_split(adata, "bulk_labels", seed=seed)
    spec = CellVectorSpec(
        mode=mode or DEFAULT_MODE,
        encoder=encoder,
        species="human",  # type: ignore[arg-type]
        refine=RefineParams(method=refine, seed=seed),
    )  # type: ignore[arg-type]
    # the folder the demo leaves behind (its gene vectors make the next run fast), named with how to remove it
    store_path = store if store == ":memory:" or "://" in store else str(Path(store).resolve())
    with open_cli_store(store) as st, progress_bars(enabled=not as_json) as report:
        if any(m.name == "pbmc-demo" for m in list_references(st)):
            drop_reference(st, "pbmc-demo")
        with timer.step("build reference"):
            rec = build_reference(ref, store=st, name="pbmc-demo", label_key="bulk_labels", spec=spec, progress=report)
        with timer.step("annotate"):
            res = annotate(query, reference="pbmc-demo", store=st, k=10, progress=report)
    metrics = score(query.obs["bulk_labels"].to_numpy(), res.labels).scalars()
    data = {
        "reference_cells": ref.n_obs,
        "query_cells": query.n_obs,
        "mode": rec.spec.mode,
        "encoder": encoder,
        "refine": refine,
        "metrics": metrics,
        "seconds": timer.steps,
        "store": store_path,
    }
    lines = [
        f"pbmc68k_reduced: {ref.n_obs} reference / {query.n_obs} query cells, {len(rec.labels)} labels; "
        f"mode={rec.spec.mode}, encoder={encoder}, refine={refine}, k=10",
        *(f"  {k:<12} {v:.3f}" for k, v in metrics.items()),
        *(f"  {k:<16} {v:6.1f} s" for k, v in timer.steps.items()),
        _store_line(store_path),
    ]
    emit(data, as_json=as_json, text="\n".join(lines))
