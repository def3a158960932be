"""main()'s handling of what commands raise: one ``error:`` line and an exit code, never a traceback."""

from __future__ import annotations

import logging
import warnings

import pytest
from pydantic import ValidationError

import cellvec.cli as cli_module
from cellvec.cli import main
from indexer import InputError
from schemas import PoolingParams


def raising(exc: BaseException):
    def run(*args: object, **kwargs: object) -> None:
        raise exc

    return run


def validation_error() -> ValidationError:
    try:
        PoolingParams(top_n=-1)
    except ValidationError as e:
        return e
    raise AssertionError


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (InputError("reference is empty; pass cells"), 2, "error: reference is empty; pass cells"),
        (KeyboardInterrupt(), 130, "error: interrupted; the store is consistent and the next run resumes."),
    ],
)
def test_errors_become_one_line(exc, code, line, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli_module.cli, "main", raising(exc))
    assert main(["reference", "list"]) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_validation_error_names_the_field(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli_module.cli, "main", raising(validation_error()))
    assert main([]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: invalid value for top_n: ")


def test_usage_errors_are_one_line_exit_2(capsys) -> None:
    assert main(["annotate", "--k", "many"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ")
    assert "'many' is not a valid integer" in line
    assert main(["no-such-command"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "No such command 'no-such-command'" in line


def test_library_warnings_are_one_line_each(monkeypatch, capsys) -> None:
    def warn(*args: object, **kwargs: object) -> None:
        logging.getLogger("indexer.encoders._openai").warning("RateLimitError, HTTP 429; retrying in %.1f s", 1.0)
        warnings.warn(
            "12 reference cells have no described expressed gene\nand were left out.",
            UserWarning,
            stacklevel=1,
        )

    monkeypatch.setattr(cli_module.cli, "main", warn)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: RateLimitError, HTTP 429; retrying in 1.0 s",
        "warning: 12 reference cells have no described expressed gene",
    ]
    assert not logging.getLogger("indexer").handlers  # nothing left behind after main()


@pytest.mark.parametrize("alpha", ["0.7", "-0.1"])
def test_unknown_alpha_outside_its_range_is_one_line(alpha, tmp_path, capsys) -> None:
    argv = ["annotate", "--store", str(tmp_path / "s"), "--reference", "r", "--adata", str(tmp_path / "q.h5ad")]
    assert main([*argv, "--unknown-alpha", alpha]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert (
        line
        == f"error: --unknown-alpha {float(alpha):g} is outside [0, 0.5]; pass 0.01 (the default) or 0 to turn it off."
    )
