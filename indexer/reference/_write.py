"""Writing a reference version: claim it, write cells in idempotent batches, then make it current.

:func:`write_version` writes one set of cells; :class:`VersionWriter` does the same in steps, so that a
reference can be written chunk by chunk (``build_reference(..., chunk_size=...)``). Both builds and edits
use the helpers here.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._errors import CellvecWarning, InputError, StoreError
from indexer.cells._pool import top_genes_per_cell
from indexer.reference._versions import (
    artifact_key,
    cell_point_id,
    manifest_key,
    save_manifest,
    version_collection,
)
from schemas import BuildRecord, CellVectorSpec, ReferenceManifest, SpeciesCall

if TYPE_CHECKING:
    from indexer.cells._encode import CellVectors, Progress
    from indexer.store._protocol import VectorStore
from indexer.reference._gene_codes import GeneCodes
from indexer.reference._points import PointTable, id_words, points_file, points_file_name
from indexer.reference._versions import CELL_VECTOR, INPUT_VECTOR, TOP_GENES_FILE, VIEW2_VECTOR

logger = logging.getLogger(__name__)


_UPSERT_BATCH = 1000
PAYLOAD_INDEXES: dict[str, Any] = {
    "label": "keyword",
    "dataset": "keyword",
    "cell_id": "keyword",
    "top_genes": "integer",
}


class NoUsableCellsWarning(CellvecWarning):
    """Some cells have no described expressed gene and no other signal; they get no vector."""


def usable_rows(cells: CellVectors, *, what: str) -> np.ndarray:
    """Return the rows of cells that have a vector, warning about the others."""
    if not cells.valid.all():
        n_bad = int((~cells.valid).sum())
        warnings.warn(
            f"{n_bad} {what} cells have no described expressed gene and were left out.",
            NoUsableCellsWarning,
            stacklevel=3,
        )
    keep = np.flatnonzero(cells.valid)
    if keep.size == 0:
        msg = (
            f"no {what} cell has a usable vector; check the gene names and their species (gene_column / --gene-column)."
        )
        raise InputError(msg)
    return keep


def stored_vectors(cells: CellVectors, rows: np.ndarray, *, spec: CellVectorSpec) -> dict[str, np.ndarray]:
    """Return the named vectors stored for the given rows of ``cells`` (see the vector-name constants)."""
    vecs = {CELL_VECTOR: cells.final[rows]}
    if spec.refine.method != "none":
        vecs[INPUT_VECTOR] = cells.inputs[rows]
    if cells.inputs_view2 is not None:
        v2 = cells.inputs_view2[rows]
        # A cell whose second view is empty keeps its first view there (cosine stores need non-zero rows).
        empty = np.linalg.norm(v2, axis=1) == 0
        vecs[VIEW2_VECTOR] = np.where(empty[:, None], cells.inputs[rows], v2).astype(np.float32)
    return vecs


def top_genes_of(cells: CellVectors, rows: np.ndarray) -> list[list[str]]:
    """Return the top described genes of the given rows (empty lists without a text view)."""
    if cells.weights is None:
        return [[] for _ in rows]
    return top_genes_per_cell(cells.weights[rows], cells.symbols, limit=20)


def write_version(
    store: VectorStore,
    *,
    name: str,
    label_key: str,
    spec: CellVectorSpec,
    vectors: Mapping[str, np.ndarray],
    cell_ids: np.ndarray,
    labels: np.ndarray,
    datasets: np.ndarray,
    top_genes: Sequence[Sequence[str]],
    blobs: Mapping[str, bytes],
    text_dim: int,
    progress: Progress | None = None,
    species_call: SpeciesCall | None = None,
    genes: Sequence[str] | None = None,
) -> BuildRecord:
    """Write a new immutable version of a reference and switch ``current`` to it in one manifest write.

    The manifest lists the version as ``"building"`` (which :func:`resolve_version` refuses) until every
    point is written, stale points of an interrupted attempt are deleted and the index is built. Rerunning
    after a crash reuses the unfinished version: ids are deterministic, so the result is exact.

    Parameters
    ----------
    store
        Target store.
    name
        Reference name.
    label_key
        ``obs`` column the labels came from.
    spec
        How the vectors were made.
    vectors
        Named vectors, one row per cell; must hold :data:`CELL_VECTOR`.
    cell_ids, labels, datasets
        Per cell.
    top_genes
        Per cell, its top described genes.
    blobs
        Artefact files stored with the version.
    text_dim
        Dimension of the gene text vectors (0 when unused).
    progress
        Progress callback.
    species_call
        How the reference's species was decided (recorded in the build record).
    genes
        The symbols payloads name by id (see :class:`GeneCodes`); default: the ``blobs``' own
        :data:`TOP_GENES_FILE` (a refit or an import keeps the ids), else the genes of ``top_genes``.

    Returns
    -------
    The build record of the finished version.
    """
    if genes is None and TOP_GENES_FILE not in blobs:
        genes = sorted({str(g) for tg in top_genes for g in tg})
    writer = VersionWriter(
        store,
        name=name,
        label_key=label_key,
        spec=spec,
        dims={v: int(a.shape[1]) for v, a in vectors.items()},
        blobs=blobs,
        text_dim=text_dim,
        species_call=species_call,
        genes=genes,
    )
    writer.write(vectors, cell_ids=cell_ids, labels=labels, datasets=datasets, top_genes=top_genes, progress=progress)
    return writer.finish()


class VersionWriter:
    """Write a new version of a reference in steps: :meth:`write` any number of times, then :meth:`finish`.

    Creating it claims the version (reusing an unfinished one), lists it as ``"building"``, stores the
    artefacts and creates the collection; :meth:`finish` deletes what an interrupted attempt left, builds
    the index and makes the version current. See :func:`write_version`.

    Parameters
    ----------
    store
        Target store.
    name
        Reference name.
    label_key
        ``obs`` column the labels came from.
    spec
        How the vectors were made.
    dims
        Dimension of each named vector; must hold :data:`CELL_VECTOR`.
    blobs
        Artefact files stored with the version.
    text_dim
        Dimension of the gene text vectors (0 when unused).
    species_call
        How the reference's species was decided.
    genes
        The symbols payloads name by id, stored as the :data:`TOP_GENES_FILE` artefact (see
        :class:`GeneCodes`); ignored when ``blobs`` holds that file; ``None`` with neither stores symbols.
    """

    def __init__(
        self,
        store: VectorStore,
        *,
        name: str,
        label_key: str,
        spec: CellVectorSpec,
        dims: Mapping[str, int],
        blobs: Mapping[str, bytes],
        text_dim: int,
        species_call: SpeciesCall | None = None,
        genes: Sequence[str] | None = None,
    ) -> None:
        self._store = store
        self._name = name
        # a table of points is made by finish(), for these points (a refit's or an import's old one is not)
        blobs = {f: b for f, b in blobs.items() if points_file([f]) is None}
        if TOP_GENES_FILE in blobs:
            self.codes: GeneCodes | None = GeneCodes.from_bytes(blobs[TOP_GENES_FILE])
        elif genes is not None:
            self.codes = GeneCodes(genes)
            blobs[TOP_GENES_FILE] = self.codes.to_bytes()
        else:
            self.codes = None
        self._cell_ids: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._words: list[np.ndarray] = []
        dims = dict(dims)
        hashes = {f: hashlib.sha256(b).hexdigest() for f, b in blobs.items()}
        manifest = manifest_or_new(store, name)
        version, stale = claim_version(store, manifest, spec=spec, label_key=label_key, dims=dims)
        self.collection = version_collection(name, version)
        """The version's collection."""
        self._record = BuildRecord(
            reference=name,
            version=version,
            spec=spec,
            dim=dims[CELL_VECTOR],
            text_dim=text_dim,
            label_key=label_key,
            artifacts=hashes,
            created=datetime.now(UTC),
            status="building",
            species_call=species_call,
        )
        others = [v for v in manifest.versions if v.version != version]
        save_manifest(store, manifest.model_copy(update={"versions": [*others, self._record]}))
        for file in stale:
            if file not in blobs:
                store.delete_blob(artifact_key(name, version, file))
        for file, data in blobs.items():
            store.put_blob(artifact_key(name, version, file), data)
        if not store.has_collection(self.collection):
            store.create_collection(self.collection, vectors=dims, payload_indexes=PAYLOAD_INDEXES)

    def write(
        self,
        vectors: Mapping[str, np.ndarray],
        *,
        cell_ids: np.ndarray,
        labels: np.ndarray,
        datasets: np.ndarray,
        top_genes: Sequence[Sequence[str]],
        progress: Progress | None = None,
    ) -> None:
        """Write cells (see :func:`upsert_rows`); cells written twice keep their last write."""
        words = upsert_rows(
            self._store,
            self.collection,
            name=self._name,
            vectors=vectors,
            cell_ids=cell_ids,
            labels=labels,
            datasets=datasets,
            top_genes=top_genes,
            codes=self.codes,
            progress=progress,
        )
        self._cell_ids.append(np.asarray(cell_ids))
        self._labels.append(np.asarray(labels))
        self._words.append(words)

    def finish(self) -> BuildRecord:
        """Delete stale points, build the index, check the count and make the version current."""
        store, name, collection, version = self._store, self._name, self.collection, self._record.version
        cell_ids = np.concatenate(self._cell_ids) if self._cell_ids else np.array([], dtype=object)
        n = len(cell_ids)
        if store.count(collection) != n:  # points of an interrupted attempt with other cells
            delete_stale(store, collection, {cell_point_id(name, str(c)) for c in cell_ids})
        store.optimize(collection)
        store.flush()
        n_stored = store.count(collection)
        if n_stored != n:
            msg = f"reference '{name}' v{version} holds {n_stored} points, not {n}; rerun the command."
            raise StoreError(msg)
        labels = np.concatenate(self._labels) if self._labels else np.array([], dtype=object)
        uniq, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
        words = np.concatenate(self._words) if self._words else np.zeros((0, 2), dtype=np.uint64)
        table = PointTable.from_words(words, labels, cell_ids).to_bytes()
        table_file = points_file_name(table)
        store.put_blob(artifact_key(name, version, table_file), table)
        done = self._record.model_copy(
            update={
                "n_cells": n_stored,
                "labels": {str(k): int(v) for k, v in zip(uniq, counts, strict=True)},
                "status": "ready",
                "artifacts": self._record.artifacts | {table_file: hashlib.sha256(table).hexdigest()},
            }
        )
        manifest = manifest_or_new(store, name)
        versions = [done if v.version == version else v for v in manifest.versions]
        save_manifest(store, manifest.model_copy(update={"versions": versions, "current": version}))
        logger.info("reference %s v%d: %d cells written", name, version, n_stored)
        return done


