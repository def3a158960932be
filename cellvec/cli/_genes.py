"""``cellvec genes fetch`` and ``cellvec genes coverage``: get the gene data, check a dataset against it."""

from __future__ import annotations

from pathlib import Path

import click

from cellvec.cli._app import genes
from cellvec.cli._common import emit, json_option, progress_bars, read_h5ad


@genes.command("fetch")
@click.option("--species", type=click.Choice(["human", "mouse"]), required=True, help="Species to fetch.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write (default: the data folder, CELLVEC_DATA_DIR).",
)
@click.option(
    "--api-key", envvar="NCBI_API_KEY", default=None, help="NCBI API key (10 requests/s instead of 3)."
)
@click.option("--email", envvar="NCBI_EMAIL", default=None, help="Contact e-mail sent to NCBI, as NCBI asks.")
@click.option("--refresh", is_flag=True, help="Download gene_info again and ignore an interrupted run's ids.")
@click.option(
    "--eutils-base", default=None, hidden=True, help="E-utilities base URL (a mirror or a test server)."
)
@click.option("--gene-info-url", default=None, hidden=True, help="URL of the gene_info file.")
@click.option("--hcop-url", default=None, hidden=True, help="URL of the HCOP human-mouse ortholog table.")
@json_option
def fetch_cmd(
    *,
    species: str,
    out_dir: Path | None,
    api_key: str | None,
    email: str | None,
    refresh: bool,
    eutils_base: str | None,
    gene_info_url: str | None,
    hcop_url: str | None,
    as_json: bool,
) -> None:
    """Download NCBI gene_info and gene summaries (E-utilities) into the data-folder layout.

    An interrupted fetch resumes where it stopped when run again.
    """
    from indexer import Settings, fetch_gene_data
    from indexer.genes import EUTILS_BASE, HCOP_URL

    out = out_dir if out_dir is not None else Settings().data_dir
    with progress_bars(enabled=not as_json) as report_progress:
        report = fetch_gene_data(
            species,  # type: ignore[arg-type]
            out_dir=out,
            api_key=api_key,
            email=email,
            progress=lambda done, total: report_progress("gene summaries", done, total),
            refresh=refresh,
            eutils_base=eutils_base or EUTILS_BASE,
            gene_info_url=gene_info_url,
            hcop_url=hcop_url or HCOP_URL,
        )
    text = report.to_text()
    if species == "mouse":
        text += (
            "\nmouse ortholog summaries also need the human summaries: "
            f"`cellvec genes fetch --species human --out {out}`"
        )
    emit(report.model_dump(mode="json"), as_json=as_json, text=text)


@genes.command("coverage")
@click.option("--adata", "adata_path", required=True, help="The .h5ad dataset to check.")
@click.option(
    "--species",
    type=click.Choice(["auto", "human", "mouse"]),
    default="auto",
    show_default=True,
    help="Species; auto infers it from the gene names.",
)
@click.option("--gene-column", default=None, help="A var column with gene names, instead of var_names.")
@click.option(
    "--top-n", type=click.IntRange(min=1), default=20, show_default=True, help="Top genes per cell."
)
@click.option("--use-raw", is_flag=True, help="Use adata.raw (e.g. when X holds scaled values).")
@json_option
def coverage_cmd(
    *,
    adata_path: str,
    species: str,
    gene_column: str | None,
    top_n: int,
    use_raw: bool,
    as_json: bool,
) -> None:
    """Print how many of the cells' top genes have a description, by source, and the frequent ones without."""
    from indexer import InputError
    from indexer.genes import coverage_report

    adata = read_h5ad(adata_path)
    if use_raw:
        if adata.raw is None:
            msg = f"--use-raw was given but '{adata_path}' has no .raw; leave --use-raw out"
            raise InputError(msg)
        adata = adata.raw.to_adata()
    report = coverage_report(adata, species=species, top_n=top_n, gene_column=gene_column)  # type: ignore[arg-type]
    emit(report.model_dump(mode="json"), as_json=as_json, text=report.to_text())
