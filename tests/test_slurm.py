"""A sweep on a real SLURM cluster (scripts/local_slurm.sh), with one job preempted and requeued.

CI starts the one-node cluster before the suite (.ci/run); where none runs these tests skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Tuple

import pytest
from conftest import BIN, ONE_THREAD, REPO, RESUME_ARGS, without_timings
from test_resume import wait_for_round

from dal_runner.io import read_csv, read_json


def _slurm_up() -> bool:
    script = REPO / "scripts" / "local_slurm.sh"
    try:
        return subprocess.run([str(script), "status"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not _slurm_up(), reason="no local SLURM cluster (scripts/local_slurm.sh start)")


def _sweep_dir(root: Path, proc, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = [p for p in (root / "multirun").glob("*/*") if (p / ".submitit").is_dir()]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("the sweep folder never appeared")


def _array_job_id(sweep: Path, task: int, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ids = [p.name for p in (sweep / ".submitit").iterdir() if p.name.endswith(f"_{task}")]
        if ids:
            return ids[0]
        time.sleep(0.2)
    raise AssertionError("no submitit folder for the job")


def _task_pid(job: str, timeout: float = 60) -> int:
    """The pid of the job's task (step 0, task 0: submitit's Python process), from slurmd's records."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job_id = subprocess.run(["squeue", "-h", "-o", "%A", "-j", job], capture_output=True, text=True).stdout.split()
        if job_id:
            rows = subprocess.run(["scontrol", "listpids", job_id[0]], capture_output=True, text=True).stdout
            for row in rows.splitlines()[1:]:  # PID JOBID STEPID LOCALID GLOBALID
                fields = row.split()
                if fields[2:4] == ["0", "0"]:
                    return int(fields[0])
        time.sleep(0.2)
    raise AssertionError(f"no task of job {job} in `scontrol listpids`")


def _logs(sweep: Path, job: str) -> str:
    return "".join(p.read_text(errors="replace") for p in (sweep / ".submitit" / job).glob("*_log.*"))


SLURM_SWEEP = [str(BIN / "dal-run"), "-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug",
               "hydra.launcher.timeout_min=60", "hydra.launcher.cpus_per_task=1"]


def _sweep_with_a_signal(tmp_path: Path, args, round_index: int, sig: int) -> Tuple[Path, str, int, str]:
    """`dal-run -m` on the cluster with `args`; `sig` to job 0's task (step 0, task 0: submitit's
    Python process) once its round `round_index` is in progress. (sweep folder, job 0's SLURM id,
    exit status, output)."""
    cmd = [*SLURM_SWEEP, *args, f"output_root={tmp_path / 'out'}"]
    log = open(tmp_path / "dal-run.out", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **ONE_THREAD, "PYTHONUNBUFFERED": "1"})
    try:
        sweep = _sweep_dir(tmp_path / "out", proc)
        job = _array_job_id(sweep, 0)
        task = _task_pid(job)
        assert wait_for_round(sweep / "0", round_index, until=lambda: proc.poll() is not None)
        os.kill(task, sig)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    return sweep, job, proc.returncode, (tmp_path / "dal-run.out").read_text()


