"""annotate on a read-only store that searches with reader processes gives what one process gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from annotator import annotate
from indexer import build_reference, open_store
from indexer.reference import load_manifest, version_collection
from indexer.store._edge import PARALLEL_MIN_ROWS, EdgeStore
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER, make_adata


def test_annotate_with_two_search_processes_equals_one(tmp_path: Path) -> None:
    root = tmp_path / "store"
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    with open_store(root) as w:
        build_reference(make_adata(), store=w, name="ref", label_key="cell_type", spec=spec)
    query = make_adata(PARALLEL_MIN_ROWS // 4 + 100, seed=2)  # 4 classes: more rows than PARALLEL_MIN_ROWS
    with open_store(root, read_only=True, search_processes=1) as one:
        expected = annotate(query, reference="ref", store=one, k=5)
    with open_store(root, read_only=True, search_processes=2) as two:
        assert isinstance(two, EdgeStore)
        first = annotate(query, reference="ref", store=two, k=5)
        collection = version_collection("ref", load_manifest(two, "ref").current)
        pool = two._readers[collection]
        assert pool.wait_ready() == 1
        second = annotate(query, reference="ref", store=two, k=5)
        assert pool.answered > 0
    for got in (first, second):
        assert (got.labels == expected.labels).all()
        assert (got.neighbour_ids == expected.neighbour_ids).all()
        assert (got.neighbour_labels == expected.neighbour_labels).all()
        np.testing.assert_array_equal(got.neighbour_scores, expected.neighbour_scores)
        np.testing.assert_array_equal(got.confidence, expected.confidence)
