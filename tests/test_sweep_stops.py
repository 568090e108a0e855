"""Sweeps stopped or killed, while their jobs are checked or run (Ctrl-C, SIGTERM, SIGKILL): every
job's status.json and the sweep's end say what happened, and the same command continues the sweep.
(A file of its own, apart from test_sweeps.py, so that the two share the test workers.)"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, ONE_THREAD as ENV, RESUME_ARGS as BASE, run_cli_inprocess
from test_resume import wait_for_round

from dal_runner.io import read_csv, read_json
from dal_runner.job_control import Terminated


LARGE_SWEEP = ["-m", "search=fixed", "arch=mlp", "query=random,softmax_response,margin,entropy,coreset,badge,albl",
               "seed=0,1,2,3,4", "budget.batch=100,1000,10000", "trainer.lr=0.1,0.2"]


def _checking_large_sweep(tmp_path):
    """dal-run on a sweep of 210 jobs, in its own process group, once it is into their checks
    (several processes; about 13 s on 2 cores)."""
    proc = subprocess.Popen([str(BIN / "dal-run"), *LARGE_SWEEP, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stderr.readline()  # printed before the first job is composed
    processes = min(len(os.sched_getaffinity(0)), 210 // 8, 32)
    assert first.strip() == "dal-run: checking the 210 jobs of the sweep before any starts" + (
        f" ({processes} processes)" if processes > 1 else ""), first
    time.sleep(3)
    return proc


def test_ctrl_c_while_a_large_sweep_is_checked_stops_it_in_one_line(tmp_path):
    """Ctrl-C while the preflight checks a sweep's jobs (in several processes): one line, status
    130, no traceback from dal-run or its worker processes, no sweep folder."""
    proc = _checking_large_sweep(tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: to every process of the group
        rest = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, rest
    assert rest.strip().splitlines() == ["dal-run: error: interrupted (Ctrl-C) while checking the jobs; none started"], rest
    assert not (tmp_path / "sweep").exists()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: the sweep is checked in one process")
def test_the_processes_checking_a_sweep_end_with_dal_run_killed(tmp_path):
    """dal-run killed (SIGKILL: no time to stop anything) while its workers check a sweep: they end
    too, none left running."""
    proc = _checking_large_sweep(tmp_path)
    try:
        proc.kill()
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline:
            ps = subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
            if all(state.startswith("Z") for state in ps):  # gone, or only waiting for init to reap it
                break
            time.sleep(0.2)
        assert all(state.startswith("Z") for state in ps), ps
    finally:
        subprocess.run(["pkill", "-KILL", "-g", str(proc.pid)])  # workers a failure left behind
        proc.stderr.close()


def test_a_sweep_job_killed_outright_is_one_failed_run_and_the_sweep_ends_as_usual(tmp_path):
    """A job of a submitit sweep (hydra/launcher=local, the code path of =slurm) killed with SIGKILL,
    as the out-of-memory killer does: it leaves submitit no result. The sweep still collects the
    other job, marks the dead one failed, writes the report and exits 1 with one line per failed run
    (before: a Hydra traceback, no report, and the dead job's status.json still `running`). Here
    the sweep is launched a second time with one more seed: job 0, completed, is kept and not
    submitted, so the dead job is the only one submitted, and it is still job 1 that is marked."""
    sweep = tmp_path / "sweep"
    args = [str(BIN / "dal-run"), "-m", "hydra/launcher=local", *BASE, "budget.max_labels=150",
            f"hydra.sweep.dir={sweep}"]
    first = subprocess.run([*args, "seed=0"], cwd=tmp_path, capture_output=True, env={**os.environ, **ENV})
    assert first.returncode == 0, first.stderr
    proc = subprocess.Popen([*args, "seed=0,1"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **ENV}, start_new_session=True)
    try:
        assert wait_for_round(sweep / "1", 1, until=lambda: proc.poll() is not None)
        os.kill(read_json(sweep / "1" / "status.json")["pid"], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-2:] == [
        f"dal-run: error: {sweep / '1'}: failed in round 1: the job's process ended without a result: killed "
        f"(out of memory, SIGKILL) or its node failed; the same command with hydra.sweep.dir continues it from its "
        f"last round",
        "dal-run: error: 1 of 2 runs of the sweep did not complete (the others did; see their status.json)"], err
    assert read_json(sweep / "1" / "status.json")["state"] == "failed"
    assert read_json(sweep / "0" / "status.json")["state"] == "completed"
    assert [r["run"] for r in read_csv(sweep / "report" / "excluded.csv")] == ["1"]


def test_a_job_that_said_how_it_ended_keeps_its_status_when_it_leaves_no_result(tmp_path):
    """SIGTERM or Ctrl-C to a local sweep's job alone: the job marks itself interrupted and exits;
    submitit then has no result, and the sweep overwrote the status with 'killed (out of memory,
    SIGKILL)', so the report and the sweep's end gave the wrong reason (measured: TERM and INT)."""
    from dal_runner.io import utc_now
    from dal_runner.launchers import _LAUNCHED_AT, _died

    run = tmp_path / "0"
    run.mkdir()
    _LAUNCHED_AT[0] = utc_now()
    interrupted = {"state": "interrupted", "error": "interrupted by a signal (SIGTERM, ...)", "round": 2,
                   "updated": utc_now()}
    (run / "status.json").write_text(json.dumps(interrupted))
    _died(run, RuntimeError("Job has not produced any output"))
    assert read_json(run / "status.json") == interrupted
    # one an earlier launch left (the job was killed this time before it wrote its own): marked
    (run / "status.json").write_text(json.dumps({**interrupted, "updated": "2026-01-01T00:00:00+00:00"}))
    _died(run, RuntimeError("Job has not produced any output"))
    assert read_json(run / "status.json")["state"] == "failed"
    (run / "status.json").write_text(json.dumps({"state": "running", "round": 2}))  # SIGKILL: it said nothing
    _died(run, RuntimeError("Job has not produced any output"))
    assert read_json(run / "status.json")["state"] == "failed"


def test_sigterm_to_a_local_sweep_stops_its_running_jobs_as_interrupted_runs(tmp_path):
    """hydra/launcher=local: SIGTERM to dal-run alone (kill PID, a scheduler's stop) used to leave its
    jobs running to their end behind a sweep that said it had stopped. The sweep's folder is the
    default (${now:...}): the message named one resolved again, milliseconds off, that did not exist."""
    proc = subprocess.Popen([str(BIN / "dal-run"), "-m", "hydra/launcher=local", *BASE, "seed=0,1",
                             f"output_root={tmp_path / 'out'}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV}, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "out").glob("multirun/*/*/0")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        (sweep,) = [p.parent for p in (tmp_path / "out").glob("multirun/*/*/0")]
        assert wait_for_round(sweep / "0", 1, until=lambda: proc.poll() is not None)
        proc.send_signal(signal.SIGTERM)  # to dal-run only, not its process group
        _, err = proc.communicate(timeout=180)
        time.sleep(2)  # a job still running after dal-run ended would have moved on by now
        states = {job: read_json(sweep / job / "status.json")["state"] for job in "01"
                  if (sweep / job / "status.json").is_file()}  # job 1 may not have started
        resumable = {job: (sweep / job / "state" / "state.pt").is_file() for job in "01"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert states["0"] == "interrupted" and states.get("1", "interrupted") in ("interrupted", "completed"), states
    assert err.strip().splitlines()[-1].startswith(f"dal-run: error: terminated (SIGTERM) of the sweep {sweep}; its ")
    # each job as its status.json says: job 0 stopped after its first round; job 1, running beside it,
    # stopped in or after its first round, completed, or not started
    job1 = {"completed": "completed", None: "not started"}.get(states.get("1")) or (
        "stopped (it continues)" if resumable["1"] else "stopped in its first round (it runs again)")
    jobs = "2 stopped (they continue)" if job1.startswith("stopped (") else f"1 stopped (it continues), 1 {job1}"
    assert err.strip().splitlines()[-1] == (
        f"dal-run: error: terminated (SIGTERM) of the sweep {sweep}; its jobs: {jobs}; the same command with "
        f"hydra.sweep.dir={sweep} finishes it (completed jobs are kept)"), err


def test_ctrl_c_in_a_terminal_stops_a_local_sweep_without_a_traceback(tmp_path):
    """A terminal's Ctrl-C reaches dal-run, submitit's job controllers and the jobs alike (one
    process group): each controller printed a KeyboardInterrupt traceback into the terminal and
    sent its job a second SIGINT, then SIGKILL. Each job records its own stop, and the sweep says
    how to finish it."""
    sweep = tmp_path / "sweep"
    cmd = [str(BIN / "dal-run"), "-m", "hydra/launcher=local", *BASE, "seed=0,1", f"hydra.sweep.dir={sweep}"]
    # SIGINT as a terminal's foreground job has it (a background job of a script starts with it ignored)
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wait_for_round(sweep / "0", 1, until=lambda: proc.poll() is not None)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, err
    assert err.strip().splitlines()[-1].startswith(f"dal-run: error: interrupted (Ctrl-C) of the sweep {sweep}; ")
    status = read_json(sweep / "0" / "status.json")
    assert status["state"] == "interrupted" and "by the user (Ctrl-C)" in status["error"], status
    # the same command finishes it, job 0 from its state
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **ENV}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming at round" in (sweep / "0" / "dal-run.log").read_text()
    assert all(read_json(sweep / job / "status.json")["state"] == "completed" for job in "01")
    # submitit's folder template, which it makes and leaves empty, is gone at the sweep's end
    assert not (sweep / ".submitit" / "%j").exists() and len(list((sweep / ".submitit").iterdir())) >= 2


def test_a_sweep_job_stopped_while_it_starts_says_so_in_its_status(tmp_path, monkeypatch, capsys):
    """A sweep's job keeps its folder when stopped while its data load or model is built (the sweep
    owns the folder); it had no status.json, so the sweep's stop message called it resumable and
    dal-report "missing status.json"."""
    from dal_runner import run

    def stopped(*args, **kwargs):
        raise Terminated(143)

    monkeypatch.setattr(run, "build", stopped)
    sweep = tmp_path / "sweep"
    code, _, err = run_cli_inprocess(["-m", *BASE, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path, monkeypatch,
                                     capsys)
    assert code == 143, err
    status = read_json(sweep / "0" / "status.json")
    assert status["state"] == "interrupted" and status["error"] == (
        "interrupted by a signal (SIGTERM, SIGUSR1/2, or preempted or timed out) before its first round ended; "
        "nothing to resume: run it again"), status
    # and the terminal says the same: not "this one continues" (before: it did)
    assert err.strip().splitlines()[-1].endswith("(completed jobs are kept, this one, stopped before its first "
                                                 "round ended, runs again)"), err


def _processes(pattern: str):
    """pids whose command line holds `pattern`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if pattern in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:  # ended meanwhile
                pass
    return found


