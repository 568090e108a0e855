"""dal-report: grouping, tables, figures, exclusions and errors; the Hydra callback; AUC-gain.

Most tests write small run folders by hand (known accuracies, so the tables can be checked
against a hand computation); the end-to-end tests run the real `dal-run -m` once per module.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest
import yaml

from dal_runner import report
from dal_runner.metrics.auc import auc
from dal_runner.metrics.curves import auc_between, auc_gain, summarize

from conftest import BIN

TABLES = ["curves.csv", "auc.csv", "auc_gain.csv", "auc_gain_by_labels.csv", "penalty.csv", "penalty_skipped.csv", "penalty_sizes.csv",
          "excluded.csv"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------ AUC-gain by hand
def test_auc_gain_is_taken_over_the_label_range_both_curves_cover():
    # A goes to 300 labels, R stops at 200: only 100..200 counts. AUC(A) = 0.6, AUC(R) = 0.5 there
    # (over its whole curve A would have 0.675 and a gain of 0.175).
    assert auc_gain([100, 200, 300], [0.5, 0.7, 0.8], [100, 200], [0.4, 0.6]) == pytest.approx(0.1)


def test_auc_gain_interpolates_the_curves_at_the_ends_of_the_common_range():
    # A at 100 and 200 labels (interpolated): 0.5 and 0.7, with 0.6 at 150: AUC 0.6; R is flat at 0.5
    assert auc_between([50, 150, 250], [0.4, 0.6, 0.8], 100, 200) == pytest.approx(0.6)
    assert auc_gain([50, 150, 250], [0.4, 0.6, 0.8], [100, 200], [0.5, 0.5]) == pytest.approx(0.1)


def test_curves_that_do_not_overlap_have_no_auc_gain():
    with pytest.raises(ValueError, match="do not overlap"):
        auc_gain([10, 20], [0.5, 0.6], [30, 40], [0.5, 0.6])


def test_summarize_gives_mean_sample_std_and_count():
    mean, std, n = summarize([0.5, 0.7])
    assert (mean, n) == (pytest.approx(0.6), 2) and std == pytest.approx(math.sqrt(0.02))
    assert math.isnan(summarize([0.5])[1])


# ------------------------------------------------------------------------------ hand-made run folders
def make_run(folder: Path, *, query="random", seed=0, curve=((30, 0.5), (60, 0.6), (90, 0.7)), state="completed",
             dataset="digits", arch="mlp", search="fixed", initial=30, batch=30, max_labels=90, rounds=True,
             params=None, data=None, root=None):
    """A run folder as dal-run leaves it: .hydra/config.yaml + hydra.yaml, rounds.csv, status.json
    (and summary.json's data.content_sha256 with `data`)."""
    arch_node = {"mlp": {"name": "mlp", "dropout": 0.0, "hidden": 256},
                 "cnn": {"name": "cnn", "dropout": 0.0, "channels": [32, 64]},
                 "resnet": {"name": "resnet", "block": "basic", "n_blocks": 1, "n_stacks": 1, "width": 16},
                 "resnet18": {"name": "resnet", "block": "basic", "n_blocks": 2, "n_stacks": 4, "width": 16},
                 "resnet_small": {"name": "resnet", "block": "basic", "n_blocks": 1, "n_stacks": 2, "width": 16}}[arch]
    search_node = {"name": search, "val_fraction": 0.2, "epochs": None}
    if search == "inas":
        search_node.update(start=[1, 1], space=[12, 5], max_steps=1)
    config = {"dataset": {"name": dataset, "augment": {"hflip": False}, "test_fraction": 0.3,
                          **({"root": root} if root else {})},
              "arch": arch_node, "search": search_node, "query": {"name": query},
              "budget": {"initial": initial, "batch": batch, "max_labels": max_labels, "max_rounds": None},
              "trainer": {"optimizer": "adam", "lr": 0.001, "epochs": 3},
              "seed": seed, "device": "auto", "output_root": "outputs", "resume": None}
    choices = {"dataset": dataset, "arch": arch, "search": search, "query": query, "budget": "default",
               "trainer": "default", "hydra/launcher": "basic"}
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if rounds and params is not None:  # the parameters of each round's model, as dal-run writes them
        lines = ["round,n_labeled,test_accuracy,n_params"] + [f"{i},{n},{a},{p}"
                                                              for i, ((n, a), p) in enumerate(zip(curve, params))]
        (folder / "rounds.csv").write_text("\n".join(lines) + "\n")
    elif rounds:
        lines = ["round,n_labeled,test_accuracy"] + [f"{i},{n},{a}" for i, (n, a) in enumerate(curve)]
        (folder / "rounds.csv").write_text("\n".join(lines) + "\n")
    if data is not None:
        (folder / "summary.json").write_text(json.dumps({"data": {"content_sha256": data}}))
    if state is not None:
        status = {"state": state, **({"error": "Traceback...\nRuntimeError: CUDA out of memory"} if state == "failed" else {})}
        (folder / "status.json").write_text(json.dumps(status))
    return folder


RANDOM = [[(30, 0.50), (60, 0.60), (90, 0.70)], [(30, 0.55), (60, 0.66), (90, 0.72)], [(30, 0.52), (60, 0.61), (90, 0.69)]]
MARGIN_DELTA = [0.10, 0.12, 0.11]  # margin's advantage per seed after the shared random start (p = 0.0027)


def margin_curve(seed):
    return [(n, a + (MARGIN_DELTA[seed] if n > 30 else 0.0)) for n, a in RANDOM[seed]]


def sweep(folder: Path, n_seeds=3, start=0, **kwargs) -> Path:
    job = start
    for query in ("margin", "random"):
        for seed in range(n_seeds):
            curve = margin_curve(seed) if query == "margin" else RANDOM[seed]
            make_run(folder / str(job), query=query, seed=seed, curve=curve, **kwargs)
            job += 1
    return folder


def test_an_auc_mean_over_runs_of_different_label_ranges_is_flagged(tmp_path, capsys):
    make_run(tmp_path / "sweep" / "0", seed=0, curve=RANDOM[0])
    make_run(tmp_path / "sweep" / "1", seed=1, curve=RANDOM[1][:2])  # stopped at 60 labels
    assert report.main([str(tmp_path / "sweep")]) == 0
    (row,) = rows(tmp_path / "sweep" / "report" / "auc.csv")
    assert (row["from_labels"], row["to_labels"], row["ranges_differ"]) == ("30", "90", "true")
    assert "its runs cover different label ranges (30-60, 30-90); the mean mixes them" in capsys.readouterr().out


def test_seeds_are_averaged_and_every_table_matches_a_hand_computation(tmp_path, capsys):
    sweep(tmp_path / "sweep")
    assert report.main([str(tmp_path / "sweep")]) == 0
    out = tmp_path / "sweep" / "report"
    curves = {(r["strategy"], int(r["n_labeled"])): r for r in rows(out / "curves.csv")}
    assert len(curves) == 6 and {r["environment"] for r in curves.values()} == {"dataset=digits"}
    assert float(curves["query=random", 60]["mean"]) == pytest.approx((0.60 + 0.66 + 0.61) / 3, abs=1e-6)
    assert float(curves["query=random", 60]["std"]) == pytest.approx(0.032146, abs=1e-6)  # sample std
    assert curves["query=margin", 90]["n"] == "3"
    aucs = {r["strategy"]: r for r in rows(out / "auc.csv")}
    random_aucs = [auc(*zip(*c)) for c in RANDOM]  # e.g. seed 0: (0.55 + 0.65) / 2 = 0.6
    assert random_aucs[0] == pytest.approx(0.6)
    assert float(aucs["query=random"]["mean"]) == pytest.approx(sum(random_aucs) / 3, abs=1e-6)
    assert aucs["query=random"]["seeds"] == "0 1 2"
    assert (aucs["query=random"]["from_labels"], aucs["query=random"]["to_labels"]) == ("30", "90")
    assert aucs["query=random"]["ranges_differ"] == "false"
    # margin gains d/2 over 30..60 and d over 60..90: AUC-gain = 0.75 d per seed
    gain = {r["strategy"]: r for r in rows(out / "auc_gain.csv")}["query=margin"]
    assert float(gain["mean"]) == pytest.approx(0.75 * 0.11, abs=1e-6)
    assert (gain["reference"], gain["n"], gain["from_labels"], gain["to_labels"]) == ("query=random", "3", "30", "90")
    # and as the budget grows: 0 over 30..30, d/2 over 30..60, 0.75 d over 30..90 (the last is auc_gain.csv's)
    by_labels = [r for r in rows(out / "auc_gain_by_labels.csv") if r["strategy"] == "query=margin"]
    assert [(r["from_labels"], r["to_labels"], r["n"]) for r in by_labels] == [("30", n, "3") for n in ("30", "60", "90")]
    assert [float(r["mean"]) for r in by_labels] == pytest.approx([0.0, 0.5 * 0.11, 0.75 * 0.11], abs=1e-6)
    assert by_labels[-1]["mean"] == gain["mean"] and by_labels[-1]["std"] == gain["std"]
    # BADGE's sizes: random's mean accuracy is 0.5233, 0.6233, 0.7033 at 30, 60, 90 labels, so it
    # reaches 99% of its final one at 90 (round 2): rounds 2^(m-1), m = 1 .. floor(log2 2), i.e. 60
    # alone; margin wins there (p = 0.0027): one environment, won outright
    penalty = {(r["kind"], r["row"], r["column"]): float(r["value"]) for r in rows(out / "penalty.csv")}
    assert penalty["penalty", "query=margin", "query=random"] == 1.0
    assert penalty["penalty", "query=random", "query=margin"] == 0.0
    assert penalty["column_mean", "", "query=random"] == pytest.approx(1 / 2, abs=1e-6)
    (sizes,) = rows(out / "penalty_sizes.csv")
    assert (sizes["environment"], sizes["counted"]) == ("dataset=digits", "60")
    assert sizes["rule"].startswith("BADGE: random reaches 99% of its final accuracy (0.7033) at 90 labels (round 2)")
    assert rows(out / "excluded.csv") == [] and rows(out / "penalty_skipped.csv") == []
    for stem in ("learning_curves", "penalty", "auc_gain", "auc_gain_by_labels"):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.svg").is_file()
    assert not (out / "penalty_by_batch.png").exists()  # one batch size: the overall matrix is that one
    printed = capsys.readouterr().out
    assert "query=margin" in printed and "± " in printed and f"wrote 17 files to {out}" in printed
    # every size: margin wins at 60 and 90 labels, not at 30 (the same random start): 2 of 3 sizes
    assert report.main([str(tmp_path / "sweep"), "--penalty-sizes", "all", "--out", str(tmp_path / "all")]) == 0
    penalty = {(r["kind"], r["row"], r["column"]): float(r["value"]) for r in rows(tmp_path / "all" / "penalty.csv")}
    assert penalty["penalty", "query=margin", "query=random"] == pytest.approx(2 / 3, abs=1e-6)
    assert penalty["column_mean", "", "query=random"] == pytest.approx(1 / 3, abs=1e-6)
    assert rows(tmp_path / "all" / "penalty_sizes.csv")[0]["counted"] == "30 60 90"
    # the rule of BADGE's released script: 30 (the start) and round 1 (0.6233 <= 0.99 x 0.7033), round 2
    # is above; margin wins at 60 of the 2: 1/2
    assert report.main([str(tmp_path / "sweep"), "--penalty-sizes", "badge_code", "--out", str(tmp_path / "code")]) == 0
    penalty = {(r["kind"], r["row"], r["column"]): float(r["value"]) for r in rows(tmp_path / "code" / "penalty.csv")}
    assert penalty["penalty", "query=margin", "query=random"] == pytest.approx(1 / 2, abs=1e-6)
    (sizes,) = rows(tmp_path / "code" / "penalty_sizes.csv")
    assert sizes["counted"] == "30 60" and sizes["rule"].startswith("BADGE's code: random's final accuracy 0.7033")


def test_runs_of_different_protocols_are_never_averaged_together(tmp_path):
    sweep(tmp_path / "runs" / "b30", batch=30)
    for job, (query, seed) in enumerate((q, s) for q in ("margin", "random") for s in range(3)):
        curve = [(30, 0.5 + 0.01 * seed), (75, 0.7 + 0.01 * seed * seed + (MARGIN_DELTA[seed] if query == "margin" else 0))]
        make_run(tmp_path / "runs" / "b45" / str(job), query=query, seed=seed, batch=45, curve=curve)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--penalty-sizes", "all"]) == 0
    out = tmp_path / "out"
    envs = {(r["environment"], r["strategy"]): r["n"] for r in rows(out / "auc.csv")}
    assert envs == {("dataset=digits budget.batch=30", "query=margin"): "3", ("dataset=digits budget.batch=30", "query=random"): "3",
                    ("dataset=digits budget.batch=45", "query=margin"): "3", ("dataset=digits budget.batch=45", "query=random"): "3"}
    penalty = [r for r in rows(out / "penalty.csv") if r["kind"] == "penalty" and r["row"] == "query=margin"
               and r["column"] == "query=random"]
    # overall: 2/3 (batch 30) + 1/2 (batch 45, wins at 75 of {30, 75}); by batch size: each on its own
    assert [(r["split"], r["subset"], round(float(r["value"]), 6)) for r in penalty] == [
        ("overall", "all", round(2 / 3 + 1 / 2, 6)), ("batch", "budget.batch=30", round(2 / 3, 6)),
        ("batch", "budget.batch=45", 0.5)]
    assert (out / "penalty_by_batch.png").is_file() and (out / "penalty_by_batch.svg").is_file()


@pytest.mark.parametrize("roots, digests, told_apart_by", [
    (["/data/a", "/data/b"], ["a" * 64, "b" * 64], "dataset.root"),  # e.g. a copy with noisy labels elsewhere
    (["/data/a", "/data/a"], ["a" * 64, "b" * 64], "data.content_sha256"),  # the file changed between the sweeps
    (["/data/a", "/scratch/a"], ["a" * 64, "a" * 64], None),  # the same data in two places: one environment
])
def test_runs_of_one_config_on_different_data_are_reported_apart(tmp_path, capsys, roots, digests, told_apart_by):
    # before: dataset.root is no protocol key and the digest was not compared, so the runs were
    # averaged together, or those of the same seeds dropped as duplicates
    for name, root, digest in zip("ab", roots, digests):
        sweep(tmp_path / "runs" / name, root=root, data=digest)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    envs = {(r["environment"], r["strategy"]): r["n"] for r in rows(tmp_path / "out" / "auc.csv")}
    if told_apart_by is None:  # the same runs twice: the second sweep's are duplicates, as they were
        assert envs == {("dataset=digits", "query=margin"): "3", ("dataset=digits", "query=random"): "3"}
        assert "b/0: duplicate of a/0" in out and "different data sets" not in out
        return
    assert "duplicate" not in out
    shown = [root if told_apart_by == "dataset.root" else digest[:12] for root, digest in zip(roots, digests)]
    assert envs == {(f"dataset=digits {told_apart_by}={v}", f"query={q}"): "3" for v in shown for q in ("margin", "random")}
    assert f"dataset=digits: its runs read 2 different data sets (summary.json: data.content_sha256), reported " \
           f"apart by {told_apart_by}" in out


def test_runs_without_a_digest_pair_with_their_root_and_one_data_set_in_two_roots_stays_one(tmp_path, capsys):
    # review: random runs made before the digest was recorded lost their margin runs once the
    # roots were told apart; two roots holding the same data made two environments
    for job, (query, root, digest, seed) in enumerate([("random", "/a", None, s) for s in range(3)] +
                                                      [("margin", "/a", "a" * 64, s) for s in range(3)] +
                                                      [("margin", "/b", "b" * 64, s) for s in range(3)] +
                                                      [("random", "/b", "b" * 64, s) for s in range(3)]):
        curve = margin_curve(seed) if query == "margin" else RANDOM[seed]
        make_run(tmp_path / "runs" / str(job), query=query, seed=seed, curve=curve, root=root, data=digest)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    gains = {(r["environment"], r["strategy"]) for r in rows(tmp_path / "out" / "auc_gain.csv")}
    assert gains == {(f"dataset=digits dataset.root={root}", f"query={q}") for root in "/a /b".split()
                     for q in ("margin", "random")}
    capsys.readouterr()
    for job, root in enumerate(["/c", "/c", "/d"]):  # /c and /a hold the same data: the digest tells them apart
        make_run(tmp_path / "more" / str(job), query="margin", seed=job, curve=margin_curve(job), root=root,
                 data="a" * 64 if root == "/c" else "d" * 64)
    assert report.main([str(tmp_path / "runs"), str(tmp_path / "more"), "--out", str(tmp_path / "out2")]) == 0
    out = capsys.readouterr().out
    envs = {r["environment"] for r in rows(tmp_path / "out2" / "auc.csv")}
    assert envs == {"dataset=digits", *(f"dataset=digits data.content_sha256={c * 12}" for c in "abd")}, envs
    assert "reported apart by data.content_sha256; runs made before the digest was recorded are apart from them: " \
           "runs/0, runs/1, runs/2" in out


def test_every_table_lists_environments_in_natural_order(tmp_path):
    # before: penalty_sizes.csv had budget.batch=100 before budget.batch=50 (sorted as text)
    for batch in (100, 50):
        sweep(tmp_path / "runs" / f"b{batch}", batch=batch)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    for table in ("auc.csv", "penalty_sizes.csv"):
        envs = list(dict.fromkeys(r["environment"] for r in rows(tmp_path / "out" / table)))
        assert envs == ["dataset=digits budget.batch=50", "dataset=digits budget.batch=100"], (table, envs)


def test_a_key_that_varies_along_with_the_query_is_an_environment_not_hidden(tmp_path):
    """margin at 8 epochs, random at 3: the query option does not set trainer.epochs, so the
    difference is shown and the two are not paired (their gap would be the epochs', not the
    query's). Before, a key that varied only together with the strategy was hidden."""
    root = sweep(tmp_path / "runs")
    for folder in root.iterdir():
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        config["trainer"]["epochs"] = 8 if config["query"]["name"] == "margin" else 3
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(root), "--out", str(tmp_path / "out")]) == 0
    assert {(r["environment"], r["strategy"]) for r in rows(tmp_path / "out" / "auc.csv")} == {
        ("dataset=digits trainer.epochs=3", "query=random"), ("dataset=digits trainer.epochs=8", "query=margin")}
    # random is its own reference (gain 0); margin has no random at 8 epochs to be paired with
    assert [(r["strategy"], r["mean"]) for r in rows(tmp_path / "out" / "auc_gain.csv")] == [("query=random", "0.000000")]


