"""``cellvec bench scale``: reference size against build time, memory, disk, throughput and recall."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cellvec.cli._common import index_from_options, index_options
from indexer import InputError
from schemas import DEFAULT_ENCODER, DEFAULT_MODE


def _int_list(value: str, *, what: str = "--sizes", minimum: int = 20) -> list[int]:
    example = "10000,100000" if what == "--sizes" else "64,128,256"
    try:
        sizes = [int(v.replace("_", "").strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        msg = f"{what} {value!r} is not a comma-separated list of integers; pass e.g. {example}."
        raise InputError(msg) from None
    if not sizes or min(sizes) < minimum:
        msg = f"{what} {value!r} needs one or more values of at least {minimum}; pass e.g. {example}."
        raise InputError(msg)
    return sizes


@click.command("scale")
@click.option("--sizes", default="10000,100000,1000000", show_default=True,
              help="Comma-separated reference sizes (cells); each is measured in a fresh process.")
@click.option("--queries", type=click.IntRange(min=10), default=10_000, show_default=True,
              help="Query cells annotated per size (and searched by each baseline).")
@click.option("--encoder", envvar="CELLVEC_ENCODER", default=DEFAULT_ENCODER, show_default=True,
              help="Gene text encoder whose vectors the cells pool (minilm: real MiniLM vectors of the "
                   "genes' NCBI descriptions, embedded once into --gene-cache; random:<dim>: instant).")
@click.option("--gene-cache", default=None, type=click.Path(file_okay=False),
              help="Store folder caching the gene vectors across sizes and runs. Default: <work-dir>/genes.")
@click.option("--dim", type=click.IntRange(min=2), default=384, show_default=True,
              help="Dimension of the random:<dim> gene encoder when --encoder is random (1536 = ada-002 size).")
@click.option("--mode", type=click.Choice(["paper", "genept", "expression", "hybrid"]), default=DEFAULT_MODE,
              show_default=True,
              help="Cell vector mode of the references (the product's default: hybrid = 50 principal "
                   "components + one class score per label + the text view; paper: the text view alone).")
@click.option("--text-dims", type=click.IntRange(min=0), default=None,
              help="Project the text view on its top N principal directions, fitted on the reference "
                   "(hybrid, genept; CellVectorSpec.text_dims). Default: the mode's own (hybrid: "
                   "schemas.DEFAULT_TEXT_DIMS); 0: the full encoder dimension.")
@index_options
@click.option("--ef-sweep", default="", show_default=False,
              help="Comma-separated hnsw_ef values: after the run, search each size's reference with each "
                   "(queries/s and recall@10) to see the trade-off without rebuilding, e.g. 64,128,256.")
@click.option("--skip-faiss", is_flag=True, help="Skip the faiss IndexFlatIP and IndexHNSWFlat baselines.")
@click.option("--skip-sklearn", is_flag=True, help="Skip the scikit-learn brute-force cosine baseline.")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False),
              help="Folder for the stores (kept; each size's store is rebuilt). Default: a temporary folder.")
@click.option("--qdrant-url", default=None, metavar="URL",
              help="Run against this Qdrant server (e.g. http://localhost:6333, started by docker-compose.yml) "
                   "instead of an embedded Qdrant Edge store; the benchmark's reference is dropped there first. "
                   "Memory figures are then this process's only. API key: CELLVEC_QDRANT_API_KEY.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per size, as each finishes.")
def scale_cmd(**opts: Any) -> None:
    """Build references of each size; report build, memory, disk, annotate throughput and recall.

    Cells are synthetic but cluster like real ones: per-class gene programs over about 2,000 real human
    symbols, pooled through the real pipeline from the genes' MiniLM vectors (or random:<dim>), in the
    product's default mode unless --mode says otherwise (its expression PCA and class head are fitted on the
    cells' counts). Each size
    runs the real build_reference and annotate (10,000 query cells by default) on an embedded Qdrant Edge
    store, then the same queries with faiss (IndexFlatIP, IndexHNSWFlat) and scikit-learn (brute-force cosine).
    """
    from benchmarks.scale._scale import format_table, run_scale

    index = index_from_options(opts)
    encoder, dim = opts["encoder"], opts["dim"]
    if encoder.startswith("random:"):
        try:
            dim = int(encoder.split(":", 1)[1])
        except ValueError:
            msg = f"--encoder {encoder!r} needs a dimension after 'random:'; pass e.g. random:384."
            raise InputError(msg) from None
    elif encoder == "random":
        encoder = f"random:{dim}"
    rows = []
    for row in run_scale(
        _int_list(opts["sizes"]), queries=opts["queries"], dim=dim, index=index,
        faiss=not opts["skip_faiss"], sklearn=not opts["skip_sklearn"],
        work_dir=None if opts["work_dir"] is None else Path(opts["work_dir"]),
        encoder=None if encoder.startswith("random:") else encoder,
        mode=opts["mode"], text_dims=opts["text_dims"], qdrant_url=opts["qdrant_url"],
        ef_sweep=tuple(_int_list(opts["ef_sweep"], what="--ef-sweep", minimum=1)) if opts["ef_sweep"] else (),
        **({} if opts["gene_cache"] is None else {"gene_cache": opts["gene_cache"]}),
    ):
        rows.append(row)
        if opts["as_json"]:
            click.echo(json.dumps(row))
        else:
            click.echo(
                f"n={row['n']:,}: built in {row['build_s']} s, {row['annotate_cells_per_s']:,.0f} cells/s, "
                f"recall@10 {row['recall_at_10']}",
                err=True,
            )
    if not opts["as_json"]:
        click.echo(format_table(rows))
