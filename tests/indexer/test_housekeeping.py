from __future__ import annotations

from pathlib import Path

import pytest

from indexer import InputError, Settings
from indexer.genes import load_housekeeping


@pytest.mark.slow
def test_human_default_list_is_eisenberg() -> None:
    hk = load_housekeeping("human", data_dir=Settings().data_dir)
    assert 3_700 < len(hk) <= 3_804
    assert {"PSMB2", "CHMP2A", "VCP", "EMC7"} <= hk
    assert "RHO" not in hk


@pytest.mark.slow
def test_mouse_default_list_is_hrt_atlas() -> None:
    hk = load_housekeeping("mouse", data_dir=Settings().data_dir)
    assert len(hk) > 3_000
    assert {"Psmb2", "Chmp2a", "Vcp", "Emc7"} <= hk
    assert "Rbpms" not in hk
    assert all(s[:1].isupper() or s[:1].isdigit() or s.startswith("mt-") for s in hk)


@pytest.mark.slow
def test_user_list_is_resolved_to_official_symbols(tmp_path: Path) -> None:
    plain = tmp_path / "hk.txt"
    plain.write_text("gapdh\nactb\n\n# comment\nNOT_A_GENE\n")
    assert load_housekeeping("human", path=plain, data_dir=Settings().data_dir) == {
        "GAPDH",
        "ACTB",
        "NOT_A_GENE",
    }
    tsv = tmp_path / "hk.tsv"
    tsv.write_text("gene\tscore\nTusc5\t1\nRbpms\t2\n")
    assert load_housekeeping("mouse", path=tsv, data_dir=Settings().data_dir) == {"Trarg1", "Rbpms"}


def test_bad_user_list(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist; give a file with one symbol per line"):
        load_housekeeping("human", path=tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="holds no gene names"):
        load_housekeeping("human", path=empty)