def test_a_key_that_varies_along_with_the_arch_of_compared_searches_is_an_environment(tmp_path):
    """iNAS at 8 epochs and 200 labels against a fixed net at 3 epochs and 100: before, dal-report
    took the arch option for one that may set any key and ranked the two as one environment. Only
    a preset's keys follow from the arch (conf/preset: search.epochs on digits with resnet)."""
    root = tmp_path / "runs"
    for job, (search, arch, epochs, labels) in enumerate([("inas", "resnet", 8, 200), ("fixed", "resnet_small", 3, 100)]):
        for seed in (0, 1):
            folder = make_run(root / f"{job}{seed}", search=search, arch=arch, seed=seed, curve=RANDOM[seed])
            config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
            config["trainer"]["epochs"], config["budget"]["max_labels"] = epochs, labels
            config["search"]["epochs"] = 15 if arch == "resnet" else None  # the digits_resnet preset's
            (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(root), "--out", str(tmp_path / "out")]) == 0
    assert {(r["environment"], r["strategy"]) for r in rows(tmp_path / "out" / "auc.csv")} == {
        ("dataset=digits budget.max_labels=100 trainer.epochs=3", "search=fixed arch=resnet_small"),
        ("dataset=digits budget.max_labels=200 trainer.epochs=8", "search=inas arch=resnet")}


