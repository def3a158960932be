"""annotator's face loads each module on first use: ``annotate`` pays for no search, plot or explanation code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import annotator

ROOT = Path(__file__).resolve().parents[2]


def test_annotate_loads_no_search_plot_or_explain_module() -> None:
    code = (
        "import json, sys; from annotator import annotate;"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('annotator.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert "annotator._annotate" in loaded
    for lazy in ("annotator._cell_search", "annotator._gene_search", "annotator._plot", "annotator._explain"):
        assert lazy not in loaded


def test_every_exported_name_resolves_and_unknown_names_fail() -> None:
    for name in annotator.__all__:
        assert getattr(annotator, name) is not None
    assert set(annotator.__all__) <= set(dir(annotator))
    with pytest.raises(AttributeError, match="no_such_name"):
        annotator.no_such_name  # noqa: B018