def test_slurm_sweep_2x2_with_a_preempted_job_matches_uninterrupted(tmp_path, uninterrupted_run):
    args = [a for a in RESUME_ARGS if not a.startswith("query=")]
    # job 0 is query=albl seed=0, the uninterrupted run's config: preempted in round 2 by SIGUSR2, the
    # signal submitit asks SLURM to send before preemption or the time limit, to the job's task as
    # slurmd would deliver it. Not through scancel: its RPC to slurmctld can take seconds on a loaded
    # machine, and the whole run takes 3 (a CI run's signal landed after the job's end; submitit then
    # requeued a completed job and nothing was preempted)
    sweep, job, code, output = _sweep_with_a_signal(tmp_path, [*args, "query=albl,random", "seed=0,1"], 2,
                                                    signal.SIGUSR2)
    assert code == 0, output[-3000:]

    # four completed run folders, and the sweep's report
    for job_num in range(4):
        assert read_json(sweep / str(job_num) / "status.json")["state"] == "completed", job_num
    assert len(read_csv(sweep / "report" / "auc.csv")) == 2  # albl and random, 2 seeds each
    # job 0 was preempted, requeued by submitit, and continued from its state
    job_logs = _logs(sweep, job)
    assert "this job is preempted" in job_logs and "Requeued job" in job_logs, job_logs[-2000:]
    assert "resuming at round" in (sweep / "0" / "dal-run.log").read_text()
    assert without_timings(read_csv(sweep / "0" / "rounds.csv")) == \
        without_timings(read_csv(uninterrupted_run / "rounds.csv"))
    assert read_csv(sweep / "0" / "selected.csv") == read_csv(uninterrupted_run / "selected.csv")

    # the same sweep launched again into its folder after job 3's folder was removed: the three
    # completed jobs are kept and not submitted; job 3 alone is, with its own number
    import shutil

    shutil.rmtree(sweep / "3")
    cmd = [*SLURM_SWEEP, *args, "query=albl,random", "seed=0,1", f"output_root={tmp_path / 'out'}"]
    submitted = lambda: {p.name for p in (sweep / ".submitit").glob("*/*_submitted.pkl")}  # noqa: E731
    before = submitted()
    res = subprocess.run([*cmd, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, **ONE_THREAD})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.splitlines()[:1] == ["dal-run: jobs 0-2 of the sweep already completed with this config: kept "
                                           "as they are, not launched again; launching the other 1"], res.stderr
    assert len(submitted() - before) == 1  # one SLURM job
    summary = read_json(sweep / "3" / "summary.json")
    assert summary["seed"] == 1 and summary["choices"]["query"] == "random"
    assert "4 of 4 runs completed" in res.stdout + res.stderr


def test_a_slurm_job_killed_without_a_result_fails_its_run_and_the_sweep_ends(tmp_path):
    """SIGKILL to a job's task (as the out-of-memory killer or a failed node leaves it): the job
    leaves SLURM's queue without a result. This cluster has no accounting (sacct fails, as on some
    real ones), and submitit alone then waited for ever; the sweep now ends, its run failed."""
    # two jobs: a job array, as every sweep of more than one job
    sweep, _, code, output = _sweep_with_a_signal(
        tmp_path, ["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=500",
                   "trainer.epochs=300", "seed=0,1"], 1, signal.SIGKILL)
    assert code == 1, output[-3000:]
    status = read_json(sweep / "0" / "status.json")
    assert status["state"] == "failed" and "ended without a result" in status["error"], status
    assert read_json(sweep / "1" / "status.json")["state"] == "completed"  # the other job went on
    assert "1 of 2 runs completed" in output and "Traceback" not in output, output[-3000:]


def test_a_sweep_sbatch_refuses_is_one_line_and_leaves_no_folder(tmp_path):
    """A partition this cluster lacks passes dal-run's checks (they cannot know the cluster) and
    sbatch refuses the job array: one line with sbatch's reason, exit 2, no traceback, and no sweep
    folder of submission files."""
    res = subprocess.run([str(BIN / "dal-run"), "-m", "hydra/launcher=slurm", "hydra.launcher.partition=nope",
                          "search=fixed", "arch=mlp", "budget.max_labels=100", "seed=0,1",
                          f"output_root={tmp_path / 'out'}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("dal-run: error:")]
    assert len(errors) == 1 and "sbatch refused the sweep's jobs" in errors[0] and "nope" in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not list((tmp_path / "out").glob("multirun/*/*")), list((tmp_path / "out").rglob("*"))


def test_a_job_still_in_the_queue_is_never_taken_for_ended(monkeypatch):
    """Without accounting a job squeue does not list has ended; a user's SQUEUE_STATES=RUNNING
    (a ~/.bashrc setting) hid a pending job from squeue, which was then taken for ended."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    from dal_runner.launchers import _settle_from_the_queue

    job = subprocess.run(["sbatch", "--hold", "--parsable", "--wrap", "true"], capture_output=True, text=True,
                         check=True).stdout.strip().split(";")[0]
    try:
        monkeypatch.setenv("SQUEUE_STATES", "RUNNING")
        watcher = SlurmInfoWatcher()
        watcher.register_job(job)
        _settle_from_the_queue(watcher)
        assert not watcher._info_dict.get(job)  # pending (held): still unknown, so not done
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline and job in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                                                          text=True).stdout.split():
        time.sleep(0.5)
    _settle_from_the_queue(watcher)
    assert watcher.is_done(job, mode="cache")  # gone from the queue: ended
