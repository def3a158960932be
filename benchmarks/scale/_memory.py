"""Memory and disk measurements for the scale benchmark (Linux ``/proc``; ``resource`` elsewhere)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def _status_kb(field_name: str) -> float:
    with Path("/proc/self/status").open() as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    return float("nan")


def peak_rss_mb() -> float:
    """Return this process's peak resident memory (``VmHWM``) in MB, or NaN where /proc is absent."""
    try:
        return _status_kb("VmHWM") / 1024
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); return whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Sample this process's anonymous and file-backed resident memory in a thread; keep the peaks (MB).

    ``VmHWM`` counts both: memory-mapped files (Qdrant's on-disk vectors, ``.npy`` memmaps) count while their
    pages are resident, although the kernel can drop them under pressure. The split says which is which.

    Examples
    --------
    >>> with RssSampler() as s:  # doctest: +SKIP
    ...     work()
    >>> s.peak_anon_mb, s.peak_file_mb  # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.1) -> None:
        import threading

        self.interval = interval
        self.peak_anon_mb = 0.0
        self.peak_file_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        """Read the current figures once."""
        try:
            anon, file = _status_kb("RssAnon") / 1024, _status_kb("RssFile") / 1024
        except OSError:
            return
        if not np.isnan(anon):  # no /proc figures on this system
            self.peak_anon_mb = max(self.peak_anon_mb, anon)
            self.peak_file_mb = max(self.peak_file_mb, file)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def dir_size_mb(path: Path) -> float:
    """Return the disk space (allocated blocks, so sparse files count what they use) under ``path`` in MB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(Path(root) / f).st_blocks * 512  # noqa: PTH116
            except OSError:
                continue
    return total / 2**20
