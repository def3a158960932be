"""``cellvec search genes|cells``: similarity search over the gene collection and a reference's cells."""

from __future__ import annotations

import shutil
from typing import Any

import click

from cellvec.cli._app import search
from cellvec.cli._common import Timer, emit, json_option, matrix_options, open_cli_store, read_h5ad, store_option
from indexer import InputError
from schemas import DEFAULT_ENCODER


@search.command("genes")
@store_option
@click.argument("query", nargs=-1, required=True)
@click.option("--species", type=click.Choice(["human", "mouse"]), default="human", show_default=True)
@click.option("--limit", type=int, default=10, show_default=True, help="Number of genes shown.")
@click.option("--encoder", envvar="CELLVEC_ENCODER", default=DEFAULT_ENCODER, show_default=True,
              help="Encoder of the gene collection searched (the query text is embedded with it).")
@click.option("--as", "kind", type=click.Choice(["auto", "symbol", "text"]), default="auto",
              show_default=True,
              help="Read QUERY as a gene symbol or as free text (auto: one known gene name is a symbol).")
@json_option
def genes_cmd(**opts: Any) -> None:
    """Find the genes whose descriptions are nearest to gene QUERY's, or to free-text QUERY.

    One word that names a gene (symbol, synonym, Ensembl or Entrez id) is a gene; several words are free
    text. Only genes already embedded in the store are searched: `cellvec genes index --all` embeds every
    described gene of a species (`--genes FILE` a subset).

    Examples: `cellvec search genes RHO`; `cellvec search genes axon regeneration after optic nerve injury`.
    """
    from annotator import gene_search

    text, species, as_json = " ".join(opts["query"]), opts["species"], opts["as_json"]
    timer = Timer()
    with open_cli_store(opts["store"], read_only=True, create=False) as st, timer.step("search"):
        res = gene_search(text, store=st, encoder=opts["encoder"], species=species, limit=opts["limit"],
                          kind=opts["kind"])
    data = {**res.model_dump(mode="json"), "seconds": timer.steps["search"]}
    if res.kind == "symbol":
        head = f"genes nearest to {res.symbol}"
        if not res.query_indexed:
            head += " (not indexed itself: its description was embedded for this query)"
    else:
        head = f"genes nearest to the text '{text}'"
    head += f", among {res.n_indexed} indexed {species} genes ({res.encoder}):"
    width = max(60, shutil.get_terminal_size((120, 20)).columns)
    lines = [head, f"{'rank':>4}  {'symbol':<10} {'species':<7} {'similarity':>10}  description"]
    for h in res.hits:
        desc = f"{h.name}. {h.summary}" if h.summary else h.name
        line = f"{h.rank:>4}  {h.symbol:<10} {h.species:<7} {h.similarity:>10.3f}  {desc}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    emit(data, as_json=as_json, text="\n".join(lines))


@search.command("cells")
@store_option
@click.option("--reference", required=True, help="Reference name.")
@click.option("--adata", "adata_path", default=None, help="Query cells (.h5ad), with --cell.")
@click.option("--cell", default=None, help="obs_names entry of the query cell in --adata.")
@click.option("--label", default=None,
              help="Instead of a query cell: the cells nearest to this label's centroid.")
@click.option("--any-label", is_flag=True, help="With --label: search every cell, not only the label's own.")
@click.option("--summary", is_flag=True,
              help="Per label: number of cells and its distinctive genes (in the top 20 genes of more of its "
                   "cells than of the other labels').")
@click.option("--limit", type=int, default=10, show_default=True,
              help="Cells shown (genes per label with --summary).")
@click.option("--where", "where_items", multiple=True, metavar="FIELD=VALUE",
              help="Payload filter (label, dataset, cell_id, top_genes); repeat it; a repeated field "
              "matches any of its values.")
