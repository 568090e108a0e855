"""The BADGE pairwise penalty matrix on hand-computed cases."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from dal_runner.metrics.penalty import (PenaltyWarning, badge_code_sizes, badge_sizes, column_means, penalty_matrix, penalty_report,
                                       tidy)


def records(env, strategy, accuracy_by_size):
    """accuracy_by_size: {n_labeled: [accuracy of seed 0, seed 1, ...]}"""
    return [{"environment": env, "strategy": strategy, "seed": seed, "n_labeled": n, "accuracy": a}
            for n, accs in accuracy_by_size.items() for seed, a in enumerate(accs)]


BASE = {10: [0.50, 0.55, 0.52], 20: [0.60, 0.66, 0.61], 30: [0.70, 0.72, 0.69]}
CLEAR_MARGIN = [0.10, 0.12, 0.11]  # paired differences with some spread: t = 19.05, p = 0.0027


def shifted(curve, deltas):
    return {n: [a + d for a, d in zip(accs, deltas)] for n, accs in curve.items()}


def test_identical_strategies_give_an_all_zero_matrix():
    recs = [r for env in ("e1", "e2") for s in ("margin", "random", "entropy") for r in records(env, s, BASE)]
    names, matrix = penalty_matrix(recs)
    assert names == ["entropy", "margin", "random"]  # sorted
    assert matrix.shape == (3, 3) and not matrix.any()


@pytest.mark.parametrize("n_environments", [1, 3])
def test_a_clearly_better_strategy_gets_one_per_environment_in_its_row(n_environments):
    recs = []
    for e in range(n_environments):
        recs += records(f"env{e}", "badge", shifted(BASE, CLEAR_MARGIN)) + records(f"env{e}", "random", BASE)
    names, matrix = penalty_matrix(recs)
    assert names == ["badge", "random"]
    # every one of the 3 sizes adds 1/3 in every environment: P[badge, random] = E
    np.testing.assert_allclose(matrix, [[0.0, n_environments], [0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(column_means(matrix), [0.0, n_environments / 2])


def test_a_winner_that_sorts_last_gets_its_point_in_its_own_row():
    # "random" sorts after "badge": the win must land in P[random, badge], not P[badge, random]
    recs = records("e", "badge", BASE) + records("e", "random", shifted(BASE, CLEAR_MARGIN))
    names, matrix = penalty_matrix(recs)
    assert names == ["badge", "random"]
    np.testing.assert_allclose(matrix, [[0.0, 0.0], [1.0, 0.0]], atol=1e-12)


def test_winning_at_one_of_two_sizes_counts_half_an_environment():
    better = {10: BASE[10], 20: [a + d for a, d in zip(BASE[20], CLEAR_MARGIN)]}
    recs = records("e", "margin", better) + records("e", "random", {10: BASE[10], 20: BASE[20]})
    names, matrix = penalty_matrix(recs)
    np.testing.assert_allclose(matrix, [[0.0, 0.5], [0.0, 0.0]])


def test_a_difference_that_is_not_significant_counts_zero():
    noisy = [0.05, -0.04, 0.01]  # mean +0.0067 but t = 0.26, p = 0.82
    recs = records("e", "margin", shifted(BASE, noisy)) + records("e", "random", BASE)
    assert ttest_rel(np.array(BASE[10]) + noisy, BASE[10]).pvalue > 0.5
    names, matrix = penalty_matrix(recs)
    assert not matrix.any()


def test_alpha_is_the_significance_level():
    # d = [0.01, 0.03, 0.02]: t = 3.46, two-sided p = 0.074: significant at 0.1, not at 0.05
    deltas = [0.01, 0.03, 0.02]
    recs = records("e", "a", shifted({10: BASE[10]}, deltas)) + records("e", "b", {10: BASE[10]})
    assert 0.05 < ttest_rel(np.array(BASE[10]) + deltas, BASE[10]).pvalue < 0.1
    assert penalty_matrix(recs, alpha=0.05)[1][0, 1] == 0.0
    assert penalty_matrix(recs, alpha=0.1)[1][0, 1] == 1.0


def test_sizes_not_reached_by_every_strategy_are_skipped():
    # a reaches 30 labels, b stops at 20: only 10 and 20 count, a wins at 20 -> 1/2 (not 1/3)
    a = {10: BASE[10], 20: [x + d for x, d in zip(BASE[20], CLEAR_MARGIN)], 30: [0.99, 0.98, 0.97]}
    b = {10: BASE[10], 20: BASE[20]}
    result = penalty_report(records("e", "a", a) + records("e", "b", b))
    np.testing.assert_allclose(result.matrix, [[0.0, 0.5], [0.0, 0.0]])
    assert result.sizes == {"e": [10, 20]}
    assert [(s.environment, s.n_labeled, s.reason) for s in result.skipped] == [("e", 30, "not reached by b")]


def test_fewer_than_two_seeds_is_reported_not_silently_tested():
    a = shifted(BASE, CLEAR_MARGIN)
    b = dict(BASE)
    b[30] = BASE[30][:1]  # one seed only at 30 labels
    recs = records("e", "a", a) + records("e", "b", b)
    result = penalty_report(recs)
    (skipped,) = result.skipped
    assert (skipped.environment, skipped.n_labeled, skipped.insufficient_seeds) == ("e", 30, True)
    assert "fewer than 2 seeds" in skipped.reason and "b (1)" in skipped.reason
    # the two sizes that could be tested make up the environment: a beats b in 1 environment
    np.testing.assert_allclose(result.matrix, [[0.0, 1.0], [0.0, 0.0]])
    with pytest.warns(PenaltyWarning, match="too few seeds"):
        penalty_matrix(recs)


def test_strategies_that_share_fewer_than_two_seeds_are_reported():
    recs = records("e", "a", {10: [0.9, 0.9]})
    recs += [{**r, "seed": r["seed"] + 2} for r in records("e", "b", {10: [0.1, 0.1]})]
    result = penalty_report(recs)
    assert not result.matrix.any()
    assert [s.reason for s in result.skipped] == ["a and b share fewer than 2 seeds (0)"]


def test_no_warning_when_everything_was_tested():
    recs = records("e", "a", BASE) + records("e", "b", BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        penalty_matrix(recs)


def test_a_dataframe_is_accepted_and_duplicates_are_rejected():
    recs = records("e", "a", shifted(BASE, CLEAR_MARGIN)) + records("e", "b", BASE)
    names, matrix = penalty_matrix(pd.DataFrame(recs))
    np.testing.assert_allclose(matrix, [[0.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="must appear once"):
        penalty_matrix(recs + recs[:1])
    with pytest.raises(ValueError, match="lacks accuracy"):
        penalty_matrix([{"environment": "e", "strategy": "a", "seed": 0, "n_labeled": 10}])


def test_tidy_rows_hold_every_cell_and_the_column_means():
    rows = tidy(["a", "b"], np.array([[0.0, 2.0], [1.0, 0.0]]))
    assert [(r["kind"], r["row"], r["column"], r["value"]) for r in rows] == [
        ("penalty", "a", "a", 0.0), ("penalty", "a", "b", 2.0), ("penalty", "b", "a", 1.0), ("penalty", "b", "b", 0.0),
        ("column_mean", "", "a", 0.5), ("column_mean", "", "b", 1.0)]


# ---- BADGE's sizes: rounds 1, 2, 4, ... while random sampling is still learning -----------------

def saturating(m=100, b=100, rounds=10, final=0.81):
    """Random sampling's curve: rising to 0.80 at round 7, 99% of the final 0.81 reached at round 8."""
    acc = [0.30, 0.40, 0.50, 0.60, 0.70, 0.75, 0.78, 0.80, 0.805, final][:rounds]
    return {m + r * b: [a - 0.01, a, a + 0.01] for r, a in enumerate(acc)}


