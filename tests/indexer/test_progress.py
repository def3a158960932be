"""Progress lines (issue 16): sane first rates, throttled, one end line; the library logs them at INFO."""

from __future__ import annotations

import logging
import re

import pytest

from indexer import ProgressLines, build_reference, log_progress
from schemas import CellVectorSpec, RefineParams
from tests.conftest import FAST_ENCODER


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_report_shows_no_rate_even_after_a_big_first_batch() -> None:
    clock, lines = Clock(), []
    report = ProgressLines(lines.append, every=10.0, clock=clock)
    report("writing cells", 1_000_000, 3_000_000)  # the first chunk was done before the first report
    clock.now += 1e-6
    report("writing cells", 1_000_001, 3_000_000)
    assert lines == ["writing cells: 1,000,000/3,000,000 (33%)"]
    assert report.rate("writing cells", 1_000_001) is None  # under half a second: not measured yet
    clock.now += 10.0
    report("writing cells", 2_000_000, 3_000_000)
    assert lines[-1] == "writing cells: 2,000,000/3,000,000 (66%), 100,000/s, about 10 s left"


def test_lines_are_throttled_and_the_end_is_written_once() -> None:
    clock, lines = Clock(), []
    report = ProgressLines(lines.append, every=10.0, clock=clock)
    report("embedding genes", 0, 100)
    for done in range(1, 100):
        clock.now += 0.5
        report("embedding genes", done, 100)
    clock.now += 0.5
    report("embedding genes", 100, 100)
    report("embedding genes", 100, 100)
    assert lines[0] == "embedding genes: 0/100 (0%)"
    assert len(lines) == 1 + 4 + 1  # the start, one line per 10 s (at 10, 20, 30, 40 s), the end
    assert lines[-1] == "embedding genes: 100/100 (100%), 2.0/s in 50 s"
    assert all("\r" not in line and "\x1b" not in line for line in lines)


def test_a_step_started_again_starts_a_new_count() -> None:
    clock, lines = Clock(), []
    report = ProgressLines(lines.append, every=10.0, clock=clock)
    report("searching", 10, 10)
    clock.now += 5
    report("searching", 0, 20)
    assert lines == ["searching: 10/10 (100%)", "searching: 0/20 (0%)"]


def test_library_logs_progress_at_info_without_a_callback(
    adata, edge_store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="indexer"):
        build_reference(adata, store=edge_store, name="pbmc", label_key="cell_type",
                        spec=CellVectorSpec(mode="paper", encoder=FAST_ENCODER,
                                            refine=RefineParams(method="supcon", epochs=3)))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("indexer")]
    assert any(line.startswith("writing cells: ") for line in lines)
    assert any(line.startswith("training SupCon (epochs): 0/3") for line in lines)
    assert any(re.match(r"training SupCon \(epochs\): 3/3 \(100%\).* in \d+ s", line) for line in lines)


def test_log_progress_is_silent_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("indexer.test_progress")
    with caplog.at_level(logging.WARNING, logger="indexer"):
        log_progress(logger)("step", 1, 2)
    assert not caplog.records
