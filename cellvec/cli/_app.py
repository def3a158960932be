"""The ``cellvec`` command group and its sub-groups; commands live in one module per group, loaded on use.

``cellvec --help`` and ``cellvec reference list`` must start in well under a second, so no command module
is imported until its command runs (or its own ``--help`` is asked for): each group knows its commands'
names, modules and one-line help from :data:`COMMANDS` (``tests/cli/test_cli_start.py`` checks that these
lines are the commands' own).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

import click

COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "": {
        "annotate": ("cellvec.cli._annotate", "Label query cells from their cosine top-k neighbours in a reference "
                     "(calibrated, with a novelty check)."),
        "bench": ("cellvec.cli._bench", "Benchmark cellvec against Seurat-like KNN, CellTypist, logistic "
                  "regression and GenePT-w."),
        "demo": ("cellvec.cli._annotate", "Build a reference from 80% of pbmc68k_reduced, annotate the other 20% "
                 "and print the metrics."),
    },
    "genes": {
        "coverage": ("cellvec.cli._genes", "Print how many of the cells' top genes have a description, by source, "
                     "and the frequent ones without."),
        "fetch": ("cellvec.cli._genes", "Download NCBI gene_info and gene summaries (E-utilities) into the "
                  "data-folder layout."),
        "index": ("cellvec.cli._genes_index", "Embed the descriptions of the listed genes (or all genes); stored "
                  "vectors are never recomputed."),
    },
    "reference": {
        "add": ("cellvec.cli._reference_ops", "Add labelled cells to the current version, encoded with its stored "
                "artefacts (no retraining)."),
        "build": ("cellvec.cli._reference", "Build (or resume) a new version of a labelled reference and make it "
                  "current."),
        "export": ("cellvec.cli._reference_ops", "Write one version of a reference to one portable file "
                   "(atomically: a temporary file, then a rename)."),
        "import": ("cellvec.cli._reference_ops", "Load an exported reference into a store; an existing reference "
                   "of that name needs --as or --replace."),
        "info": ("cellvec.cli._reference", "Show a reference's build record, versions, cells per label and "
                 "datasets."),
        "list": ("cellvec.cli._reference", "List the references in a store with their current version."),
        "prune": ("cellvec.cli._reference_ops", "Delete old versions of a reference (the current one always "
                  "stays)."),
        "refit": ("cellvec.cli._reference_ops", "Retrain the SupCon encoder on every cell and write the result as "
                  "a new version."),
        "relabel": ("cellvec.cli._reference_ops", "Rename a label in the current version."),
        "remove": ("cellvec.cli._reference_ops", "Remove cells from the current version: by id, by label or by "
                   "dataset (exactly one)."),
    },
    "search": {
        "cells": ("cellvec.cli._search", "Find the reference cells nearest to one query cell or to a label's "
                  "centroid, or summarise labels."),
        "genes": ("cellvec.cli._search", "Find the genes whose descriptions are nearest to gene QUERY's, or to "
                  "free-text QUERY."),
    },
}
"""Per group (``""``: the top level), each command's module (which registers it) and its one-line help."""


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; its help lists them without importing them."""

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the names of the loaded and the not yet loaded commands."""
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return a command, importing the module that registers it the first time."""
        if cmd_name not in self.commands and cmd_name in self.lazy:
            import_module(self.lazy[cmd_name][0])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their one-line help, as :class:`click.Group` does, without importing them."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is None:
                rows.append((name, click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit)))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS[""], context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cellvec")
def cli() -> None:
    """Cell type annotation with gene-text vectors and a Qdrant reference."""


@cli.group(cls=LazyGroup, lazy=COMMANDS["genes"])
def genes() -> None:
    """Gene descriptions: fetch, index, coverage."""


@cli.group(cls=LazyGroup, lazy=COMMANDS["reference"])
def reference() -> None:
    """Labelled reference collections: build, update, inspect, export."""


@cli.group(cls=LazyGroup, lazy=COMMANDS["search"])
def search() -> None:
    """Similarity search over genes and reference cells."""
