"""A reader's private copy of an Edge shard directory: links to what Edge only reads, copies of the rest."""

from __future__ import annotations

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
    links fail, those files are copied too (``cp --reflink=auto``: nearly free on copy-on-write filesystems).
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
    """Copy files into a folder, keeping holes (Edge preallocates large mmap files), reflinked where possible."""
    import subprocess

    try:
        subprocess.run(
            ["cp", "-p", "--sparse=always", "--reflink=auto", *map(str, files), str(dest)],
            check=True, capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        for f in files:
            shutil.copy2(f, dest / f.name)