def claim_version(
    store: VectorStore,
    manifest: ReferenceManifest,
    *,
    spec: CellVectorSpec,
    label_key: str,
    dims: dict[str, int],
) -> tuple[int, dict[str, str]]:
    """Return the version number to write and the artefacts an unfinished attempt left under it.

    An unfinished (``"building"``) version is reused: its collection is kept when it was made the same way
    (its points get overwritten), else dropped.
    """
    building = [v for v in manifest.versions if v.status == "building"]
    if building:
        last = building[-1]
        collection = version_collection(manifest.name, last.version)
        same = last.spec == spec and last.label_key == label_key and last.dim == dims[CELL_VECTOR]
        if not same and store.has_collection(collection):
            store.drop_collection(collection)
        for rec in building[:-1]:  # never more than one, unless written by hand
            drop_version_data(store, manifest.name, rec)
        return last.version, dict(last.artifacts)
    version = max((v.version for v in manifest.versions), default=0) + 1
    collection = version_collection(manifest.name, version)
    if store.has_collection(collection):  # an orphan, e.g. from a prune that was killed
        store.drop_collection(collection)
    return version, {}


def drop_version_data(store: VectorStore, name: str, rec: BuildRecord) -> None:
    store.drop_collection(version_collection(name, rec.version))
    for file in rec.artifacts:
        store.delete_blob(artifact_key(name, rec.version, file))