def _with_preset(folder: Path, preset: str, config_dir: Optional[Path] = None, cwd: Optional[Path] = None,
                 **keys) -> None:
    """The run as Hydra leaves it with `preset` applied (its choice in hydra.yaml, the config sources
    it was composed from) and the keys that preset set."""
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    for key, value in keys.items():
        group, _, leaf = key.partition("__")
        config[group][leaf] = value
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())
    hydra["hydra"]["runtime"]["choices"]["preset"] = preset
    hydra["hydra"]["runtime"]["config_sources"] = [
        {"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
        *([{"path": str(config_dir), "schema": "file", "provider": "command-line"}] if config_dir else []),
        {"path": "dal_runner.conf", "schema": "pkg", "provider": "main"}]
    if cwd is not None:  # where dal-run ran: a relative config dir is relative to it
        hydra["hydra"]["runtime"]["cwd"] = str(cwd)
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))


def test_a_key_a_runs_preset_sets_follows_from_its_arch(tmp_path):
    """On digits, arch=resnet's preset sets search.epochs=15, arch=resnet_small has none (null): the
    difference is the arch's, so the two are environments of one strategy, not two search strategies."""
    for job, arch in enumerate(("resnet", "resnet_small")):
        for seed in (0, 1):
            folder = make_run(tmp_path / "runs" / f"{job}{seed}", search="inas", arch=arch, seed=seed, curve=RANDOM[seed])
            if arch == "resnet":
                _with_preset(folder, "digits_resnet", search__epochs=15)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert {(r["environment"], r["strategy"]) for r in rows(tmp_path / "out" / "auc.csv")} == {
        ("dataset=digits arch=resnet", "query=random"), ("dataset=digits arch=resnet_small", "query=random")}


def test_a_key_set_by_a_preset_of_the_users_config_dir_follows_from_its_arch(tmp_path, monkeypatch):
    """--config-dir with preset/digits_resnet18.yaml setting trainer.epochs: iNAS (50 epochs) against
    the fixed ResNet-18 (100, its preset's) is one environment, as the user's preset meant. Its
    relative path (hydra.searchpath=[file://myconf]) is the run's: dal-report runs elsewhere."""
    own = tmp_path / "myconf"
    monkeypatch.chdir(tmp_path / "..")
    (own / "preset").mkdir(parents=True)
    (own / "preset" / "digits_resnet18.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 100\n")
    for job, (search, arch) in enumerate((("inas", "resnet"), ("fixed", "resnet18"))):
        for seed in (0, 1):
            folder = make_run(tmp_path / "runs" / f"{job}{seed}", search=search, arch=arch, seed=seed, curve=RANDOM[seed])
            if arch == "resnet18":
                _with_preset(folder, "digits_resnet18", Path("myconf"), tmp_path, trainer__epochs=100)
            else:
                _with_preset(folder, "digits_resnet", Path("myconf"), tmp_path, trainer__epochs=50)  # dal-run's own
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert {(r["environment"], r["strategy"]) for r in rows(tmp_path / "out" / "auc.csv")} == {
        ("dataset=digits", "search=fixed arch=resnet18"), ("dataset=digits", "search=inas arch=resnet")}
    # without that preset (its file gone), the difference is a protocol's: two environments
    (own / "preset" / "digits_resnet18.yaml").unlink()
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out2")]) == 0
    assert {r["environment"] for r in rows(tmp_path / "out2" / "auc.csv")} == {
        "dataset=digits trainer.epochs=100", "dataset=digits trainer.epochs=50"}


def test_a_run_without_hydra_yaml_has_its_preset_from_summary_json(tmp_path):
    """summary.json keeps the choices: its preset's keys still follow from the arch."""
    for job, arch in enumerate(("resnet", "resnet_small")):
        for seed in (0, 1):
            folder = make_run(tmp_path / "runs" / f"{job}{seed}", search="inas", arch=arch, seed=seed, curve=RANDOM[seed])
            if arch == "resnet":
                _with_preset(folder, "digits_resnet", search__epochs=15)
            choices = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
            (folder / "summary.json").write_text(json.dumps({"choices": choices}))
            (folder / ".hydra" / "hydra.yaml").unlink()
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert {(r["environment"], r["strategy"]) for r in rows(tmp_path / "out" / "auc.csv")} == {
        ("dataset=digits arch=resnet", "query=random"), ("dataset=digits arch=resnet_small", "query=random")}


def test_strategy_keys_only_some_runs_read_name_a_reference_and_unread_ones_are_accepted(tmp_path, capsys):
    """--strategy trainer.entropy_lambda with a cross-entropy run first (which does not read it):
    the note's example crashed (StopIteration). ranganathan_digits' end-of-sweep report names
    trainer.entropy_lambda; over cross-entropy runs alone it was 'unknown key', and no report."""
    for job, (objective, weight) in enumerate((("cross_entropy", 0.1), ("joint_entropy", 0.1), ("joint_entropy", 0.5))):
        for seed in (0, 1):
            folder = make_run(tmp_path / "runs" / f"{job}{seed}", seed=seed, curve=RANDOM[seed])
            config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
            config["trainer"].update(objective=objective, entropy_lambda=weight)
            (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--strategy", "trainer.entropy_lambda"]) == 0
    assert "e.g. --reference trainer.entropy_lambda=0.1" in capsys.readouterr().out
    for job in ("1", "2"):
        for seed in ("0", "1"):
            shutil.rmtree(tmp_path / "runs" / f"{job}{seed}")
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "cross"), "--strategy", "trainer.objective",
                        "trainer.entropy_lambda"]) == 0
    assert [r["strategy"] for r in rows(tmp_path / "cross" / "auc.csv")] == ["query=random"]


def test_keys_a_run_does_not_read_tell_no_runs_apart(tmp_path):
    """search=fixed has the candidates' estimation keys but no candidates, and entropy_lambda weighs
    only the joint objective: seeds that differ in those alone are one strategy, averaged."""
    for seed in (0, 1, 2):
        folder = make_run(tmp_path / "runs" / str(seed), seed=seed, curve=RANDOM[seed])
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        config["search"]["epochs"] = [None, 1, 5][seed]
        config["trainer"].update(objective="cross_entropy", entropy_lambda=[0.1, 0.5, 1.0][seed])
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    (row,) = rows(tmp_path / "out" / "auc.csv")
    assert (row["environment"], row["strategy"], row["seeds"]) == ("dataset=digits", "query=random", "0 1 2")


