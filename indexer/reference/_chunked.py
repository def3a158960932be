"""Build a reference chunk by chunk in bounded memory: artefacts fitted on a stratified sample, then each chunk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer._errors import InputError
from indexer.cells import stratified_sample
from indexer.cells._encode import Progress, encode_cells
from indexer.cells._validate import _check_unique
from indexer.reference._calibrate import calibrate
from indexer.reference._versions import HOUSEKEEPING_FILE
from indexer.reference._write import (
    VersionWriter,
    stored_vectors,
    top_genes_of,
    usable_rows,
)
from schemas import BuildRecord, CellVectorSpec, SpeciesCall

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer.store._protocol import VectorStore


def _top_gene_vocabulary(symbols: np.ndarray, spec: CellVectorSpec, *, data_dir: Path | None) -> list[str]:
    """Return the genes payloads name by id: the reference's genes and every described gene of its species.

    Top genes are described genes, so cells added later (same species, other genes) find theirs too.
    """
    genes = {str(s) for s in symbols if s}
    if spec.uses_text() and spec.species != "auto":
        from indexer.genes._catalog import GeneCatalog

        genes.update(GeneCatalog.load(spec.known_species(), data_dir=data_dir).symbols())
    return sorted(genes)


def _with_housekeeping(
    blobs: dict[str, bytes], housekeeping: frozenset[str] | None, *, spec: CellVectorSpec
) -> dict[str, bytes]:
    if housekeeping is not None and spec.uses_text():
        blobs[HOUSEKEEPING_FILE] = "\n".join(sorted(housekeeping)).encode()
    return blobs


def _build_in_chunks(
    adata: AnnData,
    *,
    store: VectorStore,
    name: str,
    label_key: str,
    spec: CellVectorSpec,
    columns: tuple[np.ndarray, np.ndarray, np.ndarray],
    data_dir: Path | None,
    gene_column: str | None,
    housekeeping: frozenset[str] | None,
    chunk_size: int,
    fit_cells: int,
    calibration_cells: int,
    progress: Progress | None,
    species_call: SpeciesCall | None,
    genes: np.ndarray | None = None,
) -> BuildRecord:
    """Fit the artefacts on a stratified sample, then pool and write ``chunk_size`` cells at a time.

    ``columns``: cell ids, labels, datasets per cell.
    """
    if chunk_size < 1:
        msg = f"build_reference: chunk_size must be a positive number of cells, got {chunk_size}."
        raise InputError(msg)
    if fit_cells < 1:
        msg = f"build_reference: fit_cells must be a positive number of cells, got {fit_cells}."
        raise InputError(msg)
    # Each chunk checks its own cell ids; repeats across chunks would overwrite each other.
    _check_unique(adata.obs_names, kind="cell", what="reference", fix="call `adata.obs_names_make_unique()` first")
    cell_ids, labels, datasets = columns
    n = adata.n_obs
    if n == 0:
        msg = "build_reference: the reference has no cells; pass an AnnData with at least one cell."
        raise InputError(msg)
    sample = stratified_sample(labels, fit_cells, seed=spec.refine.seed)
    fit_adata = adata if sample.size == n else adata[sample]
    # Fitting reads only these cells, so its memory is bounded by fit_cells, not by the reference.
    fitted, art = encode_cells(
        fit_adata,
        spec=spec,
        store=store,
        data_dir=data_dir,
        gene_column=gene_column,
        housekeeping=housekeeping,
        fit_labels=labels[sample],
        with_view2=spec.stores_view2(),
        progress=progress,
        what="reference",
        genes=genes,
    )
    spec = fitted.spec or spec
    fit_rows = np.flatnonzero(fitted.valid)
    if calibration_cells > 0 and np.unique(labels[sample][fit_rows]).size >= 2:
        art.calibration = calibrate(
            fit_adata,
            spec=spec,
            cells=fitted,
            artifacts=art,
            rows=fit_rows,
            labels=labels[sample],
            cell_ids=cell_ids[sample],
            max_cells=calibration_cells,
        )
    text_dim = fitted.text_dim
    genes = _top_gene_vocabulary(fitted.symbols, spec, data_dir=data_dir)  # every chunk has the same genes
    del fitted, fit_adata
    blobs = _with_housekeeping(art.blobs(), housekeeping, spec=spec)
    writer: VersionWriter | None = None
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        cells, _ = encode_cells(
            adata[start:stop],
            spec=spec,
            store=store,
            artifacts=art,
            data_dir=data_dir,
            gene_column=gene_column,
            housekeeping=housekeeping,
            with_view2=spec.stores_view2(),
            what="reference",
            query_species=spec.species,  # reference cells: checked against the species, never mapped
        )
        keep = usable_rows(cells, what="reference")
        vectors = stored_vectors(cells, keep, spec=spec)
        if writer is None:
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
        rows = start + keep
        writer.write(
            vectors,
            cell_ids=cell_ids[rows],
            labels=labels[rows],
            datasets=datasets[rows],
            top_genes=top_genes_of(cells, keep),
        )
        if progress is not None:
            progress("writing cells", stop, n)
        del cells, vectors
    assert writer is not None  # n > 0
    return writer.finish()
