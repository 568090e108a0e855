"""hydra-submitit-launcher's launchers (`hydra/launcher=local`, `=slurm`), with one change: a job
whose process died without a result does not abort the sweep.

The plugin collects the jobs' results in order, and a job that left none (killed by the
out-of-memory killer or SIGKILL, a failed node) raises submitit's UncompletedJobError there: the
sweep stopped with a traceback while its other jobs went on unattended, and neither its end
(which jobs completed) nor its report came. Here such a job is one failed run, as a job that
raised is (dal-run's jobs catch their own errors): its status.json says `failed` and why, the
other jobs' results are still collected, and the sweep ends as usual (the count, the report,
exit status 1).

Only the collection of results is changed, for the time of a sweep (`dal-run -m` wraps it):
submitit's Job.results, which the plugin calls once per job in the order it submitted them, is
wrapped. Everything else (executors, parameters, requeueing) is the plugin's own. (A launcher
subclass would be the natural place, but Hydra takes a launcher only from a module it finds by
scanning the hydra_plugins package, which an editable install of this package cannot add to.)
"""

from __future__ import annotations

import logging
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from hydra.core.utils import JobReturn, JobStatus

log = logging.getLogger("dal_runner")


def _died(run_dir: Optional[Path], error: BaseException) -> JobReturn:
    """The result of a job that left none: its run folder marked failed (if known)."""
    reason = ("the job's process ended without a result: killed (out of memory, SIGKILL) or its node failed; "
              "the same command with hydra.sweep.dir continues it from its last round")
    detail = " ".join(str(error).split())
    if run_dir is not None and run_dir.is_dir():
        from dal_runner.execute import mark_failed

        mark_failed(run_dir, reason)
        log.error("%s: %s (%s)", run_dir, reason, detail)
    else:
        log.error("a job of the sweep: %s (%s)", reason, detail)
    return JobReturn(status=JobStatus.COMPLETED, _return_value=None)


@contextmanager
def dead_jobs_are_failed_runs(sweep: bool = True) -> Iterator[None]:
    """For the time of a sweep: a submitit job that left no result is a failed run (see above).
    Nothing is changed for a single run (`sweep` false)."""
    if not sweep:
        yield
        return
    import submitit
    from submitit.core.utils import UncompletedJobError

    from dal_runner.callbacks import LAUNCHED_JOBS

    # the sweep's job folders in job order, as dal-run's preflight found them (one sweep per command)
    folders: List[Path] = next(iter(LAUNCHED_JOBS.values()), []) if len(LAUNCHED_JOBS) == 1 else []
    original = submitit.Job.results
    order: List[object] = []

    def results(job):
        if job not in order:
            order.append(job)
        try:
            return original(job)
        except UncompletedJobError as e:
            index = order.index(job)  # the plugin collects the jobs in the order it submitted them
            return [_died(folders[index] if index < len(folders) else None, e)]

    submitit.Job.results = results
    # hydra/launcher=local: each job runs under a submitit controller process; they are remembered
    # so that a stopped sweep can stop its jobs (stop_local_jobs)
    from submitit.local import local as submitit_local

    original_start = submitit_local.start_controller

    def start_controller(folder, command, *args, setup=(), **kwargs):
        # submitit's own start (its environment for the job), whose shell runs the setup lines and
        # then, by exec in the same process, dal-run's controller (local_controller.py: Ctrl-C)
        controller = shlex.join([sys.executable, "-m", "dal_runner.local_controller", str(folder)])
        process = original_start(folder, command, *args, setup=[*setup, f"exec {controller}"], **kwargs)
        CONTROLLERS.append(process)
        return process

    submitit_local.start_controller = start_controller
    try:
        yield
    finally:
        submitit.Job.results = original
        submitit_local.start_controller = original_start


CONTROLLERS: List = []  # the submitit controllers (subprocess.Popen) of this process's local sweep


def stop_local_jobs(wait_s: float = 60.0) -> int:
    """SIGTERM to every local controller still running, which passes it on to its job: the job
    stops as interrupted (status.json), resumable; waits for them. Returns how many it stopped.
    (A terminal's Ctrl-C reaches the jobs by itself; a SIGTERM to dal-run alone did not, and its
    jobs ran on to their end.)"""
    import signal
    import time

    alive = [p for p in CONTROLLERS if p.poll() is None]
    for p in alive:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + wait_s
    for p in alive:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except Exception:  # still running after the wait: left to submitit's own cleanup
            pass
    CONTROLLERS.clear()
    return len(alive)