def test_runs_made_before_a_key_was_added_are_averaged_with_those_made_after(tmp_path):
    """A key added in a later version with a null default (trainer.weight_decay_scope) that older
    runs lack: the same protocol, so seed 2 (made later) is averaged with seeds 0 and 1 (before:
    two environments, `trainer.weight_decay_scope=-` and `=null`)."""
    for seed in (0, 1, 2):
        folder = make_run(tmp_path / "runs" / str(seed), seed=seed, curve=RANDOM[seed])
        if seed == 2:
            config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
            config["trainer"]["weight_decay_scope"] = None
            (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    (row,) = rows(tmp_path / "out" / "auc.csv")
    assert (row["environment"], row["seeds"]) == ("dataset=digits", "0 1 2")
    # a value other than null is another protocol, as before
    config = yaml.safe_load((tmp_path / "runs" / "2" / ".hydra" / "config.yaml").read_text())
    config["trainer"]["weight_decay_scope"] = "conv"
    (tmp_path / "runs" / "2" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert sorted(r["environment"] for r in rows(tmp_path / "out" / "auc.csv")) == [
        "dataset=digits", "dataset=digits trainer.weight_decay_scope=conv"]


def test_runs_made_before_a_key_with_a_default_was_added_are_one_protocol_with_those_after(tmp_path):
    """dataset.augment.fill and trainer.cuda_graphs came later with defaults (zeros, true) that do what
    earlier runs did: two runs of one protocol and seed were two environments ('dataset=digits' and
    'dataset=digits dataset.augment.fill=zeros trainer.cuda_graphs=true')."""
    for seed in (0, 1):
        folder = make_run(tmp_path / "runs" / str(seed), seed=seed, curve=RANDOM[seed])
        if seed == 1:
            config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
            config["dataset"]["augment"]["fill"] = "zeros"
            config["trainer"]["cuda_graphs"] = True
            (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    (row,) = rows(tmp_path / "out" / "auc.csv")
    assert (row["environment"], row["seeds"]) == ("dataset=digits", "0 1")


def test_a_strategy_compared_with_no_other_is_left_out_of_the_penalty_matrix(tmp_path, capsys):
    """entropy ran only where no t-test could be made (one seed): before, penalty.csv and the figure
    gave it a row and column of 0.00, which reads as "compared, never lost"."""
    sweep(tmp_path / "runs" / "b30", batch=30)
    make_run(tmp_path / "runs" / "b45" / "0", query="entropy", batch=45, curve=((30, 0.5), (75, 0.7)))
    make_run(tmp_path / "runs" / "b45" / "1", query="random", batch=45, curve=((30, 0.5), (75, 0.6)))
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--penalty-sizes", "all"]) == 0
    cells = [r for r in rows(tmp_path / "out" / "penalty.csv") if r["split"] == "overall"]
    assert {r["column"] for r in cells} == {"query=margin", "query=random"}
    assert {(r["row"], r["column"]): r["tests"] for r in cells if r["kind"] == "penalty"}[
        ("query=margin", "query=random")] == "3"  # sizes 30, 60 and 90 of batch 30
    assert "penalty matrix: query=entropy compared with no other strategy" in capsys.readouterr().out


def test_arch_is_an_environment_unless_search_strategies_are_compared(tmp_path):
    sweep(tmp_path / "models" / "mlp", arch="mlp")
    sweep(tmp_path / "models" / "cnn", arch="cnn")
    assert report.main([str(tmp_path / "models"), "--out", str(tmp_path / "out")]) == 0
    assert {r["environment"] for r in rows(tmp_path / "out" / "auc.csv")} == {"dataset=digits arch=cnn", "dataset=digits arch=mlp"}
    assert (tmp_path / "out" / "penalty_by_arch.png").is_file()

    # active-iNAS: iNAS against fixed nets; the default reference is the fixed ResNet-18 with the same query
    root = tmp_path / "inas"
    for job, (search, arch) in enumerate([("inas", "resnet"), ("fixed", "resnet18"), ("fixed", "resnet_small")]):
        sweep(root / str(job), search=search, arch=arch)
    assert report.main([str(root)]) == 0
    gains = {r["strategy"]: r["reference"] for r in rows(root / "report" / "auc_gain.csv")}
    assert gains["search=inas arch=resnet query=margin"] == "search=fixed arch=resnet18 query=margin"
    assert gains["search=fixed arch=resnet_small query=random"] == "search=fixed arch=resnet18 query=random"
    assert not (root / "report" / "penalty_by_arch.png").exists()
    # an explicit reference: random query of each search strategy
    assert report.main([str(root), "--reference", "query=random", "--out", str(tmp_path / "r2")]) == 0
    gains = {r["strategy"]: r["reference"] for r in rows(tmp_path / "r2" / "auc_gain.csv")}
    assert gains["search=inas arch=resnet query=margin"] == "search=inas arch=resnet query=random"


def test_failed_running_incomplete_and_duplicate_runs_are_listed_and_excluded(tmp_path, capsys):
    root = sweep(tmp_path / "sweep")
    make_run(root / "6", query="random", seed=3, state="failed", curve=[(30, 0.0)])
    make_run(root / "7", query="random", seed=4, state="running", curve=[(30, 0.0)])
    make_run(root / "8", query="random", seed=5, state=None)
    make_run(root / "9", query="random", seed=6, rounds=False)
    make_run(root / "10", query="random", seed=0, curve=RANDOM[0])  # seed 0 again
    make_run(root / "11", query="random", seed=7, batch=45, state="failed")  # a protocol that never completed
    make_run(root / "12", query="random", seed=8, state="interrupted")
    (root / "12" / "status.json").write_text(json.dumps({"state": "interrupted", "error": "interrupted by the user "
                                                         "(Ctrl-C); dal-run resume=PATH continues it"}))
    # a job killed before it made its folder: the sweep's end makes the folder and marks it failed;
    # Hydra never wrote its .hydra/config.yaml (before, the report did not list it)
    from dal_runner.launchers import _died

    (root / "multirun.yaml").write_text("hydra: {}\n")
    _died(root / "13", RuntimeError("no result"))
    (root / "x").mkdir()
    _died(root / "x" / "14", RuntimeError("no result"))  # a sweep with hydra.sweep.subdir=x/${hydra.job.num}
    assert report.main([str(root)]) == 0
    excluded = {r["run"]: (r["state"], r["reason"]) for r in rows(root / "report" / "excluded.csv")}
    assert excluded.pop("x/14") == excluded["13"]
    assert excluded == {"6": ("failed", "failed: RuntimeError: CUDA out of memory"),
                        "7": ("running", "running"),
                        "8": ("missing", "incomplete: no readable status.json"),
                        "9": ("completed", "incomplete: rounds.csv missing or unreadable"),
                        "10": ("completed", "duplicate of 3 (same environment, strategy and seed)"),
                        "11": ("failed", "failed: RuntimeError: CUDA out of memory"),
                        "12": ("interrupted", "interrupted by the user (Ctrl-C); dal-run resume=PATH continues it"),
                        "13": ("failed", "failed: the job's process ended without a result before it made its run "
                               "folder: killed (out of memory, SIGKILL, a Ctrl-C that reached the jobs alone) or its "
                               "node failed; the same command with hydra.sweep.dir runs it again")}
    aucs = {r["strategy"]: r for r in rows(root / "report" / "auc.csv")}
    assert aucs["query=random"]["n"] == "3" and aucs["query=random"]["seeds"] == "0 1 2"
    assert {r["environment"] for r in aucs.values()} == {"dataset=digits"}  # failed runs define no environment
    printed = capsys.readouterr().out
    assert "excluded 9 run(s)" in printed and "  7: running" in printed


def test_the_report_folder_is_not_read_back_and_stale_figures_are_removed(tmp_path):
    root = sweep(tmp_path / "sweep")
    assert report.main([str(root)]) == 0
    make_run(root / "report" / "junk", query="badge")  # anything below report/ is not a run
    (root / "report" / "penalty_by_arch.png").write_bytes(b"old")
    assert report.main([str(root)]) == 0
    assert {r["strategy"] for r in rows(root / "report" / "auc.csv")} == {"query=margin", "query=random"}
    assert not (root / "report" / "penalty_by_arch.png").exists()


def test_run_folders_may_follow_the_options_that_take_several_values(tmp_path):
    sweep(tmp_path / "sweep", n_seeds=2)
    make_run(tmp_path / "more" / "0", query="margin", seed=2, curve=margin_curve(2))
    assert report.main(["--reference", "query=random", str(tmp_path / "sweep"), "--strategy", "query",
                        str(tmp_path / "more"), "--out", str(tmp_path / "out")]) == 0
    aucs = {r["strategy"]: r["seeds"] for r in rows(tmp_path / "out" / "auc.csv")}
    assert aucs == {"query=margin": "0 1 2", "query=random": "0 1"}


def test_two_reports_of_the_same_runs_are_byte_identical(tmp_path):
    sweep(tmp_path / "runs" / "b30")
    sweep(tmp_path / "runs" / "b60", batch=60)
    for out in ("a", "b"):
        assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / out)]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "penalty_by_batch.svg" in names and names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere"], "nowhere: no such file or folder"),
    (["{tmp}/empty"], "no run folders (a folder with .hydra/config.yaml) under"),
    (["{tmp}/sweep/0/rounds.csv"], "not a folder"),
    (["{tmp}/sweep", "--alpha", "2"], "--alpha 2.0: accepted: a significance level in (0, 1)"),
    (["{tmp}/sweep", "--alpha", "x"], "argument --alpha: invalid float value: 'x'"),
    (["{tmp}/sweep", "--reference", "query"], "--reference query: accepted: KEY=VALUE"),
    (["{tmp}/sweep", "--reference", "qery=random"], "--reference qery=random: unknown key; accepted: one of dataset,"),
    (["{tmp}/sweep", "--reference", "query=badge"], "--reference query=badge: no completed run has it; accepted: one of margin, random"),
    (["{tmp}/sweep", "--strategy", "trainer.objektive"],
     "--strategy trainer.objektive: unknown key; accepted: a config key or group of the runs, e.g. trainer.objective "
     "or budget; keys that differ between these runs: query"),
    (["{tmp}/sweep", "--strategy", "seed"], "--strategy seed: the seed is what a group averages over"),
    (["{tmp}/sweep", "--reference", "query=random", "seed=0"], "--reference seed=0: the seed is what a group averages"),
    (["{tmp}/sweep", "--reference", "query=random", "query=margin"],
     "--reference query=margin: query is given twice (query=random before); accepted: one value per key"),
    (["--reference", "query=random"], "the following arguments are required: PATH"),
    (["{tmp}/failed"], "none of the 1 run folder(s) completed"),
    (["{tmp}/sweep", "--out", "{tmp}/afile"], "cannot create the folder (it is a file)"),
    # the report's files among a run's own, or a run left out of its own report: refused
    (["{tmp}/sweep", "--out", "{tmp}/sweep/0"], "is the run folder {tmp}/sweep/0; accepted: a folder outside the runs"),
    (["{tmp}/sweep", "--out", "{tmp}/sweep/0/figs"], "is inside the run folder {tmp}/sweep/0"),
    (["{tmp}/sweep", "--out", "{tmp}/sweep"], "holds the run folder {tmp}/sweep/0"),
    (["{tmp}/sweep", "--out", "{tmp}"], "holds the run folder"),
])
def test_user_errors_are_one_line_with_exit_status_2_and_nothing_written(tmp_path, capsys, args, message):
    sweep(tmp_path / "sweep", n_seeds=2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("")
    make_run(tmp_path / "failed" / "0", state="failed")
    before = sorted(tmp_path.rglob("*"))
    assert report.main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dal-report: error: ") and message.format(tmp=tmp_path) in err, err
    assert sorted(tmp_path.rglob("*")) == before


def test_the_growth_of_searched_models_is_averaged_over_seeds_as_fig_6a(tmp_path):
    # before: one arch_growth.png per run, none for a sweep
    for seed, params in enumerate(([100, 100, 300], [100, 300, 500])):
        make_run(tmp_path / "sweep" / str(seed), seed=seed, search="inas", arch="resnet", curve=RANDOM[seed],
                 params=params)
    for seed in (0, 1):  # a fixed architecture does not grow: no curve of its own
        make_run(tmp_path / "sweep" / str(2 + seed), seed=seed, arch="resnet", curve=RANDOM[seed], params=[50] * 3)
    assert report.main([str(tmp_path / "sweep")]) == 0
    out = tmp_path / "sweep" / "report"
    growth = rows(out / "arch_growth.csv")
    assert [(r["n_labeled"], float(r["mean"]), r["n"]) for r in growth] == [("30", 100.0, "2"), ("60", 200.0, "2"),
                                                                             ("90", 400.0, "2")]
    assert {r["strategy"] for r in growth} == {"search=inas"}
    assert (out / "arch_growth.png").is_file() and (out / "arch_growth.svg").is_file()


def test_a_run_whose_rounds_csv_holds_an_impossible_accuracy_is_left_out(tmp_path, capsys):
    # before: a NaN (say, a hand edit) reached the mean curve and the AUC
    sweep(tmp_path / "sweep", n_seeds=2)
    path = tmp_path / "sweep" / "0" / "rounds.csv"
    path.write_text(path.read_text().replace("60,0.7", "60,nan", 1))
    assert report.main([str(tmp_path / "sweep")]) == 0
    excluded = rows(tmp_path / "sweep" / "report" / "excluded.csv")
    assert [(r["run"], r["reason"]) for r in excluded] == [("0", "inconsistent: rounds.csv has a test_accuracy of nan "
                                                                 "in round 1")]
    assert all(r["mean"] != "nan" for r in rows(tmp_path / "sweep" / "report" / "auc.csv"))


def test_a_default_out_folder_that_cannot_be_made_says_it_was_the_default(tmp_path, capsys):
    # before: "--out .../report: cannot create the folder", though no --out was given
    sweep(tmp_path / "sweep", n_seeds=2)
    (tmp_path / "sweep" / "report").write_text("")
    assert report.main([str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dal-report: error: {tmp_path}/sweep/report (the default --out: report/ in the first "
                          f"PATH): cannot create the folder (it is a file); accepted: --out DIR"), err


def test_a_single_run_is_reported_into_its_own_report_folder(tmp_path):
    make_run(tmp_path / "run", curve=RANDOM[0])
    assert report.main([str(tmp_path / "run")]) == 0
    assert report.main([str(tmp_path / "run"), "--out", str(tmp_path / "run" / "report" / "again")]) == 0
    assert (tmp_path / "run" / "report" / "auc.csv").is_file() and (tmp_path / "run" / "report" / "again" / "auc.csv").is_file()


def test_a_reference_that_names_an_environment_is_refused(tmp_path, capsys):
    # budget.batch tells the two sweeps' environments apart: a "reference" there would compare
    # each environment's strategies with themselves (gains of 0)
    sweep(tmp_path / "runs" / "b30", batch=30)
    sweep(tmp_path / "runs" / "b60", batch=60)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reference", "budget.batch=60"]) == 2
    err = capsys.readouterr().err
    assert ("--reference budget.batch=60: budget.batch tells environments apart, and runs of different environments "
            "are never compared; accepted: keys of the compared strategies (query;") in err
    assert not (tmp_path / "out").exists()


def test_a_reference_that_every_run_has_is_refused(tmp_path, capsys):
    """Before, `--reference dataset=digits` matched every strategy, each its own reference: an
    auc_gain.csv of zeros, no gain figures, and no word why."""
    sweep(tmp_path / "runs")
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reference", "dataset=digits"]) == 2
    err = capsys.readouterr().err
    assert ("--reference dataset=digits: every run has it, so it names no one strategy; accepted: keys of the compared "
            "strategies (query;") in err
    assert not (tmp_path / "out").exists()
    # a constant key together with one that picks a strategy is that strategy
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reference", "dataset=digits",
                        "query=margin"]) == 0
    assert {r["reference"] for r in rows(tmp_path / "out" / "auc_gain.csv")} == {"query=margin"}
    # the same reference from a sweep's config (its callback): the report is written, without gains
    capsys.readouterr()
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "cb"), "--reference", "dataset=digits"],
                       reference_configured=True) == 0
    assert len(rows(tmp_path / "cb" / "auc.csv")) == 2 and rows(tmp_path / "cb" / "auc_gain.csv") == []
    assert "AUC-gain: none, as the sweep's configured reference is no reference here: --reference dataset=digits: " \
           "every run has it" in capsys.readouterr().out


