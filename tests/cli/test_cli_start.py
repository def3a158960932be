"""The CLI starts without the heavy libraries (issue 16): checked by what a fresh process imports, not by time.

``benchmarks/scale/bench_cli_start.py`` measures the start itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cellvec.cli import main
from cellvec.cli._app import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("anndata", "pandas", "scipy", "sklearn", "torch", "scanpy", "sentence_transformers", "h5py", "tqdm")


def _imported_by(argv: list[str], cwd: Path) -> dict[str, object]:
    """Run ``main(argv)`` in a fresh interpreter; return its exit code and which HEAVY modules it loaded."""
    code = (
        "import json, sys; from cellvec.cli import main; code = main(sys.argv[1:]);"
        f"print(json.dumps({{'code': code, 'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_help_imports_no_heavy_library_and_not_the_library(tmp_path: Path) -> None:
    code = (
        "import json, sys; from cellvec.cli import main; main(['--help']);"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('schemas', 'indexer', 'annotator', 'pydantic', 'numpy', 'qdrant_edge') and m != 'indexer._errors'"
        " and m != 'indexer' and m != 'indexer._lazy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert "Commands:" in out.stdout
    assert json.loads(out.stdout.splitlines()[-1]) == []
    assert _imported_by(["--help"], tmp_path) == {"code": 0, "heavy": []}


def test_reference_list_imports_no_heavy_library(tmp_path: Path) -> None:
    from indexer import open_store

    open_store(str(tmp_path / "store")).close()  # an empty store: list must still read its manifest keys
    seen = _imported_by(["reference", "list", "--store", str(tmp_path / "store")], tmp_path)
    assert seen == {"code": 0, "heavy": []}


@pytest.mark.parametrize("group", sorted(COMMANDS))
def test_lazy_help_lines_are_the_commands_own(group: str) -> None:
    """The one-line help a group shows without importing a command is that command's docstring line."""
    parent = cli if not group else cli.commands[group]
    assert isinstance(parent, click.Group)
    ctx = click.Context(parent)
    for name, (_, line) in COMMANDS[group].items():
        cmd = parent.get_command(ctx, name)
        assert cmd is not None, f"{group} {name}: its module registers no such command"
        assert click.Command(name, help=line).get_short_help_str(1000) == cmd.get_short_help_str(1000), name
    # every registered command is listed, so none is missing from `--help`
    assert set(parent.commands) == set(COMMANDS[group]) | {n for n in parent.commands if n in COMMANDS}


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in (*COMMANDS[""], "genes", "reference", "search"):
        assert f"  {name} " in out
    assert main(["reference", "--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS["reference"]:
        assert f"  {name} " in out


def test_the_collector_waits_while_a_command_imports_and_is_restored_after(tmp_path: Path) -> None:
    import gc

    from cellvec.cli._common import IMPORT_COLLECTOR, imports_done

    gc.unfreeze()  # as in a fresh process, whatever commands this test process ran before
    before = gc.get_threshold()
    with IMPORT_COLLECTOR:
        assert gc.get_threshold() == (100_000, *before[1:])
        imports_done()
        assert gc.get_threshold() == before
        frozen = gc.get_freeze_count()
        assert frozen > 0  # the imports: later full collections skip them
        imports_done()  # a second call changes nothing
        assert gc.get_threshold() == before
    assert gc.get_threshold() == before
    with IMPORT_COLLECTOR:  # a command that never says so gets them back when it ends
        assert gc.get_threshold()[0] == 100_000
        later = [[] for _ in range(1000)]
        imports_done()
        assert gc.get_freeze_count() < frozen + 1000  # frozen once a process: the later lists are not pinned
        del later
    assert gc.get_threshold() == before
    code = main(["annotate", "--store", str(tmp_path / "none"), "--reference", "r", "--adata", str(tmp_path / "a")])
    assert code == 2  # an error: the thresholds are restored all the same
    assert gc.get_threshold() == before
    gc.unfreeze()
