"""Progress a person can follow: a rich bar on a terminal, plain log lines otherwise.

The one-line log per round always goes through `logging` (Hydra writes it to the run's log
file too). On a terminal the console handlers are routed through the bar's console, so the
lines scroll above the live bar instead of tearing it.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RoundProgress:
    """The bar counts rounds done (of those the budget allows) and names the round's phase."""

    def __init__(self, progress: Optional[Progress], total_rounds: int, rounds_done: int):
        self._progress = progress
        self._task = progress.add_task("rounds", total=total_rounds, completed=rounds_done) if progress else None

    def update(self, rounds_done: int, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=rounds_done, description=status)


class Heartbeat:
    """A log line during a long training, at most one per `every` seconds, so that a log without
    a terminal (a SLURM job's) shows how far it is; a training shorter than that says nothing."""

    def __init__(self, what: str, epochs: int, every: float = 30.0):
        self.what, self.epochs, self.every = what, epochs, every
        self.started = self.last = time.perf_counter()

    def __call__(self, epoch: int, loss: float) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every and epoch < self.epochs:
            logging.getLogger("dal_runner").info("%s: epoch %d/%d, loss %.4f, %.0fs", self.what, epoch, self.epochs,
                                                 loss, now - self.started)
            self.last = now


class FileOnly(logging.Filter):
    """Keeps records logged with extra={"file_only": True} (the traceback of a user's custom query
    strategy) off the terminal; the run's dal-run.log has them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def logged_to_file() -> bool:
    """Whether the root logger writes a file (Hydra's dal-run.log; none with hydra/job_logging=stdout
    or disabled): where it does not, a traceback meant for the file goes to the terminal (with
    disabled, nowhere: Hydra's config disables the loggers that exist)."""
    import os

    return any(isinstance(h, logging.FileHandler) and h.baseFilename != os.path.abspath(os.devnull)
               for h in logging.getLogger().handlers)  # pytest's handler of no --log-file writes to devnull


def file_only_off_the_console() -> None:
    """FileOnly on every console handler of the root logger (Hydra's, whichever hydra/job_logging
    made it), once, where a file handler has those records: called at each job's start."""
    if not logged_to_file():
        return
    for handler in logging.getLogger().handlers:
        if _is_console(handler) and not any(isinstance(f, FileOnly) for f in handler.filters):
            handler.addFilter(FileOnly())


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


@contextmanager
def round_progress(total_rounds: int, rounds_done: int, enabled: Optional[bool] = None) -> Iterator[RoundProgress]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield RoundProgress(None, total_rounds, rounds_done)
        return
    console = Console(stderr=True)
    root = logging.getLogger()
    swapped = [h for h in root.handlers if _is_console(h)]
    rich_handler = RichHandler(console=console, show_path=False, show_level=False, show_time=False,
                               markup=False, highlighter=NullHighlighter())
    if logged_to_file():  # the terminal's, as the handlers it stands in for
        rich_handler.addFilter(FileOnly())
    for h in swapped:
        root.removeHandler(h)
    root.addHandler(rich_handler)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            yield RoundProgress(progress, total_rounds, rounds_done)
    finally:
        root.removeHandler(rich_handler)
        for h in swapped:
            root.addHandler(h)
