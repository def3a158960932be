"""Species at the annotate level: mouse references without flags, cross-species queries, the refusals."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from annotator import annotate
from indexer import (
    MixedSpeciesError,
    OrthologMappingError,
    SpeciesMismatchError,
    build_reference,
)
from schemas import CellVectorSpec
from tests.conftest import FAST_ENCODER, as_mouse, make_adata


@pytest.fixture
def mouse_ref(edge_store, data_dir: Path) -> str:  # type: ignore[no-untyped-def]
    spec = CellVectorSpec(mode="hybrid", encoder=FAST_ENCODER)
    assert spec.species == "auto"
    rec = build_reference(
        as_mouse(make_adata()), store=edge_store, name="mref", label_key="cell_type", spec=spec
    )
    assert rec.spec.species == "mouse"
    assert rec.species_call is not None
    assert rec.species_call.species == "mouse"
    assert rec.species_call.evidence == "symbols"
    return "mref"


def test_human_query_on_mouse_reference_is_mapped(edge_store, mouse_ref: str) -> None:  # type: ignore[no-untyped-def]
    query = make_adata(10, seed=1)
    res = annotate(query, reference=mouse_ref, store=edge_store, k=5, min_ortholog_genes=20)
    acc = np.mean(res.labels == query.obs["cell_type"].to_numpy())
    assert acc >= 0.9
    out = res.to_adata(query, copy=True)
    params = out.uns["cellvec"]["params"]
    assert params["query_species"]["species"] == "human"
    report = params["orthologs"]
    assert (report["query_species"], report["reference_species"]) == ("human", "mouse")
    assert report["n_query_genes"] == query.n_vars
    assert 30 < report["n_mapped"] <= query.n_vars
    assert report["expression_mass_share"] > 0.5


def test_same_species_query_records_no_mapping(edge_store, mouse_ref: str, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    query = as_mouse(make_adata(10, seed=1))
    res = annotate(query, reference=mouse_ref, store=edge_store, k=5)
    assert res.params.orthologs is None
    assert res.params.query_species is not None
    assert res.params.query_species.species == "mouse"


def test_too_few_mapped_genes_refused_in_one_line(edge_store, mouse_ref: str) -> None:  # type: ignore[no-untyped-def]
    query = make_adata(10, seed=1)
    with pytest.raises(
        OrthologMappingError,
        match=r"^only \d+ of the human query's 48 genes map onto mouse genes through HCOP orthologs "
        r"\(at least 200 needed",
    ) as e:
        annotate(query, reference=mouse_ref, store=edge_store, k=5)
    assert "\n" not in str(e.value)


def test_little_expression_mapped_refused(edge_store, mouse_ref: str) -> None:  # type: ignore[no-untyped-def]
    query = make_adata(10, seed=1)
    x = query.X.toarray()
    x[:, :3] += 2000  # three genes that map nowhere carry most of the counts
    query.X = x
    query.var_names = ["NOT_A_GENE_1", "NOT_A_GENE_2", "NOT_A_GENE_3", *query.var_names[3:]]
    with pytest.raises(OrthologMappingError, match=r"^only \d+% of the human query's expression maps onto mouse"):
        annotate(query, reference=mouse_ref, store=edge_store, k=5, min_ortholog_genes=20)


def test_explicit_query_species_contradicting_names(edge_store, mouse_ref: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpeciesMismatchError, match=r"^species='mouse' contradicts the var_names") as e:
        annotate(make_adata(10, seed=1), reference=mouse_ref, store=edge_store, query_species="mouse")
    assert "--species" not in str(e.value)
    assert " they " not in str(e.value)


def test_mixed_species_query_refused(edge_store, mouse_ref: str, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    human = make_adata(10, seed=1)
    mouse = as_mouse(human)
    mouse = mouse[:, np.asarray(mouse.var_names) != np.asarray(human.var_names)]
    both = ad.concat([human, mouse], axis=1)
    both.obs = human.obs
    with pytest.raises(MixedSpeciesError, match=r"^var_names mix human and mouse genes: \d+ of \d+ names"):
        annotate(both, reference=mouse_ref, store=edge_store)


def test_explicit_reference_species_contradiction_names_the_library_argument(edge_store, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    spec = CellVectorSpec(mode="paper", encoder=FAST_ENCODER, species="human")
    with pytest.raises(SpeciesMismatchError, match=r"pass species='mouse' or species='auto'$"):
        build_reference(
            as_mouse(make_adata()), store=edge_store, name="x", label_key="cell_type", spec=spec
        )