def test_badge_sizes_are_m_plus_powers_of_two_batches_below_n0():
    curve = {n: float(np.mean(accs)) for n, accs in saturating().items()}
    sizes, rule = badge_sizes(curve)
    # n0 = 900 (0.805 >= 0.99 x 0.81), M = 100, B = 100: m = 1 .. floor(log2((900 - 100) / 100)) = 3
    assert sizes == [100 + 2 ** (m - 1) * 100 for m in (1, 2, 3)] == [200, 300, 500]
    assert rule == ("BADGE: random reaches 99% of its final accuracy (0.8100) at 900 labels (round 8); "
                    "picked rounds 1, 2, 4")
    # random already saturated after one batch: nothing is still learning, nothing counted
    assert badge_sizes({50: 0.5, 100: 0.9, 150: 0.9})[0] == []
    assert badge_sizes({50: 0.5, 100: 0.6, 150: 0.9, 200: 0.9})[0] == [100]


def test_badge_rule_leaves_out_the_shared_start_and_the_saturated_tail():
    rand = saturating()
    better = shifted(rand, CLEAR_MARGIN)
    better[100] = rand[100]  # the shared initial set: the same accuracies
    recs = records("e", "badge", better) + records("e", "random", rand)
    everything = penalty_report(recs, sizes="all")
    assert everything.sizes == {"e": sorted(rand)}
    assert everything.matrix[0, 1] == pytest.approx(9 / 10)  # the start can never be won: at most (L-1)/L
    result = penalty_report(recs, sizes="badge", random_strategies={"random"})
    assert result.sizes == {"e": [200, 300, 500]} and result.skipped == []
    np.testing.assert_allclose(result.matrix, [[0.0, 1.0], [0.0, 0.0]])  # a clear winner: one environment
    assert result.rules["e"].endswith("picked rounds 1, 2, 4")