def test_searches_compared_with_the_same_query_and_no_fixed_resnet18_have_no_default_reference(tmp_path, capsys):
    """iNAS against random search, both with query=random: query=random, the default reference,
    made each its own reference (an auc_gain.csv of zeros, no word why)."""
    for job, search in enumerate(("inas", "random")):
        for seed in (0, 1):
            make_run(tmp_path / "runs" / f"{job}{seed}", search=search, arch="resnet", seed=seed, curve=RANDOM[seed])
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert [r["strategy"] for r in rows(tmp_path / "out" / "auc.csv")] == ["search=inas", "search=random"]
    assert rows(tmp_path / "out" / "auc_gain.csv") == []
    assert "AUC-gain: none: every strategy has query=random, the default reference; dal-report --reference KEY=VALUE " \
           "names one, e.g. --reference search=inas" in capsys.readouterr().out
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reference", "search=random"]) == 0
    assert [(r["strategy"], r["reference"]) for r in rows(tmp_path / "out" / "auc_gain.csv")] == [
        ("search=inas", "search=random"), ("search=random", "search=random")]


@pytest.mark.parametrize("queries", [("softmax_response", "softmax_response"), ("margin", "entropy")])
def test_strategies_none_of_which_is_random_have_no_default_reference_and_a_hint(tmp_path, capsys, queries):
    """The README's `dal-run -m search=random,reinforce` (each with softmax response), or a sweep of
    margin against entropy: no run has query=random, and the report said only "no single reference
    strategy (query=random in the same environment)", with no word of --reference."""
    for job, (search, query) in enumerate(zip(("random", "reinforce"), queries)):
        for seed in (0, 1):
            make_run(tmp_path / "runs" / f"{job}{seed}", search=search, query=query, arch="resnet", seed=seed,
                     curve=RANDOM[seed])
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert rows(tmp_path / "out" / "auc_gain.csv") == []
    out = capsys.readouterr().out
    assert "AUC-gain: none: no run has query=random or is a fixed ResNet-18 (search=fixed arch=resnet18), the " \
           "default references; dal-report --reference KEY=VALUE names one, e.g. --reference search=random" in out \
        and "no single reference" not in out, out


def test_a_reference_without_a_match_says_which_keys_must_agree(tmp_path):
    """iNAS with margin against a fixed ResNet-18 with random: the reference exists, but with
    another query, and the note said only "in the same environment"."""
    from dal_runner.report import build_report

    for seed in (0, 1):
        make_run(tmp_path / "runs" / f"i{seed}", search="inas", arch="resnet", query="margin", seed=seed,
                 curve=margin_curve(seed))
        make_run(tmp_path / "runs" / f"f{seed}", search="fixed", arch="resnet18", query="random", seed=seed,
                 curve=RANDOM[seed])
    notes = build_report([tmp_path / "runs"], reference={"search": "fixed", "arch": "resnet18"}).notes
    assert [n for n in notes if n.startswith("AUC-gain: no single reference strategy")] == [
        "AUC-gain: no single reference strategy (search=fixed arch=resnet18 in the same environment, with the same "
        "query) for 1 group(s): dataset=digits | search=inas arch=resnet query=margin"], notes


def test_environments_are_in_natural_order_and_a_query_keeps_its_colour_across_reports(tmp_path):
    from dal_runner.report_figures import _colors

    sweep(tmp_path / "runs" / "b100", batch=100)
    sweep(tmp_path / "runs" / "b50", batch=50)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    envs = [r["environment"] for r in rows(tmp_path / "out" / "auc.csv")]
    assert envs == ["dataset=digits budget.batch=50"] * 2 + ["dataset=digits budget.batch=100"] * 2  # 50 first
    assert _colors(["query=margin", "query=random"])["query=margin"] == \
        _colors(["query=badge", "query=margin"])["query=margin"]
    # strategies a query alone does not tell apart: by position
    mixed = _colors(["query=margin search=fixed", "query=margin search=inas"])
    assert len(set(mixed.values())) == 2


def test_a_penalty_matrix_with_nothing_tested_is_not_written(tmp_path, capsys):
    sweep(tmp_path / "sweep", n_seeds=1)  # one seed each: no t-test anywhere
    assert report.main([str(tmp_path / "sweep"), "--penalty-sizes", "all"]) == 0
    out = tmp_path / "sweep" / "report"
    assert rows(out / "penalty.csv") == [] and not (out / "penalty.png").exists()
    assert len(rows(out / "penalty_skipped.csv")) == 3  # each label count, with why
    out_text = capsys.readouterr().out
    assert "penalty matrix: not computed, no (environment, label count) could be tested" in out_text
    assert "(why, per label count: penalty_skipped.csv)" in out_text
    # one strategy: no pair to test, no label count skipped, and no pointer to an empty file
    make_run(tmp_path / "one" / "0", seed=0, curve=RANDOM[0])
    make_run(tmp_path / "one" / "1", seed=1, curve=RANDOM[1])
    assert report.main([str(tmp_path / "one")]) == 0
    out_text = capsys.readouterr().out
    assert "penalty matrix: not computed" in out_text and "penalty_skipped.csv" not in out_text
    assert rows(tmp_path / "one" / "report" / "penalty_skipped.csv") == []


