"""``cellvec reference add|remove|relabel|refit|export|import|prune``: a reference's life after its build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cellvec.cli._app import reference
from cellvec.cli._common import (
    Timer,
    emit,
    json_option,
    matrix_options,
    open_cli_store,
    progress_bars,
    read_h5ad,
    reference_option,
    store_option,
)
from indexer import InputError

_name_option = reference_option()


def _record_data(rec: Any) -> dict[str, Any]:
    return {"reference": rec.reference, "version": rec.version, "n_cells": rec.n_cells, "labels": rec.labels}


@reference.command("add")
@store_option
@_name_option
@click.option("--adata", "adata_path", required=True, help="Labelled cells to add (.h5ad).")
@click.option("--label-key", required=True, help="obs column with the cell type labels.")
@click.option("--dataset-key", default=None, help="obs column naming each cell's dataset or batch.")
@click.option("--dataset", default="", help="Dataset name for every cell (when --dataset-key is not given).")
@click.option("--gene-column", default=None, help="var column with gene names, instead of var_names.")
@matrix_options
@json_option
def add_cmd(**opts: Any) -> None:
    """Add labelled cells to the current version, encoded with its stored artefacts (no retraining)."""
    from indexer import add_cells

    timer = Timer()
    as_json = opts.pop("as_json")
    adata = read_h5ad(opts["adata_path"])
    with open_cli_store(opts["store"]) as store, progress_bars(enabled=not as_json) as report:
        before = _current_cells(store, opts["name"])
        with timer.step("add"):
            rec = add_cells(
                adata,
                store=store,
                name=opts["name"],
                label_key=opts["label_key"],
                dataset_key=opts["dataset_key"],
                dataset=opts["dataset"],
                gene_column=opts["gene_column"],
                progress=report,
                layer=opts["layer"],
                use_raw=opts["use_raw"],
            )
    data = {**_record_data(rec), "added": rec.n_cells - before, "seconds": timer.steps}
    emit(data, as_json=as_json, text=(
        f"reference '{rec.reference}' v{rec.version}: added {rec.n_cells - before} cells "
        f"(now {rec.n_cells} cells, {len(rec.labels)} labels) in {timer.steps['add']:.1f} s"))


def _current_cells(store: Any, name: str) -> int:
    from indexer.reference import load_manifest, resolve_version

    return resolve_version(load_manifest(store, name)).n_cells


@reference.command("remove")
@store_option
@_name_option
@click.option("--cells", "cells_path", default=None, help="File with one cell id (obs name) per line.")
@click.option("--label", default=None, help="Remove every cell with this label.")
@click.option("--dataset", default=None, help="Remove every cell of this dataset.")
@json_option
def remove_cmd(*, store: str, name: str, cells_path: str | None, label: str | None, dataset: str | None,
               as_json: bool) -> None:
    """Remove cells from the current version: by id, by label or by dataset (exactly one)."""
    from indexer import remove_cells

    if sum(x is not None for x in (cells_path, label, dataset)) != 1:
        msg = "pass exactly one of --cells, --label, --dataset."
        raise InputError(msg)
    cell_ids = None
    if cells_path is not None:
        p = Path(cells_path)
        if not p.is_file():
            msg = f"--cells file '{p}' does not exist; pass a file with one cell id per line."
            raise InputError(msg)
        cell_ids = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    with open_cli_store(store) as st:
        n = remove_cells(st, name, cell_ids=cell_ids, label=label, dataset=dataset)
        rec = _record(st, name)
    emit({**_record_data(rec), "removed": n}, as_json=as_json,
         text=f"reference '{name}' v{rec.version}: removed {n} cells ({rec.n_cells} left)")


def _record(store: Any, name: str) -> Any:
    from indexer.reference import load_manifest, resolve_version

    return resolve_version(load_manifest(store, name))


@reference.command("relabel")
@store_option
@_name_option
@click.option("--from", "old", required=True, help="Label to rename.")
@click.option("--to", "new", required=True, help="New label (an existing one merges the two).")
@json_option
def relabel_cmd(*, store: str, name: str, old: str, new: str, as_json: bool) -> None:
    """Rename a label in the current version."""
    from indexer import relabel

    with open_cli_store(store) as st:
        n = relabel(st, name, old=old, new=new)
        rec = _record(st, name)
    emit({**_record_data(rec), "relabelled": n}, as_json=as_json,
         text=f"reference '{name}' v{rec.version}: relabelled {n} cells '{old}' -> '{new}'")


@reference.command("refit")
@store_option
@_name_option
@click.option("--epochs", type=int, default=None, help="Maximum epochs (default: the current version's).")
@click.option("--temperature", type=float, default=None, help="SupCon temperature.")
@click.option("--out-dim", type=int, default=None, help="Dimension of the refined vectors.")
@click.option("--seed", type=int, default=None, help="Random seed.")
@json_option
def refit_cmd(*, store: str, name: str, as_json: bool, **options: Any) -> None:
    """Retrain the SupCon encoder on every cell and write the result as a new version."""
    from indexer import refit
    from schemas import RefineParams

    timer = Timer()
    with open_cli_store(store) as st, progress_bars(enabled=not as_json) as report:
        cur = _record(st, name)
        base = cur.spec.refine if cur.spec.refine.method == "supcon" else RefineParams(method="supcon")
        update = {k: v for k, v in options.items() if v is not None}
        with timer.step("refit"):
            params = base.model_validate({**base.model_dump(), **update})
            rec = refit(st, name, params=params, progress=report)
    emit({**_record_data(rec), "previous": cur.version, "seconds": timer.steps}, as_json=as_json, text=(
        f"reference '{name}': refit v{cur.version} -> v{rec.version} ({rec.n_cells} cells, {rec.dim}-d) in "
        f"{timer.steps['refit']:.1f} s; v{cur.version} stays queryable with --version {cur.version}"))


@reference.command("export")
@store_option
@_name_option
@click.option("--out", "out_path", required=True, help="File to write (e.g. retina.cellvec).")
@click.option("--version", "version", type=int, default=None, help="Version to export (default: current).")
@click.option("--mode", "file_mode", default=None, metavar="OCTAL",
              help="Permission bits of the file, e.g. 640 (default: 666 less the umask, so 644 under the "
                   "usual umask 022: readable by the group).")
@json_option
def export_cmd(*, store: str, name: str, out_path: str, version: int | None, file_mode: str | None,
               as_json: bool) -> None:
    """Write one version of a reference to one portable file (atomically: a temporary file, then a rename)."""
    from indexer import export_reference

    mode = None
    if file_mode is not None:
        try:
            mode = int(file_mode, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            msg = f"--mode {file_mode} is not an octal file mode; pass e.g. --mode 644 or --mode 640."
            raise InputError(msg)
    with open_cli_store(store, read_only=True, create=False) as st:
        rec = _record(st, name) if version is None else None
        path = export_reference(st, name, out_path, version=version, mode=mode)
    size = path.stat().st_size
    v = version if rec is None else rec.version
    emit({"reference": name, "version": v, "out": str(path), "bytes": size}, as_json=as_json,
         text=f"exported reference '{name}' v{v} to {path} ({size / 1e6:.1f} MB)")


@reference.command("import")
@store_option
@click.option("--file", "file_path", required=True, help="File written by `cellvec reference export`.")
@click.option("--as", "as_name", default=None, metavar="NEW",
              help="Import under this name (default: the exported name).")
@click.option("--replace", is_flag=True,
              help="The store already has the reference: make the import its current version (older "
                   "versions stay until `cellvec reference prune`).")
@reference_option(required=False, help="Same as --as.")
@json_option
def import_cmd(*, store: str, file_path: str, as_name: str | None, replace: bool, name: str | None,
               as_json: bool) -> None:
    """Load an exported reference into a store; an existing reference of that name needs --as or --replace."""
    from indexer import import_reference

    if as_name is not None and name is not None and as_name != name:
        msg = f"--as {as_name} and --reference {name} disagree; pass one of them."
        raise InputError(msg)
    with open_cli_store(store) as st:
        rec = import_reference(st, file_path, name=as_name or name, replace=replace)
    emit(_record_data(rec), as_json=as_json,
         text=f"imported reference '{rec.reference}' v{rec.version}: {rec.n_cells} cells, "
              f"{len(rec.labels)} labels")


@reference.command("prune")
@store_option
@_name_option
@click.option("--keep", type=int, default=1, show_default=True, help="Finished versions to keep.")
@json_option
def prune_cmd(*, store: str, name: str, keep: int, as_json: bool) -> None:
    """Delete old versions of a reference (the current one always stays)."""
    from indexer import prune_versions

    with open_cli_store(store) as st:
        gone = prune_versions(st, name, keep=keep)
    emit({"reference": name, "removed": gone}, as_json=as_json,
         text=f"reference '{name}': removed versions {', '.join(map(str, gone))}" if gone
         else f"reference '{name}': nothing to prune")