def delete_stale(store: VectorStore, collection: str, expected: set[str]) -> int:
    """Delete the points of ``collection`` whose id is not in ``expected``; return how many."""
    stale = [p.id for batch in store.scroll(collection, payload=False) for p in batch if p.id not in expected]
    if stale:
        store.delete(collection, ids=stale)
        logger.info("deleted %d stale points from %s", len(stale), collection)
    return len(stale)


def upsert_rows(
    store: VectorStore,
    collection: str,
    *,
    name: str,
    vectors: Mapping[str, np.ndarray],
    cell_ids: np.ndarray,
    labels: np.ndarray,
    datasets: np.ndarray,
    top_genes: Sequence[Sequence[str]],
    codes: GeneCodes | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Write cells to a reference collection in idempotent batches (ids from ``(name, cell id)``).

    With ``codes`` (the version's, see :func:`gene_codes`), ``top_genes`` are stored as gene ids. Returns the
    point ids written, row by row, as :func:`~indexer.reference._points.id_words`.
    """
    total = len(cell_ids)
    words: list[np.ndarray] = []
    for start in range(0, total, _UPSERT_BATCH):
        stop = min(start + _UPSERT_BATCH, total)
        ids = [str(c) for c in cell_ids[start:stop]]
        # Plain dicts with ReferenceCellPayload's fields (a pydantic object per cell costs more than the
        # write itself at a million cells; tests check that every stored payload validates).
        tops = top_genes[start:stop]
        genes: list[list[Any]] = [codes.encode(tg) for tg in tops] if codes is not None else [list(tg) for tg in tops]
        payloads: list[dict[str, Any]] = [
            {"reference": name, "cell_id": c, "label": str(lab), "dataset": str(ds), "top_genes": tg}
            for c, lab, ds, tg in zip(ids, labels[start:stop], datasets[start:stop], genes, strict=True)
        ]
        pids = [cell_point_id(name, c) for c in ids]
        store.upsert(collection, ids=pids, vectors={v: a[start:stop] for v, a in vectors.items()}, payloads=payloads)
        words.append(id_words(pids))
        if progress is not None:
            progress("writing cells", stop, total)
    return np.concatenate(words) if words else np.zeros((0, 2), dtype=np.uint64)


def manifest_or_new(store: VectorStore, name: str) -> ReferenceManifest:
    data = store.get_meta(manifest_key(name))
    return ReferenceManifest(name=name) if data is None else ReferenceManifest.model_validate(data)
