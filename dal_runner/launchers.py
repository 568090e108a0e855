"""How `dal-run -m` launches a sweep's jobs: Hydra's launchers (the basic one, and
hydra-submitit-launcher's `hydra/launcher=local`, `=slurm`), with two changes.

A job that already completed with the same config (a sweep launched again into its folder, which
its preflight found) is not launched again: its run folder is kept as it is, and its result is
the run's final accuracy. Before, each such job started a process (on SLURM, a job in the queue)
that loaded its data and built its model only to find its run completed. The job numbers stay
those of the whole sweep (the folders and ${hydra:job.num} depend on them): the basic launcher
skips the job in its loop, submitit's launchers submit the other jobs with their own numbers.

A job whose process died without a result does not abort the sweep.

The plugin collects the jobs' results in order, and a job that left none (killed by the
out-of-memory killer or SIGKILL, a failed node) raises submitit's UncompletedJobError there: the
sweep stopped with a traceback while its other jobs went on unattended, and neither its end
(which jobs completed) nor its report came. Here such a job is one failed run, as a job that
raised is (dal-run's jobs catch their own errors): its status.json says `failed` and why, the
other jobs' results are still collected, and the sweep ends as usual (the count, the report,
exit status 1).

Only what is named here is changed, for the time of a sweep (`dal-run -m` wraps it in
`sweep_launch`): the launcher's launch as Hydra's BasicSweeper holds it (a batch of kept jobs alone
is not handed over), Hydra's run_job in the basic launcher, and submitit's Executor.map_array and
Job.results, which the plugin calls once per sweep and once per job. Everything else (executors,
parameters, requeueing) is the plugin's own. (A launcher
subclass would be the natural place, but Hydra takes a launcher only from a module it finds by
scanning the hydra_plugins package, which an editable install of this package cannot add to.)
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from hydra.core.utils import JobReturn, JobStatus

log = logging.getLogger("dal_runner")


def _died(run_dir: Optional[Path], error: BaseException) -> JobReturn:
    """The result of a job that left none: its run folder marked failed (if known)."""
    reason = ("the job's process ended without a result: killed (out of memory, SIGKILL) or its node failed; "
              "the same command with hydra.sweep.dir continues it from its last round")
    detail = " ".join(str(error).split())
    if run_dir is not None and _ended_on_its_own(run_dir):
        # it was stopped (a signal to the job alone) and said so in its status.json before it ended:
        # kept, not overwritten by a guess at why it left no result
        log.warning("%s: the job's process ended without a result; its status.json says why (%s)", run_dir, detail)
        return JobReturn(status=JobStatus.COMPLETED, _return_value=None)
    if run_dir is not None:
        from dal_runner.execute import mark_failed

        if not run_dir.is_dir():  # it died before it made its folder: one made now says so, so the sweep's end
            # counts it (a failed run, exit status 1) rather than dropping it
            reason = ("the job's process ended without a result before it made its run folder: killed (out of "
                      "memory, SIGKILL, a Ctrl-C that reached the jobs alone) or its node failed; the same command "
                      "with hydra.sweep.dir runs it again")
            run_dir.mkdir(parents=True, exist_ok=True)
        mark_failed(run_dir, reason)
        log.error("%s: %s (%s)", run_dir, reason, detail)
    else:
        log.error("a job of the sweep: %s (%s)", reason, detail)
    return JobReturn(status=JobStatus.COMPLETED, _return_value=None)


_LAUNCHED_AT = [""]  # when this sweep launched its jobs (UTC, ISO seconds, as status.json's `updated`)


def _ended_on_its_own(run_dir: Path) -> bool:
    """Whether the job said, in this launch, that it was stopped: status.json `interrupted` and
    written since the sweep launched (one left by an earlier launch says nothing of this one; a job
    that fails returns a result, so `failed` with none is an earlier launch's too)."""
    from dal_runner.callbacks import run_status

    status = run_status(run_dir)  # unreadable: a state that says nothing
    return status.get("state") == "interrupted" and _written_in_this_launch(status)


def _written_in_this_launch(status: dict) -> bool:
    """Whether a job's status.json was written since this sweep launched its jobs."""
    return str(status.get("updated", "")) >= _LAUNCHED_AT[0]


def _kept(number: int, say: bool = True) -> JobReturn:
    """The result of job `number`, which already completed with this config and is not launched
    (`say`: one line in the log, among the lines of the jobs launched)."""
    from dal_runner.callbacks import KEPT_JOBS, LAUNCHED_JOBS

    folders = next(iter(LAUNCHED_JOBS.values()), [])
    if say:
        log.info("%s: already completed with this config; kept as it is", folders[number] if number < len(folders)
                 else f"job {number}")
    return JobReturn(status=JobStatus.COMPLETED, _return_value=KEPT_JOBS[number])


class _KeptJob:
    """Stands in submitit's list of jobs for a job that is not submitted (already completed)."""

    def __init__(self, number: int):
        self.number = number

    def results(self) -> List[JobReturn]:
        return [_kept(self.number)]


def _settle_from_the_queue(watcher) -> None:
    """After submitit's sacct call: a job whose state sacct did not give (a cluster without
    accounting, such as scripts/local_slurm.sh's, where every sacct call fails) and that squeue no
    longer lists has ended. submitit counts a job with no known state as unfinished, so a job
    killed without a result (scancel, SIGKILL, a failed node) kept its sweep waiting for ever;
    here it ends as a job that left no result does (see `_died`). squeue lists a pending,
    running or requeued job, so only an ended one is settled."""
    import subprocess

    unknown = [j for j in watcher._registered - watcher._finished if not watcher._info_dict.get(j, {}).get("State")]
    if not unknown:
        return
    # -r: one line per array task, pending ones too (not 143_[1-3]); -a: hidden partitions too; the
    # user's SQUEUE_* settings (SQUEUE_STATES=RUNNING) would hide pending jobs, so they are left out
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQUEUE_")}
    try:
        listed = subprocess.run(["squeue", "-h", "-r", "-a", "-o", "%i", "-u", str(os.getuid())], capture_output=True,
                                text=True, timeout=60, check=True, env=env).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return  # no squeue either: submitit's own way, the sweep waits
    for job_id in unknown:
        if job_id not in listed:
            watcher._info_dict[job_id] = {"State": "LEFT_THE_QUEUE (no accounting: sacct failed)"}


def _entries(folder: Path) -> set:
    """The names in submitit's id-independent folder (the sweep's .submitit), before a submission."""
    from submitit.core.utils import JobPaths

    top = JobPaths.get_first_id_independent_folder(folder)
    return set(os.listdir(top)) if top.is_dir() else set()


def _refused_by_sbatch(error: BaseException, folder: Path, before: set) -> None:
    """sbatch's refusal (a partition, a GPU request or an option the cluster does not have) in one
    line and exit status 2, as a bad value: submitit's FailedJobError went up through Hydra as a
    traceback of some 40 lines. The files submitit wrote for the refused submission go; so does a
    sweep folder that holds nothing else (this launch made it)."""
    from submitit.core.utils import JobPaths

    top = JobPaths.get_first_id_independent_folder(folder)  # the sweep's .submitit
    for name in _entries(folder) - before:  # what the refused submission wrote (a pickle, a script)
        if not (top / name).is_dir() or (top / name).is_symlink():
            (top / name).unlink()
    sweep = top.parent
    if top.is_dir() and not any(top.iterdir()) and {p.name for p in sweep.iterdir()} <= {top.name, "multirun.yaml"}:
        shutil.rmtree(sweep)
    said = [line.strip() for line in str(error).splitlines() if line.strip().startswith("sbatch:")]
    reason = "; ".join(dict.fromkeys(said)) or " ".join(str(error).split())
    print(f"dal-run: error: hydra/launcher=slurm: sbatch refused the sweep's jobs and none was submitted ({reason}); "
          "accepted: hydra.launcher values this cluster takes (partition, gpus_per_node, cpus_per_task, mem_gb, "
          "additional_parameters: `sinfo` lists its partitions and nodes)", file=sys.stderr)
    sys.exit(2)


@contextmanager
def sweep_launch(sweep: bool = True) -> Iterator[None]:
    """For the time of a sweep: jobs that already completed with this config are not launched,
    and a submitit job that left no result is a failed run (see above). Nothing is changed for a
    single run (`sweep` false)."""
    if not sweep:
        yield
        return
    import submitit
    from hydra._internal.core_plugins import basic_launcher
    from submitit.slurm.slurm import SlurmInfoWatcher
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from dal_runner.callbacks import KEPT_JOBS, LAUNCHED_JOBS
    from dal_runner.io import utc_now

    _LAUNCHED_AT[0] = utc_now()

    # the sweep's job folders by job number, as dal-run's preflight found them (one sweep per command)
    folders: List[Path] = next(iter(LAUNCHED_JOBS.values()), []) if len(LAUNCHED_JOBS) == 1 else []
    original_run_job, original_map_array, original = basic_launcher.run_job, submitit.AutoExecutor.map_array, \
        submitit.Job.results
    numbers: Dict[int, int] = {}  # id of a submitted job -> its number in the sweep

    original_setup = BasicSweeper.setup

    def setup(sweeper, *args, **kwargs):
        original_setup(sweeper, *args, **kwargs)
        launch = sweeper.launcher.launch

        def launch_unless_kept(job_overrides, initial_job_idx):
            # a batch of kept jobs alone is not handed to the launcher at all ("Launching 2 jobs")
            batch = range(initial_job_idx, initial_job_idx + len(job_overrides))
            if all(number in KEPT_JOBS for number in batch):
                return [_kept(number, say=False) for number in batch]  # the preflight's line said so
            return launch(job_overrides, initial_job_idx=initial_job_idx)

        sweeper.launcher.launch = launch_unless_kept

    def run_job(*args, config, **kwargs):  # the basic launcher, job by job in this process
        number = config.hydra.job.num
        return _kept(number) if number in KEPT_JOBS else original_run_job(*args, config=config, **kwargs)

    def map_array(executor, fn, *columns):
        # submitit's launchers: one row per job, (overrides, job dir key, job number, job id, Hydra's state)
        rows = list(zip(*columns))
        if len(columns) != 5 or not all(isinstance(row[2], int) for row in rows):  # not the plugin's call
            return original_map_array(executor, fn, *columns)
        launched = [row for row in rows if row[2] not in KEPT_JOBS]
        before = _entries(Path(executor.folder))
        try:
            jobs = iter(original_map_array(executor, fn, *zip(*launched)) if launched else [])
        except FailedJobError as e:  # sbatch refused the array: nothing was submitted
            _refused_by_sbatch(e, Path(executor.folder), before)
        listed = []
        for row in rows:
            if row[2] in KEPT_JOBS:
                listed.append(_KeptJob(row[2]))
            else:
                listed.append(next(jobs))
                numbers[id(listed[-1])] = row[2]
        return listed

    def results(job):
        try:
            return original(job)
        except UncompletedJobError as e:
            number = numbers.get(id(job), len(folders))
            return [_died(folders[number] if number < len(folders) else None, e)]

    original_update = SlurmInfoWatcher.update

    def update(watcher):
        original_update(watcher)
        _settle_from_the_queue(watcher)

    basic_launcher.run_job, submitit.AutoExecutor.map_array, submitit.Job.results = run_job, map_array, results
    BasicSweeper.setup, SlurmInfoWatcher.update = setup, update
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
        basic_launcher.run_job, submitit.AutoExecutor.map_array, submitit.Job.results = \
            original_run_job, original_map_array, original
        BasicSweeper.setup, SlurmInfoWatcher.update = original_setup, original_update
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


def jobs_after_stop(folders: List[Path]) -> str:
    """What each job of a stopped local sweep is now, from the status.json this launch wrote, as one
    phrase: "2 stopped (they continue), 1 completed, 5 not started". (The count of controllers still
    running at the stop took a job that had just completed for one that stopped, and a sweep stopped
    before any job started said "their status.json".)"""
    import socket

    from dal_runner.callbacks import run_status
    from dal_runner.folder_checks import alive_here
    from dal_runner.state import state_path

    counts: Dict[str, int] = {}
    for folder in folders:
        status = run_status(folder)
        name, this_launch = status.get("state"), _written_in_this_launch(status)
        if name == "completed":  # this launch's, or kept from an earlier one
            key = "completed"
        elif not this_launch:
            key = "not started"
        elif name == "interrupted":
            key = "stopped" if state_path(folder).is_file() else "stopped in its first round"
        elif name == "running" and status.get("host") == socket.gethostname() and not alive_here(
                status.get("host"), status.get("pid"), folder):  # SIGKILL, out of memory: it could not say so
            key = "killed" if state_path(folder).is_file() else "killed in its first round"
        else:
            key = {"failed": "failed", "running": "still running"}.get(name, "not started")
        counts[key] = counts.get(key, 0) + 1
    said = {"stopped": ("it continues", "they continue"),
            "stopped in its first round": ("it runs again", "they run again"),
            "still running": ("its process outlived the stop", "their processes outlived the stop"),
            "killed": ("its process was gone before the stop: it continues", "their processes were gone before the "
                       "stop: they continue"),
            "killed in its first round": ("its process was gone before the stop: it runs again",
                                          "their processes were gone before the stop: they run again")}
    parts = []
    for key in ("stopped", "stopped in its first round", "completed", "failed", "killed", "killed in its first round",
                "still running", "not started"):
        n = counts.get(key, 0)
        if n:
            label = key.replace("its first round", "their first round") if n > 1 else key
            parts.append(f"{n} {label}" + (f" ({said[key][n > 1]})" if key in said else ""))
    return ", ".join(parts)
