"""``cellvec reference build|list|info``."""

from __future__ import annotations

from typing import Any

import click

from cellvec.cli._app import reference
from cellvec.cli._common import (
    Timer,
    emit,
    index_from_options,
    index_options,
    json_option,
    matrix_options,
    open_cli_store,
    progress_bars,
    read_gene_names,
    read_h5ad,
    reference_option,
    store_option,
)
from cellvec.cli._spec_options import spec_from_options, spec_options


@reference.command("build")
@store_option
@reference_option()
@click.option("--adata", "adata_path", required=True, help="Labelled reference cells (.h5ad).")
@click.option("--label-key", required=True, help="obs column with the cell type labels.")
@click.option("--dataset-key", default=None, help="obs column naming each cell's dataset or batch.")
@click.option("--dataset", default="", help="Dataset name for every cell (when --dataset-key is not given).")
@click.option("--gene-column", default=None, help="var column with gene names, instead of var_names.")
@click.option(
    "--housekeeping", "hk_path", default=None, help="Housekeeping gene list for SupCon's second view."
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=10),
    default=None,
    help="Pool and write this many cells at a time, fitting the artefacts once on a stratified sample "
    "(--fit-cells): a million-cell reference in a fraction of the memory. Default: one pass.",
)
@click.option(
    "--fit-cells",
    type=click.IntRange(min=10),
    default=50_000,
    show_default=True,
    help="With --chunk-size: reference cells (stratified by label) the expression view, class head, "
    "text projection and calibration are fitted on.",
)
@matrix_options
@click.option(
    "--genes-of",
    "genes_path",
    default=None,
    help="Restrict the reference to the genes this query (.h5ad, or a text file of names) has, mapped through "
    "orthologs when it is of the other species: for queries with few of the reference's genes.",
)
@spec_options
@index_options
@json_option
def build_cmd(**opts: Any) -> None:
    """Build (or resume) a new version of a labelled reference and make it current."""
    from pathlib import Path

    from indexer import build_reference
    from indexer.genes import load_housekeeping

    timer = Timer()
    as_json = opts.pop("as_json")
    from indexer.cells import select_expression

    with timer.step("read"):
        adata = read_h5ad(opts.pop("adata_path"))
    # Chosen here, before the housekeeping list below reads the gene names of the matrix that is built.
    adata = select_expression(adata, layer=opts.pop("layer"), use_raw=opts.pop("use_raw"), what="--adata")
    spec = spec_from_options(opts, species=opts["species"])
    genes_path = opts.pop("genes_path")
    genes = None if genes_path is None else read_gene_names(genes_path)
    hk_path = opts.pop("hk_path")
    hk = None
    if hk_path:
        from indexer import resolve_species

        # The list's symbols are resolved against the reference's species, so decide it first.
        names = adata.var[opts["gene_column"]] if opts["gene_column"] else adata.var_names
        call = resolve_species([str(n) for n in names], spec.species, option="--species")
        spec = spec.model_copy(update={"species": call.species})
        hk = load_housekeeping(call.species, path=Path(hk_path))
    index = index_from_options(opts)
    with open_cli_store(opts.pop("store"), index=index) as store, progress_bars(enabled=not as_json) as report:
        with timer.step("build"):
            rec = build_reference(
                adata,
                store=store,
                name=opts["name"],
                label_key=opts["label_key"],
                spec=spec,
                dataset_key=opts["dataset_key"],
                dataset=opts["dataset"],
                gene_column=opts["gene_column"],
                housekeeping=hk,
                progress=report,
                species_option="--species",
                chunk_size=opts["chunk_size"],
                fit_cells=opts["fit_cells"],
                use_raw=False,  # already chosen above
                genes=genes,
                genes_what=f"--genes-of {genes_path}",
            )
        n_used = None
        if genes is not None:
            from indexer import Reference

            subset = Reference.open(store, rec.reference, version=rec.version).artifacts.gene_subset
            n_used = None if subset is None else len(subset)
    data = {
        "reference": rec.reference,
        "version": rec.version,
        "n_cells": rec.n_cells,
        "labels": rec.labels,
        "dim": rec.dim,
        "mode": rec.spec.mode,
        "encoder": rec.spec.encoder,
        "species": rec.species_call.model_dump(mode="json") if rec.species_call else rec.spec.species,
        "seconds": timer.steps,
    }
    species_line = rec.species_call.summary() if rec.species_call else f"species: {rec.spec.species}"
    if n_used is not None:
        data["genes_used"] = n_used
        species_line += f"\ngenes: restricted to {n_used:,} genes that {genes_path} has"
    emit(
        data,
        as_json=as_json,
        text=(
            f"reference '{rec.reference}' v{rec.version}: {rec.n_cells} cells, {len(rec.labels)} labels, "
            f"{rec.dim}-d {rec.spec.mode} vectors ({rec.spec.encoder}, refine={rec.spec.refine.method}) "
            f"in {timer.steps['build']:.1f} s\n{species_line}"
        ),
    )


@reference.command("list")
@store_option
@json_option
def list_cmd(*, store: str, as_json: bool) -> None:
    """List the references in a store with their current version."""
    from indexer import list_references

    with open_cli_store(store, read_only=True, create=False) as st:
        mans = list_references(st)
    rows = []
    for m in mans:
        rec = m.record()
        rows.append(
            {
                "name": m.name,
                "current": m.current,
                "versions": [v.version for v in m.versions],
                "n_cells": rec.n_cells if rec else 0,
                "mode": rec.spec.mode if rec else None,
            }
        )
    text = "\n".join(f"{r['name']}\tv{r['current']}\t{r['n_cells']} cells\t{r['mode']}" for r in rows)
    emit({"references": rows}, as_json=as_json, text=text or "no references")


@reference.command("info")
@store_option
@reference_option()
@json_option
def info_cmd(*, store: str, name: str, as_json: bool) -> None:
    """Show a reference's build record, versions, cells per label and datasets."""
    from annotator import natural_key
    from indexer.reference import load_manifest, resolve_version, version_collection

    with open_cli_store(store, read_only=True, create=False) as st:
        man = load_manifest(st, name)
        rec = resolve_version(man)
        datasets = st.facet(version_collection(name, rec.version), "dataset")
    data = {"manifest": man.model_dump(mode="json"), "datasets": datasets}
    lines = [f"reference '{name}': current v{man.current}"]
    for v in man.versions:
        lines.append(
            f"  v{v.version} [{v.status}] {v.n_cells} cells, mode={v.spec.mode}, encoder={v.spec.encoder},"
            f" refine={v.spec.refine.method}, created {v.created:%Y-%m-%d %H:%M}"
        )
    lines.append("labels: " + ", ".join(f"{k}={c}" for k, c in sorted(rec.labels.items(),
                                                                  key=lambda kv: natural_key(kv[0]))))
    lines.append("datasets: " + ", ".join(f"{k or '(none)'}={c}" for k, c in sorted(datasets.items())))
    emit(data, as_json=as_json, text="\n".join(lines))
