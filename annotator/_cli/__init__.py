"""Command-line interface ``cellvec``: a thin shell over :mod:`indexer` and :mod:`annotator`."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from indexer._errors import CellvecError

from . import _commands  # noqa: F401  (registers the commands on the group)
from ._app import cli

__all__ = ["main"]


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
        cli.main(args=argv, prog_name="cellvec", standalone_mode=False)
    except CellvecError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        click.echo(f"error: invalid value for {where}: {first['msg']}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("error: interrupted; the store is consistent and the next run resumes.", err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted; the store is consistent and the next run resumes.", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
