"""Pairwise penalty matrix of the BADGE paper (Ash et al., ICLR 2020, section 5 and Figure 4).

For every environment (dataset, model, batch size, ...) and every labeled-set size it counts, a
two-sided paired t-test over seeds on the accuracy differences; where strategy i beats j at
level alpha (mean difference > 0, p < alpha),

    P[i, j] += 1 / (number of sizes the environment counts)

so P[i, j] is roughly "in how many environments i beats j". The column means (lower is
better) rank the strategies.

Which sizes an environment counts (`sizes`):

- ``"badge"``, the paper's rule: only sizes where learning is still progressing. With M the
  initial size and B the batch, n0 is the smallest size at which random sampling's mean
  accuracy reaches 99% of its final one, and the sizes are M + 2^(m-1) B for
  m = 1 .. floor(log2((n0 - M) / B)): rounds 1, 2, 4, ... of the curve, up to half of n0's round
  (the shared initial set M is not counted). Written in rounds, it also covers a batch
  schedule. An environment without a random-sampling strategy (``random``) counts every size
  after the initial one, and says so.
- ``"badge_code"``, the rule of the authors' released aggregation script (JordanAsh/badge,
  scripts/agg_results.py), which differs from the paper's text: the initial size M is counted,
  then rounds 1, 2, 4, ... while random sampling's mean accuracy at that round is at most 99% of
  its final one (the first round above it, or the end of the curve, stops the list), so a round
  2^k below n0's is counted even where n0's round is not a power of two; every picked size counts
  in 1/L, tested or not (the script's nCheckpoints), and an environment without a random-sampling
  strategy is left out. Not reproduced: the script's cap of 5 seeds per test, paired by position
  (here every seed two strategies share, paired by seed).
- ``"all"``: every size that all compared strategies reached, the initial one included.

A size enters an environment's count when every strategy of that environment reached it and at
least one pair of them could be t-tested there (2 seeds or more in common); a strategy with fewer
than 2 seeds at a size is left out of that size's tests, the others are still compared. A size,
strategy or pair that cannot be tested is never passed over silently: `penalty_report` lists it,
and `penalty_matrix` warns; a strategy no t-test reached is left out of the matrix (`untested`).
`PenaltyResult.rules` says, per environment, which sizes were counted and why.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import t as student_t
from scipy.stats import ttest_rel

RECORD_KEYS = ("environment", "strategy", "seed", "n_labeled", "accuracy")
SIZE_RULES = ("badge", "badge_code", "all")
SATURATION = 0.99  # BADGE: n0 is where random sampling reaches 99% of its final accuracy


class PenaltyWarning(UserWarning):
    """A labeled-set size or a pair of strategies could not be t-tested (too few seeds)."""


@dataclass(frozen=True)
class Skipped:
    """One (environment, size) cell, or one pair within it, that was not tested, and why."""

    environment: str
    n_labeled: int
    reason: str
    insufficient_seeds: bool = False


@dataclass
class PenaltyResult:
    names: List[str]
    matrix: np.ndarray  # P[i, j]: environments (fractionally) in which names[i] beats names[j]
    skipped: List[Skipped] = field(default_factory=list)
    sizes: Dict[str, List[int]] = field(default_factory=dict)  # the sizes each environment counted
    rules: Dict[str, str] = field(default_factory=dict)  # why those sizes, per environment
    allowed: Dict[str, List[int]] = field(default_factory=dict)  # the sizes the rule picked, testable or not
    fewest_seeds: Dict[str, int] = field(default_factory=dict)  # per environment: the fewest seeds a t-test had
    # tests[i, j]: the (environment, size) t-tests of names[i] against names[j] (0: never compared,
    # so P[i, j] = 0 says nothing); strategies never compared with any other are left out of names
    tests: Optional[np.ndarray] = None
    untested: List[str] = field(default_factory=list)

    @property
    def column_means(self) -> np.ndarray:
        return column_means(self.matrix)


def column_means(matrix: np.ndarray) -> np.ndarray:
    """Mean of each column over all rows, the zero diagonal included (BADGE's bottom row)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix.mean(axis=0) if matrix.size else np.zeros(matrix.shape[1:])


def _as_records(records: Any) -> List[Dict[str, Any]]:
    if hasattr(records, "to_dict"):
        records = records.to_dict("records")
    records = list(records)
    for r in records:
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"penalty records need keys {', '.join(RECORD_KEYS)}; a record lacks {', '.join(missing)}")
    return records


