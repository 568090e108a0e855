"""Bad inputs: one line naming the key, the value and what is accepted; exit != 0; no run folder."""

from __future__ import annotations

import pytest
from conftest import run_cli

CASES = {
    "unknown group option": (["query=nope"], ["query=nope", "entropy", "margin", "random", "softmax_response"]),
    "unknown key": (["trainer.lrr=0.1"], ["trainer.lrr", "unknown key", "lr"]),
    "unknown key added with +": (["+typo=1"], ["typo", "unknown key", "seed"]),
    "unknown key added to a group": (["+dataset.colour=1"], ["dataset.colour", "unknown key", "test_fraction"]),
    "wrong type": (["trainer.lr=abc"], ["trainer.lr=abc", "wrong type", "number"]),
    "wrong type int": (["budget.batch=ten"], ["budget.batch=ten", "integer"]),
    "max_labels larger than the pool": (["budget.max_labels=5000"], ["budget.max_labels=5000", "1257"]),
    "initial larger than max_labels": (["budget.initial=700"], ["budget.initial=700", "budget.max_labels=600"]),
    "batch zero": (["budget.batch=0"], ["budget.batch=0", "> 0"]),
    "batch negative": (["budget.batch=-5"], ["budget.batch=-5", "> 0"]),
    "wrong type bool": (["dataset=cifar10", "dataset.download=maybe"], ["dataset.download=maybe", "true or false"]),
    "unknown device": (["device=tpu"], ["device=tpu", "auto", "cpu", "cuda"]),
    "unknown optimizer": (["trainer.optimizer=lbfgs"], ["trainer.optimizer=lbfgs", "adam", "sgd"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_line_error_and_no_run_folder(tmp_path, name):
    args, expected = CASES[name]
    res = run_cli(args, cwd=tmp_path)
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dal-run: error: "), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    for word in expected:
        assert word in err[0], (word, err[0])
    runs = tmp_path / "outputs" / "runs"
    assert not runs.exists() or not any(runs.rglob("*.csv")) and not any(runs.rglob(".hydra"))


def test_unwritable_output_directory_is_refused_before_running(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run_cli([f"output_root={blocker}/results"], cwd=tmp_path)
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "output_root" in err[0] and str(blocker) in err[0]
    assert "Traceback" not in res.stderr
