"""Sweeps with failed jobs, or launched again into their folder: every job's status.json, the
sweep's end and its report say what happened, and the same command continues the sweep. (Sweeps
stopped or killed: test_sweep_stops.py.)"""

from __future__ import annotations

import json

import pytest
from conftest import ONE_THREAD as ENV, run_cli, run_cli_inprocess

from dal_runner.io import read_csv, read_json


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