def badge_sizes(random_curve: Dict[int, float]) -> Tuple[List[int], str]:
    """BADGE's sizes from random sampling's mean accuracy per size (its sizes are the
    environment's rounds): rounds 2^(m-1), m = 1 .. floor(log2(r0)), r0 the round of n0."""
    sizes = sorted(random_curve)
    final = random_curve[sizes[-1]]
    r0 = next((r for r, n in enumerate(sizes) if random_curve[n] >= SATURATION * final), None)
    if r0 is None:  # a final accuracy that is not a number: no n0
        return sizes[1:], f"BADGE: random's final accuracy is {final}, so no n0: every size after the initial one"
    rounds = [2 ** m for m in range(r0.bit_length() - 1)]  # floor(log2(r0)) of them; none for r0 = 0 or 1
    counted = [sizes[r] for r in rounds]
    rule = (f"BADGE: random reaches {SATURATION:.0%} of its final accuracy ({final:.4f}) at {sizes[r0]} labels "
            f"(round {r0}); picked rounds {', '.join(map(str, rounds)) or 'none'}")
    return counted, rule


def badge_code_sizes(random_curve: Dict[int, float]) -> Tuple[List[int], str]:
    """The sizes of the BADGE authors' script (`"badge_code"` in the module docstring): the initial
    size, then rounds 1, 2, 4, ... while random's mean accuracy there is at most 99% of its final."""
    sizes = sorted(random_curve)
    final = random_curve[sizes[-1]]
    if math.isnan(final):
        return [], f"BADGE's code: random's final accuracy is {final}: no size counted"
    rounds, r = [0], 1
    while r < len(sizes) and not random_curve[sizes[r]] > SATURATION * final:
        rounds.append(r)
        r *= 2
    stop = (f"round {r} ({sizes[r]} labels) is above {SATURATION:.0%} of it" if r < len(sizes)
            else f"round {r} is past the curve's end")
    rule = (f"BADGE's code: random's final accuracy {final:.4f}; {stop}; picked rounds "
            f"{', '.join(map(str, rounds))} (the initial size included)")
    return [sizes[i] for i in rounds], rule


