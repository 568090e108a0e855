"""Sweeps stopped, failed, killed or launched again into their folder: every job's status.json,
the sweep's end and its report say what happened, and the same command continues the sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, ONE_THREAD as ENV, RESUME_ARGS as BASE, run_cli, run_cli_inprocess
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


def test_a_sweep_whose_every_job_fails_says_so_and_writes_no_report(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli_inprocess(["-m", "search=fixed", "arch=mlp", "budget.max_labels=5000,6000",
                                        "hydra.sweep.dir=sweep"], tmp_path, monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1] == "dal-run: error: none of the 2 runs of the sweep completed (see their status.json)"
    assert len(lines) == 3 and all("budget.max_labels=" in line for line in lines[:2])  # one line per job
    assert "dal-report" not in err and not (tmp_path / "sweep" / "report").exists()
    assert "no run completed, so no report" in out + err


def test_one_failing_job_neither_stops_nor_corrupts_the_sweep(tmp_path, monkeypatch, capsys):
    # job 1 asks for more labels than the pool has: it fails when its data is loaded
    res = run_cli(["-m", "search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50",
                   "budget.max_labels=5000,150", "trainer.epochs=5", "output_root=out"], cwd=tmp_path, env=ENV)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "1 of 2 runs of the sweep did not complete" in res.stderr
    sweep, = (tmp_path / "out" / "multirun").glob("*/*")
    failed, ok = read_json(sweep / "0" / "status.json"), read_json(sweep / "1" / "status.json")
    assert failed["state"] == "failed" and "budget.max_labels=5000" in failed["error"]
    assert ok["state"] == "completed" and len(read_csv(sweep / "1" / "rounds.csv")) == 3
    excluded = read_csv(sweep / "report" / "excluded.csv")
    assert [r["run"] for r in excluded] == ["0"] and excluded[0]["state"] == "failed"
    # the same sweep launched again into its folder: the completed job is kept, not rerun
    before = {f.name: f.stat().st_mtime_ns for f in (sweep / "1").iterdir() if f.is_file()}
    res = run_cli(["-m", "search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50",
                   "budget.max_labels=5000,150", "trainer.epochs=5", "output_root=out", f"hydra.sweep.dir={sweep}"],
                  cwd=tmp_path, env=ENV)
    assert res.returncode == 1 and "already completed with this config; kept as it is" in res.stdout + res.stderr
    after = {f.name: f.stat().st_mtime_ns for f in (sweep / "1").iterdir() if f.is_file()}
    assert {k: after[k] for k in ("rounds.csv", "selected.csv", "summary.json")} == \
        {k: before[k] for k in ("rounds.csv", "selected.csv", "summary.json")}
    # launched again with another config: refused before Hydra writes a job's .hydra/ (the
    # config its results were made with) or marks the completed job failed
    hydra_config = (sweep / "1" / ".hydra" / "config.yaml").read_bytes()
    code, out, err = run_cli_inprocess(
        ["-m", "search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=5000,150",
         "trainer.epochs=6", "output_root=out", f"hydra.sweep.dir={sweep}"], tmp_path, monkeypatch, capsys)
    assert code == 2, err
    assert err.strip() == (f"dal-run: error: hydra.sweep.dir={sweep}: its job 1 ({sweep / '1'}): the run was made "
                           "with another config (trainer.epochs: 5 there, 6 here); accepted: the sweep's own "
                           "overrides, in their order (it numbers the jobs; its jobs are then kept or continued; "
                           "values added at the end of its first swept key keep the numbers, so only the new jobs "
                           "run), or another hydra.sweep.dir")
    assert (sweep / "1" / ".hydra" / "config.yaml").read_bytes() == hydra_config
    assert read_json(sweep / "1" / "status.json")["state"] == "completed"
    # a job whose state cannot be read does not stop the sweep before it starts: that job fails
    # alone, in the job, and the others run (the preflight lets the command through)
    from dal_runner import cli

    (sweep / "1" / "state" / "state.pt").write_bytes(b"truncated")
    same = ["-m", "search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=5000,150",
            "trainer.epochs=5", "output_root=out", f"hydra.sweep.dir={sweep}"]
    monkeypatch.chdir(tmp_path)
    assert cli.preflight(same) == same


def test_a_sweep_launched_again_with_fewer_jobs_counts_and_reports_its_own(tmp_path, monkeypatch, capsys):
    """seed=0,1,2 then seed=0,1 into the same folder: the second launch's end counts 2 runs and
    its report averages seeds 0 and 1, saying that job 2 is from the earlier launch (before: '3 of
    3 runs completed' and seeds 0 1 2 averaged, while multirun.yaml said seed=0,1)."""
    sweep = tmp_path / "sweep"
    args = ["-m", "search=fixed", "arch=mlp", "budget.max_rounds=2", "trainer.epochs=2", f"hydra.sweep.dir={sweep}"]
    code, out, err = run_cli_inprocess([*args, "seed=0,1,2"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "3 of 3 runs completed" in out + err, err
    assert read_csv(sweep / "report" / "auc.csv")[0]["seeds"] == "0 1 2"
    # a job of the earlier launch that failed is not this launch's failure: exit 0
    (sweep / "2" / "status.json").write_text('{"state": "failed", "error": "stands for a failed job"}')
    code, out, err = run_cli_inprocess([*args, "seed=0,1"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "2 of 2 runs completed" in out + err, err
    assert "1 run folder(s) there are from an earlier launch, not this one (2)" in out + err
    assert read_csv(sweep / "report" / "auc.csv")[0]["seeds"] == "0 1"


def test_a_sweep_whose_job_folders_only_the_jobs_know_is_counted_from_its_folders(tmp_path, monkeypatch, capsys):
    """hydra.sweep.subdir with ${now:...}: the preflight cannot know the jobs' folders, so the
    sweep's end counts and reports the folders it finds (not 'never started' for every job)."""
    sweep = tmp_path / "sweep"
    code, out, err = run_cli_inprocess(["-m", "search=fixed", "arch=mlp", "budget.max_rounds=1", "trainer.epochs=1",
                                        "seed=0,1", f"hydra.sweep.dir={sweep}",
                                        "hydra.sweep.subdir=${hydra.job.num}_${now:%H%M%S%f}"],
                                       tmp_path, monkeypatch, capsys)
    assert code == 0 and "2 of 2 runs completed" in out + err, err
    assert read_csv(sweep / "report" / "auc.csv")[0]["seeds"] == "0 1"


def test_a_sweep_seeded_by_its_job_numbers_launched_again_is_kept(tmp_path, monkeypatch, capsys):
    """seed=${hydra:job.num}: the preflight resolves it as the job will (before: 'HydraConfig was
    not set', exit 2, for the same sweep launched again into its folder)."""
    args = ["-m", "search=fixed", "arch=mlp", "budget.max_rounds=1", "trainer.epochs=1", "seed=${hydra:job.num}",
            "trainer.lr=0.001,0.002", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert [read_json(tmp_path / "sweep" / job / "summary.json")["seed"] for job in "01"] == [0, 1]
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    assert code == 0 and "jobs 0-1 of the sweep already completed with this config: kept as they are" in err, err
    # one job resumed alone, as its status.json says to, runs with its own seed (before: 'seed=${hydra:job.num}:
    # HydraConfig was not set', exit 2); the sweep's folder names its overrides as typed, quoted for the shell
    status = read_json(tmp_path / "sweep" / "1" / "status.json")
    (tmp_path / "sweep" / "1" / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    code, out, err = run_cli_inprocess([f"resume={tmp_path / 'sweep' / '1'}"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert read_json(tmp_path / "sweep" / "1" / "summary.json")["seed"] == 1
    code, out, err = run_cli_inprocess([f"resume={tmp_path / 'sweep'}"], tmp_path, monkeypatch, capsys)
    assert code == 2 and "dal-run -m search=fixed arch=mlp budget.max_rounds=1 trainer.epochs=1 " \
        "'seed=${hydra:job.num}' trainer.lr=0.001,0.002 hydra.sweep.dir=" in err, err


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
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert states["0"] == "interrupted" and states.get("1", "interrupted") in ("interrupted", "completed"), states
    assert err.strip().splitlines()[-1].startswith(f"dal-run: error: terminated (SIGTERM) of the sweep {sweep}; its ")
    assert "running job(s) stopped too (interrupted; their status.json says whether they resume" in err, err


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


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_a_sweep_launched_again_launches_only_the_jobs_not_completed(tmp_path, launcher):
    """seed=0,1, then seed=0,1,2 into the same folder: jobs 0 and 1 are kept as they are, not
    launched again (before: each started again, rewrote its .hydra/, loaded its data and built its
    model only to log 'already completed'; on SLURM, one queued job each); job 2 runs with its own
    number. Launched once more, nothing is launched and the sweep's end still counts 3 runs."""
    sweep = tmp_path / "sweep"
    args = ["-m", *([] if launcher == "basic" else ["hydra/launcher=local"]), "search=fixed", "arch=mlp",
            "budget.max_rounds=1", "trainer.epochs=1", f"hydra.sweep.dir={sweep}"]
    res = run_cli([*args, "seed=0,1"], cwd=tmp_path, env=ENV)
    assert res.returncode == 0, res.stderr
    submitted = set((sweep / ".submitit").iterdir()) if launcher == "local" else set()
    kept = {f: f.read_bytes() for job in "01"
            for f in [sweep / job / "dal-run.log", *(sweep / job / ".hydra").iterdir()]}
    res = run_cli([*args, "seed=0,1,2"], cwd=tmp_path, env=ENV)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[:1] == ["dal-run: jobs 0-1 of the sweep already completed with this config: kept as "
                                           "they are, not launched again; launching the other 1"], res.stderr
    assert "3 of 3 runs completed" in res.stdout + res.stderr
    assert {f: f.read_bytes() for f in kept} == kept  # neither run again nor its config written again
    assert read_json(sweep / "2" / "summary.json")["seed"] == 2
    assert "num: 2\n" in (sweep / "2" / ".hydra" / "hydra.yaml").read_text()
    if launcher == "local":  # one job submitted by the second launch, none by the third
        assert len(set((sweep / ".submitit").iterdir()) - submitted) == 1
        submitted = set((sweep / ".submitit").iterdir())
    res = run_cli([*args, "seed=0,1,2"], cwd=tmp_path, env=ENV)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[:1] == [
        "dal-run: jobs 0-2 of the sweep already completed with this config: kept as they are, not launched again; "
        "nothing to launch (the sweep's end counts and reports them again)"], res.stderr
    assert "3 of 3 runs completed" in res.stdout + res.stderr
    assert "Launching" not in res.stdout + res.stderr and "#0 :" not in res.stdout + res.stderr  # nothing was
    assert read_csv(sweep / "report" / "auc.csv")[0]["seeds"] == "0 1 2"
    if launcher == "local":
        assert set((sweep / ".submitit").iterdir()) == submitted


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
