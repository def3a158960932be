"""Settings come from CELLVEC_* variables (and OPENAI_*), arguments win, bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from indexer import Settings


def test_the_environment_fills_what_arguments_do_not(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CELLVEC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("cellvec_store", "/elsewhere")  # names match without regard to case
    monkeypatch.setenv("CELLVEC_SEARCH_PROCESSES", "3")
    monkeypatch.setenv("CELLVEC_NOT_A_SETTING", "x")  # ignored
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.store == "/elsewhere"
    assert s.search_processes == 3
    assert s.openai_api_key is not None
    assert s.openai_api_key.get_secret_value() == "sk-env"
    given = Settings(search_processes=1, OPENAI_API_KEY=None)
    assert given.search_processes == 1
    assert given.openai_api_key is None


def test_a_bad_value_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLVEC_SEARCH_PROCESSES", "0")
    with pytest.raises(ValidationError, match="search_processes"):
        Settings()


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CELLVEC_STORE", "CELLVEC_SEARCH_PROCESSES", "CELLVEC_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    s = Settings()
    assert s.store == "./cellvec-store"
    assert s.search_processes is None