def test_a_rounds_csv_cut_short_since_the_run_wrote_it_is_left_out(tmp_path):
    sweep(tmp_path / "sweep", n_seeds=2)
    for job in range(4):
        (tmp_path / "sweep" / str(job) / "summary.json").write_text(json.dumps({"n_rounds": 3, "final_n_labeled": 90}))
    rounds = tmp_path / "sweep" / "1" / "rounds.csv"
    rounds.write_text("".join(rounds.read_text().splitlines(keepends=True)[:3]))  # 2 of its 3 rounds
    assert report.main([str(tmp_path / "sweep")]) == 0
    (excluded,) = rows(tmp_path / "sweep" / "report" / "excluded.csv")
    assert excluded["run"] == "1" and excluded["reason"] == (
        "inconsistent: rounds.csv holds 2 rounds up to 60 labels, summary.json 3 rounds up to 90")
    assert {r["strategy"]: r["seeds"] for r in rows(tmp_path / "sweep" / "report" / "auc.csv")} == \
        {"query=margin": "0", "query=random": "0 1"}


def test_a_report_with_no_completed_run_points_to_no_file(tmp_path, capsys):
    make_run(tmp_path / "runs" / "0", state="failed")
    assert report.main([str(tmp_path / "runs")]) == 2
    captured = capsys.readouterr()
    assert "excluded 1 run(s) from every average:" in captured.out and "excluded.csv" not in captured.out
    assert "nothing to report" in captured.err and not (tmp_path / "runs" / "report").exists()


# ------------------------------------------------------------------------------ end to end, real dal-run
SWEEP = ["-m", "search=fixed", "arch=mlp", "query=random,margin", "seed=0,1", "budget.initial=30",
         "budget.batch=30", "budget.max_labels=90", "trainer.epochs=3"]  # the report callback is on by default


def cli(script, args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / script), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """One `dal-run -m` of 4 tiny runs with the report callback registered; returns (sweep dir, stdout)."""
    cwd = tmp_path_factory.mktemp("real_sweep")
    res = cli("dal-run", SWEEP, cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep_dir,) = [p.parent for p in (cwd / "outputs" / "multirun").glob("*/*/multirun.yaml")]
    return sweep_dir, res.stdout


def test_the_callback_reports_at_the_end_of_the_sweep(real_sweep):
    sweep_dir, stdout = real_sweep
    out = sweep_dir / "report"
    for name in TABLES + ["learning_curves.png", "learning_curves.svg", "penalty.png", "penalty.svg",
                          "auc_gain.png", "auc_gain.svg", "auc_gain_by_labels.png", "auc_gain_by_labels.svg"]:
        assert (out / name).is_file(), name
    assert "AUC of the learning curve" in stdout
    assert f"wrote 17 files to outputs/multirun/{sweep_dir.parent.name}/{sweep_dir.name}/report" in stdout
    curves = rows(out / "curves.csv")
    assert [(r["strategy"], int(r["n_labeled"]), r["n"]) for r in curves] == [
        (q, n, "2") for q in ("query=margin", "query=random") for n in (30, 60, 90)]
    summaries = [json.loads((d / "summary.json").read_text()) for d in sorted(sweep_dir.glob("[0-9]"))]
    for r in rows(out / "auc.csv"):  # the report's AUC is the mean of the runs' own summary AUCs
        query = r["strategy"].split("=")[1]
        mine = [s["auc"] for s in summaries if s["choices"]["query"] == query]
        assert r["n"] == "2" and float(r["mean"]) == pytest.approx(sum(mine) / 2, abs=1e-6)
    assert {r["reference"] for r in rows(out / "auc_gain.csv")} == {"query=random"}
    penalty = rows(out / "penalty.csv")
    assert len(penalty) == 6 and rows(out / "excluded.csv") == [] and rows(out / "penalty_skipped.csv") == []


def test_dal_report_gives_the_callbacks_files_byte_for_byte(real_sweep, tmp_path):
    sweep_dir, _ = real_sweep
    expected = {p.name: p.read_bytes() for p in (sweep_dir / "report").iterdir()}
    for out in ("first", "second"):
        res = cli("dal-report", [sweep_dir, "--out", tmp_path / out], tmp_path)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        got = {p.name: p.read_bytes() for p in (tmp_path / out).iterdir()}
        assert sorted(got) == sorted(expected)
        for name in expected:
            assert got[name] == expected[name], f"{name} differs between two identical reports"
    assert b"<dc:date>" not in expected["penalty.svg"] and b"Software" not in expected["penalty.png"]


def test_a_run_whose_status_is_failed_is_listed_and_left_out(real_sweep, tmp_path):
    sweep_dir, _ = real_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("report"))
    failed = next(d for d in sorted(copy.glob("[0-9]"))
                  if json.loads((d / "summary.json").read_text())["choices"]["query"] == "margin")
    (failed / "status.json").write_text(json.dumps({"state": "failed", "error": "RuntimeError: boom", "round": 1}))
    res = cli("dal-report", [copy, "--penalty-sizes", "all"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert rows(copy / "report" / "excluded.csv") == [{"run": failed.name, "state": "failed", "reason": "failed: RuntimeError: boom"}]
    assert f"  {failed.name}: failed: RuntimeError: boom" in res.stdout and "excluded 1 run(s)" in res.stdout
    assert {r["n"] for r in rows(copy / "report" / "curves.csv") if r["strategy"] == "query=margin"} == {"1"}
    # one margin seed left: no paired t-test is possible, and the report says so
    skipped = rows(copy / "report" / "penalty_skipped.csv")
    assert len(skipped) == 3 and all("fewer than 2 seeds" in s["reason"] for s in skipped)


def test_the_command_prints_one_line_errors_without_a_traceback(tmp_path):
    res = cli("dal-report", [tmp_path / "nowhere"], tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"dal-report: error: {tmp_path / 'nowhere'}: no such file or folder\n"


def test_strategy_option_moves_a_config_key_from_the_environment_into_the_strategy(tmp_path):
    sweep(tmp_path / "runs" / "b30", batch=30)  # margin vs random at batch 30
    sweep(tmp_path / "runs" / "b45", batch=45, start=6)
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "runs"), "--out", str(out), "--strategy", "budget.batch"]) == 0
    groups = {(r["environment"], r["strategy"]) for r in rows(out / "auc.csv")}
    assert ("dataset=digits", "budget.batch=30 query=margin") in groups
    assert ("dataset=digits", "budget.batch=45 query=random") in groups and len(groups) == 4


def test_the_ranganathan_experiment_reports_objectives_as_strategies_against_cross_entropy(tmp_path):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from dal_runner.config import register_configs

    register_configs()
    with initialize_config_module("dal_runner.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=ranganathan_digits"], return_hydra_config=True)
    callback = instantiate(cfg.hydra.callbacks.report)
    # runs where only the objective differs: joint entropy is ahead by MARGIN_DELTA after the start
    for job, (objective, seed) in enumerate([(o, s) for o in ("joint_entropy", "cross_entropy") for s in range(3)]):
        folder = make_run(tmp_path / "sweep" / str(job), query="entropy", seed=seed,
                          curve=margin_curve(seed) if objective == "joint_entropy" else RANDOM[seed])
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        config["trainer"].update(objective=objective, entropy_lambda=0.1)
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))
    out = tmp_path / "sweep" / "report"
    assert {(r["environment"], r["strategy"]) for r in rows(out / "auc.csv")} == {
        ("dataset=digits", "trainer.objective=cross_entropy"), ("dataset=digits", "trainer.objective=joint_entropy")}
    gain = {r["strategy"]: (r["reference"], float(r["mean"])) for r in rows(out / "auc_gain.csv")}
    # margin_curve adds delta from 60 labels on; AUC over 30..90: delta * (1/2 * 1/2 + 1/2) = 0.75 delta
    assert gain["trainer.objective=joint_entropy"][0] == "trainer.objective=cross_entropy"
    assert math.isclose(gain["trainer.objective=joint_entropy"][1], 0.75 * sum(MARGIN_DELTA) / 3, abs_tol=1e-6)
    # dal-report SWEEP gives the same report: the settings come from the sweep's multirun.yaml
    # (before, the objectives were environments: no gains, no penalty, 11 files instead of 17)
    OmegaConf.save(cfg, tmp_path / "sweep" / "multirun.yaml")
    assert report.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "again")]) == 0
    for table in out.glob("*.csv"):
        assert (tmp_path / "again" / table.name).read_text() == table.read_text(), table.name
    # a sweep run without the callback (~hydra.callbacks.report): its experiment's report settings
    OmegaConf.set_struct(cfg, False)
    del cfg.hydra.callbacks["report"]
    OmegaConf.save(cfg, tmp_path / "sweep" / "multirun.yaml")
    assert report.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "third")]) == 0
    assert rows(tmp_path / "third" / "auc_gain.csv") == rows(out / "auc_gain.csv")
    # settings given on the command line win
    assert report.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "own"), "--strategy", "query"]) == 0
    assert {r["environment"] for r in rows(tmp_path / "own" / "auc.csv")} == {
        "dataset=digits trainer.objective=cross_entropy", "dataset=digits trainer.objective=joint_entropy"}


