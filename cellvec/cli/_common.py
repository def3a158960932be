"""Options and helpers shared by the CLI's command modules."""

from __future__ import annotations

import errno
import gc
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from indexer import InputError, StoreError

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer import IndexParams, VectorStore
    from indexer.cells import CellMatrix


def _default_store() -> str:
    from indexer import Settings  # pydantic-settings: only when a command runs without --store

    return Settings().store


def store_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--store`` (env ``CELLVEC_STORE``): a directory, an ``http(s)://`` URL or ``:memory:``."""
    return click.option(
        "--store",
        envvar="CELLVEC_STORE",
        default=_default_store,
        show_default="./cellvec-store or $CELLVEC_STORE",
        help="Store: a directory (embedded Qdrant Edge), an http(s):// Qdrant URL, or :memory:.",
    )(f)


HIDDEN_ALIASES = {"--name": "--reference"}
"""Old option spellings that still work, and the name to suggest instead."""


class _HiddenAliasOption(click.Option):
    """An option whose later names still work but are left out of ``--help`` (old spellings)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts
        self.opts = self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def reference_option(*, required: bool = True, help: str = "Reference name.") -> Callable[..., Any]:
    """Add ``--reference`` (parameter ``name``), with ``--name`` kept as a hidden alias."""
    return click.option("--reference", "--name", "name", cls=_HiddenAliasOption, required=required,
                        help=help)


_INDEX_OPTIONS = ("hnsw_m", "ef_construct", "hnsw_ef", "quantization", "on_disk", "segment_points", "shards",
                  "replicas", "write_consistency")


def index_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the HNSW, quantization, storage and (server) sharding settings of new collections."""
    from indexer import IndexParams

    d = IndexParams()
    opts = [
        click.option("--hnsw-m", type=click.IntRange(min=2), default=d.hnsw_m, show_default=True,
                     help="HNSW edges per node (memory and recall grow with it)."),
        click.option("--ef-construct", type=click.IntRange(min=4), default=d.hnsw_ef_construct,
                     show_default=True, help="HNSW candidates kept while building (build time grows with it)."),
        click.option("--hnsw-ef", type=click.IntRange(min=1), default=d.hnsw_ef, show_default=str(d.search_ef),
                     help="HNSW candidates kept while searching (recall and query time grow with it)."),
        click.option("--quantization", type=click.Choice(["none", "int8"]), default=d.quantization,
                     show_default=True,
                     help="int8: search a scalar-quantised copy (1 byte per dimension), rescored with the "
                          "original vectors."),
        click.option("--on-disk/--in-ram", "on_disk", default=d.on_disk, show_default=True,
                     help="Keep the original vectors memory-mapped on disk rather than in RAM."),
        click.option("--segment-points", type=click.IntRange(min=0), default=d.segment_points,
                     show_default=True,
                     help="Embedded store: close an HNSW segment every this many points (0: one segment); "
                          "segments are searched in parallel, one core each."),
        click.option("--shards", type=click.IntRange(min=1), default=d.shard_number, show_default=True,
                     help="Qdrant server: shards of the collection."),
        click.option("--replicas", type=click.IntRange(min=1), default=d.replication_factor, show_default=True,
                     help="Qdrant server: copies of each shard."),
        click.option("--write-consistency", type=click.IntRange(min=1), default=d.write_consistency_factor,
                     show_default=True, help="Qdrant server: replicas that must confirm a write."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def index_from_options(opts: dict[str, Any]) -> IndexParams:
    """Pop the :func:`index_options` from ``opts`` and return them as :class:`indexer.IndexParams`."""
    from indexer import IndexParams

    v = {k: opts.pop(k) for k in _INDEX_OPTIONS}
    return IndexParams(
        hnsw_m=v["hnsw_m"], hnsw_ef_construct=v["ef_construct"], hnsw_ef=v["hnsw_ef"],
        quantization=v["quantization"], on_disk=v["on_disk"], segment_points=v["segment_points"],
        shard_number=v["shards"], replication_factor=v["replicas"], write_consistency_factor=v["write_consistency"],
    )


def matrix_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--layer NAME`` and ``--use-raw/--no-use-raw``: which matrix of the h5ad holds the expression."""
    f = click.option(
        "--use-raw/--no-use-raw", "use_raw", default=None,
        help="Read .raw.X (genes: .raw.var_names) instead of .X. Default: .X, unless it looks scaled "
        "(negative values) and .raw exists, as CellTypist does; --no-use-raw reads .X whatever it holds.",
    )(f)
    return click.option(
        "--layer", default=None, metavar="NAME",
        help="Read the expression (counts or log-normalised) from .layers[NAME] instead of .X.",
    )(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--json`` (machine-readable output on stdout)."""
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of text.")(f)


def open_cli_store(
    location: str, *, read_only: bool = False, create: bool = True, index: IndexParams | None = None
) -> VectorStore:
    """Open a store for a command (a server's API key comes from the settings, ``CELLVEC_QDRANT_API_KEY``)."""
    from indexer import open_store

    try:
        return open_store(location, read_only=read_only, create=create, index=index)
    except StoreError as e:
        cause = e.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EROFS:
            msg = (
                f"store '{location}' is on a read-only file system, and this command writes to it; "
                "commands that only read (annotate, reference list, reference info) work there: to write, "
                "copy the store to a writable disk and pass that copy to --store."
            )
            raise StoreError(msg) from e
        raise


def read_cells(path: str | Path, *, what: str = "--adata") -> AnnData | CellMatrix:
    """Read the cells of an h5ad file for a command that writes no AnnData back (no ``--out``).

    The matrix and names are read with h5py (:func:`indexer.cells.read_cells`), sparing the ~1 s import of
    anndata; a file that reader does not handle is read by :func:`read_h5ad`.
    """
    from indexer.cells import read_cells as read_with_h5py

    _check_file(Path(path), what=what)
    cells = read_with_h5py(path)
    return cells if cells is not None else read_h5ad(path, what=what)


def _check_file(p: Path, *, what: str) -> None:
    if not p.is_file():
        msg = f"{what} file '{p}' does not exist; pass the path of an .h5ad file."
        raise InputError(msg)


def read_h5ad(path: str | Path, *, what: str = "--adata") -> AnnData:
    """Read an h5ad file, turning unreadable files into one-line errors."""
    import anndata as ad

    p = Path(path)
    _check_file(p, what=what)
    try:
        return ad.read_h5ad(p)
    except Exception as e:  # h5py and anndata raise many types for bad files
        msg = (
            f"{what} file '{p}' cannot be read as h5ad ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            "it may be truncated or not an AnnData file: write it again with `adata.write_h5ad()`."
        )
        raise InputError(msg) from e


def read_gene_names(path: str | Path, *, what: str = "--genes-of") -> list[str]:
    """Read gene names: an h5ad's ``var_names`` (its matrix is not loaded), else one name per line of a text file."""
    p = Path(path)
    if not p.is_file():
        msg = f"{what} file '{p}' does not exist; pass the query cells (.h5ad) or a text file of gene names."
        raise InputError(msg)
    if p.suffix.lower() != ".h5ad":
        return [line.strip() for line in p.read_text(errors="replace").splitlines() if line.strip()]
    import anndata as ad

    try:
        backed = ad.read_h5ad(p, backed="r")
    except Exception as e:  # h5py and anndata raise many types for bad files
        msg = (
            f"{what} file '{p}' cannot be read as h5ad ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            "write it again with `adata.write_h5ad()`, or pass a text file of gene names."
        )
        raise InputError(msg) from e
    try:
        return [str(n) for n in backed.var_names]
    finally:
        backed.file.close()


def check_out_path(path: str | Path, *, what: str = "--out") -> Path:
    """Refuse, before any work, an output path whose folder is missing or not writable."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path()
    if p.is_dir():
        msg = f"{what} '{p}' is a folder; pass a file path in it, e.g. '{p / 'annotated.h5ad'}'."
        raise InputError(msg)
    if not folder.is_dir():
        msg = f"{what} '{p}': the folder '{folder}' does not exist; create it first (mkdir -p '{folder}')."
        raise InputError(msg)
    if not os.access(folder, os.W_OK | os.X_OK):
        msg = f"{what} '{p}': the folder '{folder}' is not writable; pass a path in a folder you can write to."
        raise InputError(msg)
    return p


def write_csv(path: str | Path, columns: dict[str, Sequence[object]], *, what: str = "--csv") -> None:
    """Write a table of named columns as CSV, atomically (one header row; empty cells for NaN)."""
    import csv
    import math

    def text(v: object) -> object:
        return "" if isinstance(v, float) and math.isnan(v) else v

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(columns)
            out.writerows([text(v) for v in row] for row in zip(*columns.values(), strict=True))

    write_atomic(path, write, what=what)


def write_atomic(path: str | Path, write: Callable[[Path], object], *, what: str = "--out") -> None:
    """Write a file atomically: ``write(tmp)`` into a temporary file of the same folder, then a rename.

    A crash or an error mid-write leaves the previous file (or none), never a truncated one.
    """
    p = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.replace(p)  # os.replace: atomic within one folder
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            msg = f"{what} '{p}' could not be written ({e.strerror or e}); nothing was written there."
            raise InputError(msg) from e
        raise


def emit(data: dict[str, Any], *, as_json: bool, text: str) -> None:
    """Print ``data`` as one JSON object, or ``text`` for people."""
    if as_json:
        click.echo(json.dumps(data, default=str))
    else:
        click.echo(text)


@contextmanager
def progress_bars(*, enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """Yield a progress callback for a command's long steps, on stderr when ``enabled``.

    On a terminal: one tqdm bar at a time (a new step closes the previous bar, so no bar is left behind
    half drawn and no cursor-movement escape is written), its rate counted from the step's first report.
    Otherwise (a log file, a pipe, a test): plain lines from :class:`indexer.ProgressLines`, one when a
    step starts, one every 10 seconds and one when it ends, with no carriage return or escape.
    """
    import sys

    if not enabled:
        yield lambda step, done, total: None
        return
    if not sys.stderr.isatty():
        from indexer import ProgressLines

        yield ProgressLines(lambda line: click.echo(line, err=True), every=10.0)
        return
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def report(step: str, done: int, total: int) -> None:
        bar = bars.get(step)
        if bar is None or (bar.n >= (bar.total or 0) > done):  # a new step, or this step started again
            for old in bars.values():
                old.close()
            bars.clear()
            # initial=done: the rate counts only what is done from now on (no "11184810.67/s" first rate)
            bar = bars[step] = tqdm(total=total, initial=done, desc=step, unit="", dynamic_ncols=True)
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield report
    finally:
        for bar in bars.values():
            bar.close()


class Timer:
    """Wall-clock timings of named steps."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the enclosed block under ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = time.perf_counter() - t0


class _ImportCollector:
    """The garbage collector while a command imports: its first generation collects every 100,000 allocations.

    Imports allocate hundreds of thousands of objects that live until the process ends and make almost no
    garbage, yet the default threshold (700) scanned them ~150 times: ~40 ms of a 1,228-cell annotate, of
    which ~10 ms remain. :func:`imports_done` restores the thresholds and, the first time in a process,
    freezes what is alive (the imports), so that later full collections skip it; leaving the command
    restores the thresholds only.
    """

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None

    def __enter__(self) -> _ImportCollector:
        self._saved = gc.get_threshold()
        gc.set_threshold(100_000, *self._saved[1:])
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def done(self) -> None:
        if self._saved is not None and gc.get_freeze_count() == 0:
            gc.freeze()  # once: a process that runs many commands (tests) pins nothing of later ones
        self._restore()

    def _restore(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None


IMPORT_COLLECTOR = _ImportCollector()
"""Entered by :func:`cellvec.cli.main` around every command."""


def imports_done() -> None:
    """Say that a command has imported what it runs: the garbage collector's thresholds are restored."""
    IMPORT_COLLECTOR.done()
