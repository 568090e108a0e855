"""What a run's config says reaches the code that runs it: each option and key builds the object it
names. (A query option that built another strategy, a key never passed on, an augmentation or a
dropout rate dropped on the way, or an accuracy measured on the wrong split would pass every test
of the pieces alone.)"""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import compose

from dal_runner import run
from dal_runner.augment import Augment
from dal_runner.query import albl, badge, coreset, entropy, margin, mc_dropout, random, softmax_response


def build(*overrides: str) -> run.Experiment:
    return run.build(compose(["search=fixed", "arch=mlp", *overrides]))


@pytest.mark.parametrize("option,strategy", [
    ("random", random.RandomQuery), ("softmax_response", softmax_response.SoftmaxResponse),
    ("margin", margin.Margin), ("entropy", entropy.Entropy), ("mc_dropout", mc_dropout.MCDropout),
    ("coreset", coreset.Coreset), ("badge", badge.Badge), ("albl", albl.ALBL)])
def test_each_query_option_builds_its_own_strategy(option, strategy):
    assert type(build(f"query={option}", "arch.dropout=0.5").query) is strategy


def test_the_query_keys_reach_the_strategy():
    q = build("query=mc_dropout", "arch.dropout=0.5", "query.passes=7", "query.acquisition=variation_ratio").query
    assert (q.passes, q.acquisition) == (7, "variation_ratio")
    assert build("query=mc_dropout", "arch.dropout=0.5").query.acquisition == "predicted_class_variance"
    q = build("query=coreset", "query.chunk_size=123", "query.block=4").query
    assert (q.chunk_size, q.block) == (123, 4)
    assert build("query=badge", "query.first=largest_norm").query.first == "largest_norm"
    assert build("query=badge").query.first == "uniform"
    q = build("query=albl", "query.strategies=[margin,entropy]", "query.delta=0.2", "query.arms=points").query
    assert [type(s) for s in q.strategies] == [margin.Margin, entropy.Entropy]
    assert (q.delta, q.arms, q.names) == (0.2, "points", ["margin", "entropy"])


def test_the_augmentation_and_the_dropout_rates_reach_the_run():
    exp = build("dataset.augment.rotation=10", "dataset.augment.shift=0.125", "dataset.augment.hflip=true",
                "arch.dropout=0.3", "arch.mc_dropout=0.6")
    assert exp.augment == Augment(rotation=10.0, shift=0.125, hflip=True)
    model = exp.build_model(exp.search.select(0, None, None, None).spec)
    assert (model.dropout.p, model.mc_dropout) == (0.3, 0.6)
    assert build().augment is None  # digits' default: none


def test_the_recorded_accuracy_is_the_test_splits(tmp_path):
    """With the test labels shifted by one class, a model that learned digits is wrong on nearly
    every test point: an accuracy measured on the training data (the labeled set) would be high."""
    from dal_runner.execute import execute

    exp = build("budget.initial=100", "budget.batch=100", "budget.max_labels=200", "trainer.epochs=30")
    exp.data.y_test = (exp.data.y_test + 1) % exp.data.n_classes
    execute(exp, tmp_path / "run")
    with open(tmp_path / "run" / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["test_accuracy"]) < 0.2 for r in rows)
    assert all(float(r["test_loss"]) > 2.0 for r in rows)  # confidently wrong: above chance's ln 10
