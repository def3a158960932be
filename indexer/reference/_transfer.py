"""Move references between stores (export to one zip file, import as a new version) and prune old versions.

An export holds the manifest of one version, its cells (vectors and payloads), its artefacts and the gene
vectors its queries need, so an import into an empty store annotates without re-embedding a gene.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer._errors import InputError
from indexer.genes._index import GENE_VECTOR, gene_collection_name, gene_point_id
from indexer.reference._read import (
    read_artifact,
    read_cells,
    vector_names,
)
from indexer.reference._versions import (
    check_reference_name,
    load_manifest,
    manifest_key,
    resolve_version,
    save_manifest,
    version_collection,
)
from indexer.reference._write import (
    drop_version_data,
    write_version,
)
from schemas import BuildRecord, GeneRecord

if TYPE_CHECKING:
    from indexer.store._protocol import VectorStore

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "cellvec-reference"
"""``format`` field of an export file's ``manifest.json``."""
EXPORT_FORMAT_VERSION = 1
_EXPORT_MANIFEST = "manifest.json"


def prune_versions(store: VectorStore, name: str, *, keep: int = 1) -> list[int]:
    """Delete all but the ``keep`` newest finished versions of a reference (the current one always stays).

    The manifest is rewritten first, so readers never see a version whose collection is gone; collections
    left behind by an interrupted prune are deleted by the next one.

    Parameters
    ----------
    store
        Store holding the reference.
    name
        Reference name.
    keep
        Number of finished versions to keep (at least 1).

    Returns
    -------
    The version numbers deleted.

    Examples
    --------
    >>> prune_versions(store, "pbmc", keep=2)  # doctest: +SKIP
    [1, 2]
    """
    if keep < 1:
        msg = f"keep must be at least 1 (got {keep}); the current version is always kept."
        raise InputError(msg)
    manifest = load_manifest(store, name)
    ready = sorted((v.version for v in manifest.versions if v.status == "ready"), reverse=True)
    kept = set(ready[:keep]) | ({manifest.current} if manifest.current is not None else set())
    gone = [v for v in manifest.versions if v.status == "ready" and v.version not in kept]
    if gone:
        left = [v for v in manifest.versions if v not in gone]
        save_manifest(store, manifest.model_copy(update={"versions": left}))
    for rec in gone:
        drop_version_data(store, name, rec)
    listed = {version_collection(name, v.version) for v in manifest.versions if v not in gone}
    prefix = version_collection(name, 0)[:-1]
    for coll in store.collections():
        if coll.startswith(prefix) and coll[len(prefix) :].isdigit() and coll not in listed:
            store.drop_collection(coll)
    store.flush()
    return sorted(v.version for v in gone)


