"""Persistent references over time: add, remove and relabel cells, and refit.

``add_cells``, ``remove_cells`` and ``relabel`` edit the current version in place (its collection and the
cell counts of its build record); ``refit`` and ``import_reference`` write a new immutable version and
switch ``current`` to it with one manifest write, as :func:`~indexer.build_reference` does.

The decision rule's calibration (``calibration.json``) follows every edit, its new hash in the build record:

* ``relabel`` renames the label in it (exact); a merge into an existing label adds the class sizes and
  averages the class means (marked approximate: the weights and novelty scores were fitted on two labels);
* ``add_cells`` updates the class sizes and, from the new cells' raw PCA scores, the class means; a new
  label gets a class and uses the pooled novelty scores (marked approximate);
* ``remove_cells`` updates the class sizes (a label with no cell left can no longer win; marked
  approximate: the class means and novelty scores still include the removed cells);
* ``refit`` recomputes it from the stored vectors: leave-self-out neighbours of the calibration cells
  (or a stratified sample when the version had none), keeping the Mahalanobis part it had, since the
  expression projection does not change. ``cellvec reference refit`` is how a reference built before
  calibrations gets one (neighbour evidence only; a rebuild gives the full one). Every write is
idempotent: point ids derive from ``(reference, cell id)``, so rerunning a command that was killed
finishes it with exact counts.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer._errors import InputError, UnseenLabelWarning
from indexer._progress import progress_or_log
from indexer.cells._calibration import Calibration, calibration_file
from indexer.cells._encode import Progress, encode_cells
from indexer.cells._source import select_expression
from indexer.cells._validate import labels_of
from indexer.reference._build import _datasets, load_housekeeping_artifact
from indexer.reference._points import PointTable, points_file, points_file_name
from indexer.reference._read import (
    gene_codes,
    read_artifact,
)
from indexer.reference._versions import (
    artifact_key,
    cell_point_id,
    load_artifacts,
    load_manifest,
    resolve_version,
    save_manifest,
    version_collection,
)
from indexer.reference._write import (
    stored_vectors,
    top_genes_of,
    upsert_rows,
    usable_rows,
)
from schemas import BuildRecord

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer.store._protocol import VectorStore

logger = logging.getLogger(__name__)


def _update_counts(store: VectorStore, name: str, version: int) -> BuildRecord:
    """Recount a version's cells per label from its collection and store them in the manifest."""
    collection = version_collection(name, version)
    labels = store.facet(collection, "label")
    manifest = load_manifest(store, name)
    rec = manifest.record(version)
    assert rec is not None
    new = rec.model_copy(update={"n_cells": store.count(collection), "labels": dict(sorted(labels.items()))})
    versions = [new if v.version == version else v for v in manifest.versions]
    save_manifest(store, manifest.model_copy(update={"versions": versions}))
    return new


def _edit_calibration(store: VectorStore, record: BuildRecord, edit: Callable[[Calibration], Calibration]) -> None:
    """Rewrite a version's calibration through ``edit`` (no-op without one), safely against a kill."""
    old_file = calibration_file(record.artifacts)
    if old_file is None:
        return
    data = edit(Calibration.from_json(read_artifact(store, record, old_file))).to_json()
    _replace_artifact(store, record, old_file, f"calibration-{hashlib.sha256(data).hexdigest()[:12]}.json", data)


def _edit_points(store: VectorStore, record: BuildRecord, edit: Callable[[PointTable], PointTable]) -> None:
    """Rewrite a version's point table through ``edit`` (no-op without one), as :func:`_edit_calibration`."""
    old_file = points_file(record.artifacts)
    if old_file is None:
        return
    data = edit(PointTable.from_bytes(read_artifact(store, record, old_file))).to_bytes()
    _replace_artifact(store, record, old_file, points_file_name(data), data)


def _replace_artifact(store: VectorStore, record: BuildRecord, old_file: str, new_file: str, data: bytes) -> None:
    """Replace artefact ``old_file`` of a version by ``data``, stored as ``new_file`` (named by its hash).

    The new file is written first, then one manifest write switches the build record to it, then the old file
    is deleted: a reader or a killed edit sees the old artefact or the new one, each matching its recorded
    hash (a kill can leave an orphan blob).
    """
    if new_file == old_file:
        return
    store.put_blob(artifact_key(record.reference, record.version, new_file), data)
    manifest = load_manifest(store, record.reference)
    rec = manifest.record(record.version)
    assert rec is not None
    hashes = {f: h for f, h in rec.artifacts.items() if f != old_file} | {new_file: hashlib.sha256(data).hexdigest()}
    new = rec.model_copy(update={"artifacts": hashes})
    versions = [new if v.version == rec.version else v for v in manifest.versions]
    save_manifest(store, manifest.model_copy(update={"versions": versions}))
    store.delete_blob(artifact_key(record.reference, record.version, old_file))


