"""CLI options that describe how cells become vectors, turned into a :class:`schemas.CellVectorSpec`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from schemas import (
    DEFAULT_ENCODER,
    DEFAULT_MODE,
    DEFAULT_TEXT_DIMS,
    CellVectorSpec,
    ExpressionParams,
    PoolingParams,
    RefineParams,
)

_DEFAULTS = RefineParams()


def spec_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add every cell-vector option (mode, encoder, pooling, expression view, SupCon)."""
    options = [
        click.option(
            "--mode",
            type=click.Choice(["paper", "genept", "expression", "hybrid"]),
            default=DEFAULT_MODE,
            show_default=True,
            help="paper: top-N text pooling; genept: all genes; expression: PCA view; "
            "hybrid: text and expression views fused.",
        ),
        click.option(
            "--encoder",
            envvar="CELLVEC_ENCODER",
            default=DEFAULT_ENCODER,
            show_default=True,
            help="Gene text encoder: minilm, st:NAME, hf:NAME, openai:MODEL, random:DIM.",
        ),
        click.option(
            "--species",
            type=click.Choice(["auto", "human", "mouse"]),
            default="auto",
            show_default=True,
            help="Species of the genes; auto infers it from the gene names.",
        ),
        click.option("--top-n", type=int, default=20, show_default=True, help="Top expressed genes pooled per cell."),
        click.option(
            "--weighting",
            type=click.Choice(["expression", "mean"]),
            default="expression",
            show_default=True,
            help="Weighted mean by expression, or plain mean (the paper's equation).",
        ),
        click.option("--idf", is_flag=True, help="Down-weight genes in almost every cell's top list."),
        click.option("--whiten", is_flag=True, help="Remove the gene vectors' shared mean direction."),
        click.option("--exclude-mito", is_flag=True, help="Leave mitochondrial genes out of pooling."),
        click.option("--exclude-ribo", is_flag=True, help="Leave ribosomal protein genes out of pooling."),
        click.option("--n-hvg", type=int, default=2000, show_default=True, help="Expression view: panel size."),
        click.option("--n-pcs", type=int, default=50, show_default=True, help="Expression view: components."),
        click.option(
            "--expression-head",
            type=click.Choice(["pca", "pca+logistic"]),
            default="pca+logistic",
            show_default=True,
            help="Expression view: PCA only, or PCA plus class scores of a logistic regression on the reference.",
        ),
        click.option(
            "--text-weight",
            type=float,
            default=CellVectorSpec.model_fields["text_weight"].default,
            show_default=True,
            help="Hybrid mode: share of the cosine similarity given to the text view.",
        ),
        click.option(
            "--text-dims",
            type=click.IntRange(min=0),
            default=None,
            help="Project the text view on its top N singular directions fitted on the reference "
            f"(default: {DEFAULT_TEXT_DIMS} in the hybrid mode, the encoder's full dimension otherwise; 0: full).",
        ),
        click.option(
            "--refine",
            type=click.Choice(["none", "supcon"]),
            default="none",
            show_default=True,
            help="Refine cell vectors with a SupCon encoder trained on the reference.",
        ),
        click.option("--temperature", type=float, default=_DEFAULTS.temperature, show_default=True),
        click.option("--epochs", type=int, default=_DEFAULTS.epochs, show_default=True),
        click.option("--patience", type=int, default=_DEFAULTS.patience, show_default=True),
        click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True),
        click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True),
        click.option("--hidden-dim", type=int, default=_DEFAULTS.hidden_dim, show_default=True),
        click.option("--out-dim", type=int, default=_DEFAULTS.out_dim, show_default=True),
        click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True),
        click.option(
            "--keep-views/--no-keep-views",
            default=True,
            show_default=True,
            help="Store SupCon's second view beside every cell so that a later refit needs no "
            "h5ad; --no-keep-views halves the vectors of an unrefined reference.",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def spec_from_options(opts: dict[str, Any], *, species: str = "auto") -> CellVectorSpec:
    """Build the spec from the parsed options (removing them from ``opts``)."""
    mode = opts.pop("mode")
    expression = ExpressionParams(
        n_genes=opts.pop("n_hvg"), n_components=opts.pop("n_pcs"), head=opts.pop("expression_head")
    )
    pooling = PoolingParams(
        top_n=opts.pop("top_n"),
        weighting=opts.pop("weighting"),
        idf=opts.pop("idf"),
        whiten=opts.pop("whiten"),
        exclude_mito=opts.pop("exclude_mito"),
        exclude_ribo=opts.pop("exclude_ribo"),
    )
    refine = RefineParams(
        method=opts.pop("refine"),
        temperature=opts.pop("temperature"),
        epochs=opts.pop("epochs"),
        patience=opts.pop("patience"),
        batch_size=opts.pop("batch_size"),
        lr=opts.pop("lr"),
        hidden_dim=opts.pop("hidden_dim"),
        out_dim=opts.pop("out_dim"),
        seed=opts.pop("seed"),
    )
    opts.pop("species", None)
    return CellVectorSpec(
        mode=mode,
        encoder=opts.pop("encoder"),
        species=species,
        pooling=pooling,  # type: ignore[arg-type]
        expression=expression if mode in ("expression", "hybrid") else None,
        text_weight=opts.pop("text_weight"),
        **({} if (text_dims := opts.pop("text_dims")) is None else {"text_dims": text_dims or None}),
        refine=refine,
        keep_views=opts.pop("keep_views"),
    )
