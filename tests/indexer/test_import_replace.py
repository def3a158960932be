"""``import_reference`` into a store that has the reference already, and the mode of export files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anndata as ad
import pytest

from indexer import InputError, VectorStore, build_reference, export_reference, import_reference, prune_versions
from indexer.reference import load_manifest
from schemas import CellVectorSpec


def test_import_over_an_existing_reference_needs_a_new_name_or_replace(
    adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec, tmp_path: Path
) -> None:
    build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    path = export_reference(edge_store, "r", tmp_path / "r.cellvec")
    with pytest.raises(InputError, match=r"already has reference 'r' \(versions 1, current 1\); pass --as NEW .* "
                                         r"or --replace"):
        import_reference(edge_store, path)
    assert load_manifest(edge_store, "r").current == 1  # nothing switched
    assert [v.version for v in load_manifest(edge_store, "r").versions] == [1]
    copy = import_reference(edge_store, path, name="copy")
    assert (copy.reference, copy.version) == ("copy", 1)
    replaced = import_reference(edge_store, path, replace=True)
    assert (replaced.reference, replaced.version) == ("r", 2)
    manifest = load_manifest(edge_store, "r")
    assert manifest.current == 2
    assert [v.version for v in manifest.versions] == [1, 2]  # the old version stays until prune
    assert prune_versions(edge_store, "r", keep=1) == [1]


def test_exports_are_readable_by_the_group_unless_asked(
    adata: ad.AnnData, edge_store: VectorStore, fast_spec: CellVectorSpec, tmp_path: Path
) -> None:
    build_reference(adata, store=edge_store, name="r", label_key="cell_type", spec=fast_spec)
    old = os.umask(0o022)
    try:
        default = export_reference(edge_store, "r", tmp_path / "a.cellvec")
        asked = export_reference(edge_store, "r", tmp_path / "b.cellvec", mode=0o640)
        os.umask(0o077)
        private = export_reference(edge_store, "r", tmp_path / "c.cellvec")
    finally:
        os.umask(old)
    assert stat.S_IMODE(default.stat().st_mode) == 0o644
    assert stat.S_IMODE(asked.stat().st_mode) == 0o640
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # no temporary file left
    with pytest.raises(InputError, match="not a file mode"):
        export_reference(edge_store, "r", tmp_path / "d.cellvec", mode=0o1777)