def penalty_report(records: Any, alpha: float = 0.05, sizes: str = "all",
                   random_strategies: Collection[str] = ()) -> PenaltyResult:
    """The penalty matrix, with every untested (environment, size[, pair]) and its reason.

    `sizes`: "all", "badge" or "badge_code" (module docstring); `random_strategies` names the strategies that
    sample at random, whose curve sets BADGE's sizes."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha}: accepted: a level in (0, 1)")
    if sizes not in SIZE_RULES:
        raise ValueError(f"sizes={sizes!r}: accepted: one of {', '.join(SIZE_RULES)}")
    records = _as_records(records)
    names = sorted({str(r["strategy"]) for r in records})
    index = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(names), len(names)))
    tests = np.zeros((len(names), len(names)), dtype=np.int64)
    skipped: List[Skipped] = []
    counted: Dict[str, List[int]] = {}
    rules: Dict[str, str] = {}
    picked: Dict[str, List[int]] = {}
    fewest: Dict[str, int] = {}

    # acc[env][size][strategy][seed] = accuracy
    acc: Dict[str, Dict[int, Dict[str, Dict[Any, float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for r in records:
        env, size, strategy, seed = str(r["environment"]), int(r["n_labeled"]), str(r["strategy"]), r["seed"]
        cell = acc[env][size][strategy]
        if seed in cell:
            raise ValueError(f"two accuracies for environment {env!r}, strategy {strategy!r}, seed {seed}, "
                             f"{size} labels: each (environment, strategy, seed, size) must appear once")
        cell[seed] = float(r["accuracy"])

    for env in sorted(acc):
        strategies = sorted({s for by_strategy in acc[env].values() for s in by_strategy})
        if len(strategies) < 2:
            continue  # nothing to compare in this environment
        picked[env], rules[env] = _sizes_of(acc[env], strategies, sizes, random_strategies)
        # per size, the pairs that can be t-tested: a strategy with fewer than 2 seeds there is left
        # out of that size's tests (said in `skipped`), the other strategies are still compared
        tested: List[Tuple[int, Dict[str, Dict[Any, float]], List[Tuple[str, str, List[Any]]]]] = []
        for size in picked[env]:
            by_strategy = acc[env][size]
            absent = [s for s in strategies if s not in by_strategy]
            if absent:
                skipped.append(Skipped(env, size, f"not reached by {', '.join(absent)}"))
                continue
            few = [s for s in strategies if len(by_strategy[s]) < 2]
            if few:
                listed = ", ".join(f"{s} ({len(by_strategy[s])})" for s in few)
                skipped.append(Skipped(env, size, f"fewer than 2 seeds: {listed}", True))
            enough = [s for s in strategies if s not in few]
            pairs = []
            for a, i_name in enumerate(enough):
                for j_name in enough[a + 1:]:
                    seeds = sorted(set(by_strategy[i_name]) & set(by_strategy[j_name]), key=repr)
                    if len(seeds) < 2:
                        skipped.append(Skipped(env, size, f"{i_name} and {j_name} share fewer than 2 seeds "
                                                          f"({len(seeds)})", True))
                    else:
                        pairs.append((i_name, j_name, seeds))
            if pairs:  # a size counts (1/L) where at least one pair was tested
                tested.append((size, by_strategy, pairs))
        counted[env] = [size for size, _, _ in tested]
        # L: the sizes where a pair was tested; under the script's rule, every size it picked
        n_sizes = len(picked[env]) if sizes == "badge_code" else len(tested)
        for size, by_strategy, pairs in tested:
            weight = 1.0 / n_sizes
            for i_name, j_name, seeds in pairs:
                fewest[env] = min(fewest.get(env, len(seeds)), len(seeds))
                tests[index[i_name], index[j_name]] += 1
                tests[index[j_name], index[i_name]] += 1
                x = np.array([by_strategy[i_name][s] for s in seeds])
                y = np.array([by_strategy[j_name][s] for s in seeds])
                winner = _winner(x, y, alpha)
                if winner > 0:
                    matrix[index[i_name], index[j_name]] += weight
                elif winner < 0:
                    matrix[index[j_name], index[i_name]] += weight
    kept = [i for i in range(len(names)) if tests[i].any()]
    untested = [name for i, name in enumerate(names) if i not in kept]
    return PenaltyResult([names[i] for i in kept], matrix[np.ix_(kept, kept)], skipped, counted, rules, picked,
                         fewest, tests[np.ix_(kept, kept)], untested)


def _sizes_of(by_size: Dict[int, Dict[str, Dict[Any, float]]], strategies: Sequence[str], rule: str,
              random_strategies: Collection[str]) -> Tuple[List[int], str]:
    """The sizes one environment counts under `rule`, and why (for PenaltyResult.rules)."""
    every = sorted(by_size)
    if rule == "all":
        return every, "all: every size all strategies reached"
    randoms = [s for s in strategies if s in random_strategies]
    if not randoms and rule == "badge_code":
        return [], "BADGE's code leaves out an environment without a random-sampling strategy"
    if not randoms:
        return every[1:], f"BADGE's rule needs a random-sampling strategy: every size after the initial {every[0]}"
    best: Tuple[List[int], str] = ([], "")
    for name in randoms:  # several (e.g. random with two architectures): the one that saturates last
        curve = {n: float(np.mean(list(cells[name].values()))) for n, cells in by_size.items() if cells.get(name)}
        found, why = (badge_code_sizes if rule == "badge_code" else badge_sizes)(curve)
        if not best[1] or len(found) > len(best[0]):
            best = found, (f"{why} ({name})" if len(randoms) > 1 else why)
    return best


def _winner(x: np.ndarray, y: np.ndarray, alpha: float) -> int:
    """+1 if x beats y (two-sided paired t-test at alpha, mean difference > 0), -1 if y beats x, else 0."""
    diff = x - y
    if not np.any(diff):
        return 0  # identical accuracies: no difference to test (the t statistic is 0/0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_rel(x, y).pvalue)
    if not p < alpha:  # also false for nan
        return 0
    mean = float(diff.mean())
    return 1 if mean > 0 else -1 if mean < 0 else 0


def t_critical(alpha: float, dof: int) -> float:
    """|t| a two-sided paired t-test at level alpha needs with dof degrees of freedom (seeds - 1)."""
    return float(student_t.ppf(1.0 - alpha / 2.0, dof))


def penalty_matrix(records: Any, alpha: float = 0.05) -> Tuple[List[str], np.ndarray]:
    """(sorted strategy names, P) with P[i, j] as in the module docstring.

    Warns (PenaltyWarning) when a size or a pair had fewer than 2 seeds to test;
    `penalty_report` returns the full list of what was not tested.
    """
    result = penalty_report(records, alpha)
    few = [s for s in result.skipped if s.insufficient_seeds]
    if few:
        listed = "; ".join(f"{s.environment} @ {s.n_labeled}: {s.reason}" for s in few[:5])
        more = f" (and {len(few) - 5} more)" if len(few) > 5 else ""
        warnings.warn(f"penalty matrix: {len(few)} untested because of too few seeds: {listed}{more}",
                      PenaltyWarning, stacklevel=2)
    return result.names, result.matrix


def tidy(names: Sequence[str], matrix: np.ndarray, tests: Optional[np.ndarray] = None) -> List[Dict[str, Any]]:
    """One row per cell (kind=penalty) and one per column mean (kind=column_mean, row empty); with
    `tests`, each cell's number of t-tests (0 off the diagonal: the pair was never compared)."""
    rows = [{"kind": "penalty", "row": r, "column": c, "value": float(matrix[i, j]),
             **({} if tests is None else {"tests": int(tests[i, j])})}
            for i, r in enumerate(names) for j, c in enumerate(names)]
    rows += [{"kind": "column_mean", "row": "", "column": c, "value": float(m)}
             for c, m in zip(names, column_means(matrix))]
    return rows