# ------------------------------------------------------------------------------------------ export/import


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _load_npy(data: bytes, what: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        msg = f"{what} in the export file is not a plain numeric array ({e}); export the reference again."
        raise InputError(msg) from e


def export_reference(
    store: VectorStore,
    name: str,
    path: str | os.PathLike[str],
    *,
    version: int | None = None,
    mode: int | None = None,
) -> Path:
    """Write one version of a reference to one portable file (a zip; no pickle anywhere).

    The file holds ``manifest.json`` (format, build record, SHA-256 of every other member),
    ``vectors/<name>.npy`` (one row per cell), ``cells.jsonl`` (payloads, same order), ``artifacts/<file>``
    and the gene vectors the reference's encoder stored (``genes/vectors.npy`` and ``genes/records.jsonl``),
    so an import needs neither the encoder nor the network.

    Parameters
    ----------
    store
        Store holding the reference (may be opened read-only).
    name
        Reference name.
    path
        File to write (replaced atomically).
    version
        Version to export (default: current).
    mode
        Permission bits of the file (e.g. ``0o640``). Default: ``0o666`` less the process umask, as any
        file the user creates (``0o644`` under the usual umask 022: readable by the group), not the
        owner-only ``0o600`` of a temporary file.

    Returns
    -------
    The path written.

    Examples
    --------
    >>> export_reference(store, "pbmc", "pbmc.cellvec")  # doctest: +SKIP
    PosixPath('pbmc.cellvec')
    """
    record = resolve_version(load_manifest(store, name), version)
    names = vector_names(record)
    cols = read_cells(store, record, names)
    members: dict[str, bytes] = {f"vectors/{v}.npy": _npy(cols[v]) for v in names}
    members["cells.jsonl"] = "".join(
        json.dumps(
            {"cell_id": c, "label": lab, "dataset": d, "top_genes": t},
            separators=(",", ":"),
        )
        + "\n"
        for c, lab, d, t in zip(cols["cell_id"], cols["label"], cols["dataset"], cols["top_genes"], strict=True)
    ).encode()
    for f in record.artifacts:
        members[f"artifacts/{f}"] = read_artifact(store, record, f)
    genes = _export_genes(store, record)
    members.update(genes)
    manifest = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "record": record.model_dump(mode="json"),
        "vectors": names,
        "n_cells": len(cols["cell_id"]),
        "files": {m: hashlib.sha256(b).hexdigest() for m, b in members.items()},
    }
    if mode is not None and not 0 <= mode <= 0o777:
        msg = f"mode {mode:#o} is not a file mode; pass permission bits such as 0o644."
        raise InputError(msg)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".cellvec", dir=out.parent)
    os.close(fd)
    try:
        # mkstemp makes the file owner-only; an export is meant to be shared, so give it the usual mode.
        Path(tmp).chmod(_default_mode() if mode is None else mode)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            z.writestr(_EXPORT_MANIFEST, json.dumps(manifest, indent=1))
            for m, b in members.items():
                z.writestr(m, b)
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _default_mode() -> int:
    """Return ``0o666`` less the process umask (the mode ``open()`` would give a new file)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _export_genes(store: VectorStore, record: BuildRecord) -> dict[str, bytes]:
    if not record.spec.uses_text():
        return {}
    collection = gene_collection_name(record.spec.encoder)
    if not store.has_collection(collection):
        return {}
    vecs, recs = [], []
    for batch in store.scroll(collection, with_vectors=[GENE_VECTOR], where={"species": record.spec.species}):
        for p in batch:
            vecs.append(p.vectors[GENE_VECTOR])
            recs.append(json.dumps(p.payload, separators=(",", ":")) + "\n")
    if not vecs:
        return {}
    return {
        "genes/vectors.npy": _npy(np.vstack(vecs).astype(np.float32)),
        "genes/records.jsonl": "".join(recs).encode(),
    }


def import_reference(
    store: VectorStore, path: str | os.PathLike[str], *, name: str | None = None, replace: bool = False
) -> BuildRecord:
    """Load a file written by :func:`export_reference` into a store, as a new version of the reference.

    Every member is checked against the SHA-256 in the file's manifest. Gene vectors in the file are added
    to the store's gene collection where it lacks them. A killed import is finished by running it again
    (with the same ``replace``).

    A store that already has a finished reference of that name is left as it is unless ``replace=True``:
    importing would switch the version its users annotate against. With ``replace=True`` the import becomes
    the reference's current version; the older versions stay (``version=`` reaches them) until
    :func:`prune_versions` deletes them.

    Parameters
    ----------
    store
        Target store.
    path
        Export file.
    name
        Name of the reference in the target store (default: the exported name).
    replace
        Import as a new current version of an existing reference of that name.

    Returns
    -------
    The build record of the imported version.

    Raises
    ------
    InputError
        When the store already has a finished reference of that name and ``replace`` is false, or the file
        is not an intact export.

    Examples
    --------
    >>> rec = import_reference(open_store("./other"), "pbmc.cellvec")  # doctest: +SKIP
    """
    src = Path(path)
    members = _read_export(src)
    manifest = json.loads(members[_EXPORT_MANIFEST])
    try:
        record = BuildRecord.model_validate(manifest["record"])
    except ValueError as e:
        msg = f"export file '{src}' has an invalid build record ({e}); export the reference again."
        raise InputError(msg) from e
    target = check_reference_name(name or record.reference)
    _check_import_target(store, target, replace=replace)
    n = int(manifest["n_cells"])
    vectors = {v: _load_npy(members[f"vectors/{v}.npy"], f"vectors/{v}.npy") for v in manifest["vectors"]}
    cells = [json.loads(line) for line in members["cells.jsonl"].decode().splitlines() if line]
    if len(cells) != n or any(a.shape[0] != n for a in vectors.values()):
        msg = f"export file '{src}' is inconsistent: {n} cells announced, other counts found; export it again."
        raise InputError(msg)
    if "genes/vectors.npy" in members:
        _import_genes(store, record, members["genes/vectors.npy"], members["genes/records.jsonl"])
    blobs = {m.removeprefix("artifacts/"): b for m, b in members.items() if m.startswith("artifacts/")}
    missing = sorted(set(record.artifacts) - set(blobs))
    if missing:
        msg = f"export file '{src}' lacks artefacts {', '.join(missing)}; export the reference again."
        raise InputError(msg)
    return write_version(
        store,
        name=target,
        label_key=record.label_key,
        spec=record.spec,
        vectors=vectors,
        cell_ids=np.asarray([c["cell_id"] for c in cells], dtype=object),
        labels=np.asarray([c["label"] for c in cells], dtype=object),
        datasets=np.asarray([c.get("dataset", "") for c in cells], dtype=object),
        top_genes=[c.get("top_genes", []) for c in cells],
        blobs=blobs,
        text_dim=record.text_dim,
    )


def _check_import_target(store: VectorStore, target: str, *, replace: bool) -> None:
    """Refuse to switch an existing reference's current version unless asked to (``replace``)."""
    if replace or store.get_meta(manifest_key(target)) is None:
        return
    manifest = load_manifest(store, target)
    ready = [v.version for v in manifest.versions if v.status == "ready"]
    if not ready:  # only an interrupted build or import: this run finishes it
        return
    msg = (
        f"store '{store.location}' already has reference '{target}' (versions {', '.join(map(str, ready))}, "
        f"current {manifest.current}); pass --as NEW to import it under another name (name= in Python), or "
        "--replace to make it the current version (replace=True; older versions stay until "
        "`cellvec reference prune`)."
    )
    raise InputError(msg)


