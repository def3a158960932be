"""Reference collections: build a labelled, versioned reference in a store and read it back."""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._errors import CellvecWarning, InputError, StoreError
from indexer._settings import Settings
from indexer.cells._encode import CellVectors, Progress, encode_cells
from indexer.cells._pool import top_genes_per_cell
from indexer.cells._validate import labels_of
from indexer.reference._versions import (
    artifact_key,
    cell_point_id,
    check_reference_name,
    load_manifest,
    manifest_key,
    resolve_version,
    save_manifest,
    version_collection,
)
from schemas import BuildRecord, CellVectorSpec, ReferenceManifest

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer.store._protocol import VectorStore

logger = logging.getLogger(__name__)

CELL_VECTOR = "cell"
"""Named vector that queries search: the cell's final (fused, refined) vector."""
INPUT_VECTOR = "input"
"""Named vector holding the cell's vector before refinement (kept only when refined)."""
VIEW2_VECTOR = "view2"
"""Named vector holding SupCon's second view (housekeeping genes removed)."""

_UPSERT_BATCH = 1000
HOUSEKEEPING_FILE = "housekeeping.txt"
"""Artefact holding the housekeeping symbols removed from SupCon's second view, one per line."""
PAYLOAD_INDEXES: dict[str, Any] = {"label": "keyword", "dataset": "keyword", "cell_id": "keyword"}


class NoUsableCellsWarning(CellvecWarning):
    """Some cells have no described expressed gene and no other signal; they get no vector."""


def build_reference(
    adata: AnnData,
    *,
    store: VectorStore,
    name: str,
    label_key: str,
    spec: CellVectorSpec | None = None,
    dataset_key: str | None = None,
    dataset: str = "",
    data_dir: Path | None = None,
    gene_column: str | None = None,
    housekeeping: frozenset[str] | None = None,
    progress: Progress | None = None,
) -> BuildRecord:
    """Build a new version of a labelled reference in the store and make it current.

    A build that was interrupted is resumed by running the same call again: point ids derive from
    ``(name, cell id)``, so the rerun completes the same version with exact counts and no duplicates. The
    version becomes visible only when every point is written and indexed.

    Parameters
    ----------
    adata
        Labelled reference cells by genes (counts or log-normalised).
    store
        Target store (see :func:`indexer.open_store`).
    name
        Reference name.
    label_key
        ``obs`` column with the cell type labels.
    spec
        How cells become vectors (default: :class:`schemas.CellVectorSpec` defaults).
    dataset_key
        ``obs`` column naming each cell's dataset or batch.
    dataset
        Dataset name for every cell, when ``dataset_key`` is not given.
    data_dir
        Gene description data folder.
    gene_column
        ``var`` column with gene names, instead of ``var_names``.
    housekeeping
        Housekeeping symbols for SupCon's second view (default: the species' list from the data folder).
        The list is stored with the version, so cells added later and refits use the same one.
    progress
        Progress callback ``(step, done, total)``.

    Returns
    -------
    The build record of the new version.

    Examples
    --------
    >>> store = open_store("./store")  # doctest: +SKIP
    >>> rec = build_reference(ref, store=store, name="pbmc", label_key="cell_type")  # doctest: +SKIP
    """
    check_reference_name(name)
    spec = spec or CellVectorSpec(encoder=Settings().encoder)
    labels = labels_of(adata, label_key)
    datasets = _datasets(adata, dataset_key, dataset)
    cell_ids = np.asarray(adata.obs_names, dtype=object)  # unique: checked with the expression matrix
    if housekeeping is None and spec.uses_text():
        housekeeping = _default_housekeeping(spec, data_dir=data_dir)
    cells, art = encode_cells(
        adata,
        spec=spec,
        store=store,
        data_dir=data_dir,
        gene_column=gene_column,
        housekeeping=housekeeping,
        fit_labels=labels,
        with_view2=spec.stores_view2(),
        progress=progress,
        what="reference",
    )
    keep = usable_rows(cells, what="reference")
    blobs = art.blobs()
    if housekeeping is not None and spec.uses_text():
        blobs[HOUSEKEEPING_FILE] = "\n".join(sorted(housekeeping)).encode()
    return write_version(
        store,
        name=name,
        label_key=label_key,
        spec=spec,
        vectors=stored_vectors(cells, keep, spec=spec),
        cell_ids=cell_ids[keep],
        labels=labels[keep],
        datasets=datasets[keep],
        top_genes=top_genes_of(cells, keep),
        blobs=blobs,
        text_dim=0 if cells.gene_vectors is None else cells.gene_vectors.shape[1],
        progress=progress,
    )


