"""A reader's private copy of an Edge shard directory: links to what Edge only reads, copies of the rest."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

READ_ONLY_FILES = ("matrix.dat", "links.bin", "links_compressed.bin", "quantized.data")
"""Files of closed (indexed) segments that Qdrant Edge only reads, once written: a closed segment's dense
vectors, its HNSW links and its quantised vectors. A writer never changes them in place (an update or a
delete goes to the write segment and the segment's ``deleted`` flags; the optimiser writes new segments and
unlinks the old ones), so a reader's private copy hard-links them: at a million cells they are nearly all of
a collection's bytes. The write-ahead log (``wal/``) is linked too: a reader's Edge replays it once when it
loads the shard and never writes it (tested: a reader changes no byte of the store), and a writer only
appends to it. The files Edge rewrites on load (``edge_config.json``, ``segment.json``, flags), payloads and
payload indexes, which edits change in place while a reader may be reading them, are copied."""


def copy_sparse(src: Path, dest: Path) -> None:
    """Make a private copy of a shard directory: links to what Edge only reads, sparse copies of the rest.

    Hard links to :data:`READ_ONLY_FILES` and the write-ahead log.

    Links need the copy on the store's filesystem (the temporary directory, ``TMPDIR``); elsewhere, or where
    links fail, those files are copied too (``copy_file_range``: nearly free on copy-on-write filesystems).
    """
    linkable = src.stat().st_dev == dest.parent.stat().st_dev
    for folder, _dirs, files in os.walk(src):
        here = Path(folder)
        there = dest / here.relative_to(src)
        there.mkdir()
        rest = []
        for f in sorted(files):
            if linkable and (f in READ_ONLY_FILES or here.name == "wal"):
                try:
                    os.link(here / f, there / f)
                    continue
                except OSError:
                    pass
            rest.append(here / f)
        if rest:
            _copy_files(rest, there)


def _copy_files(files: list[Path], dest: Path) -> None:
    """Copy files into a folder, keeping holes (Edge preallocates large mmap files), with mode and times."""
    for f in files:
        target = dest / f.name
        with f.open("rb") as src, target.open("wb") as out:
            _copy_extents(src.fileno(), out.fileno(), os.fstat(src.fileno()).st_size)
        shutil.copystat(f, target)


def _copy_extents(src: int, dst: int, size: int) -> None:
    """Copy the data extents of ``src`` into ``dst`` at the same offsets and leave the holes unwritten.

    In this process, not through ``cp`` (a process per folder cost ~2 ms each, a third of opening a small
    collection); ``copy_file_range`` lets the kernel copy (or share, on copy-on-write filesystems) each
    extent. Where the filesystem cannot report holes, the whole file is copied.
    """
    try:
        spans = _data_spans(src, size)
    except (AttributeError, OSError):  # no SEEK_DATA here: one span
        spans = [(0, size)]
    for start, stop in spans:
        _copy_span(src, dst, start, stop)
    os.ftruncate(dst, size)


def _data_spans(fd: int, size: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole from pos on
                break
            raise
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        spans.append((start, stop))
        pos = stop
    return spans


def _copy_span(src: int, dst: int, start: int, stop: int) -> None:
    pos = start
    while pos < stop:
        try:
            n = os.copy_file_range(src, dst, stop - pos, pos, pos)
        except (AttributeError, OSError):
            n = _copy_span_by_hand(src, dst, pos, stop)
        if n == 0:
            msg = f"file shrank while it was copied (at byte {pos})"
            raise OSError(errno.EIO, msg)
        pos += n


def _copy_span_by_hand(src: int, dst: int, pos: int, stop: int) -> int:
    data = os.pread(src, min(stop - pos, 1 << 24), pos)
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(dst, view[done:], pos + done)
    return len(data)