def _read_export(src: Path) -> dict[str, bytes]:
    if not src.is_file():
        msg = f"export file '{src}' does not exist; pass the file written by `cellvec reference export`."
        raise InputError(msg)
    try:
        with zipfile.ZipFile(src) as z:
            members = {m: z.read(m) for m in z.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        msg = f"'{src}' is not a cellvec export file or is truncated ({e}); export the reference again."
        raise InputError(msg) from e
    try:
        manifest = json.loads(members[_EXPORT_MANIFEST])
    except (KeyError, ValueError) as e:
        msg = f"'{src}' has no readable {_EXPORT_MANIFEST}; it is not a cellvec export file."
        raise InputError(msg) from e
    if manifest.get("format") != EXPORT_FORMAT or manifest.get("format_version") != EXPORT_FORMAT_VERSION:
        msg = (
            f"'{src}' has format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this cellvec reads {EXPORT_FORMAT!r} version {EXPORT_FORMAT_VERSION}: upgrade cellvec or "
            "export again."
        )
        raise InputError(msg)
    for m, digest in manifest.get("files", {}).items():
        if m not in members or hashlib.sha256(members[m]).hexdigest() != digest:
            msg = f"member '{m}' of export file '{src}' is missing or altered (SHA-256 differs); export again."
            raise InputError(msg)
    return members


def _import_genes(store: VectorStore, record: BuildRecord, vectors: bytes, records: bytes) -> None:
    vecs = _load_npy(vectors, "genes/vectors.npy")
    recs = [GeneRecord.model_validate_json(line) for line in records.decode().splitlines() if line]
    collection = gene_collection_name(record.spec.encoder)
    if not store.has_collection(collection):
        store.create_collection(
            collection,
            vectors={GENE_VECTOR: int(vecs.shape[1])},
            payload_indexes={"symbol": "keyword", "species": "keyword"},
        )
    ids = [gene_point_id(r.species, r.symbol) for r in recs]
    have = {p.id for p in store.retrieve(collection, ids, payload=False)}
    rows = [i for i, pid in enumerate(ids) if pid not in have]
    if rows:
        store.upsert(
            collection,
            ids=[ids[i] for i in rows],
            vectors={GENE_VECTOR: vecs[rows]},
            payloads=[recs[i].model_dump() for i in rows],
        )
        store.flush()
    logger.info("imported %d gene vectors (%d already present)", len(rows), len(ids) - len(rows))
