"""Algorithm 1 of active-iNAS (Geifman & El-Yaniv 2019): incremental neural architecture search.

    1: iNAS(S, A(B, i0, j0), A, T_iNAS)
    2:   S', V' <- a random train / validation split of S
    3:   for t = 1..T_iNAS:
    4:     i <- i_{t-1}; j <- j_{t-1};  A' = {A(B,i,j), A(B, floor(ij/(j+1)) + 1, j+1), A(B, i+1, j)}
    5:     A' <- A' intersected with A
    6:     A(B, i_t, j_t) = argmin_{A in A'} r_V'(argmin_{f in A} r_S'(f))
    7-8:   if A(B, i_t, j_t) = A(B, i_{t-1}, j_{t-1}) then break
   12:   return A(B, i_t, j_t)

Every candidate has at least as many blocks i*j as the current one, so capacity never shrinks.
Candidates are trained on S' and scored on V' as in every search strategy, at the fidelity the
config asks for (fewer epochs, a subset of S', early stopping): see estimation.py.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from dal_runner.arch import ArchSpec
from dal_runner.search import Estimator, SearchResult
from dal_runner.search.estimation import (Estimate, Fidelity, RoundEstimator, candidate_seed, out_of_running,
                                         round_split)

Position = Tuple[int, int]  # (n_blocks, n_stacks)
BLOCKS = ("basic", "bottleneck")
TIE_BREAKS = ("smaller", "larger")


def candidates(current: Sequence[int], space: Sequence[int]) -> List[Position]:
    """Lines 4-5: the current architecture, one stack more (same or more blocks), one block more."""
    i, j = int(current[0]), int(current[1])
    max_blocks, max_stacks = space
    # line 4: the wider-stack candidate keeps at least the i*j blocks spread over j+1 stacks
    proposed = [(i, j), (i * j // (j + 1) + 1, j + 1), (i + 1, j)]
    # line 5: intersect with the search space A(B, 1..max_blocks, 1..max_stacks)
    kept: List[Position] = []
    for n_blocks, n_stacks in proposed:
        if 1 <= n_blocks <= max_blocks and 1 <= n_stacks <= max_stacks and (n_blocks, n_stacks) not in kept:
            kept.append((n_blocks, n_stacks))
    return kept


class INASSearch:
    """iNAS over homogeneous residual networks ``ArchSpec("resnet", block, n_blocks, n_stacks, ...)``.

    ``reuse_candidates``: within one round (one split), an architecture already scored is not
    retrained; its score is reused (it would get the same seed and data anyway). Without reuse it
    is retrained, never stopped early the second time, so the flag does not change the choice.
    ``tie_break``: on equal validation accuracy, "smaller" prefers fewer parameters (the current
    architecture first), "larger" more. Size is ``count_params(spec)`` when given, else i*j blocks.
    """

    def __init__(self, block: str, *, seed: int, start: Sequence[int] = (1, 1), space: Sequence[int] = (12, 5),
                 val_fraction: float = 0.2, max_steps: int = 1, reuse_candidates: bool = True,
                 tie_break: str = "smaller", extra_params: Optional[Dict] = None,
                 count_params: Optional[Callable[[ArchSpec], int]] = None, fidelity: Fidelity = Fidelity()):
        if block not in BLOCKS:
            raise ValueError(f"search.block={block}: unknown option; accepted: one of {', '.join(BLOCKS)}")
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"search.tie_break={tie_break}: unknown option; accepted: one of {', '.join(TIE_BREAKS)}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"search.val_fraction={val_fraction}: accepted: a fraction in (0, 1)")
        if int(max_steps) < 1:
            raise ValueError(f"search.max_steps={max_steps}: accepted: an integer >= 1")
        self.block = block
        self.seed = int(seed)
        self.space = (int(space[0]), int(space[1]))
        self.start = self._in_space((int(start[0]), int(start[1])), "search.start")
        self.val_fraction = float(val_fraction)
        self.max_steps = int(max_steps)
        self.reuse_candidates = bool(reuse_candidates)
        self.tie_break = tie_break
        self.extra_params = dict(extra_params or {})
        self.count_params = count_params
        self.fidelity = fidelity

    def _in_space(self, position: Position, what: str) -> Position:
        if not (1 <= position[0] <= self.space[0] and 1 <= position[1] <= self.space[1]):
            raise ValueError(f"{what}=[{position[0]}, {position[1]}]: outside the search space; accepted: "
                             f"[n_blocks, n_stacks] within [1..{self.space[0]}, 1..{self.space[1]}]")
        return position

    def spec(self, position: Position) -> ArchSpec:
        return ArchSpec("resnet", block=self.block, n_blocks=position[0], n_stacks=position[1], **self.extra_params)

    def split(self, round_index: int, labeled: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Line 2: S', V' <- a seeded split of S (estimation.round_split: random, or nested with inheritance)."""
        return round_split(self.seed, round_index, labeled, self.val_fraction, self.fidelity.nested_split)

    def _position(self, previous: ArchSpec) -> Position:
        params = previous.params
        if previous.name != "resnet" or params.get("block") != self.block:
            raise ValueError(f"iNAS over {self.block} resnets cannot continue from {previous!r}")
        return self._in_space((int(params["n_blocks"]), int(params["n_stacks"])), "previous architecture")

    def select(self, round_index: int, labeled: torch.Tensor, previous: Optional[ArchSpec],
               estimate: Estimator) -> SearchResult:
        score = RoundEstimator(estimate, self.fidelity, self.seed, round_index, labeled,
                               self.val_fraction)  # line 2: S', V'
        current = self.start if previous is None else self._position(previous)
        first = current
        scored: Dict[Position, Estimate] = {}
        rows: List[Dict] = []
        for step in range(1, self.max_steps + 1):  # line 3
            options = candidates(current, self.space)  # lines 4-5
            step_rows = []
            for position in options:
                spec = self.spec(position)
                reused = self.reuse_candidates and position in scored
                started = time.perf_counter()
                if not reused:
                    # trained to the end before: never stop it now; stopped before: it may stop again
                    finished = position in scored and not scored[position].out_of_running
                    scored[position] = score(spec, candidate_seed(self.seed, round_index, spec),
                                             may_stop=not finished)
                step_rows.append({
                    "step": step, "candidate": repr(spec), "n_blocks": position[0], "n_stacks": position[1],
                    "n_params": self.count_params(spec) if self.count_params else None,
                    **scored[position].fields(), "seconds": round(time.perf_counter() - started, 3),
                    "reused": reused, "chosen": False,
                })
            # line 6: argmin of the validation error = argmax of the validation accuracy
            best = min(range(len(options)), key=lambda k: self._rank(step_rows[k], k))
            step_rows[best]["chosen"] = True
            rows += step_rows
            if options[best] == current:  # lines 7-8
                break
            current = options[best]
        # capacity never shrinks: as many blocks in all, and as many stacks, as the start of the round
        assert current[0] * current[1] >= first[0] * first[1] and current[1] >= first[1], (first, current)
        return SearchResult(self.spec(current), rows)

    def _rank(self, row: Dict, order: int) -> Tuple:
        size = row["n_params"] if row["n_params"] is not None else row["n_blocks"] * row["n_stacks"]
        sign = 1 if self.tie_break == "smaller" else -1
        # candidate order puts the current architecture first, so it wins ties between equal sizes;
        # a candidate stopped early or diverged (estimation.py) is out of the running
        return (out_of_running(row), -row["val_accuracy"], sign * size, order)
