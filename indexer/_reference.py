"""Reference collections: build a labelled, versioned reference in a store and read it back."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas import BuildRecord, CellVectorSpec, ReferenceCellPayload, ReferenceManifest

from ._cells import Artifacts, CellVectors, Progress, encode_cells
from ._errors import CellvecWarning, InputError, StoreError
from ._pool import top_genes_per_cell
from ._validate import labels_of

if TYPE_CHECKING:
    from anndata import AnnData

    from ._store import VectorStore

logger = logging.getLogger(__name__)

CELL_VECTOR = "cell"
"""Named vector that queries search: the cell's final (fused, refined) vector."""
INPUT_VECTOR = "input"
"""Named vector holding the cell's vector before refinement (kept only when refined)."""
VIEW2_VECTOR = "view2"
"""Named vector holding SupCon's second view (housekeeping genes removed)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAMESPACE = uuid.UUID("3b0c1f7e-9a55-5d1e-a0c4-7a2f1e9d8c60")
_UPSERT_BATCH = 1000


class NoUsableCellsWarning(CellvecWarning):
    """Some cells have no described expressed gene and no other signal; they get no vector."""


def check_reference_name(name: str) -> str:
    """Return ``name`` if it can name a reference, else raise :class:`InputError`."""
    if not _NAME.match(name):
        msg = (
            f"reference name '{name}' is not allowed; use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
        raise InputError(msg)
    return name


def cell_point_id(reference: str, cell_id: str) -> str:
    """Return the point id of a reference cell: a UUIDv5 of ``(reference, cell_id)``."""
    return str(uuid.uuid5(_NAMESPACE, f"{reference}\x1f{cell_id}"))


def manifest_key(name: str) -> str:
    """Return the store meta key of a reference's manifest."""
    return f"reference/{name}"


def version_collection(name: str, version: int) -> str:
    """Return the collection that holds one version of a reference."""
    return f"ref__{name}__v{version}"


def artifact_key(name: str, version: int, file: str) -> str:
    """Return the blob key of one artefact of a reference version."""
    return f"reference/{name}/v{version}/{file}"


def list_references(store: VectorStore) -> list[ReferenceManifest]:
    """Return the manifests of every reference in the store, sorted by name."""
    out = []
    for key in store.meta_keys("reference/"):
        data = store.get_meta(key)
        if data is not None:
            out.append(ReferenceManifest.model_validate(data))
    return sorted(out, key=lambda m: m.name)


def load_manifest(store: VectorStore, name: str) -> ReferenceManifest:
    """Return a reference's manifest; an unknown name lists the references that exist."""
    data = store.get_meta(manifest_key(name))
    if data is None:
        names = [m.name for m in list_references(store)]
        have = ", ".join(names) if names else "none yet; build one with `cellvec reference build`"
        msg = f"no reference named '{name}' in store '{store.location}' (references: {have})."
        raise StoreError(msg)
    return ReferenceManifest.model_validate(data)


def resolve_version(manifest: ReferenceManifest, version: int | None = None) -> BuildRecord:
    """Return the build record of ``version`` (default: current), refusing unknown or unfinished ones."""
    ready = [r.version for r in manifest.versions if r.status == "ready"]
    if version is None:
        rec = manifest.record()
        if rec is None:
            msg = (
                f"reference '{manifest.name}' has no finished version yet (an interrupted build?); "
                "rerun `cellvec reference build` to complete it."
            )
            raise StoreError(msg)
        return rec
    rec = manifest.record(version)
    if rec is None or rec.status != "ready":
        msg = (
            f"reference '{manifest.name}' has no finished version {version} "
            f"(versions: {', '.join(map(str, ready)) or 'none'}); pass one of them to --version."
        )
        raise StoreError(msg)
    return rec


def save_manifest(store: VectorStore, manifest: ReferenceManifest) -> None:
    """Write a manifest atomically (readers see the old or the new one, never a mix)."""
    store.put_meta(manifest_key(manifest.name), manifest.model_dump(mode="json"))
    store.flush()


def load_artifacts(store: VectorStore, record: BuildRecord) -> Artifacts:
    """Load and verify the fitted artefacts of a reference version."""
    blobs = {f: store.get_blob(artifact_key(record.reference, record.version, f)) for f in record.artifacts}
    return Artifacts.from_blobs(blobs, record.artifacts)