def test_a_penalty_matrix_that_badges_rule_leaves_empty_says_so(tmp_path, capsys):
    # two label counts: random's final accuracy is its first after the start, so no round is still learning
    for job, (query, seed) in enumerate((q, s) for q in ("margin", "random") for s in range(3)):
        curve = [(n, a + (MARGIN_DELTA[seed] if query == "margin" and n > 30 else 0.0)) for n, a in RANDOM[seed][:2]]
        make_run(tmp_path / "runs" / str(job), query=query, seed=seed, curve=curve)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "badge")]) == 0
    assert rows(tmp_path / "badge" / "penalty.csv") == [] and rows(tmp_path / "badge" / "penalty_skipped.csv") == []
    assert rows(tmp_path / "badge" / "penalty_sizes.csv")[0]["counted"] == ""
    printed = capsys.readouterr().out
    assert "BADGE's rule picks no label count here" in printed and "--penalty-sizes all" in printed
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "all"), "--penalty-sizes", "all"]) == 0
    penalty = {(r["row"], r["column"]): float(r["value"]) for r in rows(tmp_path / "all" / "penalty.csv")
               if r["kind"] == "penalty"}
    assert penalty["query=margin", "query=random"] == pytest.approx(1 / 2)  # wins at 60, not at the shared 30


def test_aucs_of_strategies_over_different_label_ranges_are_flagged(tmp_path, capsys):
    for seed in range(2):
        make_run(tmp_path / "runs" / f"r{seed}", query="random", seed=seed, curve=RANDOM[seed])
        make_run(tmp_path / "runs" / f"m{seed}", query="margin", seed=seed, curve=margin_curve(seed)[:2])  # to 60
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert ("AUC of dataset=digits: its strategies cover different label ranges (query=margin 30-60, "
            "query=random 30-90), so their AUCs do not compare") in printed
    # the gain is over the range both cover
    (gain,) = [r for r in rows(tmp_path / "out" / "auc_gain.csv") if r["strategy"] == "query=margin"]
    assert (gain["from_labels"], gain["to_labels"]) == ("30", "60")


def test_a_batch_size_whose_penalty_nothing_was_tested_in_is_left_out_of_the_split(tmp_path, capsys):
    # batch 30: 30, 60, 90 labels, BADGE's rule picks 60; batch 60: 30, 90, random saturates at once
    for job, (query, seed) in enumerate((q, s) for q in ("margin", "random") for s in range(3)):
        make_run(tmp_path / "runs" / "b30" / str(job), query=query, seed=seed, batch=30,
                 curve=margin_curve(seed) if query == "margin" else RANDOM[seed])
        curve = [RANDOM[seed][0], (90, RANDOM[seed][2][1] + (MARGIN_DELTA[seed] if query == "margin" else 0.0))]
        make_run(tmp_path / "runs" / "b60" / str(job), query=query, seed=seed, batch=60, curve=curve)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    splits = {(r["split"], r["subset"]) for r in rows(tmp_path / "out" / "penalty.csv")}
    assert splits == {("overall", "all"), ("batch", "budget.batch=30")}  # no all-zero batch-60 matrix
    assert "penalty matrix by batch: nothing tested in budget.batch=60" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("n_seeds, warned", [(2, True), (3, False)])
def test_a_penalty_matrix_from_two_seeds_says_how_little_its_t_tests_can_find(tmp_path, capsys, n_seeds, warned):
    sweep(tmp_path / "sweep", n_seeds=n_seeds)
    assert report.main([str(tmp_path / "sweep"), "--penalty-sizes", "all"]) == 0
    out = capsys.readouterr().out
    # t(0.975, 1 dof) = 12.706: with 2 seeds a win needs nearly the same difference in both
    assert ("only 2 seeds (1 degree of freedom): at alpha 0.05 a win needs t > 12.7" in out) is warned


def test_a_long_strategy_label_is_drawn_without_a_matplotlib_warning_on_the_terminal():
    """Custom strategies named by their target and params make long legend labels: matplotlib's
    "Tight layout not applied" UserWarning reached the terminal (seen with query=custom)."""
    import warnings

    import matplotlib.pyplot as plt

    from dal_runner.report_figures import _colors, auc_gain_bars

    long = "query=custom " + " ".join(f"query.params.option_{i}=value_{i}" for i in range(12))
    rows_ = [{"strategy": long, "reference": "query=random", "environment": "dataset=digits", "mean": 0.01,
              "std": 0.002, "from_labels": 100, "to_labels": 600}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plt.close(auc_gain_bars(rows_, _colors([long]), "query=random"))


def test_a_custom_strategy_is_named_by_its_target_where_it_is_the_only_one(tmp_path):
    """Before, a sweep of margin against one custom target labelled it `query=custom`, and a report of
    the custom runs alone said `query=custom` too: whose strategy, nothing told."""
    root = sweep(tmp_path / "sweep")  # margin and random, seeds 0-2
    for job, seed in ((6, 0), (7, 1)):
        make_run(root / str(job), query="custom", seed=seed, curve=RANDOM[seed])
        config = yaml.safe_load((root / str(job) / ".hydra" / "config.yaml").read_text())
        config["query"].update(target="my_queries.Rotating", params={})
        (root / str(job) / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert report.main([str(root)]) == 0
    assert {r["strategy"] for r in rows(root / "report" / "auc.csv")} == {
        "query=custom query.target=my_queries.Rotating", "query=margin", "query=random"}
    assert report.main([str(root / "6"), str(root / "7"), "--out", str(tmp_path / "alone")]) == 0
    assert [r["strategy"] for r in rows(tmp_path / "alone" / "auc.csv")] == ["query=custom query.target=my_queries.Rotating"]


def test_figures_name_the_query_all_runs_share_and_never_break_a_label_inside_a_word(tmp_path):
    """A report of one query's runs (active-iNAS Figs. 2-4: one report per query) titled its panels
    by the environment alone, so a figure copied out of its folder did not say which query it
    showed; labels were wrapped inside words ('cross_entrop y')."""
    from dal_runner import report_figures

    for seed in range(2):
        make_run(tmp_path / "runs" / f"i{seed}", query="softmax_response", search="inas", arch="resnet", seed=seed)
        make_run(tmp_path / "runs" / f"f{seed}", query="softmax_response", arch="resnet18", seed=seed)
    built = report.build_report([tmp_path / "runs"])
    assert {r["strategy"] for r in built.tables["auc.csv"]} == {"search=fixed arch=resnet18", "search=inas arch=resnet"}
    assert report_figures._common_options(built) == "query=softmax_response"
    assert report_figures._wrap("trainer.entropy_lambda=0.1 trainer.objective=cross_entropy", 30) == (
        "trainer.entropy_lambda=0.1\ntrainer.objective=cross_entropy")


def test_a_run_whose_process_is_gone_is_listed_as_killed_not_running(tmp_path):
    """A single run killed with SIGKILL leaves status.json at `running`: the report said `running`,
    though dal-run itself can tell from the pid on this machine that the process is gone."""
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    run = make_run(tmp_path / "runs" / "killed", state=None, curve=[(30, 0.5)])
    (run / "status.json").write_text(json.dumps({"state": "running", "host": socket.gethostname(), "pid": gone.pid}))
    make_run(tmp_path / "runs" / "elsewhere", state=None, curve=[(30, 0.5)])  # another machine's: cannot tell
    (tmp_path / "runs" / "elsewhere" / "status.json").write_text(json.dumps({"state": "running", "host": "node7",
                                                                           "pid": gone.pid}))
    make_run(tmp_path / "runs" / "done", curve=RANDOM[0])
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    reasons = {r["run"]: r["reason"] for r in rows(tmp_path / "out" / "excluded.csv")}
    assert reasons["killed"] == (f"killed: status.json says running, but its process (pid {gone.pid}) is gone "
                                 f"(SIGKILL, out of memory); dal-run resume={run} continues it")
    assert reasons["elsewhere"] == "running"


def test_a_sweep_s_jobs_that_never_started_are_noted(tmp_path, capsys):
    """A sweep killed before its job 2 started: the report showed jobs 0 and 1 and said nothing of a
    third, so a setting missing from the tables went unnoticed."""
    sweep_dir = tmp_path / "sweep"
    for seed in (0, 1):
        make_run(sweep_dir / str(seed), seed=seed, curve=RANDOM[seed])
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"overrides": {"task": ["search=fixed", "seed=0,1,2"]}}}))
    assert report.main([str(sweep_dir), "--out", str(tmp_path / "out")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert (f"{sweep_dir}: 1 of the sweep's 3 jobs have no folder (never started: the sweep was stopped or killed "
            f"before them); the same command with hydra.sweep.dir={sweep_dir} runs them") in printed
    make_run(sweep_dir / "2", seed=2, curve=RANDOM[2])
    assert report.main([str(sweep_dir), "--out", str(tmp_path / "out")]) == 0
    assert "have no folder" not in capsys.readouterr().out


def test_runs_made_with_different_code_are_noted(tmp_path):
    """Runs averaged together whose summary.json records another torch or dal-runner commit: the
    report says which and how many (nothing did, and the version number is the same at every commit)."""
    from dal_runner.report import build_report

    root = sweep(tmp_path / "sweep")
    versions = {"torch": "2.14.1", "dal_runner": "0.1.0", "dal_runner_commit": "abc"}
    for n, job in enumerate(sorted(root.iterdir())):
        changed = {"dal_runner_commit": "def+changes"} if n == 0 else {"torch": "2.13.0"} if n == 1 else {}
        (job / "summary.json").write_text(json.dumps({"versions": {**versions, **changed}}))
    notes = [n for n in build_report([root]).notes if "different code" in n]
    assert notes == ["the runs were made with different code (summary.json: versions): dal_runner_commit abc (5 runs), "
                     "def+changes (1 run); torch 2.13.0 (1 run), 2.14.1 (5 runs)"], notes
    for n, job in enumerate(sorted(root.iterdir())):  # all alike, or older runs that did not record it: no note
        (job / "summary.json").write_text(json.dumps({"versions": versions if n else {"torch": "2.14.1"}}))
    assert not [n for n in build_report([root]).notes if "different code" in n]


def test_a_query_keeps_its_colour_beside_a_custom_strategy():
    # before: one label that was not a built-in query alone coloured every label by sorted position
    # (query=random blue in one report, red beside a custom strategy)
    import matplotlib.pyplot as plt

    from dal_runner.report_figures import QUERY_COLORS, _colors

    tab10 = plt.get_cmap("tab10")
    custom = ["query=custom query.target=q.A", "query=custom query.target=q.B"]
    colors = _colors(["query=random", "query=margin", *custom])
    assert colors["query=random"] == tab10(QUERY_COLORS.index("random"))
    assert colors["query=margin"] == tab10(QUERY_COLORS.index("margin"))
    assert len(set(colors.values())) == 4
    # a query that two labels share (margin with two searches) is no one label's colour
    shared = _colors(["query=margin search=inas", "query=margin search=fixed", "query=random"])
    assert shared["query=random"] == tab10(0) and len(set(shared.values())) == 3


def test_a_strategy_and_an_environment_get_the_names_given_in_the_figures_only(tmp_path, capsys):
    # before: the figures showed only the config's labels (query=custom query.target=... in a legend)
    for batch in (50, 100):
        sweep(tmp_path / "runs" / f"b{batch}", batch=batch)
    out = tmp_path / "out"
    argv = [str(tmp_path / "runs"), "--out", str(out), "--name", "query=margin", "Margin (ours)",
            "--name", "dataset=digits budget.batch=50", "digits, b = 50"]
    assert report.main(argv) == 0
    curves, penalty = (out / "learning_curves.svg").read_text(), (out / "penalty.svg").read_text()
    assert "<!-- Margin (ours) -->" in curves and "digits, b = 50" in curves and "<!-- query=random -->" in curves
    assert "Margin (ours)" in penalty and "Margin (ours)" in (out / "auc_gain.svg").read_text()
    assert {r["strategy"] for r in rows(out / "auc.csv")} == {"query=margin", "query=random"}  # tables: as configured
    for names, says in ((["query=margin", "X", "query=random", "X"], "'query=random' is shown as 'X' too"),
                        (["query=margin", "query=random"], "'query=random' is shown as 'query=random' too"),
                        (["query=margin", "X", "query=margin", "Y"], "'query=margin' is named twice"),
                        (["query=margin", ""], "a legend leaves out an empty name or one that starts with _"),
                        (["query=margin", "_m"], "a legend leaves out an empty name or one that starts with _")):
        capsys.readouterr()
        assert report.main([*argv[:3], *(w for i in range(0, len(names), 2) for w in ("--name", *names[i:i + 2]))]) == 2
        assert says in capsys.readouterr().err
    # a name may be swapped with another label's as long as each is its own
    assert report.main([*argv[:3], "--name", "query=margin", "query=random", "--name", "query=random", "query=margin"]) == 0
    # a $ is drawn as written (matplotlib's math text raised on 'cost $x^$ ok' and no figure was written)
    assert report.main([*argv[:3], "--name", "query=margin", "cost $x^$ ok"]) == 0
    assert "<!-- cost $x^$ ok -->" in (out / "learning_curves.svg").read_text()
    assert report.main([*argv[:3], "--name", "query=marginn", "M"]) == 2
    assert "--name 'query=marginn' 'M': no strategy or environment of these runs is labelled 'query=marginn'; " \
           "accepted: one of 'dataset=digits budget.batch=50', 'dataset=digits budget.batch=100', 'query=margin', " \
           "'query=random'" in capsys.readouterr().err


def test_the_figures_band_is_the_std_the_standard_error_or_a_t_interval_as_asked(tmp_path):
    # before: always +-1 std, which over 3 seeds says little of where the mean is
    from dal_runner.report_figures import _half_width

    row = {"std": 0.1, "n": 4}
    assert _half_width(row, "std") == 0.1
    assert _half_width(row, "sem") == pytest.approx(0.05)
    assert _half_width(row, "ci95") == pytest.approx(3.182446 * 0.05, rel=1e-5)  # t(0.975, 3), from a t table
    assert math.isnan(_half_width({"std": float("nan"), "n": 1}, "ci95"))  # one seed: no band
    sweep(tmp_path / "runs")
    for band, words in (("std", "± 1 std"), ("ci95", "± 95% t-interval")):
        assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / band), "--band", band]) == 0
        assert f"<!-- test accuracy (mean {words}) -->" in (tmp_path / band / "learning_curves.svg").read_text()
        assert f"AUC-gain (accuracy; {words} over seeds)" in (tmp_path / band / "auc_gain.svg").read_text()
    assert rows(tmp_path / "std" / "curves.csv") == rows(tmp_path / "ci95" / "curves.csv")  # tables: mean, std, n


