"""Algorithm 1 (iNAS): candidate sets computed by hand, and the search driven by a scoring table."""

import itertools
import random

import pytest
import torch

from dal_runner.arch import ArchSpec
from dal_runner.arch.resnet import n_params
from dal_runner.search.inas import INASSearch, candidates
from dal_runner.seeding import derive_seed

SPACE = (12, 5)


@pytest.mark.parametrize("current,expected", [
    ((1, 1), [(1, 1), (1, 2), (2, 1)]),  # floor(1/2) + 1 = 1
    ((2, 4), [(2, 4), (2, 5), (3, 4)]),  # floor(8/5) + 1 = 2
    ((3, 2), [(3, 2), (3, 3), (4, 2)]),  # floor(6/3) + 1 = 3
    ((5, 3), [(5, 3), (4, 4), (6, 3)]),  # floor(15/4) + 1 = 4
    ((2, 1), [(2, 1), (2, 2), (3, 1)]),  # floor(2/2) + 1 = 2
])
def test_candidates_match_line_4_by_hand(current, expected):
    assert candidates(current, SPACE) == expected


def test_candidates_at_max_stacks_drop_the_extra_stack():
    assert candidates((3, 5), SPACE) == [(3, 5), (4, 5)]


def test_candidates_at_max_blocks_drop_the_extra_block():
    assert candidates((12, 2), SPACE) == [(12, 2), (9, 3)]  # floor(24/3) + 1 = 9
    assert candidates((12, 4), SPACE) == [(12, 4), (10, 5)]  # floor(48/5) + 1 = 10


def test_candidates_at_the_corner_of_the_space_are_only_the_current():
    assert candidates((12, 5), SPACE) == [(12, 5)]


def test_candidates_never_shrink_capacity_anywhere_in_the_12_by_5_space():
    for i, j in itertools.product(range(1, 13), range(1, 6)):
        found = candidates((i, j), SPACE)
        assert found[0] == (i, j)
        assert len(found) == len(set(found))
        for n_blocks, n_stacks in found:
            assert 1 <= n_blocks <= 12 and 1 <= n_stacks <= 5
            assert n_blocks * n_stacks >= i * j and n_stacks >= j
        for n_blocks, n_stacks in found[1:]:
            assert n_blocks * n_stacks > i * j  # every move adds blocks


class TableEstimator:
    """A test double for the estimator argument: scores by (n_blocks, n_stacks), records its calls."""

    def __init__(self, table, default=0.0):
        self.table, self.default, self.calls = table, default, []

    def __call__(self, spec, train_idx, val_idx, seed, on_epoch=None):  # the Estimator interface
        self.calls.append((spec, train_idx.clone(), val_idx.clone(), seed))
        return self.table.get((spec.params["n_blocks"], spec.params["n_stacks"]), self.default)


LABELED = torch.arange(100, 110)  # ten pool indices
CLIMB = {(1, 1): 0.5, (1, 2): 0.7, (2, 1): 0.6,   # step 1 moves to (1, 2)
         (1, 3): 0.8, (2, 2): 0.75,              # step 2 moves to (1, 3)
         (1, 4): 0.6, (2, 3): 0.79}              # step 3 stays at (1, 3)


def spec(i, j, block="basic", **extra):
    return ArchSpec("resnet", block=block, n_blocks=i, n_stacks=j, **extra)


def test_one_step_moves_to_the_best_candidate_and_marks_it_chosen():
    estimator = TableEstimator(CLIMB)
    result = INASSearch("basic", seed=0).select(0, LABELED, None, estimator)
    assert result.spec == spec(1, 2)
    assert [(r["n_blocks"], r["n_stacks"], r["val_accuracy"], r["chosen"]) for r in result.candidates] == [
        (1, 1, 0.5, False), (1, 2, 0.7, True), (2, 1, 0.6, False)]
    assert [r["candidate"] for r in result.candidates][1] == "A(basic,1,2)"


def test_search_climbs_until_the_current_architecture_is_best():
    estimator = TableEstimator(CLIMB)
    result = INASSearch("basic", seed=0, max_steps=10).select(0, LABELED, None, estimator)
    assert result.spec == spec(1, 3)
    chosen = [(r["step"], r["candidate"]) for r in result.candidates if r["chosen"]]
    assert chosen == [(1, repr(spec(1, 2))), (2, repr(spec(1, 3))), (3, repr(spec(1, 3)))]
    assert len(result.candidates) == 9  # three steps of three candidates


def test_search_honours_max_steps():
    estimator = TableEstimator(CLIMB)
    result = INASSearch("basic", seed=0, max_steps=2).select(0, LABELED, None, estimator)
    assert result.spec == spec(1, 3)
    assert max(r["step"] for r in result.candidates) == 2 and len(result.candidates) == 6


def test_reuse_candidates_scores_each_architecture_once_per_round():
    reused = TableEstimator(CLIMB)
    INASSearch("basic", seed=0, max_steps=10).select(0, LABELED, None, reused)
    # step 1: 3 new; step 2: (1,3), (2,2) new; step 3: (1,4), (2,3) new
    assert len(reused.calls) == 7
    assert len({repr(call[0]) for call in reused.calls}) == 7
    retrained = TableEstimator(CLIMB)
    INASSearch("basic", seed=0, max_steps=10, reuse_candidates=False).select(0, LABELED, None, retrained)
    assert len(retrained.calls) == 9


