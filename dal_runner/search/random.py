"""Random search (Bergstra & Bengio 2012; the baseline of Elsken et al. 2019, Sec. 3).

Each round:
    S', V' <- the round's split of S (estimation.py)
    sample `budget` distinct architectures A(B, i, j) uniformly from the space
        (monotone: only i >= i_{t-1} and j >= j_{t-1}, so capacity never falls below last round's)
    estimate each on S' / V'; the best on V' wins (ties: the smaller network)
A space with fewer architectures than the budget is trained whole.
"""

from __future__ import annotations

import logging
import time
from typing import List, Optional

import torch

from dal_runner.arch import ArchSpec
from dal_runner.search import Estimator, SearchResult
from dal_runner.search.estimation import Fidelity, RoundEstimator, candidate_seed
from dal_runner.search.space import Choice, ResNetSpace, best
from dal_runner.seeding import torch_generator

log = logging.getLogger("dal_runner")


class RandomSearch:
    def __init__(self, space: ResNetSpace, *, seed: int, budget: int = 3, monotone: bool = False,
                 val_fraction: float = 0.2, fidelity: Fidelity = Fidelity()):
        if int(budget) < 1:
            raise ValueError(f"search.budget={budget}: accepted: an integer >= 1 (candidate trainings per round)")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"search.val_fraction={val_fraction}: accepted: a fraction in (0, 1)")
        self.space, self.seed, self.budget, self.monotone = space, int(seed), int(budget), bool(monotone)
        self.val_fraction, self.fidelity = float(val_fraction), fidelity
        size = len(space.choices())
        if self.budget > size:  # said once: search.csv would show fewer candidates than asked for
            log.info("search.budget=%d: the space holds %d architectures; each round trains all of them", self.budget,
                     size)

    def pool(self, previous: Optional[ArchSpec]) -> List[Choice]:
        """The architectures a round may sample."""
        options = self.space.choices()
        if self.monotone and previous is not None:
            i, j = self.space.position(previous)
            options = [c for c in options if c[1] >= i and c[2] >= j]
        return options

    def select(self, round_index: int, labeled: torch.Tensor, previous: Optional[ArchSpec],
               estimate: Estimator) -> SearchResult:
        score = RoundEstimator(estimate, self.fidelity, self.seed, round_index, labeled, self.val_fraction)
        options = self.pool(previous)
        order = torch.randperm(len(options), generator=torch_generator(self.seed, "random_search", round_index))
        rows = []
        for step, k in enumerate(order[: self.budget].tolist(), start=1):
            choice = options[k]
            spec = self.space.spec(choice)
            started = time.perf_counter()
            result = score(spec, candidate_seed(self.seed, round_index, spec))
            rows.append(self.space.row(step, choice, result, time.perf_counter() - started, reused=False))
        winner = best(rows)
        rows[winner]["chosen"] = True
        chosen = order[winner].item()
        return SearchResult(self.space.spec(options[chosen]), rows)
