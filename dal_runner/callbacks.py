"""Hydra callbacks. Register in conf/config.yaml:

    hydra:
      callbacks:
        report:
          _target_: dal_runner.callbacks.ReportOnMultirunEnd

or for one sweep: `dal-run -m ... +hydra.callbacks.report._target_=dal_runner.callbacks.ReportOnMultirunEnd`.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("dal_runner")


class ReportOnMultirunEnd(Callback):
    """At the end of a sweep, run `dal-report <sweep dir>` (same files as the command, in <sweep dir>/report).

    A report that fails never fails the sweep: it is logged as a warning, and the runs stay
    in place for a later `dal-report`.
    """

    def __init__(self, reference: Optional[Sequence[str]] = None, alpha: float = 0.05, out: Optional[str] = None):
        self.reference = list(reference) if reference else None
        self.alpha = alpha
        self.out = out

    def argv(self, sweep_dir: str) -> List[str]:
        argv = [str(sweep_dir), "--alpha", str(self.alpha)]
        if self.out:
            argv += ["--out", str(self.out)]
        if self.reference:
            argv += ["--reference", *map(str, self.reference)]
        return argv

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            from dal_runner import report

            sweep_dir = str(config.hydra.sweep.dir)
            status = report.main(self.argv(sweep_dir))
            if status != 0:
                log.warning("dal-report on %s ended with status %s (the message is above); "
                            "run `dal-report %s` again once fixed", sweep_dir, status, sweep_dir)
        except Exception as e:  # a report must never turn a finished sweep into a failed one
            log.warning("dal-report at the end of the sweep failed: %s: %s", type(e).__name__, e)
