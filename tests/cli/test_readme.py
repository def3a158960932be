"""The README's Python example runs as written (with the deterministic encoder instead of MiniLM)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example_runs(tmp_path: Path, data_dir: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    assert "import cellvec as cv" in code.group(1)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "CELLVEC_DATA_DIR": str(data_dir),
        # The default encoder is read from the settings: the fixed random control keeps the test offline-fast.
        "CELLVEC_ENCODER": "random:32",
    }
    out = subprocess.run(
        [sys.executable, "-c", code.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "count" in out.stdout or "cellvec_label" in out.stdout
    assert (tmp_path / "cellvec-readme-store").is_dir()
