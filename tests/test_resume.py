"""Resume after a hard kill, refusals of a wrong resume, and failures that are recorded, not lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, ONE_THREAD as ENV, RESUME_ARGS as BASE, run_cli, run_cli_inprocess, without_timings

from dal_runner.io import read_csv, read_json
from dal_runner.job_control import Terminated


def wait_for_round(folder: Path, round_index: int, until, timeout: float = 300) -> bool:
    """Poll folder/status.json until round `round_index` is in progress (True), or `until()` is true."""
    deadline = time.time() + timeout
    while time.time() < deadline and not until():
        try:
            if read_json(folder / "status.json").get("round") == round_index:
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return False


def _kill_mid_round(args, folder: Path, cwd: Path, round_index: int = 2) -> None:
    """Start dal-run, SIGKILL it once `round_index` is in progress (before its records are written)."""
    proc = subprocess.Popen([str(BIN / "dal-run"), *args, f"hydra.run.dir={folder}"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ENV})
    try:
        wait_for_round(folder, round_index, until=lambda: proc.poll() is not None)
        # and the rounds before it written (status.json names the round once its predecessor's state is
        # saved, a moment before that round's files: a kill in between left rounds.csv a round short)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and len(_rows_if_any(folder)) < round_index:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()


def _rows_if_any(folder: Path) -> list:
    try:
        return read_csv(folder / "rounds.csv")
    except (OSError, ValueError):
        return []


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, uninterrupted_run):
    root = tmp_path_factory.mktemp("resume")
    full, killed = uninterrupted_run, root / "killed"
    _kill_mid_round(BASE, killed, root)
    snapshot = root / "interrupted"
    shutil.copytree(killed, snapshot)
    return root, full, killed, snapshot


def test_killed_run_resumes_to_the_uninterrupted_results(killed_run):
    root, full, killed, snapshot = killed_run
    # the kill hit round 2: its records were never written, the state is that of round 1's end
    assert read_json(snapshot / "status.json")["state"] == "running"
    assert len(read_csv(snapshot / "rounds.csv")) == 2
    saved = torch.load(snapshot / "state" / "state.pt", weights_only=True)
    assert saved["next_round"] == 2 and saved["query_state"]["started"]

    res = run_cli([f"resume={killed}"], cwd=root, env=ENV)  # the run's own overrides are reused
    assert res.returncode == 0, res.stderr
    assert "resuming at round 2 with 150 labels" in res.stdout + res.stderr
    assert "resuming on" not in res.stdout + res.stderr  # the same thread count: no warning
    assert read_json(killed / "status.json")["state"] == "completed"
    assert without_timings(read_csv(killed / "rounds.csv")) == without_timings(read_csv(full / "rounds.csv"))
    assert read_csv(killed / "selected.csv") == read_csv(full / "selected.csv")
    # the figures of the stopped run said "unfinished: 2 of 6 rounds"; once resumed to the end, they
    # are the uninterrupted run's, byte for byte
    assert (snapshot / "learning_curve.png").read_bytes() != (full / "learning_curve.png").read_bytes()
    for figure in ("learning_curve.png", "arch_growth.png"):
        assert (killed / figure).read_bytes() == (full / figure).read_bytes(), figure
    a, b = (json.loads((p / "summary.json").read_text()) for p in (killed, full))
    assert (a["auc"], a["final_accuracy"]) == (b["auc"], b["final_accuracy"])
    # its seconds cover the rounds of both processes (those before the kill too), as loop_seconds
    assert a["seconds"] == a["loop_seconds"] >= sum(float(r["round_seconds"]) for r in read_csv(killed / "rounds.csv"))
    assert a["budget"]["max_rounds"] is None and "preset" not in a["choices"]  # no digits_mlp preset exists


def test_resume_with_another_config_is_refused(killed_run, monkeypatch, capsys):
    root, _, _, snapshot = killed_run
    code, _, err = run_cli_inprocess([f"resume={snapshot}", "trainer.epochs=5"], root, monkeypatch, capsys)
    assert code == 2
    line, = err.strip().splitlines()
    assert line.startswith("dal-run: error: resume=") and "another config" in line
    assert "trainer.epochs: 60 there, 5 here" in line
    assert read_json(snapshot / "status.json")["state"] == "running"  # untouched


def test_resume_of_a_completed_run_changes_nothing(killed_run, monkeypatch, capsys):
    root, full, _, _ = killed_run
    before = (full / "rounds.csv").read_bytes()
    code, _, err = run_cli_inprocess([f"resume={full}"], root, monkeypatch, capsys)
    assert code == 0 and "already completed" in err
    assert (full / "rounds.csv").read_bytes() == before
    # resume= given twice: the last counts, as the warning says (before: the first was resumed)
    code, _, err = run_cli_inprocess([f"resume={root}/no-such-run", f"resume={full}"], root, monkeypatch, capsys)
    assert code == 0 and "already completed" in err, err
    # its state removed (to save space): still completed, nothing to check the config against
    stateless = root / "stateless"
    shutil.copytree(full, stateless)
    shutil.rmtree(stateless / "state")
    code, _, err = run_cli_inprocess([f"resume={stateless}"], root, monkeypatch, capsys)
    assert code == 0 and "already completed" in err, err
    # with another config it is refused as for a stopped run (before: "nothing to resume", exit 0)
    code, _, err = run_cli_inprocess([f"resume={full}", "trainer.epochs=5"], root, monkeypatch, capsys)
    assert code == 2 and "the run was made with another config (trainer.epochs: 60 there, 5 here)" in err, err
    assert (full / "rounds.csv").read_bytes() == before


def test_report_of_an_interrupted_run_says_why(killed_run):
    root, _, _, snapshot = killed_run
    res = run_cli([str(snapshot)], cwd=root, script="dal-report")
    assert res.returncode == 2
    assert "none of the 1 run folder(s) completed" in res.stderr
    assert "running" in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_corrupt_state_is_refused(tmp_path, killed_run, monkeypatch, capsys):
    _, _, _, snapshot = killed_run
    broken = tmp_path / "broken"
    shutil.copytree(snapshot, broken)
    (broken / "state" / "state.pt").write_bytes(b"\x80\x02 truncated")
    code, out, err = run_cli_inprocess([f"resume={broken}"], tmp_path, monkeypatch, capsys)
    assert code == 2
    assert "state/state.pt is corrupt or truncated" in err and "Traceback" not in err + out
    # the state removed from a run that had done rounds: said so (before: "stopped before its first round ended")
    shutil.rmtree(broken / "state")
    code, out, err = run_cli_inprocess([f"resume={broken}"], tmp_path, monkeypatch, capsys)
    round_in = read_json(broken / "status.json")["round"]
    assert code == 2 and f"its status.json says round {round_in}, so the file was removed or moved" in err, err


def test_diverging_loss_fails_the_run_with_its_round(small_run, tmp_path):
    from dal_runner.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="lr=1000000.0"):
        small_run("trainer.optimizer=sgd", "trainer.lr=1e6", folder=tmp_path / "run")
    status = read_json(tmp_path / "run" / "status.json")
    assert status["state"] == "failed" and status["round"] == 0 and "TrainingDiverged" in status["error"]


def test_the_seed_alone_decides_the_initial_set_and_the_initialisation():
    from conftest import compose

    from dal_runner import run
    from dal_runner.loop import initial_set

    def first_weights(seed):
        exp = run.build(compose(["search=fixed", "arch=mlp", f"seed={seed}"]))
        model = exp.build_model(exp.search.spec)
        return next(model.parameters()).detach().clone(), initial_set(exp.data.x_train.shape[0], 100, exp.seed)

    (w0, s0), (w0b, s0b), (w1, s1) = first_weights(0), first_weights(0), first_weights(1)
    assert torch.equal(w0, w0b) and torch.equal(s0, s0b)
    assert not torch.equal(w0, w1) and len(set(s0.tolist()) & set(s1.tolist())) < 50


def test_building_a_model_leaves_the_global_random_state_alone():
    from conftest import compose

    from dal_runner import run

    exp = run.build(compose(["search=fixed", "arch=resnet_small", "seed=3"]))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    exp.build_model(exp.search.spec)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("deterministic", [False, True])
def test_a_deterministic_job_sets_the_cublas_workspace_before_any_job_runs(deterministic, monkeypatch):
    # cuBLAS reads it once, at its first use, which may be an earlier job's in a sweep
    from dal_runner import cli

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    sweep = ["-m", "search=fixed", "arch=mlp", f"trainer.deterministic=false,{str(deterministic).lower()}"]
    cli.preflight(sweep)
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == (":4096:8" if deterministic else None)


def running_in(*folders: Path) -> subprocess.Popen:
    """A process that holds the folders' locks, as a dal-run busy in a round does (sleeps 60 s)."""
    from dal_runner.job_control import folder_locked

    code = ("import fcntl, os, sys, time\nfor f in sys.argv[1:]:\n    fd = os.open(f, os.O_RDONLY)\n"
            "    fcntl.flock(fd, fcntl.LOCK_EX)\ntime.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, folders)])
    deadline = time.time() + 30
    while not all(folder_locked(f) for f in folders) and time.time() < deadline:
        time.sleep(0.02)
    return proc


def test_resume_of_a_run_still_going_is_refused(tmp_path, killed_run, monkeypatch, capsys):
    import socket

    _, _, _, snapshot = killed_run
    busy = tmp_path / "busy"
    shutil.copytree(snapshot, busy)
    with running_in(busy) as other:  # a dal-run busy in a round
        status = {**read_json(busy / "status.json"), "host": socket.gethostname(), "pid": other.pid}
        (busy / "status.json").write_text(json.dumps(status))
        code, _, err = run_cli_inprocess([f"resume={busy}"], tmp_path, monkeypatch, capsys)
        other.kill()
    assert code == 2 and f"still going (pid {other.pid}" in err
    # the pid given again to another python program, which holds no run's lock: not a run that is going
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        (busy / "status.json").write_text(json.dumps({**status, "pid": other.pid}))
        code, _, err = run_cli_inprocess([f"resume={busy}", "trainer.epochs=5"], tmp_path, monkeypatch, capsys)
        other.kill()
    assert code == 2 and "still going" not in err and "another config" in err, err
    # a pid the system gave again to another program (not python) is no run that is going
    with subprocess.Popen(["sleep", "60"]) as other:
        (busy / "status.json").write_text(json.dumps({**status, "pid": other.pid}))
        code, _, err = run_cli_inprocess([f"resume={busy}", "trainer.epochs=5"], tmp_path, monkeypatch, capsys)
        other.kill()
    assert code == 2 and "still going" not in err and "another config" in err, err


def test_a_run_or_sweep_launched_into_a_folder_still_going_is_refused(tmp_path, killed_run, monkeypatch, capsys):
    """The same command again into a run's folder, or a sweep's, while its process still writes
    there: refused before anything is written (before, a second process resumed the same rounds
    and both wrote the same files)."""
    import socket

    _, _, _, snapshot = killed_run
    busy, sweep = tmp_path / "busy", tmp_path / "sweep"
    shutil.copytree(snapshot, busy)
    (sweep / "1").mkdir(parents=True)
    with running_in(busy, sweep / "1") as other:  # a dal-run busy in a round
        status = {**read_json(busy / "status.json"), "host": socket.gethostname(), "pid": other.pid}
        for folder in (busy, sweep / "1"):
            (folder / "status.json").write_text(json.dumps(status))
        before = (busy / ".hydra" / "config.yaml").read_bytes()
        code, _, err = run_cli_inprocess([*BASE, f"hydra.run.dir={busy}"], tmp_path, monkeypatch, capsys)
        assert code == 2, err
        assert f"hydra.run.dir={busy}: a run there is still going (pid {other.pid} on this machine)" in err
        assert (busy / ".hydra" / "config.yaml").read_bytes() == before
        code, _, err = run_cli_inprocess(["-m", *BASE, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path,
                                         monkeypatch, capsys)
        other.kill()
    assert code == 2 and f"its job 1 ({sweep / '1'}) is still going (pid {other.pid}" in err, err
    assert not (sweep / "0").exists()


@pytest.mark.parametrize("sig, status, how", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                              (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                              # sbatch --signal=USR1@90 in a user's own script: its default
                                              # action had killed the run without a word
                                              (signal.SIGUSR1, 138, "terminated (SIGUSR1)"),
                                              # the terminal closed or the ssh connection dropped
                                              (signal.SIGHUP, 129, "terminated (SIGHUP)")])
def test_sigterm_or_ctrl_c_leaves_an_interrupted_run_that_resumes(tmp_path, uninterrupted_run, sig, status, how):
    folder = tmp_path / "run"
    # as from a terminal: SIGINT's default action, even where pytest itself was started with SIGINT
    # ignored (a background job of a non-interactive shell), which its children would inherit
    proc = subprocess.Popen([str(BIN / "dal-run"), *BASE, f"hydra.run.dir={folder}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV},
                            preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGHUP)])
    try:
        assert wait_for_round(folder, 1, until=lambda: proc.poll() is not None)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    lines = err.strip().splitlines()
    assert lines == [f"dal-run: error: {how} in round 1 of {folder}; dal-run resume={folder} continues it"], err
    assert read_json(folder / "status.json")["state"] == "interrupted"
    assert read_json(folder / "status.json")["round"] == 1
    assert f"{how} in round 1 of {folder}; dal-run resume={folder} continues it" in (folder / "dal-run.log").read_text()
    if sig == signal.SIGTERM:  # it stopped cleanly: the resumed run is the uninterrupted one
        res = run_cli([f"resume={folder}"], cwd=tmp_path, env=ENV)
        assert res.returncode == 0, res.stderr
        assert without_timings(read_csv(folder / "rounds.csv")) == without_timings(
            read_csv(uninterrupted_run / "rounds.csv"))


def test_a_single_round_run_launched_again_into_its_folder_is_kept(tmp_path, monkeypatch, capsys):
    """One round leaves no next round to resume, yet its state is kept, marked finished: the same
    run launched into its folder again is kept as it is; after a stop between the last state and
    summary.json (status.json still `running`), it writes the results from the saved rounds
    without training."""
    args = ["search=fixed", "arch=mlp", "budget.initial=50", "budget.max_rounds=1", "trainer.epochs=3",
            f"hydra.run.dir={tmp_path / 'one'}"]
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    err += out  # the log, wherever Hydra's handler writes it
    assert code == 0, err
    one = tmp_path / "one"
    saved = torch.load(one / "state" / "state.pt", weights_only=True)
    assert saved["finished"] and saved["next_round"] == 1
    before = {name: (one / name).read_bytes() for name in ("rounds.csv", "selected.csv", "summary.json")}
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    err += out  # the log, wherever Hydra's handler writes it
    assert code == 0 and "already completed with this config; kept as it is" in err, err
    assert {name: (one / name).read_bytes() for name in before} == before
    # another config into it is refused before Hydra writes .hydra/: the folder keeps its own
    hydra_config = (one / ".hydra" / "config.yaml").read_bytes()
    other = [a if a != "trainer.epochs=3" else "trainer.epochs=4" for a in args]
    code, out, err = run_cli_inprocess(other, tmp_path, monkeypatch, capsys)
    assert code == 2 and f"hydra.run.dir={one}: the run was made with another config (trainer.epochs: 3 there, 4 here)" in err
    # and what is accepted is what a launch into the folder takes (no override there is the default config,
    # not the run's, which "or none" had said)
    assert err.strip().endswith(f"accepted: the run's own overrides (dal-run resume={one} reuses them), or another "
                                f"hydra.run.dir for a new run"), err
    assert (one / ".hydra" / "config.yaml").read_bytes() == hydra_config
    assert read_json(one / "status.json")["state"] == "completed"

    (one / "status.json").write_text('{"state": "running", "round": 0}')
    for name in ("summary.json", "rounds.csv", "selected.csv", "learning_curve.png"):
        (one / name).unlink()  # a stop right after the state was saved: none of its files written
    saved = torch.load(one / "state" / "state.pt", weights_only=True)
    other = {"device": "cpu", "threads": 64}  # its round ran elsewhere; here no round runs
    torch.save({**saved, "machine": other, "machines": [{"machine": other, "from_round": 0}]},
               one / "state" / "state.pt")
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    err += out  # the log, wherever Hydra's handler writes it
    assert code == 0 and "all 1 rounds were done already" in err, err
    assert "resuming at round" not in err  # before: 'resuming at round 1', a round the run does not have
    assert "resuming on" not in err  # nor that rounds from here on may differ: none runs
    assert read_json(one / "summary.json")["machines"] == ["cpu with 64 thread(s) from round 0"]
    assert "  labels " not in err and "epoch" not in err  # no round trained (not 0, nor a round 1)
    assert read_json(one / "status.json")["state"] == "completed"
    summary = read_json(one / "summary.json")
    assert summary["final_accuracy"] == json.loads(before["summary.json"])["final_accuracy"]
    assert {name: (one / name).read_bytes() for name in ("rounds.csv", "selected.csv")} == {
        name: before[name] for name in ("rounds.csv", "selected.csv")}
    assert (one / "learning_curve.png").is_file()


def test_a_stop_after_round_0_saved_its_state_resumes(tmp_path, uninterrupted_run, monkeypatch, capsys):
    """The state is saved before a round's files: a stop between the two, in round 0 too, leaves a
    run that resumes to the uninterrupted results (before, rounds.csv held a round that no state
    continued from: 'nothing to resume')."""
    from dal_runner.io import RunFolder

    folder, real = tmp_path / "run", RunFolder.rounds

    def stop_once(self, rows, extra_fields=()):
        monkeypatch.setattr(RunFolder, "rounds", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "rounds", stop_once)
    code, _, err = run_cli_inprocess([*BASE, f"hydra.run.dir={folder}"], tmp_path, monkeypatch, capsys)
    assert code == 130 and f"dal-run resume={folder} continues it" in err, err
    assert not (folder / "rounds.csv").exists()
    assert torch.load(folder / "state" / "state.pt", weights_only=True)["next_round"] == 1
    code, _, err = run_cli_inprocess([f"resume={folder}"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert without_timings(read_csv(folder / "rounds.csv")) == without_timings(
        read_csv(uninterrupted_run / "rounds.csv"))
    assert read_csv(folder / "selected.csv") == read_csv(uninterrupted_run / "selected.csv")


def test_a_key_added_later_with_a_null_default_does_not_block_resuming_an_older_run():
    from dal_runner.state import differences

    saved = {"trainer": {"epochs": 60}, "seed": 0}  # made before trainer.stop_at_train_accuracy existed
    assert differences(saved, {"trainer": {"epochs": 60, "stop_at_train_accuracy": None}, "seed": 0}) == []
    assert differences(saved, {"trainer": {"epochs": 60, "stop_at_train_accuracy": 0.99}, "seed": 0}) == [
        "trainer.stop_at_train_accuracy: <unset> there, 0.99 here"]


def test_a_key_added_later_at_the_value_that_does_what_older_runs_did_does_not_block_resuming_them():
    """A run of 2026-12-03 lacked dataset.augment.fill and trainer.cuda_graphs; resuming it said
    'another config (dataset.augment.fill: <unset> there, zeros here; ...)' to a user who gave no
    override, and no override could help."""
    from dal_runner.state import ResumeError, check_same_config, differences

    saved = {"dataset": {"augment": {"crop_padding": 4}}, "trainer": {"epochs": 60}, "query": {"name": "albl"}}
    now = {"dataset": {"augment": {"crop_padding": 4, "fill": "zeros"}},
           "trainer": {"epochs": 60, "cuda_graphs": True, "precision": "fp32"},
           "query": {"name": "albl", "variant": "exp4p", "arms": "points"}}
    assert differences(saved, now) == []
    # before the factor, only NaN or inf stopped a run: what divergence_factor=null does
    assert differences(saved, {**now, "trainer": {**now["trainer"], "divergence_factor": None}}) == []
    assert differences(saved, {**now, "trainer": {**now["trainer"], "divergence_factor": 100.0}}) == [
        "trainer.divergence_factor: null there (made before dal-run had this key), 100.0 here"]
    # a trainer=badge run made before BADGE's gradient clamp: resumed with trainer.grad_clip_value=null
    assert differences(saved, {**now, "trainer": {**now["trainer"], "grad_clip_value": 0.1}}) == [
        "trainer.grad_clip_value: null there (made before dal-run had this key), 0.1 here"]
    # the value now default is not what the run did (ALBL's arms were points; fp32 before bf16 existed)
    now["trainer"]["precision"], now["query"]["arms"] = "auto", "strategies"
    with pytest.raises(ResumeError) as err:
        check_same_config(None, saved, now)
    assert str(err.value) == ("the run was made with another config (query.arms: points there (made before dal-run "
                              "had this key), strategies here; trainer.precision: fp32 there (made before dal-run "
                              "had this key), auto here)")
    assert err.value.accepted.endswith("the value that does what it did: query.arms=points trainer.precision=fp32")


def test_a_run_resumed_elsewhere_reads_its_relative_paths_from_where_it_began_and_checks_its_data(
        tmp_path, monkeypatch, capsys):
    import numpy as np

    from dal_runner import loop

    rng = np.random.default_rng(0)
    began, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    began.mkdir(), elsewhere.mkdir()

    def write(n):
        x = rng.normal(size=(n, 6)).astype(np.float32)
        np.savez(began / "mine.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))

    write(400)
    args = ["dataset=npz", "dataset.path=mine.npz", "search=fixed", "arch=mlp", "trainer.epochs=2",
            "budget.initial=20", "budget.batch=20", "budget.max_labels=100", "hydra.run.dir=run"]
    calls = []
    real = loop.learning_curve

    def stop_in_round_1(*a, **k):  # Ctrl-C once round 1's state is saved
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "learning_curve", stop_in_round_1)
    code, _, err = run_cli_inprocess(args, began, monkeypatch, capsys)
    assert code == 130 and read_json(began / "run" / "status.json")["state"] == "interrupted", err
    monkeypatch.setattr(loop, "learning_curve", real)

    write(300)  # the file rewritten: the run cannot continue on it
    code, _, err = run_cli_inprocess([f"resume={began / 'run'}"], elsewhere, monkeypatch, capsys)
    assert code == 2 and "its data changed since the run began (pool: 280 then, 210 now; test: 120 then, 90 now)" in err
    rng = np.random.default_rng(0)
    write(400)  # the same file again: from another folder, mine.npz is still the file the run began with
    code, _, err = run_cli_inprocess([f"resume={began / 'run'}"], elsewhere, monkeypatch, capsys)
    assert code == 0, err
    assert f"dal-run: resuming in {began}, the folder run was started from" in err
    assert read_json(began / "run" / "status.json")["state"] == "completed"
    assert [r["n_labeled"] for r in read_csv(began / "run" / "rounds.csv")] == ["20", "40", "60", "80", "100"]


@pytest.mark.parametrize("stop, status, how", [(KeyboardInterrupt, 130, "interrupted (Ctrl-C)"),
                                               (lambda: Terminated(143), 143, "terminated (SIGTERM)")])
def test_a_stop_while_the_run_is_starting_leaves_no_folder(tmp_path, monkeypatch, capsys, stop, status, how):
    """Ctrl-C or SIGTERM while the data load or the model is built: nothing ran, so nothing that
    looks like a run (.hydra/, dal-run.log) is left, and the one line says so."""
    from dal_runner import run

    def stopped(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(run, "build", stopped)
    folder = tmp_path / "new" / "run"
    code, _, err = run_cli_inprocess([*BASE, f"hydra.run.dir={folder}"], tmp_path, monkeypatch, capsys)
    assert code == status, err
    assert err.strip().splitlines()[-1] == (
        f"dal-run: error: {how} while the run was starting; nothing was written: run the command again")
    assert not (tmp_path / "new").exists()


def test_a_second_process_in_a_run_folder_is_refused_while_the_first_runs(tmp_path, monkeypatch, capsys):
    """Two dal-run processes in one folder (one started twice within seconds, before its status.json
    exists; or resume= of a SLURM job that submitit requeued meanwhile) would write the same files
    twice over: the folder is locked for the whole job, and the second is refused."""
    import fcntl

    folder = tmp_path / "run"
    folder.mkdir()
    holder = os.open(folder, os.O_RDONLY)  # the first process's lock
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = run_cli_inprocess([*BASE, f"hydra.run.dir={folder}"], tmp_path, monkeypatch, capsys)
    finally:
        os.close(holder)
    assert code == 2, err
    assert err.strip().splitlines()[-1] == (
        f"dal-run: error: hydra.run.dir={folder}: a run there is still going (another dal-run process runs in it); "
        f"accepted: another folder, or this one once that run stopped")
    assert not (folder / "status.json").exists() and not (folder / "state").exists()
    assert not (folder / ".hydra").exists()  # refused before Hydra wrote the second run's config over the first's


def test_two_resumes_of_one_run_at_once_refuse_the_second_by_its_resume(killed_run, tmp_path, monkeypatch, capsys):
    """Two `dal-run resume=PATH` started together: the second named hydra.run.dir, which the user never
    typed; it now says what a later one says, by resume=."""
    import fcntl

    run = tmp_path / "run"
    shutil.copytree(killed_run[3], run)
    holder = os.open(run, os.O_RDONLY)  # the first resume's lock
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = run_cli_inprocess([f"resume={run}"], tmp_path, monkeypatch, capsys)
    finally:
        os.close(holder)
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"dal-run: error: resume={run}: the run is still going (another dal-run process runs in it); accepted: a "
        f"run that stopped (wait for it, or stop it first)"), err


@pytest.mark.parametrize("damage", ["missing", "not yaml", "not a list"])
def test_resume_of_a_folder_with_a_damaged_overrides_file_is_one_line(tmp_path, monkeypatch, capsys,
                                                                      uninterrupted_run, damage):
    run = tmp_path / "run"
    shutil.copytree(uninterrupted_run, run)
    overrides = run / ".hydra" / "overrides.yaml"
    if damage == "missing":
        overrides.unlink()
    else:
        overrides.write_text("- seed=[oops\n- : :\n" if damage == "not yaml" else "seed: 0\n")
    code, out, err = run_cli_inprocess([f"resume={run}"], tmp_path, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in out + err, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"dal-run: error: resume={run}: its .hydra/overrides.yaml cannot be read (") and \
        line.endswith("accepted: a run folder as dal-run wrote it (the file lists the run's overrides, one per "
                      "line, e.g. - seed=0)"), line


def test_a_stop_of_a_sweep_whose_jobs_run_elsewhere_names_the_sweep_and_how_to_finish_it(monkeypatch, capsys, tmp_path):
    """The process of a submitit sweep (hydra/launcher=local or =slurm) runs no job itself: a Ctrl-C
    there names the sweep and the command that finishes it (it had said only "interrupted")."""
    from dal_runner import callbacks, cli

    sweep = str(tmp_path / "sweep")
    monkeypatch.setitem(callbacks.LAUNCHED_JOBS, sweep, [tmp_path / "sweep" / "0"])
    monkeypatch.setitem(cli._CURRENT, "run_dir", None)
    monkeypatch.setitem(cli._CURRENT, "not_started", False)
    with pytest.raises(SystemExit) as stop:
        cli._stopped("interrupted (Ctrl-C)", 130)
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == (  # its jobs, each as its status.json says: test_sweep_stops.py
        f"dal-run: error: interrupted (Ctrl-C) of the sweep {sweep}; its jobs: 1 not started; the same command with "
        f"hydra.sweep.dir={sweep} finishes it (completed jobs are kept)")
    # SLURM: the cluster's jobs were not stopped (it said "stopped ones continue", and a relaunch was refused)
    monkeypatch.setitem(cli.PREFLIGHT, "launcher", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
    with pytest.raises(SystemExit) as stop:
        cli._stopped("interrupted (Ctrl-C)", 130)
    assert capsys.readouterr().err.strip() == (
        f"dal-run: error: interrupted (Ctrl-C) of the sweep {sweep}; its SLURM jobs keep running (squeue lists them, "
        f"scancel stops them); once they have ended, the same command with hydra.sweep.dir={sweep} finishes it "
        f"(completed jobs are kept, stopped ones continue)")


def test_a_round_whose_every_candidate_diverges_fails_the_run_naming_it(small_run, tmp_path):
    from dal_runner.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"round 0: every candidate's training diverged \(3;"):
        small_run("search=inas", "arch=resnet", "arch.width=4", "trainer.optimizer=sgd", "trainer.lr=1e6",
                  "trainer.epochs=2", folder=tmp_path / "run")
    assert read_json(tmp_path / "run" / "status.json")["state"] == "failed"


def _as_a_fresh_process() -> None:
    """What a dal-run process started from a terminal has, for a test that sends itself signals:
    the default handlers, no signal blocked, no stop being recorded. pytest itself may have started
    otherwise: `nohup make test &` from a script leaves SIGINT and SIGHUP ignored (a background job
    of a non-interactive shell ignores SIGINT), and stop_on_sigterm rightly leaves an ignored signal
    alone, so the first SIGINT below never raised (seen 2026-12-04). What was found is reported as
    a warning."""
    import warnings

    from dal_runner import job_control

    found = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        found.append(f"SIGINT handler {signal.getsignal(signal.SIGINT)!r}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        if signal.getsignal(s) not in (signal.SIG_DFL, None):
            found.append(f"{s.name} handler {signal.getsignal(s)!r}")
            signal.signal(s, signal.SIG_DFL)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    found += [f"{s.name} blocked" for s in blocked if s in (signal.SIGINT, signal.SIGTERM)]
    if job_control._STOPPING:
        found.append(f"a stop being recorded: {job_control._STOPPING}")
        job_control._clear_stops()
    if found:
        warnings.warn("signal state not a fresh terminal process's (reset for this test): " + "; ".join(found))


def test_a_second_stop_while_the_first_is_being_recorded_is_ignored():
    """A double Ctrl-C (or Ctrl-C then SIGTERM): the except clauses that write status.json run whole."""
    from dal_runner.job_control import Terminated, stop_on_sigterm

    _as_a_fresh_process()
    restore = stop_on_sigterm()
    recorded = []
    try:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs at the next bytecode
        except KeyboardInterrupt:
            for second in (signal.SIGINT, signal.SIGTERM):
                os.kill(os.getpid(), second)  # would raise inside this except clause
                time.sleep(0.1)
            recorded.append("interrupted")
    finally:
        restore()
    assert recorded == ["interrupted"]
    restore = stop_on_sigterm()  # a later run starts afresh: its first stop counts
    try:
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        restore()


def test_a_stop_raised_where_python_ignores_it_does_not_make_the_next_one_ignored(monkeypatch):
    """A Ctrl-C whose KeyboardInterrupt is raised inside a garbage collector's callback is printed
    and dropped by Python ("Exception ignored in: ... WeakKeyDictionary"): the run went on, and every
    later Ctrl-C or SIGTERM was ignored as a second stop (seen in a sweep; only SIGKILL ended it)."""
    import gc
    import weakref

    from dal_runner.job_control import stop_on_sigterm, stop_recorded

    class Thing:
        pass

    def callback(_):  # runs when the object is collected: the signal's handler raises in here
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)

    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))  # Python's "Exception ignored"
    _as_a_fresh_process()
    restore = stop_on_sigterm()
    try:
        thing = Thing()
        ref = weakref.ref(thing, callback)  # noqa: F841
        del thing
        gc.collect()
        # the first stop, dropped by Python and kept off the terminal (its "Exception ignored in ...",
        # traceback and all, came above the run's one-line stop: a CI failure), but recorded
        assert dropped == [] and isinstance(stop_recorded(), KeyboardInterrupt)
        other = Thing()
        ref = weakref.ref(other, lambda _: 1 / 0)  # noqa: F841
        del other
        gc.collect()
        assert dropped == [ZeroDivisionError]  # any other error is Python's to print, as before
        with pytest.raises(Terminated):  # the next stop stops
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        restore()


def _drop_a_signal(signum: int) -> list:
    """Sends `signum` to this process from inside a weakref's callback, where Python prints what the
    handler raises ("Exception ignored in") and goes on; returns the types it dropped so."""
    import gc
    import weakref

    class Thing:
        pass

    def callback(_):
        os.kill(os.getpid(), signum)
        time.sleep(1)  # the handler runs here

    dropped = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: dropped.append(u.exc_type)
    try:
        thing = Thing()
        ref = weakref.ref(thing, callback)  # noqa: F841
        del thing
        gc.collect()
    finally:
        sys.unraisablehook = hook
    return dropped


def test_a_stop_python_dropped_in_a_callback_stops_the_training_after_its_epoch():
    """Before, the training went on to its last epoch as if no signal had come."""
    from dal_runner.config import TrainerConfig
    from dal_runner.job_control import stop_on_sigterm
    from dal_runner.train import fit

    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    model = torch.nn.Linear(5, 3)
    batches = []

    def augment(xb, gen):
        batches.append(len(xb))
        if len(batches) == 1:
            assert _drop_a_signal(signal.SIGTERM) == [Terminated]
        return xb

    _as_a_fresh_process()
    restore = stop_on_sigterm()
    try:
        with pytest.raises(Terminated):
            fit(model, x, y, TrainerConfig(epochs=20, batch_size=16, lr=0.01), seed=0, augment=augment)
    finally:
        restore()
    assert batches == [16, 16, 16, 16]  # the first epoch, whole; none after it


@pytest.mark.parametrize("whose", ["ours", "submitit's"])
def test_a_preemption_python_dropped_in_a_callback_still_stops_the_run(whose, tmp_path, monkeypatch):
    """The SLURM test failed in CI so (1 in 4 runs here): submitit's SIGUSR2 handler requeued the job,
    then its SystemExit was raised inside a weakref callback of torch and dropped; the job ran all
    its rounds while its requeued copy waited, then found it completed. Now the stop is raised again
    before the next round (or after the epoch), and the run is interrupted there."""
    from conftest import compose

    from dal_runner import run
    from dal_runner.execute import execute
    from dal_runner.io import RunFolder
    from dal_runner.job_control import stop_on_sigterm

    def submitit_like(signum, frame):  # what submitit's checkpoint_and_try_requeue ends with
        sys.exit(-1)

    signum, raised = (signal.SIGTERM, Terminated) if whose == "ours" else (signal.SIGUSR2, SystemExit)
    writes, real = [], RunFolder.selected

    def selected(folder, rows):  # the query's end of each round
        writes.append(len(rows))
        if len(writes) == 2:  # round 1
            assert _drop_a_signal(signum) == [raised]
        return real(folder, rows)

    monkeypatch.setattr(RunFolder, "selected", selected)
    cfg = compose(["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=200",
                   "trainer.epochs=2"])
    experiment = run.build(cfg)
    _as_a_fresh_process()
    if whose != "ours":
        signal.signal(signal.SIGUSR2, submitit_like)
    restore = stop_on_sigterm()
    try:
        with pytest.raises(raised) as stop:
            execute(experiment, tmp_path / "run")
    finally:
        restore()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    assert whose == "ours" or stop.value.code == -1  # submitit's own SystemExit, as submitit raised it
    status = read_json(tmp_path / "run" / "status.json")
    assert status["state"] == "interrupted" and "by a signal" in status["error"], status
    assert len(read_csv(tmp_path / "run" / "rounds.csv")) == 2  # rounds 0 and 1; rounds 2 and 3 not run


def test_only_a_stop_that_a_wrapped_handler_raises_is_recorded():
    """A library's handler that fails (ValueError) is the library's error, not a stop for the run to
    raise again later."""
    from dal_runner.job_control import _clear_stops, _recording, stop_recorded

    def broken(signum, frame):
        raise ValueError("a library's bug")

    def requeues(signum, frame):
        sys.exit(-1)

    _clear_stops()
    try:
        with pytest.raises(ValueError):
            _recording(broken)(signal.SIGUSR2, None)
        assert stop_recorded() is None
        with pytest.raises(SystemExit):
            _recording(requeues)(signal.SIGUSR2, None)
        assert isinstance(stop_recorded(), SystemExit) and stop_recorded().code == -1
    finally:
        _clear_stops()


def test_temporary_files_of_writes_cut_short_are_removed_when_the_run_starts(small_run, tmp_path):
    folder = tmp_path / "run"
    (folder / "state").mkdir(parents=True)
    partial = [folder / ".selected.csv.k7fcbvv_.tmp", folder / "state" / ".state.pt.x1y2z3.tmp"]
    for p in partial:
        p.write_bytes(b"half a file")
    small_run("budget.max_labels=100", folder=folder)
    assert not any(p.exists() for p in partial)


def test_a_folder_locked_before_hydra_stays_locked_until_its_job_ends(tmp_path):
    from dal_runner import job_control

    folder = tmp_path / "run"
    folder.mkdir()
    try_lock = [sys.executable, "-c", "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(folder)]
    job_control.hold_folder(folder)  # the preflight of a single run
    try:
        assert job_control.folder_locked(folder) is False  # this process's own lock, and a check keeps it
        assert subprocess.run(try_lock, capture_output=True).returncode != 0
    finally:
        with job_control.only_process_in(folder):  # the job keeps it, then gives it back
            assert subprocess.run(try_lock, capture_output=True).returncode != 0
    assert subprocess.run(try_lock, capture_output=True).returncode == 0


def test_resume_of_a_sweeps_folder_says_how_to_continue_it(tmp_path, monkeypatch, capsys):
    # before: "not a dal-run run folder", with no word of the sweep (the folders as Hydra writes them)
    sweep = tmp_path / "sweep"
    for job in ("0", "1", "10"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "config.yaml").write_text(f"seed: {job}\n")
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - seed=0,1,10\n    - arch=mlp\n")
    code, _, err = run_cli_inprocess([f"resume={sweep}"], tmp_path, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert f"resume={sweep}: a sweep's folder" in err
    assert f"accepted: resume={sweep}/0 for one job" in err
    assert f"dal-run -m seed=0,1,10 arch=mlp hydra.sweep.dir={sweep}" in err
    (sweep / "multirun.yaml").unlink()  # job folders alone: the overrides are not known
    code, _, err = run_cli_inprocess([f"resume={sweep}"], tmp_path, monkeypatch, capsys)
    assert code == 2 and f"dal-run -m <its overrides> hydra.sweep.dir={sweep}" in err
    # its jobs' hydra.yaml say MULTIRUN, but that of job 10, resumed alone (resume=<sweep>/10), says RUN
    for job, mode in (("0", "MULTIRUN"), ("1", "MULTIRUN"), ("10", "RUN")):
        (sweep / job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  mode: {mode}\n")
    code, _, err = run_cli_inprocess([f"resume={sweep}"], tmp_path, monkeypatch, capsys)
    assert code == 2 and f"dal-run -m <its overrides> hydra.sweep.dir={sweep}" in err, err
    # a date folder of single runs (Hydra's mode RUN): no sweep to launch again (before: the sweep's advice)
    for job in ("0", "1", "10"):
        (sweep / job / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RUN\n")
    code, _, err = run_cli_inprocess([f"resume={sweep}"], tmp_path, monkeypatch, capsys)
    assert code == 2 and f"resume={sweep}: a folder of 3 run(s), not a run itself; accepted: resume=PATH of one " \
        f"of them, e.g. resume={sweep}/10 (the newest by name)" in err, err


def test_resume_into_another_run_folder_is_refused(tmp_path, monkeypatch, capsys):
    # before: hydra.run.dir was dropped without a word and the run went on in its own folder
    code, out, err = run_cli_inprocess([f"resume={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'other'}"],
                                       tmp_path, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err + out
    assert f"hydra.run.dir={tmp_path / 'other'}: a resumed run goes on in its own folder" in err
    assert not (tmp_path / "other").exists()


def test_the_figures_of_a_run_say_it_is_unfinished_until_its_last_round(tmp_path, monkeypatch):
    # before: a run stopped after round 1 left a learning curve that looked like a finished one
    from conftest import compose

    from dal_runner import loop, run
    from dal_runner.execute import execute

    titles, real = [], loop.learning_curve
    monkeypatch.setattr(loop, "learning_curve", lambda rounds, title, path: titles.append(title) or real(rounds, title, path))
    cfg = compose(["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=150",
                   "trainer.epochs=2"])
    execute(run.build(cfg), tmp_path / "run")
    assert [t.splitlines()[-1] for t in titles] == ["unfinished: 1 of 3 rounds", "unfinished: 2 of 3 rounds",
                                                    titles[-1]]
    assert "unfinished" not in titles[-1] and titles[-1].strip()


def test_a_resumption_with_another_thread_count_says_its_rounds_may_differ(killed_run, tmp_path):
    # before: nothing said so, and the rounds after it differed from an uninterrupted run's in their
    # last bits (a CPU reduction's rounding depends on how it is split over threads)
    root, _, _, snapshot = killed_run
    run = tmp_path / "run"
    shutil.copytree(snapshot, run)
    res = run_cli([f"resume={run}"], cwd=tmp_path, env={"OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr
    assert ("resuming on cpu with 2 thread(s); before this stop the run ran on cpu with 1 thread(s): the rounds "
            "from here on may differ") in res.stdout + res.stderr
    assert torch.load(run / "state" / "state.pt", weights_only=True)["machine"] == {"device": "cpu", "threads": 2}
    # and the run's results say so, not only its log: summary.json lists both, and dal-report notes the run
    assert read_json(run / "summary.json")["machines"] == ["cpu with 1 thread(s) from round 0",
                                                          "cpu with 2 thread(s) from round 2"]
    from dal_runner import report

    built = report.build_report([run])
    assert any(n.startswith("1 run(s) resumed on another machine or thread count") for n in built.notes), built.notes


def test_a_resumption_with_other_code_says_so_and_summary_json_keeps_both_commits(killed_run, tmp_path):
    """dal-runner's commit is taken when the run starts and kept in its state: a run resumed after
    a `git pull` warns, and its summary.json names the commit it began at beside the one it ended at."""
    from dal_runner.provenance import source_commit

    _, _, _, snapshot = killed_run
    run = tmp_path / "run"
    shutil.copytree(snapshot, run)
    saved = torch.load(run / "state" / "state.pt", weights_only=True)
    assert saved["commit"] == source_commit()
    torch.save({**saved, "commit": "0" * 40}, run / "state" / "state.pt")
    res = run_cli([f"resume={run}"], cwd=tmp_path, env=ENV)
    assert res.returncode == 0, res.stderr
    assert f"resuming with dal-runner at commit {source_commit()}; the run began at {'0' * 40}" in res.stdout + res.stderr
    versions = read_json(run / "summary.json")["versions"]
    assert versions["dal_runner_commit_at_start"] == "0" * 40 and versions["dal_runner_commit"] == source_commit()


def test_a_stop_while_a_round_is_written_names_the_round_a_resume_starts_at(tmp_path, monkeypatch):
    # before: "interrupted in round 1" for a stop while round 1's files were written, after its state
    # was saved, and then "resuming at round 2"
    from conftest import compose

    from dal_runner import run
    from dal_runner.execute import execute
    from dal_runner.io import RunFolder

    writes, real = [], RunFolder.selected

    def selected(folder, rows):
        writes.append(len(rows))
        if len(writes) == 2:  # round 1's files
            raise KeyboardInterrupt
        return real(folder, rows)

    monkeypatch.setattr(RunFolder, "selected", selected)
    cfg = compose(["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=150",
                   "trainer.epochs=2"])
    with pytest.raises(KeyboardInterrupt):
        execute(run.build(cfg), tmp_path / "run")
    status = read_json(tmp_path / "run" / "status.json")
    saved = torch.load(tmp_path / "run" / "state" / "state.pt", weights_only=True)
    assert status["state"] == "interrupted" and status["round"] == saved["next_round"] == 2




def test_a_stop_raised_inside_an_import_leaves_the_run_interrupted_not_failed(tmp_path, monkeypatch):
    """A SIGTERM whose Terminated was raised while a module was being imported reaches the run as
    ImportError("initialization failed"): before, the run said `failed` with that error (seen in CI:
    a local sweep stopped by SIGTERM, one job failed instead of interrupted). The stop the handler
    recorded decides: the run is interrupted, and the stop goes on up."""
    from conftest import compose

    from dal_runner import run
    from dal_runner.execute import execute
    from dal_runner.io import RunFolder
    from dal_runner.job_control import stop_on_sigterm

    writes, real = [], RunFolder.selected

    def selected(folder, rows):
        writes.append(len(rows))
        if len(writes) == 2:  # in round 1: the signal, then what an extension's import makes of it
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except Terminated:
                raise ImportError("initialization failed") from None
        return real(folder, rows)

    monkeypatch.setattr(RunFolder, "selected", selected)
    cfg = compose(["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=150",
                   "trainer.epochs=2"])
    experiment = run.build(cfg)
    restore = stop_on_sigterm()
    try:
        with pytest.raises(Terminated):
            execute(experiment, tmp_path / "run")
    finally:
        restore()
    status = read_json(tmp_path / "run" / "status.json")
    assert status["state"] == "interrupted" and "by a signal" in status["error"], status


def test_a_slurm_job_requeued_by_submitit_says_it_continues_by_itself(tmp_path, monkeypatch):
    """submitit's preemption handler requeues the job, then exits (SystemExit): the run's status
    says so. Before, it said `dal-run resume=... continues it`, and a resume by hand took the folder
    from the requeued job, which then stopped, and the sweep ended without the run."""
    from dal_runner.execute import mark_interrupted
    from dal_runner.job_control import Terminated
    from dal_runner.state import state_path

    state_path(tmp_path).parent.mkdir(parents=True)
    state_path(tmp_path).write_bytes(b"state")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    mark_interrupted(tmp_path, SystemExit(-1))
    error = read_json(tmp_path / "status.json")["error"]
    assert "requeued by submitit as job 4242" in error and "continues by itself" in error and "resume=" not in error
    # a task of a job array, as squeue and .submitit/ name it
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    mark_interrupted(tmp_path, SystemExit(-1))
    assert "requeued by submitit as job 4240_2" in read_json(tmp_path / "status.json")["error"]
    mark_interrupted(tmp_path, Terminated(143))  # our own stop (scancel outside submitit): resume= as before
    assert f"resume={tmp_path} continues it" in read_json(tmp_path / "status.json")["error"]


def test_another_config_names_the_options_that_differ_before_the_keys_they_set():
    """A run launched again without its overrides: the options (arch=mlp there, resnet here) and the
    key given now come first; the keys that only follow from an option come last, counted."""
    from dal_runner.state import differences

    saved = {"arch": {"name": "mlp", "hidden": 256, "dropout": 0.0}, "search": {"name": "fixed"},
             "trainer": {"epochs": 60}}
    current = {"arch": {"name": "resnet", "block": "basic", "n_blocks": 1, "dropout": 0.0},
               "search": {"name": "inas", "epochs": 15}, "trainer": {"epochs": 5}}
    assert differences(saved, current) == ["arch.name: mlp there, resnet here", "search.name: fixed there, inas here",
                                           "trainer.epochs: 60 there, 5 here", "and 4 more"]


def test_a_job_that_timed_out_too_often_says_which_keys_limit_it(tmp_path):
    """submitit's "Job not requeued because: timed-out too many times." named no key to change."""
    from submitit.core.utils import UncompletedJobError

    from dal_runner.execute import mark_failed

    mark_failed(tmp_path, UncompletedJobError("Job not requeued because: timed-out too many times."))
    error = read_json(tmp_path / "status.json")["error"]
    assert "hydra.launcher.timeout_min" in error and "hydra.launcher.max_num_timeout" in error and "hydra.sweep.dir" in error
