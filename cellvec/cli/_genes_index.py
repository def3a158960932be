"""``cellvec genes index``: embed gene descriptions into the store ahead of time."""

from __future__ import annotations

from pathlib import Path

import click

from cellvec.cli._app import genes
from cellvec.cli._common import Timer, emit, json_option, open_cli_store, progress_bars, read_h5ad, store_option
from indexer import InputError
from schemas import DEFAULT_ENCODER


@genes.command("index")
@store_option
@click.option("--genes", "genes_file", default=None, help="File with one gene name per line.")
@click.option("--adata", "adata_path", default=None,
              help="Every described gene of this dataset (.h5ad): what annotating it will need, embedded once.")
@click.option("--gene-column", default=None, help="With --adata: var column with gene names.")
@click.option("--all", "all_genes", is_flag=True, help="Every gene of the species that has a description.")
@click.option("--species", type=click.Choice(["human", "mouse"]), default="human", show_default=True)
@click.option("--encoder", envvar="CELLVEC_ENCODER", default=DEFAULT_ENCODER, show_default=True)
@json_option
def index_cmd(
    *,
    store: str,
    genes_file: str | None,
    adata_path: str | None,
    gene_column: str | None,
    all_genes: bool,
    species: str,
    encoder: str,
    as_json: bool,
) -> None:
    """Embed the descriptions of the listed genes (or all genes); stored vectors are never recomputed."""
    from indexer import GeneCatalog, GeneIndex, get_encoder

    if sum((bool(genes_file), bool(adata_path), all_genes)) != 1:
        msg = "pass exactly one of --genes FILE, --adata FILE or --all."
        raise InputError(msg)
    catalog = GeneCatalog.load(species)  # type: ignore[arg-type]
    if adata_path:
        from indexer.genes import map_var_names

        mapping = map_var_names(read_h5ad(adata_path), species=species,  # type: ignore[arg-type]
                                gene_column=gene_column)
        symbols = sorted({str(s) for s in mapping.symbols if s})
        unknown = list(mapping.unmapped_examples)
    elif all_genes:
        symbols = catalog.symbols()
        unknown: list[str] = []
    else:
        path = Path(genes_file)  # type: ignore[arg-type]
        if not path.is_file():
            msg = f"--genes file '{path}' does not exist; pass a text file with one gene name per line."
            raise InputError(msg)
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        resolved = catalog.resolve(names)
        symbols = sorted({s for s in resolved if s})
        unknown = [n for n, s in zip(names, resolved, strict=True) if not s]
    timer = Timer()
    with open_cli_store(store) as st, progress_bars(enabled=not as_json) as report, timer.step("index"):
        index = GeneIndex(st, get_encoder(encoder), catalog)
        _, found = index.vectors(symbols, progress=lambda d, t: report("embedding genes", d, t))
    data = {
        "genes": len(symbols),
        "with_vector": int(found.sum()),
        "embedded": index.last_embedded,
        "unknown": unknown[:20],
        "encoder": index.encoder.id,
        "collection": index.collection,
        "seconds": timer.steps["index"],
    }
    emit(
        data,
        as_json=as_json,
        text=(
            f"{int(found.sum())} of {len(symbols)} genes have {index.encoder.id} vectors; embedded "
            f"{index.last_embedded} new in {timer.steps['index']:.1f} s"
            + (f"; {len(unknown)} names not found (e.g. {', '.join(unknown[:5])})" if unknown else "")
        ),
    )
