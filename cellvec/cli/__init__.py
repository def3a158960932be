"""Command-line interface ``cellvec``: a thin shell over :mod:`indexer` and :mod:`annotator`."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import click

from cellvec.cli._app import cli
from cellvec.cli._common import HIDDEN_ALIASES, IMPORT_COLLECTOR
from indexer import CellvecError

__all__ = ["main"]


class _WarningLines(logging.Handler):
    """Echo each log record as one ``warning:`` line on stderr (through click, so tests capture it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}".splitlines()[0], err=True)


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show library warnings (``warnings.warn`` and WARNING log records) as one ``warning:`` line each.

    Without this, Python prints a warning as two lines with the source file, and log records go through
    logging's last-resort handler as bare text.
    """

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        click.echo(f"warning: {str(message).splitlines()[0]}", err=True)

    handler = _WarningLines(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("indexer", "annotator")]
    with warnings.catch_warnings():
        warnings.showwarning = show
        for lg in loggers:
            lg.addHandler(handler)
        try:
            yield
        finally:
            for lg in loggers:
                lg.removeHandler(handler)


def _closest(name: str, options: list[str]) -> list[str]:
    """Return the options nearest to a mistyped one, closest first; one when it is clearly the closest."""
    from difflib import SequenceMatcher

    ranked = sorted(dict.fromkeys(options), key=lambda o: -SequenceMatcher(None, name, o).ratio())
    if not ranked:
        return ranked
    best = SequenceMatcher(None, name, ranked[0]).ratio()
    return [o for o in ranked if SequenceMatcher(None, name, o).ratio() >= best - 0.05]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2.

    Parameters
    ----------
    argv
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    The process exit code.
    """
    try:
        with IMPORT_COLLECTOR, _one_line_warnings():
            cli.main(args=argv, prog_name="cellvec", standalone_mode=False)
    except CellvecError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("error: interrupted; the store is consistent and the next run resumes.", err=True)
        return 130
    except click.exceptions.NoSuchOption as e:
        # Suggest an option's current name, not the hidden old spelling that also matched, closest first.
        e.possibilities = _closest(e.option_name, [HIDDEN_ALIASES.get(p, p) for p in e.possibilities or ()])
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted; the store is consistent and the next run resumes.", err=True)
        return 130
    except Exception as e:
        # pydantic is imported only by the commands that validate records (not by `cellvec --help`): a
        # ValidationError can exist only once it has been imported.
        pydantic = sys.modules.get("pydantic")
        if pydantic is None or not isinstance(e, pydantic.ValidationError):
            raise
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        click.echo(f"error: invalid value for {where}: {first['msg']}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
