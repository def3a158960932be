"""Refit a reference: a new version whose encoder (and calibration) are fitted again on the stored cells."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from indexer._errors import InputError
from indexer._progress import EpochProgress, Progress, progress_or_log
from indexer.cells._calibration import CALIBRATION_FILE, Calibration, calibration_file
from indexer.reference._calibrate import recalibrate_neighbours
from indexer.reference._read import (
    read_artifact,
    read_cells,
)
from indexer.reference._versions import (
    CELL_VECTOR,
    INPUT_VECTOR,
    VIEW2_VECTOR,
    load_manifest,
    resolve_version,
)
from indexer.reference._write import (
    write_version,
)
from schemas import BuildRecord, RefineParams

if TYPE_CHECKING:
    from indexer.store._protocol import VectorStore

logger = logging.getLogger(__name__)


def refit(
    store: VectorStore,
    name: str,
    *,
    params: RefineParams | None = None,
    progress: Progress | None = None,
) -> BuildRecord:
    """Retrain the SupCon encoder on every cell of the current version and write the result as a new version.

    Each cell's stored vector before refinement (``"input"``, or ``"cell"`` when the reference was never
    refined) and second view are read back from the store, so no AnnData is needed. The old version stays
    queryable by number until pruned. The new version's decision calibration is recomputed from the new
    vectors (leave-self-out neighbours; the Mahalanobis part of the old calibration is kept), so a
    reference built without one gets one.

    Parameters
    ----------
    store
        Store holding the reference.
    name
        Reference name.
    params
        SupCon hyper-parameters (default: the current version's, or the defaults when it was not refined);
        ``method`` is set to ``"supcon"``.
    progress
        Progress callback ``(step, done, total)``; ``None`` (default) logs progress lines at INFO
        (:func:`indexer.log_progress`: shown with ``logging.basicConfig(level=logging.INFO)``).

    Returns
    -------
    The build record of the new version.

    Examples
    --------
    >>> rec = refit(store, "pbmc")  # doctest: +SKIP
    """
    from indexer.cells.supcon import train_supcon

    progress = progress_or_log(progress, logger)
    record = resolve_version(load_manifest(store, name))
    refined = record.spec.refine.method != "none"
    if params is None:
        params = record.spec.refine if refined else RefineParams(method="supcon")
    params = params.model_copy(update={"method": "supcon"})
    source = INPUT_VECTOR if refined else CELL_VECTOR
    has_view2 = record.spec.stores_view2()
    cols = read_cells(store, record, [source, VIEW2_VECTOR] if has_view2 else [source], progress=progress)
    view1 = cols[source]
    view2 = cols[VIEW2_VECTOR] if has_view2 else view1
    labels = cols["label"]
    if np.unique(labels).size < 2:
        msg = f"reference '{name}' has fewer than two labels; SupCon needs at least two to refit."
        raise InputError(msg)
    epochs = EpochProgress(progress, params.epochs)
    model, report = train_supcon(view1, view2, labels, params=params, progress=epochs)
    epochs.finish()
    logger.info("refit %s: %d epochs, validation %s", name, report.epochs_run, report)
    final = model.encode(view1)
    spec = record.spec.model_copy(update={"refine": params})
    blobs = {
        f: read_artifact(store, record, f)
        for f in record.artifacts
        if not f.startswith("supcon.") and f != calibration_file([f])
    }
    blobs.update(model.to_files())
    old_file = calibration_file(record.artifacts)
    old_data = None if old_file is None else read_artifact(store, record, old_file)
    old = None if old_data is None else Calibration.from_json(old_data)
    if np.unique(labels).size >= 2:
        cal = recalibrate_neighbours(old, vectors=final, labels=labels, cell_ids=cols["cell_id"], seed=params.seed)
        blobs[CALIBRATION_FILE] = cal.to_json()
    vectors = {CELL_VECTOR: final, INPUT_VECTOR: view1}
    if has_view2:
        vectors[VIEW2_VECTOR] = view2
    return write_version(
        store,
        name=name,
        label_key=record.label_key,
        spec=spec,
        vectors=vectors,
        cell_ids=cols["cell_id"],
        labels=labels,
        datasets=cols["dataset"],
        top_genes=cols["top_genes"],
        blobs=blobs,
        text_dim=record.text_dim,
        progress=progress,
        species_call=record.species_call,
    )
