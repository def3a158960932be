"""Species inference: prefixes, catalogs, case, mixed data, explicit-species checks."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pytest

from indexer import InputError, MixedSpeciesError, SpeciesMismatchError, infer_species, resolve_species
from schemas import SpeciesCall
from tests.conftest import FAKE_HUMAN as HUMAN
from tests.conftest import FAKE_MOUSE as MOUSE


def test_ensembl_prefix_decides_without_catalogs() -> None:
    call = infer_species(["ENSMUSG00000051951", "ENSMUSG00000025900.4", "Xkr4"], catalogs={})
    assert call.species == "mouse"
    assert call.evidence == "ensembl"
    assert call.share == 1.0
    assert call.summary() == "species: mouse (inferred from 100% of 3 Ensembl gene ids)"


def test_ensembl_human_with_versions() -> None:
    call = infer_species([f"ENSG{i:011d}.{i % 7}" for i in range(30)], catalogs={})
    assert (call.species, call.decisive) == ("human", True)


def test_mixed_ensembl_rejected_in_one_line() -> None:
    names = [f"ENSG{i:011d}" for i in range(40)] + [f"ENSMUSG{i:011d}" for i in range(40)]
    with pytest.raises(MixedSpeciesError, match=r"mix human and mouse genes: 40 of 80 names") as e:
        infer_species(names, catalogs={})
    assert "\n" not in str(e.value)


def test_a_few_foreign_ensembl_ids_are_not_mixed() -> None:
    names = [f"ENSMUSG{i:011d}" for i in range(500)] + [f"ENSG{i:011d}" for i in range(5)]
    call = infer_species(names, catalogs={})
    assert call.species == "mouse"
    assert call.share == pytest.approx(500 / 505)


def test_other_species_ensembl_named() -> None:
    with pytest.raises(InputError, match=r"no gene data for .*ENSRNOG"):
        infer_species([f"ENSRNOG{i:011d}" for i in range(10)], catalogs={})


def test_barnyard_genome_prefixes_mixed() -> None:
    names = [f"GRCh38_{g}" for g in HUMAN[:30]] + [f"mm10___{g}" for g in MOUSE[:30]]
    with pytest.raises(MixedSpeciesError, match="genome-prefixed names"):
        infer_species(names, catalogs={})


def test_upper_cased_mouse_symbols_are_mouse(fake_catalogs: dict) -> None:
    # Upper-cased mouse names resolve (case-insensitively) in mouse far better than in human.
    names = [g.upper() for g in MOUSE]
    call = infer_species(names, catalogs=fake_catalogs)
    assert call.species == "mouse"
    assert call.evidence == "symbols"
    assert call.shares["mouse"] == 1.0
    assert call.shares["human"] < 0.7  # GENE0..49 and CD3E, CD19... also resolve in human


def test_capitalised_mouse_and_upper_human(fake_catalogs: dict) -> None:
    assert infer_species(MOUSE, catalogs=fake_catalogs).species == "mouse"
    assert infer_species(HUMAN, catalogs=fake_catalogs).species == "human"


def test_equal_resolution_falls_back_to_exact_spelling(fake_catalogs: dict) -> None:
    # Both catalogs resolve these case-insensitively; the exact official spelling decides.
    assert infer_species(["CD3E", "CD19", "MS4A1"], catalogs=fake_catalogs).species == "human"
    call = infer_species(["Cd3e", "Cd19", "Ms4a1"], catalogs=fake_catalogs)
    assert call.species == "mouse"
    assert not call.decisive  # three names cannot refute an explicit species


def test_entrez_ids_resolve_in_one_species(fake_catalogs: dict) -> None:
    call = infer_species(["12501", "12478", "99999"], catalogs=fake_catalogs)
    assert (call.species, call.evidence) == ("mouse", "entrez")
    assert call.share == pytest.approx(2 / 3)


def test_mixed_symbols_rejected(fake_catalogs: dict) -> None:
    with pytest.raises(MixedSpeciesError, match=r"human symbols \(e\.g\. GENE0, GENE1\)"):
        infer_species(HUMAN[:40] + MOUSE[:40], catalogs=fake_catalogs)


def test_nothing_resolves(fake_catalogs: dict) -> None:
    with pytest.raises(InputError, match="none of the 2 var_names resolve to human or mouse genes"):
        infer_species(["foo_1", "bar_2"], catalogs=fake_catalogs)


def test_explicit_species_contradicting_data_is_an_error(fake_catalogs: dict) -> None:
    msg = (
        r"^species='human' contradicts the var_names: 100% of its 88 gene names resolve as mouse genes "
        r"against \d+% as human; pass species='mouse' or species='auto'$"
    )
    with pytest.raises(SpeciesMismatchError, match=msg):
        resolve_species(MOUSE, "human", catalogs=fake_catalogs)


def test_mismatch_names_the_cli_option_only_when_there_is_one(fake_catalogs: dict) -> None:
    with pytest.raises(SpeciesMismatchError, match=r"pass --species mouse \(or leave --species out"):
        resolve_species(MOUSE, "human", catalogs=fake_catalogs, option="--species")
    with pytest.raises(SpeciesMismatchError) as e:
        resolve_species(MOUSE, "human", catalogs=fake_catalogs)
    assert "--species" not in str(e.value)
    assert " they " not in str(e.value)


def test_explicit_species_stands_when_data_do_not_decide(fake_catalogs: dict) -> None:
    call = resolve_species(["CD3E", "CD19"], "mouse", catalogs=fake_catalogs)
    assert (call.species, call.evidence) == ("mouse", "given")
    assert "given" in call.summary()


def test_auto_and_agreeing_species(fake_catalogs: dict) -> None:
    assert resolve_species(MOUSE, "auto", catalogs=fake_catalogs).evidence == "symbols"
    assert resolve_species(MOUSE, "mouse", catalogs=fake_catalogs).species == "mouse"
    with pytest.raises(InputError, match="species='rat' is not supported"):
        resolve_species(MOUSE, "rat", catalogs=fake_catalogs)  # type: ignore[arg-type]


def test_call_round_trips_as_a_record() -> None:
    call = SpeciesCall(species="mouse", share=0.98, n_names=19371, evidence="symbols", decisive=True)
    assert SpeciesCall.model_validate(call.model_dump(mode="json")) == call
    assert call.summary() == "species: mouse (inferred from 98% of 19,371 gene names)"
    with pytest.raises(ValueError, match="Extra inputs"):
        SpeciesCall.model_validate({**call.model_dump(), "extra": 1})


# ---------------------------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_actinn_mouse_symbols(actinn: ad.AnnData, data_dir: Path) -> None:
    call = infer_species(actinn.var_names, data_dir=data_dir)
    assert (call.species, call.decisive) == ("mouse", True)
    assert call.summary() == "species: mouse (inferred from 99% of 19,371 gene names)"


@pytest.mark.slow
def test_actinn_upper_cased_is_mouse(actinn: ad.AnnData, data_dir: Path) -> None:
    names = [str(n).upper() for n in actinn.var_names]
    assert "0610007P14RIK" in names or "MT-ND5" in names
    call = infer_species(names, data_dir=data_dir)
    assert call.species == "mouse"
    assert call.shares["mouse"] > 0.95 > 0.85 > call.shares["human"]


@pytest.mark.slow
def test_pbmc68k_is_human(pbmc: ad.AnnData, data_dir: Path) -> None:
    call = infer_species(pbmc.var_names, data_dir=data_dir)
    assert (call.species, call.decisive) == ("human", True)
    assert call.n_names == 765


@pytest.mark.slow
def test_pbmc_plus_actinn_is_mixed(pbmc: ad.AnnData, actinn: ad.AnnData, data_dir: Path) -> None:
    names = list(pbmc.var_names) + list(actinn.var_names[:765])
    with pytest.raises(MixedSpeciesError, match=r"^var_names mix human and mouse genes: \d+ of 1,530"):
        infer_species(names, data_dir=data_dir)


@pytest.mark.slow
def test_real_mismatch_message(actinn: ad.AnnData, data_dir: Path) -> None:
    with pytest.raises(SpeciesMismatchError, match=r"99% of its 19,371 gene names resolve as mouse"):
        resolve_species(actinn.var_names, "human", data_dir=data_dir)


def test_the_prefix_bound_never_skips_a_pattern_that_matches_more_than_half() -> None:
    """The str.count bound in front of each per-name pattern gives the pattern's own answer on any names."""
    import random
    import re

    from indexer.genes._species import (
        _ENSEMBL,
        _ENTREZ,
        _GENOME,
        _GENOME_STARTS,
        ENSEMBL_STARTS,
        ENTREZ_STARTS,
        at_most_half_start_with,
        more_than_half_match,
    )

    pieces = ["ENSG00000121410", "ENSMUSG00000051951.4", "ENS", "12", "007", "\u0661\u0662", "GRCh38_CD3E",
              "mm10___Cd3e", "hg19_X", "HG38_", "Cd3e", "CD3E", "", "x\x00ENSG00000121410", "ENSG1"]
    rng = random.Random(0)
    for _ in range(2000):
        names = [rng.choice(pieces) for _ in range(rng.randint(1, 7))]
        for pattern, starts in ((_ENSEMBL, ENSEMBL_STARTS), (_ENTREZ, ENTREZ_STARTS)):
            want = sum(1 for v in names if pattern.match(v)) > len(names) / 2
            assert more_than_half_match(names, pattern, starts) == want, names
        if sum(1 for v in names if _GENOME.match(v)) > len(names) / 2:
            assert not at_most_half_start_with(names, _GENOME_STARTS, fold=True), names
    assert at_most_half_start_with(["CD3E", "MS4A1", "ENSG00000121410"], ENSEMBL_STARTS)
    assert not at_most_half_start_with(["\u0661", "x"], ENTREZ_STARTS)  # non-ASCII: the pattern decides
    assert re.compile(r"^\d+$").match("\u0661")  # why: a regex digit is any script's digit
