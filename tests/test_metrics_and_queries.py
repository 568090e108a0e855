"""Hand-computed checks of AUC, the uncertainty scores, the pool and the budget."""

from __future__ import annotations

import math

import pytest
import torch

from dal_runner.metrics.auc import auc
from dal_runner.pool import Pool
from dal_runner.query import top_k
from dal_runner.query.entropy import predictive_entropy
from dal_runner.query.margin import negative_margin
from dal_runner.query.random import random_sample
from dal_runner.query.softmax_response import least_confidence


def test_auc_is_trapezoid_area_divided_by_label_range():
    # (0.5 + 0.7)/2 * 100 + (0.7 + 0.9)/2 * 200 = 60 + 160 = 220 over a range of 300
    assert auc([100, 200, 400], [0.5, 0.7, 0.9]) == pytest.approx(220 / 300)
    assert auc([400, 100, 200], [0.9, 0.5, 0.7]) == pytest.approx(220 / 300)  # order does not matter
    assert auc([100], [0.8]) == pytest.approx(0.8)
    assert auc([10, 20], [0.6, 0.6]) == pytest.approx(0.6)


PROBS = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])


def test_least_confidence_ranks_by_lowest_top_probability():
    assert least_confidence(PROBS).tolist() == pytest.approx([0.1, 0.6, 0.5, 2 / 3])
    assert top_k(least_confidence(PROBS), 2).tolist() == [3, 1]


def test_margin_ranks_by_smallest_gap_between_the_top_two():
    assert negative_margin(PROBS).tolist() == pytest.approx([-0.85, -0.05, 0.0, 0.0])
    assert top_k(negative_margin(PROBS), 3).tolist() == [2, 3, 1]  # ties broken by position


def test_entropy_ranks_by_largest_predictive_entropy():
    h = predictive_entropy(PROBS)
    assert h[2].item() == pytest.approx(math.log(2))  # 0 log 0 counts as 0
    assert h[3].item() == pytest.approx(math.log(3))
    assert top_k(h, 1).tolist() == [3]


def test_random_sample_is_seeded_and_without_replacement():
    a = random_sample(100, 30, torch.Generator().manual_seed(1))
    b = random_sample(100, 30, torch.Generator().manual_seed(1))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 30


def test_pool_refuses_to_label_a_point_twice():
    pool = Pool(10)
    pool.add([3, 1])
    assert pool.labeled().tolist() == [3, 1] and pool.n_unlabeled == 8
    assert 3 not in pool.unlabeled().tolist()
    with pytest.raises(ValueError):
        pool.add([1])


def test_last_batch_is_cut_to_the_budget_and_each_query_runs(small_run):
    for query in ("random", "softmax_response", "margin", "entropy", "mc_dropout", "coreset", "badge", "albl"):
        summary, folder = small_run(f"query={query}", "budget.max_labels=130", "arch.dropout=0.5")
        rounds = (folder / "rounds.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[1]) for r in rounds] == [50, 100, 130]
        assert summary["final_n_labeled"] == 130


def test_max_rounds_stops_the_loop_early(small_run):
    summary, _ = small_run("budget.max_rounds=2")
    assert summary["n_rounds"] == 2 and summary["final_n_labeled"] == 100


def test_the_progress_bar_knows_how_many_rounds_the_budget_allows(small_run):
    from dal_runner.loop import Budget

    assert Budget(100, 100, 600).n_rounds(1257) == 6  # 100, 200, ..., 600
    assert Budget(60, {0: 60, 180: 120}, 300).n_rounds(1257) == 4  # 60, 120, 180, 300
    assert Budget(2000, {0: 2000, 10000: 5000}, 50000).n_rounds(50000) == 13  # the active-iNAS protocol
    assert Budget(50, 50, 130, max_rounds=2).n_rounds(1257) == 2
    assert Budget(50, 50, 600).n_rounds(120) == 3  # 50, 100, 120: the pool runs out
    summary, _ = small_run("budget.max_labels=130")  # and it is what a run does: 50, 100, 130
    assert summary["n_rounds"] == Budget(50, 50, 130).n_rounds(1257) == 3