def test_badge_rule_without_random_sampling_counts_every_size_after_the_start():
    recs = records("e", "margin", shifted(BASE, CLEAR_MARGIN)) + records("e", "entropy", BASE)
    result = penalty_report(recs, sizes="badge", random_strategies={"random"})
    assert result.sizes == {"e": [20, 30]}
    assert result.rules["e"] == "BADGE's rule needs a random-sampling strategy: every size after the initial 10"
    np.testing.assert_allclose(result.matrix, [[0.0, 0.0], [1.0, 0.0]])  # entropy, margin: margin's row


def test_badge_rule_with_two_random_strategies_takes_the_one_still_learning_longest():
    early = {n: accs for n, accs in saturating().items()}
    flat = {n: [0.8, 0.8, 0.8] for n in early}  # saturated from the start: no size of its own
    recs = (records("e", "random a", flat) + records("e", "random b", early)
            + records("e", "badge", shifted(early, CLEAR_MARGIN)))
    result = penalty_report(recs, sizes="badge", random_strategies={"random a", "random b"})
    assert result.sizes == {"e": [200, 300, 500]} and result.rules["e"].endswith("(random b)")
    with pytest.raises(ValueError, match="sizes='first': accepted: one of badge, badge_code, all"):
        penalty_report(recs, sizes="first")


def late_saturating(m=100, b=100):
    """Random sampling still learning up to round 9; 99% of the final 0.90 first reached at round 10."""
    acc = [0.30, 0.40, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.895, 0.90]
    return {m + r * b: [a - 0.01, a, a + 0.01] for r, a in enumerate(acc)}


def test_badge_code_rule_counts_the_start_and_each_power_of_two_round_below_n0():
    """The authors' script counts M and every round 2^k while random is at most 99% of its final
    accuracy; the paper's text (the "badge" rule) stops at half of n0's round and leaves M out."""
    curve = {n: float(np.mean(accs)) for n, accs in late_saturating().items()}
    assert badge_sizes(curve)[0] == [200, 300, 500]  # rounds 1, 2, 4: floor(log2(10)) = 3 of them
    sizes, rule = badge_code_sizes(curve)
    assert sizes == [100, 200, 300, 500, 900]  # rounds 0, 1, 2, 4, 8; round 16 is past the end
    assert rule == ("BADGE's code: random's final accuracy 0.9000; round 16 is past the curve's end; "
                    "picked rounds 0, 1, 2, 4, 8 (the initial size included)")
    # the first power-of-two round above 99% stops the list, even where a later one dips below
    sizes, rule = badge_code_sizes({100: 0.3, 200: 0.5, 300: 0.895, 400: 0.80, 500: 0.6, 600: 0.9})
    assert sizes == [100, 200] and "round 2 (300 labels) is above 99% of it" in rule
    assert badge_code_sizes({100: 0.5, 200: float("nan")})[0] == []


