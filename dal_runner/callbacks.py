"""Hydra callbacks (both registered in conf/config.yaml). Register one by hand:

    hydra:
      callbacks:
        report:
          _target_: dal_runner.callbacks.ReportOnMultirunEnd

or for one sweep: `dal-run -m ... +hydra.callbacks.report._target_=dal_runner.callbacks.ReportOnMultirunEnd`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("dal_runner")

# (run folder, reason, number of runs in the sweep) of every run of the last sweep that did not
# complete; `dal-run` exits with status 1 when it is not empty
FAILED_RUNS: List[Tuple[str, str, int]] = []

# sweep folder (absolute) -> the folders of the jobs `dal-run -m` launches into it, set by its
# preflight: a sweep launched again into its folder with fewer jobs leaves the others' folders
# there, and its end counts and reports only its own. Not set (a sweep started otherwise, or a
# hydra.sweep.subdir that only the job knows): every run folder under the sweep folder.
LAUNCHED_JOBS: Dict[str, List[Path]] = {}

# job number -> final accuracy, of the jobs of the sweep that dal-run -m launches again into its
# folder which already completed with the same config: set by its preflight; the launchers do not
# start them again (launchers.sweep_launch), the sweep's end counts and reports them
KEPT_JOBS: Dict[int, float] = {}


def sweep_jobs(sweep: Path) -> Tuple[List[Path], List[Path]]:
    """(this launch's job folders, run folders under `sweep` from an earlier launch)."""
    found = sorted({p.parent.parent for p in sweep.glob("**/.hydra/config.yaml")} - {sweep / "report"})
    launched = LAUNCHED_JOBS.get(os.path.abspath(sweep))
    if launched is None or not all(j.is_dir() for j in launched):
        # a subdir that resolves otherwise in the job (${now:...}, a resolver): the folders found
        return found, []
    return list(launched), [f for f in found if f not in set(launched)]


def run_status(folder: Path) -> dict:
    """A run folder's status.json ({"state": "missing status.json"} where it cannot be read)."""
    from dal_runner.io import STATUS_JSON, read_json_object

    status = read_json_object(folder / STATUS_JSON)  # a JSON null or list: None too
    return status if status is not None else {"state": "missing status.json"}


class SweepStatus(Callback):
    """At the end of a sweep, read every job's status.json: log how many completed, and list the
    others (with their round and error) for `dal-run` to report and exit non-zero.

    Jobs never raise into Hydra's sweeper (one failing job must not stop or hide the others),
    so this is where a sweep learns that some of its runs failed. Before a single run, it notes
    which folders exist where the preflight could not (`on_run_start`).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A single run the preflight left to Hydra (a config tree of one's own: --config-dir): the
        nearest folder of its run folder that exists before Hydra makes it, so that a run that cannot
        start removes only the folders Hydra made (`job_control.remove_failed_start`)."""
        from dal_runner.preflight import PREFLIGHT

        if PREFLIGHT.get("existing") is not None:
            return
        try:
            folder = Path(os.path.abspath(str(config.hydra.run.dir)))
        except Exception:  # a path only the job resolves: the run folder alone is removed
            return
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        PREFLIGHT["existing"] = folder

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        FAILED_RUNS.clear()
        sweep = Path(os.path.abspath(str(config.hydra.sweep.dir)))
        try:  # submitit's launchers make their folder template itself (.submitit/%j), and leave it empty
            template = Path(str(config.hydra.launcher.submitit_folder))
            if "%j" in template.name:
                template.rmdir()  # only if empty
                template.parent.rmdir()  # and .submitit itself where no job was submitted (all kept)
        except Exception:  # not a submitit launcher (no such key), not empty, or something in it
            pass
        folders, earlier = sweep_jobs(sweep)
        bad = []
        for folder in folders:
            status = run_status(folder)
            if status.get("state") != "completed":
                where = f" in round {status['round']}" if status.get("round") is not None else ""
                bad.append((str(folder), f"{status.get('state')}{where}: {status.get('error', '')}".rstrip(": ")))
        FAILED_RUNS.extend((folder, reason, len(folders)) for folder, reason in bad)
        if not folders:  # no job got as far as its folder (a launcher that could not start them)
            expected = len(LAUNCHED_JOBS.get(str(sweep), [])) or 1
            FAILED_RUNS.append((str(sweep), "no job of the sweep wrote its run folder: none started (the "
                                "launcher's own logs: .submitit/ there)", expected))
        log.info("sweep %s: %d of %d runs completed", sweep, len(folders) - len(bad), len(folders))
        if earlier:
            log.info("sweep %s: %d run folder(s) there are from an earlier launch, not this one (%s): left out "
                     "of this count and of the report; `dal-report %s` includes them", sweep, len(earlier),
                     ", ".join(str(f.relative_to(sweep)) for f in earlier[:5]) + (", ..." if len(earlier) > 5 else ""),
                     sweep)


class ReportOnMultirunEnd(Callback):
    """At the end of a sweep, run `dal-report <sweep dir>` (same files as the command, in <sweep dir>/report).

    A report that fails never fails the sweep: it is logged as a warning, and the runs stay
    in place for a later `dal-report`.
    """

    def __init__(self, reference: Optional[Sequence[str]] = None, alpha: float = 0.05, out: Optional[str] = None,
                 strategy: Optional[Sequence[str]] = None):
        self.reference = list(reference) if reference else None
        self.alpha = alpha
        self.out = out
        self.strategy = list(strategy) if strategy else None  # dal-report --strategy (e.g. trainer.objective)

    def argv(self, sweep_dir: str) -> List[str]:
        """`dal-report <sweep dir>`; with run folders of an earlier launch there, this launch's
        job folders, written to <sweep dir>/report all the same."""
        jobs, earlier = sweep_jobs(Path(os.path.abspath(sweep_dir)))
        argv = [str(sweep_dir)] if not earlier else [*map(str, jobs), "--out",
                                                      self.out or str(Path(sweep_dir) / "report")]
        argv += ["--alpha", str(self.alpha)]
        if self.out and not earlier:
            argv += ["--out", str(self.out)]
        if self.reference:
            argv += ["--reference", *map(str, self.reference)]
        if self.strategy:
            argv += ["--strategy", *map(str, self.strategy)]
        return argv

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            from dal_runner import report

            sweep_dir = str(config.hydra.sweep.dir)
            jobs, _ = sweep_jobs(Path(os.path.abspath(sweep_dir)))
            if not any(run_status(job).get("state") == "completed" for job in jobs):
                log.info("sweep %s: no run completed, so no report", sweep_dir)  # the reasons follow
                return
            status = report.main(self.argv(sweep_dir), reference_configured=bool(self.reference))
            if status != 0:
                log.warning("dal-report on %s ended with status %s (the message is above); "
                            "run `dal-report %s` again once fixed", sweep_dir, status, sweep_dir)
        except Exception as e:  # a report must never turn a finished sweep into a failed one
            log.warning("dal-report at the end of the sweep failed: %s: %s", type(e).__name__, e)
