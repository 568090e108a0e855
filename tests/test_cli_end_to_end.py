"""dal-run as a user runs it: the default run, its folder, reproducibility, help."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, compose, run_cli, run_cli_inprocess, run_dirs
from omegaconf import OmegaConf

from dal_runner.io import ROUND_FIELDS, read_csv
from dal_runner.metrics.auc import auc


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_default_run_learns_digits_and_writes_every_result_file(tmp_path):
    res = run_cli([], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = run_dirs(tmp_path / "outputs" / "runs")
    # outputs/runs/<YYYY-MM-DD>/<HH-MM-SS-ffffff>: time to the microsecond
    assert len(run.name.split("-")) == 4 and len(run.name.split("-")[3]) == 6
    for name in ("rounds.csv", "selected.csv", "summary.json", "status.json", "learning_curve.png",
                 "arch_growth.png", "search.csv"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*.tmp")), "a temp file of an atomic write was left behind"
    rounds = _rows(run / "rounds.csv")
    assert list(rounds[0].keys())[: len(ROUND_FIELDS)] == ROUND_FIELDS
    labels = [int(r["n_labeled"]) for r in rounds]
    assert labels == [100, 200, 300, 400, 500, 600]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_accuracy"] >= 0.90
    assert summary["final_accuracy"] == float(rounds[-1]["test_accuracy"])
    assert abs(summary["auc"] - auc(labels, [float(r["test_accuracy"]) for r in rounds])) <= 5e-7  # 6 decimals, like rounds.csv
    assert summary["device"].startswith("cpu") and "torch" in summary["versions"]
    # the commit of the code that ran: the version number is the same at every commit
    import dal_runner

    in_checkout = Path(dal_runner.__file__).resolve().parent.parent == REPO and (REPO / ".git").exists()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    commit = summary["versions"]["dal_runner_commit"]
    assert (commit == head or commit.startswith(head + "+changes-")) if in_checkout else commit is None, commit
    data = summary["data"]  # what the run read: digits' 1257 / 540 split, 8 x 8 grey images of 16 levels
    assert (data["name"], data["pool"], data["test"], data["n_classes"], data["input_shape"], data["dtype"]) == (
        "digits", 1257, 540, 10, [1, 8, 8], "uint8")
    assert len(data["mean"]) == len(data["std"]) == 1 and 0 < data["mean"][0] < 1 and len(data["sha256"]) == 64
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    selected = _rows(run / "selected.csv")
    assert len(selected) == 600 and len({r["pool_index"] for r in selected}) == 600
    # active-iNAS: the architecture grows beyond A(1, 1) as labels grow, and never shrinks
    archs = [r["arch"] for r in rounds]
    assert archs[-1] != "A(basic,1,1)", archs
    sizes = [int(r["n_params"]) for r in rounds]
    assert sizes == sorted(sizes)
    search = _rows(run / "search.csv")
    assert {int(r["round"]) for r in search} == set(range(6))
    chosen = [r for r in search if r["chosen"] == "True"]
    assert [c["candidate"] for c in chosen] == archs  # one iNAS step per round: its choice is trained
    # DESIGN.md's run-folder schema: search.csv has round, step, candidate, val_accuracy, chosen
    assert {"round", "step", "candidate", "val_accuracy", "chosen"} <= set(search[0])
    # the one-line log per round, as plain lines when stdout is not a terminal
    round_lines = [ln for ln in res.stdout.splitlines() if "labels" in ln and "accuracy" in ln and "done:" not in ln]
    assert len(round_lines) == 6
    candidate_lines = [ln for ln in res.stdout.splitlines() if ": candidate A(basic," in ln]
    assert len(candidate_lines) == len([r for r in search if r["reused"] != "True"])  # one per trained candidate
    last = res.stdout.strip().splitlines()[-1]  # the closing line: accuracy, AUC and where the results are
    assert f"done: final accuracy {summary['final_accuracy']:.4f} at 600 labels" in last and str(run) in last


def test_paper_protocol_smoke_experiment_runs_on_digits(tmp_path):
    res = run_cli(["+experiment=active_inas_cifar10_smoke"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = run_dirs(tmp_path / "outputs" / "runs")
    rounds = _rows(run / "rounds.csv")
    # the batch schedule {0: 60, 180: 120} up to 300 labels
    assert [int(r["n_labeled"]) for r in rounds] == [60, 120, 180, 300]
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "stem: cifar" in config and "nesterov: true" in config and "steps_per_epoch: 8" in config
    # T_iNAS = 1: each round trains at most the three candidates of one step
    search = _rows(run / "search.csv")
    assert all(sum(r["round"] == str(t) for r in search) <= 3 for t in range(4))


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn"])
def test_paper_protocols_compose_with_their_source_values(dataset):
    # composed in-process (as `dal-run --cfg job` prints it; the smoke run above goes through the CLI)
    for experiment, stem, width in ((f"active_inas_{dataset}", "paper", 64), (f"active_inas_{dataset}_smoke", "cifar", 16)):
        cfg = compose([f"+experiment={experiment}"])
        job = OmegaConf.to_yaml(cfg)
        assert f"stem: {stem}" in job and f"width: {width}" in job
        assert "fill: nearest" in job  # Keras' default in the authors' ImageDataGenerator
        # the authors' code: no dropout in training, 0.5 for MC-dropout's passes; L2 on the conv
        # kernels alone (Keras' l2(5e-4), so weight decay 1e-3); candidates at a constant lr,
        # scored by their best V' accuracy
        assert (cfg.arch.dropout, cfg.arch.mc_dropout) == (0.0, 0.5)
        assert (cfg.trainer.weight_decay, cfg.trainer.weight_decay_scope) == (0.001, "conv")
        assert list(cfg.search.lr_milestones) == [] and cfg.search.score == "best"
    # the smoke schedule is its own: it had budget=active_inas's 10000: 5000 merged into it
    assert OmegaConf.to_container(compose([f"+experiment=active_inas_{dataset}_smoke"]).budget.batch) == \
        {0: 60, 180: 120}
    full = OmegaConf.to_yaml(compose([f"+experiment=active_inas_{dataset}"]))
    for line in ("initial: 2000", "10000: 5000", "max_labels: 50000", "steps_per_epoch: 390", "epochs: 200",
                 "epochs: 50", "rotation: 15.0", "shift: 0.1", "hflip: true", f"name: {dataset}"):
        assert line in full, line
    # Keras' LearningRateScheduler with `epoch > 100` on 0-based epochs: the drops come one epoch later
    assert list(compose([f"+experiment=active_inas_{dataset}"]).trainer.lr_milestones) == [101, 151]
    # SVHN: the authors' pool is the first 50,000 training images (their indices 0..budget-1)
    assert compose([f"+experiment=active_inas_{dataset}"]).dataset.pool_size == (50000 if dataset == "svhn" else None)


def test_help_shows_every_group_its_options_and_an_example(tmp_path):
    res = run_cli(["--help"], cwd=tmp_path)
    assert res.returncode == 0
    for group, option in [("dataset", "digits"), ("arch", "mlp"), ("arch", "cnn"), ("search", "fixed"),
                          ("query", "softmax_response"), ("query", "margin"), ("query", "entropy"),
                          ("query", "random"), ("budget", "default"), ("trainer", "default")]:
        assert f"== {group}" in res.stdout and option in res.stdout
    assert "dal-run -m" in res.stdout and "budget.batch" in res.stdout
    # every option's own keys, under the option, with its values in conf/ (not only the default's)
    lines = res.stdout.splitlines()
    for option, keys in [("mc_dropout", "passes=100, acquisition=predicted_class_variance"), ("mlp", "hidden=256"),
                         ("reinforce", "children=3"), ("badge", "first=uniform"), ("resnet18", "n_blocks=2, n_stacks=4"),
                         ("svhn", "extra=False")]:
        at = next(i for i, line in enumerate(lines) if line.split()[:1] == [option])
        assert lines[at + 1].split()[0] == "keys:" and keys in lines[at + 1], (option, lines[at + 1])
    # --cfg job prints the composed config (with the experiment's values) and runs nothing
    res = run_cli(["--cfg", "job", "+experiment=active_inas_cifar10", "query=entropy"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "name: entropy" in res.stdout and "max_labels: 50000" in res.stdout and "stem: paper" in res.stdout
    assert not (tmp_path / "outputs").exists()


def test_multirun_sweep_writes_one_folder_per_job_under_outputs_multirun(tmp_path):
    res = run_cli(["-m", "query=random,margin", "budget.initial=40", "budget.batch=40", "budget.max_labels=80",
                   "trainer.epochs=5"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    jobs = run_dirs(tmp_path / "outputs" / "multirun")
    assert [j.name for j in jobs] == ["0", "1"]
    sweep = jobs[0].parent
    assert sweep.parent.parent.name == "multirun" and len(sweep.name.split("-")[3]) == 6
    for job, query in zip(jobs, ("random", "margin")):
        assert json.loads((job / "summary.json").read_text())["choices"]["query"] == query
        assert json.loads((job / "status.json").read_text())["state"] == "completed"


def test_a_sweep_over_searches_takes_keys_only_the_swept_options_have(tmp_path):
    """`search=random,reinforce search.blocks=null`: the default search (inas) has no `blocks`;
    Hydra's first config of a sweep is the default's, where the key failed (a raw Hydra error)."""
    res = run_cli(["-m", "search=random,reinforce", "search.blocks=null", "search.budget=3", "seed=0",
                   "budget.max_rounds=1", "search.epochs=1", "search.lr_milestones=[]", "trainer.epochs=1",
                   "trainer.lr_milestones=[]"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    jobs = run_dirs(tmp_path / "outputs" / "multirun")
    configs = [OmegaConf.load(job / ".hydra" / "config.yaml").search for job in jobs]
    assert [(c.name, c.blocks, c.budget) for c in configs] == [("random", None, 3), ("reinforce", None, 3)]
    # an option that lacks the key is still refused, before any job starts
    (tmp_path / "other").mkdir()
    res = run_cli(["-m", "search=inas,random", "search.blocks=null"], cwd=tmp_path / "other")
    assert res.returncode == 2 and "search.blocks: unknown key for search=inas" in res.stderr
    assert not (tmp_path / "other" / "outputs").exists()


def test_a_batch_schedule_on_the_command_line_replaces_the_protocol_s_whole(tmp_path):
    # before: "budget.batch.5000: unknown key", and {0: 100} kept the protocol's 10000: 5000
    for schedule, expected in (("{0:100,5000:500}", {0: 100, 5000: 500}), ("{0:100}", {0: 100})):
        res = run_cli(["budget=active_inas", f"budget.batch={schedule}", "--cfg", "job"], cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert OmegaConf.create(res.stdout).budget.batch == expected


def test_a_batch_schedule_replaces_the_protocol_s_whole_in_a_sweep_s_jobs_too(tmp_path, monkeypatch, capsys):
    """Hydra's sweeper keeps one override per key as typed: the null that clears the protocol's
    schedule was dropped from the jobs, which ran {0: 30, 10000: 5000} (the README says replaced)."""
    sweep = tmp_path / "sweep"
    code, out, err = run_cli_inprocess(
        ["-m", "search=fixed", "arch=mlp", "budget=active_inas,default", "budget.batch={0:30,60:10}",
         "budget.initial=30", "budget.max_labels=80", "trainer.epochs=1", "seed=0", f"hydra.sweep.dir={sweep}",
         "~hydra.callbacks.report"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    for job in ("0", "1"):  # budget swept too: its keys are held (++budget.batch=...), the null must still apply
        assert OmegaConf.load(sweep / job / ".hydra" / "config.yaml").budget.batch == {0: 30, 60: 10}
        assert [int(r["n_labeled"]) for r in read_csv(sweep / job / "rounds.csv")] == [30, 60, 70, 80]


def test_a_run_in_its_default_folder_leaves_no_other_folder(tmp_path):
    res = run_cli(["search=fixed", "arch=mlp", "budget.max_rounds=1", "trainer.epochs=1"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (day,) = (tmp_path / "outputs" / "runs").iterdir()
    assert len(list(day.iterdir())) == 1  # the checks before the run made no folder of their own