def test_badge_code_rule_weighs_each_picked_size_tested_or_not():
    rand = late_saturating()
    x = {n: list(accs) for n, accs in rand.items()}
    x[900] = [a + d for a, d in zip(rand[900], CLEAR_MARGIN)]  # x beats random at round 8 alone
    recs = records("e", "x", x) + records("e", "random", rand)
    paper = penalty_report(recs, sizes="badge", random_strategies={"random"})
    assert paper.sizes == {"e": [200, 300, 500]} and not paper.matrix.any()
    code = penalty_report(recs, sizes="badge_code", random_strategies={"random"})
    assert code.names == ["random", "x"] and code.sizes == {"e": [100, 200, 300, 500, 900]}
    np.testing.assert_allclose(code.matrix, [[0.0, 0.0], [0.2, 0.0]])  # 1/L, L = 5
    # a picked size no pair could test (one seed of x there) still counts in L, as in the script
    x[100] = x[100][:1]
    x_one_seed_at_start = records("e", "x", x) + records("e", "random", rand)
    code = penalty_report(x_one_seed_at_start, sizes="badge_code", random_strategies={"random"})
    assert code.sizes == {"e": [200, 300, 500, 900]}
    np.testing.assert_allclose(code.matrix, [[0.0, 0.0], [0.2, 0.0]])
    # without a random-sampling strategy the script leaves the environment out
    alone = records("e", "margin", shifted(BASE, CLEAR_MARGIN)) + records("e", "entropy", BASE)
    result = penalty_report(alone, sizes="badge_code", random_strategies={"random"})
    assert result.sizes == {"e": []} and result.names == [] and result.untested == ["entropy", "margin"]
    assert result.rules["e"] == "BADGE's code leaves out an environment without a random-sampling strategy"


def test_badge_sizes_without_a_final_accuracy_fall_back_to_every_size_after_the_start():
    sizes, rule = badge_sizes({100: 0.5, 200: float("nan"), 300: float("nan")})
    assert sizes == [200, 300] and "no n0" in rule


def test_a_strategy_never_compared_is_left_out_and_pairs_never_compared_are_counted_as_such():
    """Before, a strategy that no t-test reached (its only environment had one seed, or no size the
    rule picked) had a row and column of 0.00, as if tested and never beaten nor beating; and a pair
    of strategies that met in no environment showed 0.00 too. Now the first is left out (named in
    `untested`) and each cell carries its number of t-tests."""
    one_seed = {n: accs[:1] for n, accs in BASE.items()}
    recs = (records("e1", "badge", shifted(BASE, CLEAR_MARGIN)) + records("e1", "random", BASE)
            + records("e2", "margin", shifted(BASE, CLEAR_MARGIN)) + records("e2", "random", BASE)
            + records("e3", "entropy", one_seed) + records("e3", "random", one_seed))
    result = penalty_report(recs)
    assert result.names == ["badge", "margin", "random"] and result.untested == ["entropy"]
    np.testing.assert_array_equal(result.tests, [[0, 0, 3], [0, 0, 3], [3, 3, 0]])  # badge and margin never met
    np.testing.assert_allclose(result.matrix, [[0, 0, 1], [0, 0, 1], [0, 0, 0]], atol=1e-12)
    cells = {(r["row"], r["column"]): r["tests"] for r in tidy(result.names, result.matrix, result.tests)
             if r["kind"] == "penalty"}
    assert cells[("badge", "margin")] == 0 and cells[("badge", "random")] == 3


def test_a_strategy_with_one_seed_leaves_the_others_compared():
    """entropy ran with one seed beside margin and random with three: before, every size was
    skipped ("fewer than 2 seeds: entropy (1)") and nothing was compared; now margin and random
    are, and entropy is left out, said in `skipped` and `untested`."""
    one_seed = {n: accs[:1] for n, accs in BASE.items()}
    recs = (records("e", "margin", shifted(BASE, CLEAR_MARGIN)) + records("e", "random", BASE)
            + records("e", "entropy", one_seed))
    result = penalty_report(recs)
    assert result.names == ["margin", "random"] and result.untested == ["entropy"]
    np.testing.assert_allclose(result.matrix, [[0.0, 1.0], [0.0, 0.0]], atol=1e-12)
    assert [s.reason for s in result.skipped] == ["fewer than 2 seeds: entropy (1)"] * 3
    assert result.sizes == {"e": [10, 20, 30]}