def _default_housekeeping(spec: CellVectorSpec, *, data_dir: Path | None) -> frozenset[str] | None:
    from indexer._errors import DataError
    from indexer.genes._housekeeping import load_housekeeping

    try:
        return load_housekeeping(spec.species, data_dir=data_dir)
    except DataError:
        if spec.refine.method == "supcon":
            raise
        # Only a later refit needs the second view; it falls back to the first one.
        logger.warning("no housekeeping list for %s; the second view keeps every gene", spec.species)
        return None


def load_housekeeping_artifact(store: VectorStore, record: BuildRecord) -> frozenset[str] | None:
    """Return the housekeeping list stored with a reference version (``None`` when it has none)."""
    if HOUSEKEEPING_FILE not in record.artifacts:
        return None
    data = store.get_blob(artifact_key(record.reference, record.version, HOUSEKEEPING_FILE))
    if data is None or hashlib.sha256(data).hexdigest() != record.artifacts[HOUSEKEEPING_FILE]:
        msg = (
            f"the housekeeping list of reference '{record.reference}' v{record.version} is missing or "
            "altered; rebuild the reference (`cellvec reference build`)."
        )
        raise StoreError(msg)
    return frozenset(s for s in data.decode().split("\n") if s)


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
            f"no {what} cell has a usable vector; check the species and gene names "
            "(--species, --gene-column)."
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