def test_reused_rows_are_flagged_and_keep_the_first_score():
    result = INASSearch("basic", seed=0, max_steps=10).select(0, LABELED, None, TableEstimator(CLIMB))
    step2_current = [r for r in result.candidates if r["step"] == 2][0]
    assert step2_current["candidate"] == repr(spec(1, 2))
    assert step2_current["reused"] and step2_current["val_accuracy"] == 0.7


def test_equal_accuracy_keeps_the_current_architecture():
    result = INASSearch("basic", seed=0, max_steps=10).select(0, LABELED, None, TableEstimator({}, default=0.5))
    assert result.spec == spec(1, 1)
    assert len(result.candidates) == 3


def test_tie_break_smaller_prefers_fewer_blocks_and_larger_prefers_more():
    tied = TableEstimator({(2, 4): 0.5, (2, 5): 0.9, (3, 4): 0.9})  # 10 blocks vs 12 blocks
    small = INASSearch("basic", seed=0, tie_break="smaller").select(3, LABELED, spec(2, 4), tied)
    large = INASSearch("basic", seed=0, tie_break="larger").select(3, LABELED, spec(2, 4), tied)
    assert small.spec == spec(2, 5) and large.spec == spec(3, 4)


def test_tie_break_uses_parameter_counts_when_given():
    def count(s):
        return n_params(in_channels=3, n_classes=10, **s.params)

    tied = TableEstimator({(1, 1): 0.5, (1, 2): 0.7, (2, 1): 0.7})  # same blocks; (2,1) has fewer weights
    result = INASSearch("basic", seed=0, count_params=count).select(0, LABELED, None, tied)
    assert result.spec == spec(2, 1)
    assert [r["n_params"] for r in result.candidates] == [
        n_params("basic", 1, 1, 3, 10), n_params("basic", 1, 2, 3, 10), n_params("basic", 2, 1, 3, 10)]


def test_search_continues_from_the_previous_round_architecture():
    estimator = TableEstimator({(3, 2): 0.4, (3, 3): 0.5, (4, 2): 0.6})
    result = INASSearch("basic", seed=0).select(5, LABELED, spec(3, 2), estimator)
    assert result.spec == spec(4, 2)
    assert [c[0] for c in estimator.calls] == [spec(3, 2), spec(3, 3), spec(4, 2)]


def test_result_never_has_less_capacity_than_the_previous_architecture():
    rng = random.Random(0)
    for i, j in itertools.product(range(1, 13), range(1, 6)):
        table = {(a, b): rng.random() for a, b in itertools.product(range(1, 14), range(1, 7))}
        result = INASSearch("basic", seed=0, max_steps=3).select(1, LABELED, spec(i, j), TableEstimator(table))
        n_blocks, n_stacks = result.spec.params["n_blocks"], result.spec.params["n_stacks"]
        assert n_blocks * n_stacks >= i * j and n_stacks >= j
        assert n_blocks <= 12 and n_stacks <= 5


def test_corner_of_the_space_trains_only_the_current_architecture():
    estimator = TableEstimator({}, default=0.3)
    result = INASSearch("basic", seed=0, max_steps=4).select(2, LABELED, spec(12, 5), estimator)
    assert result.spec == spec(12, 5) and len(estimator.calls) == 1


def test_split_is_seeded_disjoint_and_covers_the_labeled_set():
    search = INASSearch("basic", seed=7, val_fraction=0.2)
    s_prime, v_prime = search.split(4, LABELED)
    assert (s_prime.numel(), v_prime.numel()) == (8, 2)  # 0.2 * 10 = 2 validation points
    assert sorted(torch.cat([s_prime, v_prime]).tolist()) == LABELED.tolist()
    again = search.split(4, LABELED)
    assert torch.equal(again[0], s_prime) and torch.equal(again[1], v_prime)
    other_rounds = {tuple(search.split(r, LABELED)[1].tolist()) for r in range(10)}
    assert len(other_rounds) > 1  # each round draws its own split
    assert [t.numel() for t in search.split(0, torch.tensor([3, 9]))] == [1, 1]  # at least one in each


def test_split_needs_two_labeled_points():
    with pytest.raises(ValueError, match="at least 2 labeled points"):
        INASSearch("basic", seed=0).split(0, torch.tensor([5]))


def test_estimator_gets_the_round_split_and_a_seed_derived_from_the_architecture():
    estimator = TableEstimator(CLIMB)
    search = INASSearch("bottleneck", seed=3, extra_params={"stem": "paper"})
    result = search.select(2, LABELED, None, estimator)
    s_prime, v_prime = search.split(2, LABELED)
    for call_spec, train_idx, val_idx, seed in estimator.calls:
        assert torch.equal(train_idx, s_prime) and torch.equal(val_idx, v_prime)
        assert seed == derive_seed(3, "inas", 2, repr(call_spec))
        assert call_spec.params["stem"] == "paper"
    assert result.spec == spec(1, 2, block="bottleneck", stem="paper")
    assert repr(result.spec) == "A(bottleneck,1,2)"


def test_bad_settings_are_refused_with_the_key_named():
    with pytest.raises(ValueError, match="search.tie_break=first: unknown option"):
        INASSearch("basic", seed=0, tie_break="first")
    with pytest.raises(ValueError, match="search.val_fraction=1.0"):
        INASSearch("basic", seed=0, val_fraction=1.0)
    with pytest.raises(ValueError, match=r"search.start=\[13, 1\]: outside the search space"):
        INASSearch("basic", seed=0, start=(13, 1))
    with pytest.raises(ValueError, match="cannot continue from"):
        INASSearch("basic", seed=0).select(1, LABELED, spec(1, 1, block="bottleneck"), TableEstimator({}))
