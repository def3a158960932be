"""A reference carries the gene vectors its queries pool: annotate opens the gene collection only for others.

The carried vectors are the gene collection's own, checked against today's description texts as the
collection's are; a gene not carried, or whose text changed, is read from (or embedded into) the gene
collection as before.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anndata as ad
import numpy as np
import pytest

import indexer.genes._catalog as catalog_module
from annotator import annotate
from annotator._result import AnnotationResult
from indexer import VectorStore, build_reference
from indexer.genes._index import GeneIndex
from indexer.reference import Reference
from schemas import CellVectorSpec
from tests.conftest import forbid_catalog_reads


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the genes asked of the gene collection."""
    seen: list[list[str]] = []
    real = GeneIndex.vectors

    def vectors(self: GeneIndex, symbols: Any, **k: Any) -> Any:
        seen.append([str(s) for s in symbols])
        return real(self, symbols, **k)

    monkeypatch.setattr(GeneIndex, "vectors", vectors)
    return seen


def _same(a: AnnotationResult, b: AnnotationResult) -> None:
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.neighbour_ids, b.neighbour_ids)
    np.testing.assert_allclose(a.vectors, b.vectors, rtol=0, atol=1e-6)


def _with_carried(monkeypatch: pytest.MonkeyPatch, edit: Any) -> None:
    real = Reference.artifacts.func  # type: ignore[attr-defined]

    def artifacts(self: Reference) -> Any:
        art = real(self)
        art.gene_vectors = edit(art.gene_vectors)
        return art

    monkeypatch.setattr(Reference, "artifacts", property(artifacts))


@pytest.mark.parametrize("mode", ["hybrid", "paper"])
def test_a_query_of_carried_genes_asks_the_gene_collection_nothing(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, asked: list[list[str]],
    monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=CellVectorSpec(mode=mode,
                    encoder="random:32"))
    carried = Reference.open(store, "r").artifacts.gene_vectors
    assert carried is not None
    assert len(carried.symbols) > 0
    assert carried.vectors.shape == (len(carried.symbols), 32)
    asked.clear()
    res = annotate(query_adata, reference="r", store=store)
    assert asked == []  # same genes as the reference: all carried
    assert res.extra["embedded_genes"] == 0
    with monkeypatch.context() as m:
        _with_carried(m, lambda _g: None)  # as a reference built before carried genes
        old = annotate(query_adata, reference="r", store=store)
    assert asked  # that one asked the gene collection
    _same(res, old)


def test_genes_not_carried_or_with_a_changed_text_are_asked_of_the_gene_collection(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec,
    asked: list[list[str]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    want = annotate(query_adata, reference="r", store=store)
    carried = Reference.open(store, "r").artifacts.gene_vectors
    assert carried is not None
    dropped, changed = str(carried.symbols[0]), str(carried.symbols[1])

    def edit(g: Any) -> Any:
        keep = g.symbols != dropped
        digests = np.where(g.symbols == changed, "0" * 64, g.digests)
        return replace(g, symbols=g.symbols[keep], vectors=g.vectors[keep], digests=digests[keep])

    asked.clear()
    with monkeypatch.context() as m:
        _with_carried(m, edit)
        got = annotate(query_adata, reference="r", store=store)
    assert len(asked) == 1
    assert sorted(asked[0]) == sorted([dropped, changed])
    _same(got, want)


def test_the_genes_asked_of_the_collection_reuse_the_memoised_digests(
    adata: ad.AnnData, query_adata: ad.AnnData, store: VectorStore, fast_spec: CellVectorSpec,
    asked: list[list[str]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few genes not carried are checked with the digests of the whole list: no catalog read for them."""
    monkeypatch.setattr(catalog_module, "_MEMO_MIN", 40)  # the query's ~45 pooled genes: a dataset's list
    build_reference(adata, store=store, name="r", label_key="cell_type", spec=fast_spec)
    want = annotate(query_adata, reference="r", store=store)  # memoises the list's digests
    carried = Reference.open(store, "r").artifacts.gene_vectors
    assert carried is not None
    dropped = str(carried.symbols[0])

    forbid_catalog_reads(monkeypatch)
    asked.clear()
    with monkeypatch.context() as m:
        _with_carried(m, lambda g: replace(g, symbols=g.symbols[1:], vectors=g.vectors[1:], digests=g.digests[1:]))
        got = annotate(query_adata, reference="r", store=store)
    assert asked == [[dropped]]
    _same(got, want)
