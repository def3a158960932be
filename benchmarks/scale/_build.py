"""Building the scale benchmark's reference: chunked builds and a shared gene-vector cache."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.scale._cells import LABEL_KEY, REFERENCE

if TYPE_CHECKING:
    from anndata import AnnData

    from indexer import Progress, VectorStore
    from schemas import BuildRecord, CellVectorSpec

logger = logging.getLogger(__name__)


def build_chunked(
    ref: AnnData,
    *,
    store: VectorStore,
    spec: CellVectorSpec,
    chunk: int,
    fit_cells: int = 50_000,
    vectors_to: Path | None = None,
    progress: Progress | None = None,
) -> BuildRecord:
    """Build reference :data:`REFERENCE` with ``build_reference(..., chunk_size=chunk)``.

    Pooling and writing ``chunk`` cells at a time, a million cells need a fraction of the memory of one
    pass (which holds every intermediate array of every cell at once). Any spec: what it fits on the
    reference (expression view, class head, text projection) is fitted on a stratified sample of
    ``fit_cells`` cells.

    Parameters
    ----------
    ref
        Labelled reference cells (``obs['cell_type']``).
    store
        Target store (the reference must not exist yet).
    spec
        Cell vector spec.
    chunk
        Cells per chunk.
    fit_cells
        Cells the artefacts are fitted on (see :func:`indexer.build_reference`).
    vectors_to
        Also save the cell vectors, in ``obs`` order, to this ``.npy`` file (for exact search); pooled again
        chunk by chunk after the build, so the build's time and memory are the product's alone.
    progress
        Progress callback, called with ``"writing cells"``.

    Returns
    -------
    The build record of version 1, ready.
    """
    from indexer import build_reference, encode_cells
    from indexer.reference import load_artifacts

    rec = build_reference(
        ref,
        store=store,
        name=REFERENCE,
        label_key=LABEL_KEY,
        spec=spec,
        chunk_size=chunk,
        fit_cells=fit_cells,
        progress=progress,
    )
    if vectors_to is not None:
        n = ref.n_obs
        art = load_artifacts(store, rec)
        # Plain writes, not a memmap: mapped pages would count in this process's resident memory.
        with Path(vectors_to).open("wb") as out:
            header = {"descr": "<f4", "fortran_order": False, "shape": (n, rec.dim)}
            np.lib.format.write_array_header_1_0(out, header)
            for start in range(0, n, chunk):
                cells, _ = encode_cells(
                    ref[start : start + chunk],
                    spec=rec.spec,
                    store=store,
                    artifacts=art,
                    what="reference",
                    query_species=rec.spec.species,
                )
                out.write(np.ascontiguousarray(cells.final, dtype="<f4").tobytes())
                del cells
    return rec


def seed_gene_vectors(store: VectorStore, symbols: Sequence[str], encoder: str, *, cache: str | None) -> int:
    """Give ``store`` the vectors of ``symbols`` for ``encoder``; return how many texts were embedded.

    With a ``cache`` store, genes are embedded there once (only those missing) and copied into ``store``
    with their records, so that each size's build starts with every gene cached as a user's second build
    would. Without one, they are embedded into ``store`` directly.
    """
    from indexer import GeneCatalog, GeneIndex, get_encoder, open_store
    from indexer.genes import GENE_VECTOR, gene_point_id

    enc = get_encoder(encoder)
    catalog = GeneCatalog.load("human")
    if cache is None:
        index = GeneIndex(store, enc, catalog)
        index.vectors(symbols)
        return index.last_embedded
    with open_store(cache) as src:
        index = GeneIndex(src, enc, catalog)
        _, found = index.vectors(symbols)
        ids = [gene_point_id("human", s) for s, ok in zip(symbols, found, strict=True) if ok]
        points = src.retrieve(index.collection, ids, with_vectors=[GENE_VECTOR])
    dest = GeneIndex(store, enc, catalog)
    dest._ensure_collection()
    store.upsert(
        dest.collection,
        ids=[p.id for p in points],
        vectors={GENE_VECTOR: np.stack([p.vectors[GENE_VECTOR] for p in points]).astype(np.float32)},
        payloads=[p.payload for p in points],
    )
    store.flush()
    return index.last_embedded
