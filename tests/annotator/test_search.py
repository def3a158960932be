"""Gene and cell similarity search: symbol or text, filters, centroids, summaries, exact query encoding."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from annotator import annotate
from annotator._cell_search import label_centroids, label_summary, parse_where, search_cells, typical_cells
from annotator._gene_search import gene_search, search_genes
from indexer import GeneCatalog, GeneIndex, InputError, StoreError, VectorStore, build_reference, get_encoder
from indexer.genes import GENE_VECTOR, gene_collection_name, gene_point_id, text_sha256
from indexer.reference import reference_vectors, version_collection
from schemas import CellVectorSpec, GeneHit

FAST = "random:32"


@pytest.fixture
def catalog(data_dir: Path) -> GeneCatalog:
    return GeneCatalog.load("human", data_dir=data_dir)


@pytest.fixture
def gene_store(store: VectorStore, adata: ad.AnnData, catalog: GeneCatalog) -> VectorStore:
    """The 48 genes of the synthetic AnnData embedded with the fast encoder."""
    GeneIndex(store, get_encoder(FAST), catalog).vectors(list(adata.var_names))
    return store


def _stored_vectors(store: VectorStore) -> dict[str, np.ndarray]:
    coll = gene_collection_name(FAST)
    return {
        p.payload["symbol"]: p.vectors[GENE_VECTOR]
        for batch in store.scroll(coll, with_vectors=[GENE_VECTOR]) for p in batch
    }


def _brute_force(store: VectorStore, query: np.ndarray, *, exclude: str | None = None) -> list[str]:
    vecs = _stored_vectors(store)
    q = query / np.linalg.norm(query)
    sims = {s: float(v @ q) for s, v in vecs.items() if s != exclude}
    return sorted(sims, key=lambda s: -sims[s])


# ------------------------------------------------------------------------------------------------ genes


def test_symbol_query_returns_the_nearest_other_genes(gene_store: VectorStore) -> None:
    hits = search_genes("CD3E", store=gene_store, encoder=FAST, limit=5)
    assert all(isinstance(h, GeneHit) for h in hits)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert "CD3E" not in [h.symbol for h in hits]
    expected = _brute_force(gene_store, _stored_vectors(gene_store)["CD3E"], exclude="CD3E")[:5]
    assert [h.symbol for h in hits] == expected
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True)
    assert all(h.species == "human" for h in hits)


def test_hits_carry_name_and_first_summary_sentence(gene_store: VectorStore) -> None:
    hits = search_genes("CD3D", store=gene_store, encoder=FAST, limit=47)
    hit = next(h for h in hits if h.symbol == "MS4A1")
    assert hit.name == "membrane spanning 4-domains A1"
    assert hit.summary == "This gene encodes a member of the membrane-spanning 4A gene family."
    assert hit.entrez_id == 931


@pytest.mark.parametrize(("query", "symbol"), [("cd3e", "CD3E"), ("CD45", "PTPRC"), ("916", "CD3E")])
def test_case_variants_synonyms_and_ids_resolve_to_the_symbol(
    gene_store: VectorStore, query: str, symbol: str
) -> None:
    res = gene_search(query, store=gene_store, encoder=FAST, limit=3)
    assert res.kind == "symbol"
    assert res.symbol == symbol
    assert symbol not in [h.symbol for h in res.hits]


def test_unknown_symbol_is_refused_with_suggestions(gene_store: VectorStore) -> None:
    with pytest.raises(InputError, match=r"'CD3EE' is not a known human gene symbol.*did you mean CD3E"):
        search_genes("CD3EE", store=gene_store, encoder=FAST)


def test_free_text_is_embedded_with_the_collection_encoder(gene_store: VectorStore) -> None:
    text = "T cell receptor signalling"
    res = gene_search(text, store=gene_store, encoder=FAST, limit=4)
    assert res.kind == "text"
    assert res.symbol is None
    expected = _brute_force(gene_store, get_encoder(FAST).embed_batch([text])[0])[:4]
    assert [h.symbol for h in res.hits] == expected


def test_one_plain_lower_case_word_is_free_text(gene_store: VectorStore) -> None:
    assert gene_search("apoptosis", store=gene_store, encoder=FAST).kind == "text"


def test_kind_forces_the_reading(gene_store: VectorStore) -> None:
    assert gene_search("CD3E", store=gene_store, encoder=FAST, kind="text").kind == "text"
    with pytest.raises(InputError, match="several words, not a gene symbol"):
        gene_search("CD3E CD3D", store=gene_store, encoder=FAST, kind="symbol")
    with pytest.raises(InputError, match="'apoptosis' is not a known human gene"):
        gene_search("apoptosis", store=gene_store, encoder=FAST, kind="symbol")


def test_known_gene_that_is_not_indexed_is_embedded_for_the_query(gene_store: VectorStore) -> None:
    n_before = gene_store.count(gene_collection_name(FAST))
    res = gene_search("RHO", store=gene_store, encoder=FAST, limit=3)
    assert res.kind == "symbol"
    assert not res.query_indexed
    assert len(res.hits) == 3
    assert gene_store.count(gene_collection_name(FAST)) == n_before  # a search never writes


def test_search_covers_one_species(gene_store: VectorStore) -> None:
    coll = gene_collection_name(FAST)
    cd3e = _stored_vectors(gene_store)["CD3E"]
    text = "Cd3e: CD3 antigen, epsilon polypeptide."
    payload = {"symbol": "Cd3e", "species": "mouse", "entrez_id": 12501, "text": text,
               "text_sha256": text_sha256(text), "source": "full_name", "encoder": FAST}
    gene_store.upsert(coll, ids=[gene_point_id("mouse", "Cd3e")], vectors={GENE_VECTOR: cd3e[None, :]},
                      payloads=[payload])
    res = gene_search("CD3E", store=gene_store, encoder=FAST, limit=47)
    assert res.n_indexed == 48
    assert "Cd3e" not in [h.symbol for h in res.hits]


def test_missing_gene_collection_says_how_to_fill_it(store: VectorStore) -> None:
    with pytest.raises(StoreError, match=r"no human gene vectors for encoder 'random:32'.*genes index --all"):
        search_genes("CD3E", store=store, encoder=FAST)


def test_limit_must_be_positive(gene_store: VectorStore) -> None:
    with pytest.raises(InputError, match="limit must be at least 1"):
        search_genes("CD3E", store=gene_store, encoder=FAST, limit=0)


def test_empty_query_is_refused(gene_store: VectorStore) -> None:
    with pytest.raises(InputError, match="gene query is empty"):
        search_genes("  ", store=gene_store, encoder=FAST)


# ------------------------------------------------------------------------------------------------ cells


@pytest.fixture
def ref_store(store: VectorStore, adata: ad.AnnData, fast_spec: CellVectorSpec) -> VectorStore:
    build_reference(adata, store=store, name="ref", label_key="cell_type", spec=fast_spec,
                    dataset_key="batch")
    return store


def _with_low_count_cell(query: ad.AnnData) -> ad.AnnData:
    """The query with its first cell scaled down to small counts (max <= 20: would look normalised alone)."""
    x = query.X.toarray()
    x[0] = np.minimum(np.floor(x[0] / 4), 5)
    out = query.copy()
    out.X = sp.csr_matrix(x)
    return out


def test_query_cell_is_encoded_exactly_as_annotate_does(
    ref_store: VectorStore, query_adata: ad.AnnData
) -> None:
    query = _with_low_count_cell(query_adata)
    res = annotate(query, reference="ref", store=ref_store, k=5)
    for i in (0, 3):
        cell = str(query.obs_names[i])
        hits = search_cells(query, cell=cell, reference="ref", store=ref_store, limit=5)
        assert [h.cell_id for h in hits] == list(res.neighbour_ids[i])
        np.testing.assert_allclose([h.score for h in hits], res.neighbour_scores[i], rtol=1e-5, atol=1e-6)


def test_cell_neighbours_share_the_query_type(ref_store: VectorStore, query_adata: ad.AnnData) -> None:
    cell = str(query_adata.obs_names[15])  # a B cell
    hits = search_cells(query_adata, cell=cell, reference="ref", store=ref_store, limit=10)
    assert len(hits) == 10
    assert {h.label for h in hits} == {str(query_adata.obs["cell_type"].iloc[15])}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_where_filters_on_label_dataset_and_top_genes(
    ref_store: VectorStore, query_adata: ad.AnnData
) -> None:
    cell = str(query_adata.obs_names[0])  # a T cell
    hits = search_cells(query_adata, cell=cell, reference="ref", store=ref_store, where={"label": "NK cell"})
    assert hits
    assert {h.label for h in hits} == {"NK cell"}
    hits = search_cells(query_adata, cell=cell, reference="ref", store=ref_store, limit=60,
                        where={"dataset": "b1", "label": ["T cell", "B cell"]})
    assert len(hits) == 30
    assert {h.dataset for h in hits} == {"b1"}
    assert {h.label for h in hits} == {"T cell", "B cell"}
    hits = search_cells(query_adata, cell=cell, reference="ref", store=ref_store, limit=200,
                        where={"top_genes": "MS4A1"})
    payloads = _decoded_payloads(ref_store)
    assert {h.cell_id for h in hits} == {p["cell_id"] for p in payloads if "MS4A1" in p["top_genes"]}
    assert {h.label for h in hits} >= {"B cell"}
    assert not search_cells(query_adata, cell=cell, reference="ref", store=ref_store, where={"top_genes": "NOPE1"})


def _decoded_payloads(store: VectorStore) -> list[dict[str, object]]:
    """The reference's payloads with their top genes as symbols (they are stored as gene ids)."""
    from indexer.reference import decode_top_genes, gene_codes, load_manifest, resolve_version

    codes = gene_codes(store, resolve_version(load_manifest(store, "ref"), None))
    payloads = [dict(p.payload) for b in store.scroll(version_collection("ref", 1)) for p in b]
    assert codes is None or all(isinstance(g, int) for p in payloads for g in p["top_genes"])
    for p in payloads:
        p["top_genes"] = decode_top_genes(p["top_genes"], codes)
    return payloads


