"""What opening a reference read-only costs: the private copy, then ``EdgeShard.load``, as stored and lookup-only.

A read-only store never loads the store's own files (loading rewrites some of them): it makes a private copy
(hard links to the large files of closed segments, copies of the rest) and loads that. This prints, for the
collection of ``--reference``'s current version, the median of ``--repeats``:

- ``copy_s``: :func:`indexer.store._edge_copy.copy_sparse` into a temporary folder (``TMPDIR``; hard links need
  it on the store's filesystem), and the bytes (allocated on disk) copied versus linked;
- ``load_s``: ``EdgeShard.load`` of that copy;
- ``open_query_s``: ``open_store(..., read_only=True)`` then one query (copy, load and a search, end to end);
- how many files of the copy the (first) load gave a new modification time, and how many it changed in bytes.

With ``--lookup-copy DIR`` the store is also copied to ``DIR`` and each integer payload index of the collection
is replaced by the lookup-only index ``create_collection`` makes since issue 17 (no range index), then measured
the same way: what a reference built now costs to open, without rebuilding it::

    python -m benchmarks.scale.bench_open --store /tmp/s100k --reference scale --lookup-copy /tmp/s100k-lookup
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def measure(store: Path, collection: str, repeats: int) -> dict[str, Any]:
    """Time the private copy, the load and open-plus-one-query of ``collection`` in ``store``."""
    import qdrant_edge as qe

    from indexer import open_store
    from indexer.store._edge_copy import READ_ONLY_FILES, copy_sparse

    src = store / "collections" / collection
    copies, loads, opens = [], [], []
    touched: dict[str, int] = {}
    for rep in range(repeats):
        tmp = Path(tempfile.mkdtemp(prefix="bench-open-"))
        try:
            t = time.perf_counter()
            copy_sparse(src, tmp / "c")
            copies.append(time.perf_counter() - t)
            before = _state(tmp / "c") if rep == 0 else {}
            t = time.perf_counter()
            shard = qe.EdgeShard.load(str(tmp / "c"))
            loads.append(time.perf_counter() - t)
            shard.close()
            if rep == 0:
                after = _state(tmp / "c")
                touched = {
                    "files": len(after),
                    "mtime_changed_by_load": sum(after[f][0] != before.get(f, (None, None))[0] for f in after),
                    "bytes_changed_by_load": sum(after[f][1] != before.get(f, (None, None))[1] for f in after),
                }
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        dim = json.loads((src / "cellvec-collection.json").read_text())["vectors"]["cell"]
        t = time.perf_counter()
        with open_store(store, read_only=True, search_processes=1) as st:
            st.query(collection, np.ones((1, dim), np.float32), using="cell", limit=10)
        opens.append(time.perf_counter() - t)
    files = [p for p in src.rglob("*") if p.is_file()]
    def used(p: Path) -> int:  # allocated bytes: Edge preallocates sparse files
        return p.stat().st_blocks * 512

    linked = sum(used(p) for p in files if p.name in READ_ONLY_FILES or p.parent.name == "wal")
    return {
        **touched,
        "copy_s": round(statistics.median(copies), 3),
        "load_s": round(statistics.median(loads), 3),
        "open_query_s": round(statistics.median(opens), 3),
        "linked_mb": round(linked / 1e6, 1),
        "copied_mb": round((sum(used(p) for p in files) - linked) / 1e6, 1),
    }


def _state(root: Path) -> dict[str, tuple[int, str]]:
    """Modification time and SHA-256 of every file under ``root``."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def lookup_only(src: Path, dest: Path, collection: str) -> None:
    """Copy the store ``src`` to ``dest`` and make each integer payload index of ``collection`` lookup-only."""
    import subprocess

    import qdrant_edge as qe

    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dest)], check=True)
    (dest / ".lock").unlink(missing_ok=True)
    coll = dest / "collections" / collection
    kinds = json.loads((coll / "cellvec-collection.json").read_text())["payload_indexes"]
    shard = qe.EdgeShard.load(str(coll))
    for field, kind in kinds.items():
        if kind == "integer":
            shard.update(qe.UpdateOperation.delete_field_index(field))
            shard.update(qe.UpdateOperation.create_field_index(field, qe.IntegerIndexParams(lookup=True, range=False)))
    shard.flush()
    shard.close()


def main() -> None:
    """Measure the store as built, then (``--lookup-copy``) a copy with lookup-only integer indexes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lookup-copy", type=Path)
    args = ap.parse_args()

    from indexer import open_store
    from indexer.reference import load_manifest, resolve_version, version_collection

    with open_store(args.store, read_only=True) as st:
        rec = resolve_version(load_manifest(st, args.reference), None)
    collection = version_collection(args.reference, rec.version)
    print(f"{args.reference} ({rec.n_cells:,} cells), as stored: {measure(args.store, collection, args.repeats)}")
    if args.lookup_copy is not None:
        lookup_only(args.store, args.lookup_copy, collection)
        print(f"lookup-only integer indexes: {measure(args.lookup_copy, collection, args.repeats)}")


if __name__ == "__main__":
    main()