def test_a_sweep_job_killed_before_it_made_its_folder_is_one_failed_run(tmp_path):
    """hydra/launcher=local, a job's process killed before the job made its run folder (the out-of-
    memory killer at start-up, or a Ctrl-C that reached the jobs alone): before, the sweep dropped
    it ('1 of 1 runs completed', exit 0, the report averaging one seed); now its folder says
    failed, the sweep's end counts 2 runs and exits 1, and the same command runs it again."""
    sweep = tmp_path / "sweep"
    args = [str(BIN / "dal-run"), "-m", "hydra/launcher=local", "search=fixed", "arch=mlp", "budget.max_rounds=1",
            "trainer.epochs=1", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV}, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            jobs = _processes(f"submitit.core._submit {sweep}")  # the first job's process, just started
            if jobs:
                killed_early = not (sweep / "0").exists() and not (sweep / "1").exists()
                os.kill(min(jobs), signal.SIGKILL)
                break
            time.sleep(0.01)
        else:
            raise AssertionError("no job process appeared")
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed_early
    assert proc.returncode == 1, err
    assert "1 of 2 runs of the sweep did not complete" in err and "Traceback" not in err, err
    failed = [job for job in "01" if read_json(sweep / job / "status.json")["state"] == "failed"]
    assert len(failed) == 1 and "before it made its run folder" in read_json(sweep / failed[0] / "status.json")["error"]
    res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **ENV})
    assert res.returncode == 0 and "2 of 2 runs completed" in res.stdout + res.stderr, res.stderr