def test_a_strategy_key_that_tells_no_runs_apart_is_named_in_a_note(tmp_path, capsys):
    """--strategy budget.batch over runs of one batch size changes nothing: accepted (a key of the
    runs), but said, so a reader does not take the report for one that compared batch sizes."""
    sweep(tmp_path / "runs", batch=30)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                        "--strategy", "budget.batch", "query"]) == 0
    out = capsys.readouterr().out
    assert "--strategy budget.batch: the same in every run" in " ".join(out.split())
    assert "--strategy query:" not in out  # query tells margin from random
    assert {r["strategy"] for r in rows(tmp_path / "out" / "auc.csv")} == {"query=margin", "query=random"}


def test_the_auc_gain_pairs_each_run_with_the_reference_run_of_its_seed(tmp_path):
    """margin's curve is random's of the same seed plus MARGIN_DELTA[seed] after 30 labels, so each
    seed's gain is 0.75 delta (trapezoids over 30..90: (0 + d) / 2 * 30 + d * 30, over 60), whatever
    random's curves are: the std is that of 0.075, 0.09, 0.0825. Paired with another seed's random
    run, the gains would take in the random runs' differences (their AUCs spread by 0.04)."""
    sweep(tmp_path / "runs")
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    gains = [0.75 * d for d in MARGIN_DELTA]
    mean = sum(gains) / 3
    std = math.sqrt(sum((g - mean) ** 2 for g in gains) / 2)
    row = next(r for r in rows(tmp_path / "out" / "auc_gain.csv") if r["strategy"] == "query=margin")
    assert (float(row["mean"]), float(row["std"]), row["n"]) == (pytest.approx(mean), pytest.approx(std), "3")
    last = [r for r in rows(tmp_path / "out" / "auc_gain_by_labels.csv") if r["strategy"] == "query=margin"][-1]
    assert float(last["std"]) == pytest.approx(std)


@pytest.mark.parametrize("argv, said", [
    # an unset shell variable: before, '' was the current folder (every run under it, a report there)
    ([""], "PATH '': an empty value"),
    (["RUNS", "--reference", ""], "--reference '': an empty value"),
    (["RUNS", "--strategy", ""], "--strategy '': an empty value"),
    # given twice: both are read (before: the last alone, without a word), so a clash is refused
    (["RUNS", "--reference", "query=random", "--reference", "query=margin"], "query is given twice"),
])
def test_empty_or_repeated_options_are_refused(tmp_path, capsys, argv, said):
    sweep(tmp_path / "runs")
    argv = [str(tmp_path / "runs") if a == "RUNS" else a for a in argv]
    assert report.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_strategy_option_given_twice_adds_both_keys(tmp_path):
    sweep(tmp_path / "runs" / "b30", batch=30)
    sweep(tmp_path / "runs" / "b45", batch=45, start=6)
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--strategy", "budget.batch",
                        "--strategy", "query"]) == 0
    assert ("dataset=digits", "budget.batch=30 query=margin") in {(r["environment"], r["strategy"])
                                                                 for r in rows(tmp_path / "out" / "auc.csv")}


def test_a_run_whose_summary_cannot_be_read_is_left_out(tmp_path, capsys):
    """Its rounds cannot be checked against the summary (count, data digest, code): listed, not averaged."""
    sweep(tmp_path / "runs")
    (tmp_path / "runs" / "0" / "summary.json").write_text("{")
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    excluded = rows(tmp_path / "out" / "excluded.csv")
    assert len(excluded) == 1 and "summary.json cannot be read" in excluded[0]["reason"], excluded
    assert {r["n"] for r in rows(tmp_path / "out" / "auc.csv")} == {"2", "3"}


def test_a_command_to_resume_a_run_quotes_a_path_with_a_space(tmp_path):
    """The line says how to continue a killed run; copied into a shell, a path with a space must
    stay one argument."""
    import socket

    gone = subprocess.Popen(["true"])
    gone.wait()
    folder = make_run(tmp_path / "my runs" / "0", state=None)
    (folder / "status.json").write_text(json.dumps({"state": "running", "host": socket.gethostname(),
                                                    "pid": gone.pid}))
    reason = report.load_run(folder, "0").reason
    assert reason.endswith(f"dal-run 'resume={folder}' continues it"), reason