def add_cells(
    adata: AnnData,
    *,
    store: VectorStore,
    name: str,
    label_key: str,
    dataset_key: str | None = None,
    dataset: str = "",
    data_dir: Path | None = None,
    gene_column: str | None = None,
    progress: Progress | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
) -> BuildRecord:
    """Add labelled cells to a reference's current version, searchable as soon as the call returns.

    The new cells are encoded through the version's stored artefacts (cached gene vectors, expression
    projection, SupCon encoder): nothing is re-embedded or retrained. Cells whose id is already in the
    reference are replaced, so a rerun after a crash finishes the same add with exact counts.

    Parameters
    ----------
    adata
        Labelled cells by genes (counts or log-normalised).
    store
        Store holding the reference.
    name
        Reference name.
    label_key
        ``obs`` column with the cell type labels.
    dataset_key
        ``obs`` column naming each cell's dataset or batch.
    dataset
        Dataset name for every cell, when ``dataset_key`` is not given.
    data_dir
        Gene description data folder.
    gene_column
        ``var`` column with gene names, instead of ``var_names``.
    progress
        Progress callback ``(step, done, total)``; ``None`` (default) logs progress lines at INFO
        (:func:`indexer.log_progress`: shown with ``logging.basicConfig(level=logging.INFO)``).
    layer, use_raw
        Which matrix holds the expression, as in :func:`build_reference`.

    Returns
    -------
    The current version's updated build record.

    Warns
    -----
    UnseenLabelWarning
        When the reference is refined and the new cells carry labels its SupCon encoder never saw.

    Raises
    ------
    InputError
        When a cell id already belongs to a cell of another dataset.

    Examples
    --------
    >>> rec = add_cells(batch2, store=store, name="pbmc", label_key="cell_type")  # doctest: +SKIP
    """
    progress = progress_or_log(progress, logger)
    record = resolve_version(load_manifest(store, name))
    adata = select_expression(adata, layer=layer, use_raw=use_raw, what="adata")
    labels = _labels_of_batch(adata, label_key)
    datasets = _datasets(adata, dataset_key, dataset)
    cell_ids = np.asarray(adata.obs_names, dtype=object)  # unique: checked with the expression matrix
    spec = record.spec
    art = load_artifacts(store, record)
    housekeeping = load_housekeeping_artifact(store, record)
    cells, _ = encode_cells(
        adata,
        spec=spec,
        store=store,
        artifacts=art,
        data_dir=data_dir,
        gene_column=gene_column,
        housekeeping=housekeeping,
        with_view2=spec.stores_view2(),
        progress=progress,
        what="new cells",
        query_species=spec.species,  # cells added must be of the reference's species, never mapped onto it
    )
    keep = usable_rows(cells, what="new")
    if art.supcon is not None:
        unseen = sorted(set(map(str, labels[keep])) - set(art.supcon.labels))
        if unseen:
            warnings.warn(
                f"the SupCon encoder of reference '{name}' never saw labels {', '.join(unseen)}; their cells "
                "are stored but may sit apart from similar cells: run `cellvec reference refit`.",
                UnseenLabelWarning,
                stacklevel=2,
            )
    collection = version_collection(name, record.version)
    _check_id_clashes(store, collection, name=name, cell_ids=cell_ids[keep], datasets=datasets[keep])
    words = upsert_rows(
        store,
        collection,
        name=name,
        vectors=stored_vectors(cells, keep, spec=spec),
        cell_ids=cell_ids[keep],
        labels=labels[keep],
        datasets=datasets[keep],
        top_genes=top_genes_of(cells, keep),
        codes=gene_codes(store, record),
        progress=progress,
    )
    store.flush()
    rec = _update_counts(store, name, record.version)
    sums: dict[str, np.ndarray] = {}
    if cells.pca_scores is not None:
        added = np.asarray(labels[keep]).astype(str)
        for lab in np.unique(added):
            sums[str(lab)] = cells.pca_scores[keep][added == lab].astype(np.float64).sum(axis=0)
    note = f"added {keep.size} cells: class sizes and means updated, weights and novelty scores not refitted"
    _edit_calibration(store, rec, lambda c: c.with_counts(rec.labels, note=note, added_sums=sums))
    # after the collection: until the table has them, the new cells are looked up in their payloads
    new_rows = PointTable.from_words(words, labels[keep], cell_ids[keep])
    _edit_points(store, resolve_version(load_manifest(store, name), rec.version), lambda t: t.with_table(new_rows))
    rec = resolve_version(load_manifest(store, name), rec.version)
    logger.info("added %d cells to reference %s v%d", keep.size, name, record.version)
    return rec


def _labels_of_batch(adata: AnnData, label_key: str) -> np.ndarray:
    """Return the labels of cells to add (a batch may hold a single label, unlike a new reference)."""
    if label_key in adata.obs.columns and adata.obs[label_key].nunique(dropna=True) == 1:
        labels = adata.obs[label_key]
        if labels.isna().any():
            msg = (
                f"new cells.obs['{label_key}'] has {int(labels.isna().sum())} missing labels; "
                "drop those cells or label them before adding them."
            )
            raise InputError(msg)
        return labels.astype(str).to_numpy().astype(object)
    return labels_of(adata, label_key, what="new cells")


