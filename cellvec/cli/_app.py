"""The ``cellvec`` command group and its sub-groups; commands live in one module per group."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cellvec")
def cli() -> None:
    """Cell type annotation with gene-text vectors and a Qdrant reference."""


@cli.group()
def genes() -> None:
    """Gene descriptions: fetch, index, coverage."""


@cli.group()
def reference() -> None:
    """Labelled reference collections: build, update, inspect, export."""


@cli.group()
def search() -> None:
    """Similarity search over genes and reference cells."""