def test_a_stopped_local_sweep_says_what_each_job_is_now(tmp_path, monkeypatch, capsys):
    """After a stop, the sweep's line counts its jobs by their status.json. Before, it counted the job
    controllers still running: a job that had completed 0.4 s before the stop was "stopped too",
    and a sweep stopped before any job started pointed to "their status.json"."""
    from dal_runner import callbacks, cli, launchers
    from dal_runner.io import RunFolder
    from dal_runner.state import state_path

    sweep = tmp_path / "sweep"
    folders = [sweep / str(n) for n in range(7)]
    for n, state in enumerate(["interrupted", "completed", "completed", "interrupted", "failed", "interrupted"]):
        RunFolder(folders[n]).status(state)  # job 6: no folder, not started
    for n in (0, 5):  # job 0: stopped with its state saved; job 5: an earlier launch's, not started in this one
        state_path(folders[n]).parent.mkdir()
        state_path(folders[n]).write_bytes(b"")
    now = datetime.datetime.now(datetime.timezone.utc)
    for n in (1, 5):  # job 1: completed in an earlier launch, kept
        status = read_json(folders[n] / "status.json")
        earlier = (now - datetime.timedelta(hours=2)).isoformat(timespec="seconds")
        (folders[n] / "status.json").write_text(json.dumps({**status, "updated": earlier}))
    launched = (now - datetime.timedelta(hours=1)).isoformat(timespec="seconds")  # as io.utc_now writes it
    monkeypatch.setattr(launchers, "_LAUNCHED_AT", [launched])
    monkeypatch.setattr(callbacks, "LAUNCHED_JOBS", {str(sweep): folders})  # this sweep alone
    monkeypatch.setitem(cli._CURRENT, "run_dir", None)
    monkeypatch.setitem(cli._CURRENT, "not_started", False)
    with pytest.raises(SystemExit) as stop:
        cli._stopped("terminated (SIGTERM)", 143)
    assert stop.value.code == 143
    assert capsys.readouterr().err.strip() == (
        f"dal-run: error: terminated (SIGTERM) of the sweep {sweep}; its jobs: 1 stopped (it continues), 1 stopped in "
        f"its first round (it runs again), 2 completed, 1 failed, 2 not started; the same command with "
        f"hydra.sweep.dir={sweep} finishes it (completed jobs are kept)")