def _save_artifacts(store: VectorStore, name: str, version: int, art: Artifacts) -> dict[str, str]:
    hashes = {}
    for file, data in art.blobs().items():
        store.put_blob(artifact_key(name, version, file), data)
        hashes[file] = hashlib.sha256(data).hexdigest()
    return hashes


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
        Labelled reference cells × genes (counts or log-normalised).
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
    progress
        Progress callback ``(step, done, total)``.

    Returns
    -------
    The build record of the new version.

    Examples
    --------
    >>> rec = build_reference(ref, store=open_store("./store"), name="pbmc", label_key="cell_type")  # doctest: +SKIP
    """
    check_reference_name(name)
    spec = spec or CellVectorSpec()
    labels = labels_of(adata, label_key)
    datasets = _datasets(adata, dataset_key, dataset)
    if spec.refine.method == "supcon" and housekeeping is None and spec.uses_text():
        from ._housekeeping import load_housekeeping

        housekeeping = load_housekeeping(spec.species, data_dir=data_dir)
    cells, art = encode_cells(
        adata, spec=spec, store=store, data_dir=data_dir, gene_column=gene_column,
        housekeeping=housekeeping, fit_labels=labels, progress=progress, what="reference",
    )
    return _write_version(
        store, name=name, label_key=label_key, spec=spec, cells=cells, art=art,
        cell_ids=np.asarray(adata.obs_names, dtype=object), labels=labels, datasets=datasets, progress=progress,
    )


def _datasets(adata: AnnData, dataset_key: str | None, dataset: str) -> np.ndarray:
    if dataset_key is None:
        return np.full(adata.n_obs, dataset, dtype=object)
    if dataset_key not in adata.obs.columns:
        msg = f"reference has no obs column '{dataset_key}'; pass --dataset-key with an existing column."
        raise InputError(msg)
    return adata.obs[dataset_key].astype(str).to_numpy().astype(object)


def _write_version(
    store: VectorStore,
    *,
    name: str,
    label_key: str,
    spec: CellVectorSpec,
    cells: CellVectors,
    art: Artifacts,
    cell_ids: np.ndarray,
    labels: np.ndarray,
    datasets: np.ndarray,
    progress: Progress | None,
) -> BuildRecord:
    if not cells.valid.all():
        n_bad = int((~cells.valid).sum())
        warnings.warn(
            f"{n_bad} reference cells have no described expressed gene and were left out.",
            NoUsableCellsWarning,
            stacklevel=3,
        )
    keep = np.flatnonzero(cells.valid)
    if keep.size == 0:
        msg = "no reference cell has a usable vector; check the species and gene names (--species, --gene-column)."
        raise InputError(msg)
    manifest = _manifest_or_new(store, name)
    version, resuming = _next_version(manifest, spec, label_key)
    collection = version_collection(name, version)
    refined = spec.refine.method != "none"
    vectors = {CELL_VECTOR: cells.final.shape[1]}
    if refined:
        vectors[INPUT_VECTOR] = cells.inputs.shape[1]
    if cells.inputs_view2 is not None:
        vectors[VIEW2_VECTOR] = cells.inputs_view2.shape[1]
    record = BuildRecord(
        reference=name, version=version, spec=spec, dim=cells.final.shape[1],
        text_dim=0 if cells.gene_vectors is None else cells.gene_vectors.shape[1],
        label_key=label_key, created=datetime.now(UTC), status="building",
    )
    if not resuming:
        if store.has_collection(collection):
            store.drop_collection(collection)
        manifest = manifest.model_copy(update={"versions": [*manifest.versions, record]})
        save_manifest(store, manifest)
    if not store.has_collection(collection):
        store.create_collection(
            collection, vectors=vectors,
            payload_indexes={"label": "keyword", "dataset": "keyword", "cell_id": "keyword"},
        )
    hashes = _save_artifacts(store, name, version, art)
    top = (
        top_genes_per_cell(cells.weights[keep], cells.symbols, limit=20)
        if cells.weights is not None else [[] for _ in keep]
    )
    upsert_cells(
        store, collection, name=name, rows=keep, cells=cells, cell_ids=cell_ids, labels=labels,
        datasets=datasets, top_genes=top, refined=refined, progress=progress,
    )
    store.optimize(collection)
    store.flush()
    counts = dict(zip(*np.unique(labels[keep], return_counts=True), strict=True))
    done = record.model_copy(update={
        "artifacts": hashes, "n_cells": int(store.count(collection)),
        "labels": {str(k): int(v) for k, v in counts.items()}, "status": "ready",
    })
    manifest = _manifest_or_new(store, name)
    versions = [done if v.version == version else v for v in manifest.versions]
    save_manifest(store, manifest.model_copy(update={"versions": versions, "current": version}))
    return done


def upsert_cells(
    store: VectorStore,
    collection: str,
    *,
    name: str,
    rows: np.ndarray,
    cells: CellVectors,
    cell_ids: np.ndarray,
    labels: np.ndarray,
    datasets: np.ndarray,
    top_genes: list[list[str]],
    refined: bool,
    progress: Progress | None = None,
) -> None:
    """Write cells (the given rows of ``cells``) to a reference collection in idempotent batches."""
    total = rows.size
    for start in range(0, total, _UPSERT_BATCH):
        sel = rows[start : start + _UPSERT_BATCH]
        payloads: list[dict[str, Any]] = [
            ReferenceCellPayload(
                reference=name, cell_id=str(cell_ids[i]), label=str(labels[i]),
                dataset=str(datasets[i]), top_genes=top_genes[start + j],
            ).model_dump()
            for j, i in enumerate(sel)
        ]
        vecs = {CELL_VECTOR: cells.final[sel]}
        if refined:
            vecs[INPUT_VECTOR] = cells.inputs[sel]
        if cells.inputs_view2 is not None:
            v2 = cells.inputs_view2[sel]
            # A cell whose second view is empty keeps its first view there (cosine stores need non-zero rows).
            empty = np.linalg.norm(v2, axis=1) == 0
            v2 = np.where(empty[:, None], cells.inputs[sel], v2)
            vecs[VIEW2_VECTOR] = v2
        store.upsert(
            collection, ids=[cell_point_id(name, str(cell_ids[i])) for i in sel], vectors=vecs, payloads=payloads
        )
        if progress is not None:
            progress("writing cells", min(start + _UPSERT_BATCH, total), total)


def _manifest_or_new(store: VectorStore, name: str) -> ReferenceManifest:
    data = store.get_meta(manifest_key(name))
    return ReferenceManifest(name=name) if data is None else ReferenceManifest.model_validate(data)


def _next_version(manifest: ReferenceManifest, spec: CellVectorSpec, label_key: str) -> tuple[int, bool]:
    if manifest.versions:
        last = manifest.versions[-1]
        if last.status == "building" and last.spec == spec and last.label_key == label_key:
            return last.version, True
        return last.version + 1, False
    return 1, False


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


ProgressFn = Callable[[str, int, int], None]