def test_where_refuses_unknown_fields_and_labels(ref_store: VectorStore, query_adata: ad.AnnData) -> None:
    cell = str(query_adata.obs_names[0])
    with pytest.raises(InputError, match=r"cannot filter on 'tissue': reference cells store .*label"):
        search_cells(query_adata, cell=cell, reference="ref", store=ref_store, where={"tissue": "blood"})
    with pytest.raises(InputError, match="has no label 'B-cell'; did you mean B cell"):
        search_cells(query_adata, cell=cell, reference="ref", store=ref_store, where={"label": "B-cell"})


def test_unknown_cell_id_is_refused(ref_store: VectorStore, query_adata: ad.AnnData) -> None:
    with pytest.raises(InputError, match="--adata has no cell 'cell999'"):
        search_cells(query_adata, cell="cell999", reference="ref", store=ref_store)


def test_search_cells_reads_an_older_version(
    ref_store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    build_reference(adata[adata.obs["cell_type"] != "NK cell"].copy(), store=ref_store, name="ref",
                    label_key="cell_type", spec=fast_spec)
    cell = str(query_adata.obs_names[35])  # an NK cell
    assert "NK cell" not in {h.label for h in search_cells(query_adata, cell=cell, reference="ref",
                                                             store=ref_store)}
    old = search_cells(query_adata, cell=cell, reference="ref", store=ref_store, version=1)
    assert {h.label for h in old} == {"NK cell"}


def test_typical_cells_are_nearest_to_the_label_centroid(ref_store: VectorStore) -> None:
    vecs, labels, ids = reference_vectors(ref_store, "ref")
    centroid = vecs[labels == "Monocyte"].mean(axis=0)
    centroid /= np.linalg.norm(centroid)
    sims = vecs @ centroid
    mono = np.flatnonzero(labels == "Monocyte")
    expected = ids[mono[np.argsort(-sims[mono])]][:5]
    hits = typical_cells("Monocyte", reference="ref", store=ref_store, limit=5)
    assert [h.cell_id for h in hits] == list(expected)
    np.testing.assert_allclose([h.score for h in hits], np.sort(sims[mono])[::-1][:5], rtol=1e-5)


def test_typical_cells_any_label_and_unknown_label(ref_store: VectorStore) -> None:
    hits = typical_cells("T cell", reference="ref", store=ref_store, limit=120, any_label=True)
    assert {h.label for h in hits} == {"T cell", "B cell", "Monocyte", "NK cell"}
    assert {h.label for h in hits[:30]} == {"T cell"}
    with pytest.raises(InputError, match="no label 'Tcell'; did you mean T cell"):
        typical_cells("Tcell", reference="ref", store=ref_store)


def test_label_centroids_match_reference_vectors(ref_store: VectorStore) -> None:
    vecs, labels, _ = reference_vectors(ref_store, "ref")
    got = label_centroids(ref_store, version_collection("ref", 1), ["B cell", "absent"])
    assert set(got) == {"B cell"}
    c = vecs[labels == "B cell"].mean(axis=0)
    np.testing.assert_allclose(got["B cell"], c / np.linalg.norm(c), rtol=1e-5, atol=1e-6)


def test_label_summary_counts_cells_and_top_genes(ref_store: VectorStore) -> None:
    summary = label_summary(reference="ref", store=ref_store, top=4)
    assert [s.label for s in summary] == ["B cell", "Monocyte", "NK cell", "T cell"]
    assert [s.n_cells for s in summary] == [30, 30, 30, 30]
    payloads = _decoded_payloads(ref_store)
    for s in summary:
        assert len(s.top_genes) == 4
        for g in s.top_genes:
            n = sum(g.symbol in p["top_genes"] for p in payloads if p["label"] == s.label)
            assert g.n_cells == n
            assert g.fraction == pytest.approx(n / 30)
        counts = [g.n_cells for g in s.top_genes]
        assert counts == sorted(counts, reverse=True)
    b = next(s for s in summary if s.label == "B cell")
    b_markers = {"MS4A1", "CD79A", "CD79B", "CD19", "PAX5", "BLK", "CD22", "FCRL1"}
    assert {g.symbol for g in b.top_genes} <= b_markers


def test_label_summary_filters(ref_store: VectorStore) -> None:
    summary = label_summary(reference="ref", store=ref_store, where={"dataset": "b1"})
    assert sum(s.n_cells for s in summary) == 60
    assert label_summary(reference="ref", store=ref_store, where={"label": "T cell"})[0].n_cells == 30


def test_parse_where() -> None:
    got = parse_where(["label=rod", "label=cone", "dataset=d1"])
    assert got == {"label": ["rod", "cone"], "dataset": "d1"}
    assert parse_where(["label=T cell=x"]) == {"label": "T cell=x"}
    with pytest.raises(InputError, match="--where 'label' is not field=value"):
        parse_where(["label"])


def test_references_that_store_gene_symbols_still_search_and_summarise(
    edge_store: VectorStore, adata: ad.AnnData, query_adata: ad.AnnData, fast_spec: CellVectorSpec
) -> None:
    """References written before gene ids store the symbols themselves, and no top_genes.txt artefact."""
    from indexer.reference import TOP_GENES_FILE, load_manifest
    from indexer.reference._versions import save_manifest

    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec, dataset_key="batch")
    symbols = {p["cell_id"]: p["top_genes"] for p in _decoded_payloads(edge_store)}
    coll = version_collection("ref", 1)
    for cell, genes in symbols.items():  # rewrite every payload as an old build did
        edge_store.set_payload(coll, {"top_genes": genes}, where={"cell_id": cell})
    man = load_manifest(edge_store, "ref")
    (rec,) = man.versions
    old = rec.model_copy(update={"artifacts": {f: h for f, h in rec.artifacts.items() if f != TOP_GENES_FILE}})
    save_manifest(edge_store, man.model_copy(update={"versions": [old]}))
    cell = str(query_adata.obs_names[0])
    hits = search_cells(query_adata, cell=cell, reference="ref", store=edge_store, limit=200,
                        where={"top_genes": "MS4A1"})
    assert {h.cell_id for h in hits} == {c for c, g in symbols.items() if "MS4A1" in g}
    assert hits
    summary = label_summary(reference="ref", store=edge_store, top=4)
    b = next(s for s in summary if s.label == "B cell")
    assert b.top_genes[0].n_cells == sum(b.top_genes[0].symbol in symbols[p] for p in symbols
                                         if p in set(adata.obs_names[adata.obs["cell_type"] == "B cell"]))