def _check_id_clashes(
    store: VectorStore, collection: str, *, name: str, cell_ids: np.ndarray, datasets: np.ndarray
) -> None:
    """Refuse new cells whose id belongs to a stored cell of another dataset (barcodes repeat across runs)."""
    ids = [cell_point_id(name, str(c)) for c in cell_ids]
    wanted = dict(zip(ids, map(str, datasets), strict=True))
    clashes = [
        (p.payload.get("cell_id"), p.payload.get("dataset", ""), wanted[p.id])
        for p in store.retrieve(collection, ids)
        if p.payload.get("dataset", "") != wanted[p.id]
    ]
    if clashes:
        cid, old, new = clashes[0]
        msg = (
            f"{len(clashes)} new cell ids already belong to cells of another dataset in reference '{name}' "
            f"(e.g. '{cid}' is in dataset '{old}', the new one in '{new}'); make the ids unique, e.g. "
            "`adata.obs_names = 'batch2_' + adata.obs_names`."
        )
        raise InputError(msg)


def remove_cells(
    store: VectorStore,
    name: str,
    *,
    cell_ids: list[str] | None = None,
    label: str | None = None,
    dataset: str | None = None,
) -> int:
    """Remove cells from a reference's current version, chosen by id, label or dataset (exactly one).

    Parameters
    ----------
    store
        Store holding the reference.
    name
        Reference name.
    cell_ids
        Ids (``obs_names``) of the cells to remove; ids not in the reference are ignored.
    label
        Remove every cell with this label.
    dataset
        Remove every cell of this dataset.

    Returns
    -------
    The number of cells removed.

    Examples
    --------
    >>> remove_cells(store, "pbmc", label="Doublet")  # doctest: +SKIP
    412
    """
    chosen = [k for k, v in {"cell_ids": cell_ids, "label": label, "dataset": dataset}.items() if v is not None]
    if len(chosen) != 1:
        msg = f"remove_cells needs exactly one of cell_ids=, label=, dataset= (got {chosen or 'none'})."
        raise InputError(msg)
    record = resolve_version(load_manifest(store, name))
    collection = version_collection(name, record.version)
    before = store.count(collection)
    if cell_ids is not None:
        if cell_ids:
            store.delete(collection, ids=[cell_point_id(name, str(c)) for c in cell_ids])
    else:
        field, value = ("label", label) if label is not None else ("dataset", dataset)
        present = store.facet(collection, field)
        if value not in present:
            have = ", ".join(sorted(present)) or "none"
            msg = f"reference '{name}' has no cells with {field} '{value}' ({field}s: {have})."
            raise InputError(msg)
        store.delete(collection, where={field: str(value)})
    store.flush()
    rec = _update_counts(store, name, record.version)
    removed = before - rec.n_cells
    note = f"removed {removed} cells: class sizes updated, means and novelty scores still include them"
    _edit_calibration(store, rec, lambda c: c.with_counts(rec.labels, note=note))
    # after the collection: a row of a removed cell is never reached by a search
    left = [p.id for batch in store.scroll(collection, payload=False) for p in batch]
    _edit_points(store, resolve_version(load_manifest(store, name), rec.version), lambda t: t.keeping(left))
    logger.info("removed %d cells from reference %s v%d", removed, name, record.version)
    return removed


def relabel(store: VectorStore, name: str, *, old: str, new: str) -> int:
    """Rename a label in a reference's current version (``new`` may be an existing label: a merge).

    Parameters
    ----------
    store
        Store holding the reference.
    name
        Reference name.
    old
        Label to rename.
    new
        New label.

    Returns
    -------
    The number of cells relabelled.

    Examples
    --------
    >>> relabel(store, "pbmc", old="CD4 T", new="CD4+ T cell")  # doctest: +SKIP
    1200
    """
    if not new:
        msg = "the new label is empty; pass a non-empty --to."
        raise InputError(msg)
    record = resolve_version(load_manifest(store, name))
    collection = version_collection(name, record.version)
    n = store.count(collection, where={"label": old})
    if n == 0:
        have = ", ".join(sorted(store.facet(collection, "label"))) or "none"
        msg = f"reference '{name}' has no cells labelled '{old}' (labels: {have}); check --from."
        raise InputError(msg)
    # The table and the calibration before the payloads: a relabel killed between them already annotates with
    # the new label (both renames are no-ops when the rerun comes to them again).
    _edit_points(store, record, lambda t: t.renamed(old, new))
    _edit_calibration(store, resolve_version(load_manifest(store, name), record.version), lambda c: c.renamed(old, new))
    store.set_payload(collection, {"label": new}, where={"label": old})
    store.flush()
    _update_counts(store, name, record.version)
    return n
