"""Progress of long steps as plain lines, written once for the library's logging and the CLI's logs.

Every long step calls a :data:`Progress` callback ``(step, done, total)``. Without one, the library logs
the lines below at INFO on its logger (``logging.basicConfig(level=logging.INFO)`` shows them, as
scanpy's ``settings.verbosity`` does); the CLI draws bars on a terminal and writes these lines when its
stderr is a file or a pipe, where bars would leave carriage returns and cursor escapes in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""Progress callback: ``(step, done, total)``."""


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


class ProgressLines:
    """A :data:`Progress` callback that writes a step's progress as plain lines.

    One line when a step starts, then at most one every ``every`` seconds, and one when it ends. The rate
    is measured from the step's first report (work done before it is not counted), and only after half a
    second, so a first batch never shows as millions per second.

    Parameters
    ----------
    write
        Called with each line (no newline), e.g. ``logger.info`` or ``click.echo``.
    every
        Seconds between two lines of the same step.
    clock
        Time source (tests pass a fake one).

    Examples
    --------
    >>> lines = []
    >>> report = ProgressLines(lines.append, every=10.0)
    >>> report("embedding genes", 0, 1408)
    >>> lines
    ['embedding genes: 0/1,408 (0%)']
    """

    def __init__(self, write: Callable[[str], None], *, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write
        self.every = every
        self.clock = clock
        self._start: dict[str, tuple[float, int]] = {}
        self._last: dict[str, float] = {}
        self._ended: set[str] = set()

    def rate(self, step: str, done: int) -> float | None:
        """Return the step's items per second since its first report, or ``None`` until it is measurable."""
        start = self._start.get(step)
        if start is None:
            return None
        elapsed = self.clock() - start[0]
        if elapsed < 0.5 or done <= start[1]:
            return None
        return (done - start[1]) / elapsed

    def __call__(self, step: str, done: int, total: int) -> None:
        """Record ``done`` of ``total`` for ``step``; write a line when one is due."""
        now = self.clock()
        if step not in self._start or (step in self._ended and done < total):
            self._start[step] = (now, done)  # a new step, or the same step started again
            self._ended.discard(step)
            self._last[step] = now
            self.write(self.line(step, done, total))
            if total and done >= total:
                self._ended.add(step)
            return
        if step in self._ended:
            return
        if total and done >= total:
            self._ended.add(step)
            elapsed = now - self._start[step][0]
            self.write(f"{self.line(step, done, total)} in {_duration(elapsed)}")
        elif now - self._last[step] >= self.every:
            self._last[step] = now
            self.write(self.line(step, done, total))

    def line(self, step: str, done: int, total: int) -> str:
        """Return ``"step: done/total (pct%), rate/s, about ETA left"`` (the parts that are known)."""
        text = f"{step}: {done:,}/{total:,}" + (f" ({100 * done // total}%)" if total else "")
        rate = self.rate(step, done)
        if rate is not None:
            text += f", {rate:,.1f}/s" if rate < 100 else f", {rate:,.0f}/s"
            if total and done < total:
                text += f", about {_duration((total - done) / rate)} left"
        return text


def log_progress(logger: logging.Logger, *, every: float = 10.0) -> Progress:
    """Return a :data:`Progress` callback that logs :class:`ProgressLines` at INFO on ``logger``.

    Parameters
    ----------
    logger
        Where the lines go (e.g. ``logging.getLogger("indexer")``).
    every
        Seconds between two lines of the same step.

    Returns
    -------
    The callback.
    """
    lines = ProgressLines(lambda text: logger.info("%s", text), every=every)

    def report(step: str, done: int, total: int) -> None:
        if logger.isEnabledFor(logging.INFO):
            lines(step, done, total)

    return report


def progress_or_log(progress: Progress | None, logger: logging.Logger) -> Progress:
    """Return ``progress``, or, when it is ``None``, a callback that logs progress at INFO on ``logger``."""
    return progress if progress is not None else log_progress(logger)


class EpochProgress:
    """Turn SupCon's per-epoch callback (a dict of statistics) into ``progress("training SupCon", epoch, epochs)``.

    Parameters
    ----------
    progress
        The step callback.
    epochs
        The most epochs training may run (early stopping may end it sooner: :meth:`finish` then reports the
        step as ended at the last epoch run).
    """

    STEP = "training SupCon (epochs)"

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.progress = progress
        self.epochs = epochs
        self.last = 0
        progress(self.STEP, 0, epochs)

    def __call__(self, stats: dict[str, float]) -> None:
        """Report one finished epoch."""
        self.last = int(stats["epoch"])
        self.progress(self.STEP, self.last, self.epochs)

    def finish(self) -> None:
        """Report the end of training (stopped early: at the last epoch run)."""
        if self.last < self.epochs:
            self.progress(self.STEP, self.last, self.last)