@click.option("--version", "version", type=int, default=None, help="Reference version (default: current).")
@click.option("--gene-column", default=None, help="var column with gene names, instead of var_names.")
@matrix_options
@json_option
def cells_cmd(**opts: Any) -> None:
    """Find the reference cells nearest to one query cell or to a label's centroid, or summarise labels.

    The query cell is encoded exactly as `cellvec annotate` encodes it, with the reference version's build
    record and fitted artefacts.

    Examples: `cellvec search cells --reference retina --adata q.h5ad --cell AAACCTG-1 --where label=rod`;
    `cellvec search cells --reference retina --label rod --limit 5`;
    `cellvec search cells --reference retina --summary`.
    """
    from annotator import label_summary, parse_where, search_cells, typical_cells
    from indexer.reference import load_manifest, resolve_version

    as_json = opts["as_json"]
    by_cell = opts["cell"] is not None or opts["adata_path"] is not None
    modes = [by_cell, opts["label"] is not None, opts["summary"]]
    if sum(modes) != 1:
        msg = "pass exactly one of --adata with --cell, --label LABEL, or --summary."
        raise InputError(msg)
    if modes[0] and (opts["cell"] is None or opts["adata_path"] is None):
        msg = "--adata and --cell go together: pass the query file and the obs_names entry of a cell in it."
        raise InputError(msg)
    where = parse_where(opts["where_items"])
    reference, limit, version = opts["reference"], opts["limit"], opts["version"]
    timer = Timer()
    adata = read_h5ad(opts["adata_path"]) if modes[0] else None
    with open_cli_store(opts["store"], read_only=True, create=False) as st:
        record = resolve_version(load_manifest(st, reference), version)
        with timer.step("search"):
            if opts["summary"]:
                summary = label_summary(reference=reference, store=st, version=version, top=limit,
                                        where=where)
            elif adata is not None:
                hits = search_cells(adata, cell=opts["cell"], reference=reference, store=st, limit=limit,
                                    where=where, version=version, gene_column=opts["gene_column"],
                                    layer=opts["layer"], use_raw=opts["use_raw"])
            else:
                hits = typical_cells(opts["label"], reference=reference, store=st, limit=limit, where=where,
                                     version=version, any_label=opts["any_label"])
    base = {"reference": reference, "version": record.version, "where": where,
            "seconds": timer.steps["search"]}
    if opts["summary"]:
        data = {**base, "labels": [s.model_dump(mode="json") for s in summary]}
        lines = [f"reference '{reference}' v{record.version}: {len(summary)} labels; distinctive genes "
                 "(share of the label's cells with the gene in their top 20 vs the other labels' mean share)"]
        for s in summary:
            genes = ", ".join(f"{g.symbol} ({g.fraction:.0%} vs {g.other_fraction:.0%})"
                              for g in s.distinctive_genes)
            if not genes:  # one label only: nothing to compare with
                genes = "most frequent: " + ", ".join(f"{g.symbol} ({g.fraction:.0%})" for g in s.top_genes)
            lines.append(f"  {s.label} ({s.n_cells} cells): {genes}")
        emit(data, as_json=as_json, text="\n".join(lines))
        return
    query = {"cell": opts["cell"], "adata": opts["adata_path"]} if adata is not None else {
        "label": opts["label"], "any_label": opts["any_label"]}
    data = {**base, "query": query, "hits": [h.model_dump(mode="json") for h in hits]}
    what = f"cell '{opts['cell']}'" if adata is not None else f"the centroid of '{opts['label']}'"
    lines = [f"reference '{reference}' v{record.version}: {len(hits)} cells nearest to {what}"
             + (f" where {where}" if where else "") + ":",
             f"{'rank':>4}  {'similarity':>10}  {'label':<20} {'dataset':<12} cell_id"]
    lines += [f"{i:>4}  {h.score:>10.3f}  {h.label:<20} {h.dataset or '-':<12} {h.cell_id}"
              for i, h in enumerate(hits, start=1)]
    emit(data, as_json=as_json, text="\n".join(lines))