def test_a_stopped_sweeps_count_says_killed_for_a_job_whose_process_was_gone(tmp_path, monkeypatch):
    """A job SIGKILLed before the Ctrl-C could not write its status.json: it still says running, but
    its process is gone (before: "1 still running (its process outlived the stop)")."""
    import socket

    from dal_runner import launchers
    from dal_runner.io import utc_now
    from dal_runner.state import state_path

    monkeypatch.setattr(launchers, "_LAUNCHED_AT", [utc_now()])
    gone = subprocess.Popen(["true"])
    gone.wait()
    states = {"0": {"state": "completed"}, "1": {"state": "interrupted"},
              "2": {"state": "running", "host": socket.gethostname(), "pid": gone.pid},
              "3": {"state": "running", "host": socket.gethostname(), "pid": gone.pid}}
    for name, status in states.items():
        state_path(tmp_path / name).parent.mkdir(parents=True)
        if name != "3":  # job 3 was killed in its first round: no state to continue from
            state_path(tmp_path / name).write_bytes(b"state")
        (tmp_path / name / "status.json").write_text(json.dumps({**status, "updated": utc_now()}))
    said = launchers.jobs_after_stop([tmp_path / name for name in states])
    assert said == ("1 stopped (it continues), 1 completed, 1 killed (its process was gone before the stop: it "
                    "continues), 1 killed in its first round (its process was gone before the stop: it runs again)")


def test_files_of_a_submission_sbatch_refused_go_and_the_others_stay(tmp_path):
    """Only what the refused submission wrote goes; an earlier launch's files stay, a dangling link
    that an earlier submission left (its job folder removed) too, and the sweep folder with them."""
    from submitit.core.utils import FailedJobError

    from dal_runner import launchers

    top = tmp_path / "sweep" / ".submitit"
    top.mkdir(parents=True)
    (top / "old.pkl").write_bytes(b"earlier")
    (top / ".submission_file_old.sh").symlink_to(top / "gone" / "script.sh")  # dangling
    before = launchers._entries(top / "%j")
    (top / "new.pkl").write_bytes(b"refused")
    (top / ".submission_file_new.sh").write_text("#!/bin/bash")
    with pytest.raises(SystemExit) as stop:
        launchers._refused_by_sbatch(FailedJobError("sbatch: error: invalid partition specified: nope"), top / "%j",
                                     before)
    assert stop.value.code == 2
    assert sorted(p.name for p in top.iterdir()) == [".submission_file_old.sh", "old.pkl"]
