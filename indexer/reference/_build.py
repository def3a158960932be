"""Reference collections: build a labelled, versioned reference in a store and read it back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer._errors import InputError
from indexer._progress import progress_or_log
from indexer._settings import Settings
from indexer.cells._encode import Progress, encode_cells
from indexer.cells._source import select_expression
from indexer.cells._validate import labels_of
from indexer.genes import resolve_species
from indexer.reference._calibrate import MAX_CALIBRATION_CELLS, calibrate
from indexer.reference._read import (
    read_artifact,
)
from indexer.reference._versions import (
    CELL_VECTOR,
    check_reference_name,
    load_manifest,
    manifest_key,
    resolve_version,
    version_collection,
)
from indexer.reference._write import (
    drop_version_data,
    stored_vectors,
    top_genes_of,
    usable_rows,
    write_version,
)
from schemas import BuildRecord, CellVectorSpec, SpeciesCall

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer.store._protocol import VectorStore
from indexer.reference._chunked import _build_in_chunks, _top_gene_vocabulary, _with_housekeeping
from indexer.reference._versions import HOUSEKEEPING_FILE

logger = logging.getLogger(__name__)

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
    calibration_cells: int = MAX_CALIBRATION_CELLS,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    fit_cells: int = 50_000,
    species_option: str | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    genes: Sequence[str] | AnnData | None = None,
    genes_what: str = "genes",
) -> BuildRecord:
    """Build a new version of a labelled reference in the store and make it current.

    The version stores the decision rule's calibration (artefact ``calibration.json``, hashed in the build
    record like the other artefacts), fitted on the reference alone and cross-fitted so no cell sees itself:
    a 5-fold refit of the expression projection and head for modes with an expression view, leave-self-out
    neighbours otherwise (see :mod:`indexer.reference._calibrate`). Annotation uses it for calibrated
    probabilities, a class-balanced winner and the novelty p-value.

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
        How cells become vectors (default: :class:`schemas.CellVectorSpec` defaults). Its ``species``
        (default ``"auto"``) is inferred from the gene names (see :func:`indexer.resolve_species`), logged
        ("species: mouse (inferred from 99% of 19,371 gene names)"), and stored in the build record with
        the evidence; an explicit species the names clearly contradict is an error.
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
    calibration_cells
        At most this many cells (stratified by label) fit the calibration; 0 stores none (annotation then
        uses the plain vote).
    progress
        Progress callback ``(step, done, total)``; ``None`` (default) logs progress lines at INFO
        (:func:`indexer.log_progress`: shown with ``logging.basicConfig(level=logging.INFO)``).
    chunk_size
        Pool and write this many cells at a time, so that memory stays bounded at any reference size (every
        mode and spec). What the spec fits on the reference (the expression view's gene panel, PCA and class
        head, the text projection of ``text_dims``, ``idf`` weights, the whitening mean, a SupCon encoder) is
        fitted once on a sample of ``fit_cells`` cells stratified by label, then every chunk is encoded with
        those artefacts; ``progress`` reports ``"writing cells"`` once per chunk. ``None`` (default) fits on
        every cell and does everything in one pass. A chunked build fits the calibration on that sample too
        (at most ``calibration_cells`` of it).
    fit_cells
        With ``chunk_size``: how many reference cells the artefacts are fitted on, drawn per label in
        proportion to its size (every cell of a label smaller than 50 cells, at least 50 of larger ones;
        seeded by ``spec.refine.seed``). A reference of at most ``fit_cells`` cells is fitted on all of them,
        which gives the vectors of a build without ``chunk_size`` (equal up to float rounding).
    species_option
        The command-line option that sets the species, named in errors (``"--species"``; ``None`` for the
        library, whose errors name ``species=``).
    layer
        Read the expression from ``adata.layers[layer]`` instead of ``.X``.
    use_raw
        ``True``: read ``adata.raw.X`` (genes ``adata.raw.var_names``); ``False``: read ``.X``; ``None``
        (default): ``.X``, unless it looks scaled (negative values) and ``.raw`` exists, as CellTypist does
        (see :func:`indexer.cells.select_expression`).
    genes
        Restrict the reference to the genes these names cover: gene names, or the query AnnData itself
        (its ``var_names``). Names of the other species are mapped through HCOP orthologs as ``annotate`` maps
        a query (:func:`indexer.genes.genes_covered`). The expression view's panel and class head, the text
        view's top genes and the calibration then read only genes the query has, which matters when a query
        covers a small part of the reference's genes (a 765-gene human panel against a mouse transcriptome:
        docs/species.md). Each cell is still normalised over its whole library. Stored with the version
        (artefact ``gene_subset.npz``): queries and added cells read the same genes. ``None`` keeps every gene.
    genes_what
        Name of ``genes`` in error messages (``"--genes-of FILE"`` from the CLI).

    Returns
    -------
    The build record of the new version (``record.species_call`` says how the species was decided).

    Raises
    ------
    SpeciesMismatchError
        When ``spec.species`` contradicts the gene names.
    MixedSpeciesError
        When the gene names belong to two species.

    Examples
    --------
    >>> store = open_store("./store")  # doctest: +SKIP
    >>> rec = build_reference(ref, store=store, name="pbmc", label_key="cell_type")  # doctest: +SKIP
    """
    check_reference_name(name)
    adata = select_expression(adata, layer=layer, use_raw=use_raw, what="reference")
    spec = spec or CellVectorSpec(encoder=Settings().encoder)
    progress = progress_or_log(progress, logger)
    labels = labels_of(adata, label_key)
    datasets = _datasets(adata, dataset_key, dataset)
    cell_ids = np.asarray(adata.obs_names, dtype=object)  # unique: checked with the expression matrix
    call: SpeciesCall | None = None
    # An empty AnnData or a missing gene column is reported by encode_cells, which names the problem.
    if adata.n_obs and adata.n_vars and (gene_column is None or gene_column in adata.var.columns):
        names = adata.var[gene_column].astype(str).tolist() if gene_column else [str(n) for n in adata.var_names]
        where = f"var[{gene_column!r}]" if gene_column else "var_names"
        call = resolve_species(names, spec.species, data_dir=data_dir, where=where, option=species_option)
        logger.info(call.summary())
        spec = spec.model_copy(update={"species": call.species})
    subset = None
    if genes is not None and spec.species != "auto":
        from indexer.genes import genes_covered

        restriction = genes_covered(genes, species=spec.known_species(), data_dir=data_dir, what=genes_what)
        logger.info(restriction.summary())
        subset = restriction.symbols
    if housekeeping is None and spec.uses_text() and spec.species != "auto":
        housekeeping = _default_housekeeping(spec, data_dir=data_dir)
    if chunk_size is not None:
        return _build_in_chunks(
            adata,
            store=store,
            name=name,
            label_key=label_key,
            spec=spec,
            columns=(cell_ids, labels, datasets),
            data_dir=data_dir,
            gene_column=gene_column,
            housekeeping=housekeeping,
            chunk_size=chunk_size,
            fit_cells=fit_cells,
            calibration_cells=calibration_cells,
            progress=progress,
            species_call=call,
            genes=subset,
        )
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
        option=species_option,
        genes=subset,
    )
    spec = cells.spec or spec
    keep = usable_rows(cells, what="reference")
    if calibration_cells > 0 and np.unique(labels[keep]).size >= 2:
        art.calibration = calibrate(
            adata,
            spec=spec,
            cells=cells,
            artifacts=art,
            rows=keep,
            labels=labels,
            cell_ids=cell_ids,
            max_cells=calibration_cells,
        )
    blobs = _with_housekeeping(art.blobs(), housekeeping, spec=spec)
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
        text_dim=cells.text_dim,
        progress=progress,
        species_call=cells.species_call or call,
        genes=_top_gene_vocabulary(cells.symbols, spec, data_dir=data_dir),
    )


def _default_housekeeping(spec: CellVectorSpec, *, data_dir: Path | None) -> frozenset[str] | None:
    from indexer._errors import DataError
    from indexer.genes._housekeeping import load_housekeeping

    try:
        return load_housekeeping(spec.known_species(), data_dir=data_dir)
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
    data = read_artifact(store, record, HOUSEKEEPING_FILE, what="the housekeeping list")
    return frozenset(s for s in data.decode().split("\n") if s)


def _datasets(adata: AnnData, dataset_key: str | None, dataset: str) -> np.ndarray:
    if dataset_key is None:
        return np.full(adata.n_obs, dataset, dtype=object)
    if dataset_key not in adata.obs.columns:
        msg = f"reference has no obs column '{dataset_key}'; pass --dataset-key with an existing column."
        raise InputError(msg)
    return adata.obs[dataset_key].astype(str).to_numpy().astype(object)


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
        drop_version_data(store, name, rec)
    store.delete_meta(manifest_key(name))
    store.flush()
