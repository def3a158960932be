import numpy as np
import pytest
import scipy.sparse as sp

from annotator import UNKNOWN, annotate
from indexer import InputError, StoreError, build_reference
from indexer.reference import load_manifest, reference_vectors
from schemas import CellVectorSpec, PoolingParams
from tests.conftest import FAST_ENCODER, make_adata


@pytest.mark.parametrize("mode", ["paper", "genept", "expression", "hybrid"])
def test_build_then_annotate_recovers_labels(store, adata, query_adata, mode):
    spec = CellVectorSpec(mode=mode, encoder=FAST_ENCODER)
    rec = build_reference(adata, store=store, name="ref", label_key="cell_type", spec=spec)
    assert rec.n_cells == adata.n_obs
    assert rec.labels == {"B cell": 30, "Monocyte": 30, "NK cell": 30, "T cell": 30}
    # Label recovery, novelty off: query_adata is another seed, a shifted batch in the neighbour similarity
    # (tests/annotator/test_decide_annotate.py covers the novelty check).
    res = annotate(query_adata, reference="ref", store=store, k=5, unknown_alpha=0)
    acc = np.mean(res.labels == query_adata.obs["cell_type"].to_numpy())
    assert acc >= 0.95
    assert res.confidence.min() > 0
    assert res.neighbour_ids.shape == (query_adata.n_obs, 5)
    assert np.all(np.diff(res.neighbour_scores, axis=1) <= 1e-6)


def test_query_encoded_exactly_like_reference(edge_store, adata):
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER, pooling=PoolingParams(idf=True, whiten=True))
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=spec)
    vecs, _, ids = reference_vectors(edge_store, "ref")
    res = annotate(adata, reference="ref", store=edge_store, k=1)
    order = {c: i for i, c in enumerate(adata.obs_names)}
    np.testing.assert_allclose(res.vectors[[order[c] for c in ids]], vecs, atol=1e-5)
    # Each reference cell finds itself first.
    assert (res.neighbour_ids[:, 0] == np.asarray(adata.obs_names)).all()


def test_result_to_adata_writes_documented_fields(edge_store, adata, query_adata, fast_spec):
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec)
    res = annotate(query_adata, reference="ref", store=edge_store, k=5, min_confidence=0.5)
    out = res.to_adata(query_adata, copy=True)
    for key in ("cellvec_label", "cellvec_confidence", "cellvec_similarity", "cellvec_reason"):
        assert key in out.obs
    assert out.obsm["X_cellvec"].shape == (query_adata.n_obs, 32)
    params = out.uns["cellvec"]["params"]
    assert params["reference"] == "ref"
    assert params["version"] == 1
    assert params["k"] == 5
    assert "cellvec_label" not in query_adata.obs


def test_unknown_threshold_and_cells_without_described_genes(edge_store, adata, fast_spec):
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec)
    q = make_adata(5, seed=3)
    x = q.X.toarray()
    x[0, :] = 0  # a cell without any expressed gene
    q.X = sp.csr_matrix(x)
    res = annotate(q, reference="ref", store=edge_store, k=10, min_confidence=1.0)
    assert res.labels[0] == UNKNOWN
    assert res.reasons[0] == "no described expressed gene"
    low = res.confidence < 1.0
    assert (res.labels[low] == UNKNOWN).all()
    assert all(r.startswith("confidence below") for r in res.reasons[low & (res.confidence > 0)])


def test_bad_k_unknown_reference_and_encoder_mismatch(edge_store, adata, query_adata, fast_spec):
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec)
    with pytest.raises(InputError, match="k=1000 is larger than reference 'ref'"):
        annotate(query_adata, reference="ref", store=edge_store, k=1000)
    with pytest.raises(InputError, match="k must be at least 1"):
        annotate(query_adata, reference="ref", store=edge_store, k=0)
    with pytest.raises(StoreError, match=r"no reference named 'nope'.*references: ref"):
        annotate(query_adata, reference="nope", store=edge_store)
    with pytest.raises(InputError, match="differs from reference 'ref'"):
        annotate(query_adata, reference="ref", store=edge_store, encoder="minilm")


def test_rebuild_makes_a_new_version_and_keeps_the_old(edge_store, adata, fast_spec):
    build_reference(adata, store=edge_store, name="ref", label_key="cell_type", spec=fast_spec)
    rec2 = build_reference(
        adata[:80].copy(), store=edge_store, name="ref", label_key="cell_type", spec=fast_spec
    )
    man = load_manifest(edge_store, "ref")
    assert rec2.version == 2
    assert man.current == 2
    assert [v.n_cells for v in man.versions] == [120, 80]
    res = annotate(adata, reference="ref", store=edge_store, k=3, version=1)
    assert res.params.version == 1


def test_gene_vectors_are_embedded_once(edge_store, adata, fast_spec):
    from indexer import GeneCatalog, GeneIndex, get_encoder

    index = GeneIndex(edge_store, get_encoder(FAST_ENCODER), GeneCatalog.load("human"))
    symbols = ["CD3E", "MS4A1", "LYZ"]
    v1, found = index.vectors(symbols)
    assert found.all()
    assert index.last_embedded == 3
    v2, _ = index.vectors([*symbols, "GNLY"])
    assert index.last_embedded == 1
    np.testing.assert_allclose(v1, v2[:3])


def test_read_only_annotate_embeds_missing_genes_without_writing(tmp_path, adata, query_adata, fast_spec):
    from indexer import open_store
    from indexer.genes import gene_collection_name
    from tests.conftest import PROGRAMS

    cells = adata.obs["cell_type"] != "NK cell"
    genes = ~adata.var_names.isin(PROGRAMS["NK cell"])
    no_nk = adata[cells, genes].copy()  # the reference never saw the NK genes: they are not embedded
    with open_store(tmp_path / "s") as st:
        build_reference(no_nk, store=st, name="ref", label_key="cell_type", spec=fast_spec)
        n_genes = st.count(gene_collection_name(FAST_ENCODER))
    with open_store(tmp_path / "s", read_only=True, create=False) as ro:
        res = annotate(query_adata, reference="ref", store=ro, k=3)
    assert res.labels.size == query_adata.n_obs
    assert (res.labels != UNKNOWN).all()
    with open_store(tmp_path / "s") as st:
        assert st.count(gene_collection_name(FAST_ENCODER)) == n_genes  # nothing written by the reader
