"""Capacity of a reference at 1M, 10M and 100M cells, from one built reference's measured sizes.

Usage::

    python -m benchmarks.scale.capacity --store STORE --reference NAME [--replicas 2] [--hnsw-m 16]

Reads the reference's current version: the stored vectors and their dimensions (from its collection), the
mean payload size (JSON of up to 2,000 stored payloads) and, for an embedded store, the collection's disk
blocks per cell. Prints bytes per cell by part and the RAM and disk a reference of 1M, 10M and 100M such
cells needs, with the vectors in RAM as float32, and with an int8 copy in RAM and the originals on disk.
The formulas are in docs/scale.md (*Capacity*); the HNSW graph is ``m·2·4`` bytes per point on layer 0,
about 7% more with the upper layers, and ids with payload indexes about 100 bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

GRAPH_UPPER_LAYERS = 1.07
"""Upper HNSW layers over layer 0 (a 1/m share of points per level, each with m links)."""
IDS_AND_INDEXES = 100
"""Point id, version and payload index entries (label, dataset, cell id, top genes) per cell, bytes."""
SIZES = (1_000_000, 10_000_000, 100_000_000)


def per_cell(dims: dict[str, int], payload_bytes: float, *, hnsw_m: int = 16) -> dict[str, float]:
    """Return bytes per cell by part: float32 vectors, int8 copies, graph, payload, ids and indexes."""
    graph = hnsw_m * 2 * 4 * GRAPH_UPPER_LAYERS
    return {
        "float32": sum(4 * d for d in dims.values()),
        "int8": sum(d + 8 for d in dims.values()),
        # Only the searched vector ("cell") has an HNSW graph that annotate walks; Qdrant builds one per
        # named vector, so every stored vector pays for its graph.
        "graph": graph * len(dims),
        "payload": payload_bytes,
        "ids": IDS_AND_INDEXES,
    }


def footprint(parts: dict[str, float], n: int, *, replicas: int = 1) -> dict[str, float]:
    """Return GB of RAM and disk for ``n`` cells: float32 in RAM, and int8 in RAM + originals on disk."""
    gb = n * replicas / 1e9
    return {
        "ram_float32_gb": (parts["float32"] + parts["graph"] + parts["ids"]) * gb,
        "ram_int8_gb": (parts["int8"] + parts["graph"] + parts["ids"]) * gb,
        "disk_float32_gb": (parts["float32"] + parts["graph"] + parts["payload"] + parts["ids"]) * gb,
        "disk_int8_gb": (parts["float32"] + parts["int8"] + parts["graph"] + parts["payload"] + parts["ids"]) * gb,
    }


def measure(store_path: str, reference: str, *, sample: int = 2_000) -> dict[str, object]:
    """Read a built reference's vector dimensions, mean payload bytes and (Edge) disk bytes per cell."""
    from benchmarks.scale._memory import dir_size_mb
    from indexer import Reference, open_store
    from indexer.reference import vector_names

    with open_store(store_path, read_only=True, create=False) as store:
        ref = Reference.open(store, reference)
        rec, collection = ref.record, ref.collection
        sizes: list[int] = []
        dims: dict[str, int] = {}
        for batch in store.scroll(collection, with_vectors=vector_names(rec), batch_size=500):
            for point in batch:
                sizes.append(len(json.dumps(point.payload, separators=(",", ":")).encode()))
                dims = dims or {name: int(v.shape[0]) for name, v in point.vectors.items()}
            if len(sizes) >= sample:
                break
        n_cells = store.count(collection)
    coll_dir = Path(store_path) / "collections" / collection
    disk = dir_size_mb(coll_dir) * 1e6 / max(n_cells, 1) if coll_dir.is_dir() else None
    return {
        "reference": rec.reference,
        "version": rec.version,
        "mode": rec.spec.mode,
        "n_cells": n_cells,
        "labels": len(rec.labels),
        "dims": dims,
        "payload_bytes": sum(sizes) / max(len(sizes), 1),
        "disk_bytes_per_cell": disk,
    }


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="Store folder (or server URL) holding the reference.")
    parser.add_argument("--reference", required=True, help="Reference name (its current version is read).")
    parser.add_argument("--replicas", type=int, default=1, help="Copies of each shard (server).")
    parser.add_argument("--hnsw-m", type=int, default=16, help="HNSW edges per node.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of tables.")
    args = parser.parse_args(argv)
    found = measure(args.store, args.reference)
    parts = per_cell(found["dims"], found["payload_bytes"], hnsw_m=args.hnsw_m)  # type: ignore[arg-type]
    rows = {f"{n:,}": footprint(parts, n, replicas=args.replicas) for n in SIZES}
    if args.json:
        print(json.dumps({**found, "per_cell_bytes": parts, "replicas": args.replicas, "sizes": rows}))
        return 0
    print(
        f"reference '{found['reference']}' v{found['version']}: {found['mode']} mode, {found['n_cells']:,} cells, "
        f"{found['labels']} labels, vectors {found['dims']}"
    )
    disk = found["disk_bytes_per_cell"]
    print(
        "bytes per cell: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in parts.items())
        + (f"; measured collection disk {disk:,.0f}" if disk is not None else "")
    )
    print(f"\n| cells (x{args.replicas} replicas) | float32 in RAM: RAM, disk | int8 + on-disk: RAM, disk |")
    print("|---|---|---|")
    for size, fp in rows.items():
        print(
            f"| {size} | {fp['ram_float32_gb']:.1f} GB, {fp['disk_float32_gb']:.1f} GB "
            f"| {fp['ram_int8_gb']:.1f} GB, {fp['disk_int8_gb']:.1f} GB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