def _datasets(adata: AnnData, dataset_key: str | None, dataset: str) -> np.ndarray:
    if dataset_key is None:
        return np.full(adata.n_obs, dataset, dtype=object)
    if dataset_key not in adata.obs.columns:
        msg = f"reference has no obs column '{dataset_key}'; pass --dataset-key with an existing column."
        raise InputError(msg)
    return adata.obs[dataset_key].astype(str).to_numpy().astype(object)


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

    Returns
    -------
    The build record of the finished version.
    """
    n = len(cell_ids)
    dims = {v: int(a.shape[1]) for v, a in vectors.items()}
    hashes = {f: hashlib.sha256(b).hexdigest() for f, b in blobs.items()}
    manifest = _manifest_or_new(store, name)
    version, stale = _claim_version(store, manifest, spec=spec, label_key=label_key, dims=dims)
    collection = version_collection(name, version)
    record = BuildRecord(
        reference=name,
        version=version,
        spec=spec,
        dim=dims[CELL_VECTOR],
        text_dim=text_dim,
        label_key=label_key,
        artifacts=hashes,
        created=datetime.now(UTC),
        status="building",
    )
    others = [v for v in manifest.versions if v.version != version]
    save_manifest(store, manifest.model_copy(update={"versions": [*others, record]}))
    for file in stale:
        if file not in blobs:
            store.delete_blob(artifact_key(name, version, file))
    for file, data in blobs.items():
        store.put_blob(artifact_key(name, version, file), data)
    if not store.has_collection(collection):
        store.create_collection(collection, vectors=dims, payload_indexes=PAYLOAD_INDEXES)
    upsert_rows(
        store,
        collection,
        name=name,
        vectors=vectors,
        cell_ids=cell_ids,
        labels=labels,
        datasets=datasets,
        top_genes=top_genes,
        progress=progress,
    )
    if store.count(collection) != n:  # points of an interrupted attempt with other cells
        delete_stale(store, collection, {cell_point_id(name, str(c)) for c in cell_ids})
    store.optimize(collection)
    store.flush()
    n_stored = store.count(collection)
    if n_stored != n:
        msg = f"reference '{name}' v{version} holds {n_stored} points, not {n}; rerun the command."
        raise StoreError(msg)
    uniq, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    done = record.model_copy(
        update={
            "n_cells": n_stored,
            "labels": {str(k): int(v) for k, v in zip(uniq, counts, strict=True)},
            "status": "ready",
        }
    )
    manifest = _manifest_or_new(store, name)
    versions = [done if v.version == version else v for v in manifest.versions]
    save_manifest(store, manifest.model_copy(update={"versions": versions, "current": version}))
    logger.info("reference %s v%d: %d cells written", name, version, n_stored)
    return done


def _claim_version(
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
            _drop_version_data(store, manifest.name, rec)
        return last.version, dict(last.artifacts)
    version = max((v.version for v in manifest.versions), default=0) + 1
    collection = version_collection(manifest.name, version)
    if store.has_collection(collection):  # an orphan, e.g. from a prune that was killed
        store.drop_collection(collection)
    return version, {}


def _drop_version_data(store: VectorStore, name: str, rec: BuildRecord) -> None:
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
    progress: Progress | None = None,
) -> None:
    """Write cells to a reference collection in idempotent batches (ids from ``(name, cell id)``)."""
    total = len(cell_ids)
    for start in range(0, total, _UPSERT_BATCH):
        stop = min(start + _UPSERT_BATCH, total)
        ids = [str(c) for c in cell_ids[start:stop]]
        # Plain dicts with ReferenceCellPayload's fields (a pydantic object per cell costs more than the
        # write itself at a million cells; tests check that every stored payload validates).
        payloads: list[dict[str, Any]] = [
            {"reference": name, "cell_id": c, "label": str(lab), "dataset": str(ds), "top_genes": list(tg)}
            for c, lab, ds, tg in zip(
                ids, labels[start:stop], datasets[start:stop], top_genes[start:stop], strict=True
            )
        ]
        store.upsert(
            collection,
            ids=[cell_point_id(name, c) for c in ids],
            vectors={v: a[start:stop] for v, a in vectors.items()},
            payloads=payloads,
        )
        if progress is not None:
            progress("writing cells", stop, total)


def _manifest_or_new(store: VectorStore, name: str) -> ReferenceManifest:
    data = store.get_meta(manifest_key(name))
    return ReferenceManifest(name=name) if data is None else ReferenceManifest.model_validate(data)


def reference_vectors(
    store: VectorStore, name: str, *, version: int | None = None, using: str = CELL_VECTOR
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return a reference version's stored vectors, labels and cell ids (for exact baselines and refits).

    Parameters
    ----------
    store
        The store.
    name
        Reference name.
    version
        Version (default: current).
    using
        Which named vector to read.
    """
    rec = resolve_version(load_manifest(store, name), version)
    coll = version_collection(name, rec.version)
    vecs, labels, ids = [], [], []
    for batch in store.scroll(coll, with_vectors=[using]):
        for p in batch:
            vecs.append(p.vectors[using])
            labels.append(p.payload["label"])
            ids.append(p.payload["cell_id"])
    if not vecs:
        return np.zeros((0, rec.dim), np.float32), np.array([], object), np.array([], object)
    return np.vstack(vecs).astype(np.float32), np.array(labels, dtype=object), np.array(ids, dtype=object)


def drop_reference(store: VectorStore, name: str) -> None:
    """Delete a reference: every version's collection, its artefacts and its manifest."""
    manifest = load_manifest(store, name)
    for rec in manifest.versions:
        store.drop_collection(version_collection(name, rec.version))
        for file in rec.artifacts:
            store.delete_blob(artifact_key(name, rec.version, file))
    store.delete_meta(manifest_key(name))
    store.flush()

