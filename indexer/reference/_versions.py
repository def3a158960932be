"""Reference versions: names, ids and keys, the manifest, and the :class:`Reference` handle."""

from __future__ import annotations

import hashlib
import re
import uuid
from functools import cached_property
from typing import TYPE_CHECKING

from indexer._errors import InputError, StoreError
from schemas import BuildRecord, ReferenceManifest

if TYPE_CHECKING:
    from indexer.cells._artifacts import Artifacts
    from indexer.reference._points import PointTable
    from indexer.store._protocol import VectorStore

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAMESPACE = uuid.UUID("3b0c1f7e-9a55-5d1e-a0c4-7a2f1e9d8c60")
_NAMESPACE_BYTES = _NAMESPACE.bytes

HOUSEKEEPING_FILE = "housekeeping.txt"
"""Artefact holding the housekeeping symbols removed from SupCon's second view, one per line."""
CELL_VECTOR = "cell"
"""Named vector that queries search: the cell's final (fused, refined) vector."""


INPUT_VECTOR = "input"
"""Named vector holding the cell's vector before refinement (kept only when refined)."""


VIEW2_VECTOR = "view2"
"""Named vector holding SupCon's second view (housekeeping genes removed)."""


TOP_GENES_FILE = "top_genes.txt"
"""Artefact listing the gene symbols that a version's payloads name by number (line ``i``: gene id ``i``)."""


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
    """Return the point id of a reference cell: a UUIDv5 of ``(reference, cell_id)``.

    Computed as :func:`uuid.uuid5` does (RFC 4122: SHA-1 of namespace and name, version 5, RFC variant)
    without building ``UUID`` objects, which cost more than the hash on a million cells.
    """
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{reference}\x1f{cell_id}".encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


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
    from indexer.cells._artifacts import Artifacts  # scipy and scikit-learn: not needed to list references
    from indexer.reference._points import points_file

    # the point table is read by annotate alone (Reference.points), not by every handle
    hashes = {f: h for f, h in record.artifacts.items() if points_file([f]) is None}
    blobs = {f: store.get_blob(artifact_key(record.reference, record.version, f)) for f in hashes}
    return Artifacts.from_blobs(blobs, hashes)


class Reference:
    """One version of a reference, opened once: its manifest, build record and fitted artefacts.

    Annotation, cell search and the lifecycle operations take a ``Reference`` (or its name and a store),
    so the manifest is read and the artefacts are verified once per handle, not once per call.

    Parameters
    ----------
    store
        The store that holds the reference.
    manifest
        The reference's manifest.
    record
        The build record of the version this handle reads.

    Examples
    --------
    >>> ref = Reference.open(store, "pbmc")  # doctest: +SKIP
    >>> ref.version, ref.record.labels[:3]  # doctest: +SKIP
    """

    def __init__(self, store: VectorStore, manifest: ReferenceManifest, record: BuildRecord) -> None:
        self.store = store
        self.manifest = manifest
        self.record = record

    @classmethod
    def open(cls, store: VectorStore, name: str, *, version: int | None = None) -> Reference:
        """Open a reference by name; ``version=None`` opens the current version.

        Parameters
        ----------
        store
            The store that holds the reference.
        name
            Reference name; an unknown name lists the references that exist.
        version
            Version to open (default: the current one); an unfinished or unknown one is refused.

        Returns
        -------
        The handle.
        """
        manifest = load_manifest(store, name)
        return cls(store, manifest, resolve_version(manifest, version))

    @property
    def name(self) -> str:
        """The reference's name."""
        return self.manifest.name

    @property
    def version(self) -> int:
        """The version this handle reads."""
        return self.record.version

    @property
    def collection(self) -> str:
        """The store collection that holds this version's cells."""
        return version_collection(self.name, self.version)

    @cached_property
    def artifacts(self) -> Artifacts:
        """The version's fitted artefacts (expression projection, SupCon encoder...), loaded and verified once."""
        return load_artifacts(self.store, self.record)

    @cached_property
    def points(self) -> PointTable | None:
        """The version's point table (label and cell id by point id), verified; ``None`` for older versions."""
        from indexer.reference._points import PointTable, points_file
        from indexer.reference._read import read_artifact

        file = points_file(self.record.artifacts)
        if file is None:
            return None
        return PointTable.from_bytes(read_artifact(self.store, self.record, file, what="the table of its cells"))

    def reopen(self) -> Reference:
        """Return a fresh handle on the current version (after an edit made a new one)."""
        return Reference.open(self.store, self.name)

    def __repr__(self) -> str:
        cells = self.record.n_cells
        return f"Reference({self.name!r}, version={self.version}, cells={cells}, store={self.store.location!r})"
