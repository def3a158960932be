"""``plot_annotation``: UMAP/PCA panels by label and confidence, a label-count bar chart, atomic PNGs."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from annotator import UNKNOWN, annotate, check_plot_dir, plot_annotation
from annotator._plot import embed_2d, label_colours
from indexer import InputError, VectorStore, build_reference
from schemas import CellVectorSpec

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def result(edge_store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec):
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec)
    return annotate(query_adata, reference="ref", store=edge_store, k=5, min_confidence=0.9)


@pytest.mark.parametrize("embedding", ["pca", pytest.param("umap", marks=pytest.mark.slow)])  # numba: ~1 min
def test_plot_writes_two_pngs_atomically(result, tmp_path: Path, embedding: str) -> None:
    steps: list[tuple[str, int, int]] = []
    got = plot_annotation(result, tmp_path / "figs", embedding=embedding, progress=lambda *a: steps.append(a))
    assert got["embedding"] == embedding
    for key in ("umap", "label_counts"):
        path = Path(got[key])
        assert path.parent == tmp_path / "figs"
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["label_counts.png", "umap.png"]  # no tmp
    assert steps[-1] == ("plotting", 2, 2)


def test_few_cells_fall_back_to_pca(result) -> None:
    for n in (1, 3, 9):
        xy, method = embed_2d(result.vectors[:n], embedding="auto")
        assert method == "pca"
        assert xy.shape == (n, 2)
        assert np.isfinite(xy).all()
    assert embed_2d(result.vectors[:0])[0].shape == (0, 2)


def test_palette_stays_distinct_past_twenty_labels_and_keeps_grey_for_unknown() -> None:
    labels = [f"cluster {i}" for i in range(35)] + [UNKNOWN]
    colours = label_colours(labels)
    named = [colours[s] for s in labels if s != UNKNOWN]
    assert len(set(named)) == 35
    assert colours[UNKNOWN] not in named
    assert len(set(label_colours(["a", "b", UNKNOWN]).values())) == 3


def test_plot_folder_is_checked(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file; pass a folder"):
        check_plot_dir(tmp_path / "file")
    with pytest.raises(InputError, match=r"the folder '.*missing' does not exist; create it first"):
        check_plot_dir(tmp_path / "missing" / "figs")
    assert check_plot_dir(tmp_path / "new") == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # checking creates nothing