def test_label_summary_ranks_distinctive_genes_over_the_other_labels(
    edge_store: VectorStore, fast_spec: CellVectorSpec
) -> None:
    from tests.conftest import PROGRAMS, SHARED, make_adata

    ref = make_adata(20, seed=7)
    x = ref.X.toarray()
    x[:, list(ref.var_names).index("MALAT1")] += 200  # the most expressed gene of every cell, as in real data
    ref.X = sp.csr_matrix(x)
    build_reference(ref, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec)
    summary = label_summary(reference="ref", store=edge_store, top=5)
    payloads = _decoded_payloads(edge_store)
    assert all("MALAT1" in p["top_genes"] for p in payloads)  # frequent everywhere, so distinctive nowhere
    for s in summary:
        assert len(s.distinctive_genes) == 5
        assert {g.symbol for g in s.distinctive_genes} <= set(PROGRAMS[s.label])
        assert not {g.symbol for g in s.distinctive_genes} & set(SHARED)
        for g in s.distinctive_genes:
            share = {lab: np.mean([g.symbol in p["top_genes"] for p in payloads if p["label"] == lab])
                     for lab in PROGRAMS}
            other = np.mean([v for lab, v in share.items() if lab != s.label])
            assert g.fraction == pytest.approx(share[s.label])
            assert g.other_fraction == pytest.approx(other)
            assert share[s.label] > other
            assert g.enrichment == pytest.approx(share[s.label] * np.log((share[s.label] + 0.01) / (other + 0.01)))
        scores = [g.enrichment for g in s.distinctive_genes]
        assert scores == sorted(scores, reverse=True)
    only = label_summary(reference="ref", store=edge_store, where={"label": "T cell"})
    assert only[0].distinctive_genes == []  # nothing to compare with
