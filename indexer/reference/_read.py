"""Reading a version back: its named vectors, one checked artefact file, its cells in batches."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._errors import StoreError
from indexer.reference._versions import (
    CELL_VECTOR,
    INPUT_VECTOR,
    VIEW2_VECTOR,
    artifact_key,
    version_collection,
)
from schemas import BuildRecord

if TYPE_CHECKING:
    from indexer.cells._encode import Progress
    from indexer.store._protocol import VectorStore
from indexer.reference._gene_codes import GeneCodes, decode_top_genes
from indexer.reference._versions import TOP_GENES_FILE


def vector_names(record: BuildRecord) -> list[str]:
    """Return the named vectors a version's collection holds."""
    names = [CELL_VECTOR]
    if record.spec.refine.method != "none":
        names.append(INPUT_VECTOR)
    if record.spec.stores_view2():
        names.append(VIEW2_VECTOR)
    return names


def read_artifact(store: VectorStore, record: BuildRecord, file: str, *, what: str | None = None) -> bytes:
    """Return an artefact file of a version, refusing it when missing or altered (``what`` names it)."""
    data = store.get_blob(artifact_key(record.reference, record.version, file))
    if data is None or hashlib.sha256(data).hexdigest() != record.artifacts[file]:
        msg = (
            f"{what or f'artefact {file!r}'} of reference '{record.reference}' v{record.version} is missing or "
            "altered; rebuild the reference (`cellvec reference build`)."
        )
        raise StoreError(msg)
    return data


def read_cells(
    store: VectorStore, record: BuildRecord, vectors: list[str], *, progress: Progress | None = None
) -> dict[str, Any]:
    """Read every cell of a version: the named vectors and the payload fields, as arrays ordered by id."""
    collection = version_collection(record.reference, record.version)
    total = store.count(collection)
    vecs: dict[str, list[np.ndarray]] = {v: [] for v in vectors}
    fields: dict[str, list[Any]] = {"cell_id": [], "label": [], "dataset": [], "top_genes": []}
    codes = gene_codes(store, record)
    done = 0
    for batch in store.scroll(collection, with_vectors=vectors):
        for v in vectors:
            vecs[v].append(np.vstack([p.vectors[v] for p in batch]))
        for p in batch:
            fields["cell_id"].append(str(p.payload["cell_id"]))
            fields["label"].append(str(p.payload["label"]))
            fields["dataset"].append(str(p.payload.get("dataset", "")))
            fields["top_genes"].append(decode_top_genes(p.payload.get("top_genes"), codes))
        done += len(batch)
        if progress is not None:
            progress("reading cells", done, total)
    out: dict[str, Any] = {
        v: np.vstack(parts).astype(np.float32) if parts else np.zeros((0, 1), np.float32) for v, parts in vecs.items()
    }
    for f in ("cell_id", "label", "dataset"):
        out[f] = np.asarray(fields[f], dtype=object)
    out["top_genes"] = fields["top_genes"]
    return out


def gene_codes(store: VectorStore, record: BuildRecord) -> GeneCodes | None:
    """Return the gene ids of a version's payloads, ``None`` for versions that store symbols (older ones)."""
    if TOP_GENES_FILE not in record.artifacts:
        return None
    return GeneCodes.from_bytes(read_artifact(store, record, TOP_GENES_FILE, what="the list of top genes"))
