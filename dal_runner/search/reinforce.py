"""NAS with reinforcement learning (Zoph & Le 2017): an RNN controller trained with REINFORCE.

The controller emits an architecture as a sequence of T = 3 decisions, one per LSTM step, each
step's choice fed back as the next step's input:
    a_1 block type (search.blocks),  a_2 blocks per stack (1..max),  a_3 stacks (1..max)
Each controller step samples m children, estimates them on S' / V' (reward R_k = V' accuracy)
and ascends the lecture's Monte-Carlo policy gradient

    grad J = 1/m sum_{k=1..m} sum_{t=1..T} grad log P(a_t | a_{(t-1):1}; theta_c) (R_k - b)

with b an exponential moving average of the previous children's rewards. A round runs
budget / m controller steps; its architecture is the best child on V' (ties: the smaller).
The controller, its optimiser and b carry over from round to round (state_dict).
"""

from __future__ import annotations

import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from dal_runner.arch import ArchSpec
from dal_runner.search import Estimator, SearchResult
from dal_runner.search.estimation import Estimate, Fidelity, RoundEstimator, candidate_seed
from dal_runner.search.space import Choice, ResNetSpace, best
from dal_runner.seeding import derive_seed, torch_generator


class Controller(nn.Module):
    """An LSTMCell emitting one categorical decision per step; ``sizes[t]`` options at step t."""

    def __init__(self, sizes: Sequence[int], hidden: int = 32):
        super().__init__()
        self.sizes = [int(n) for n in sizes]
        self.start = nn.Parameter(torch.zeros(1, hidden))  # the first step's input
        self.cell = nn.LSTMCell(hidden, hidden)
        self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in self.sizes[:-1])  # a_t -> input of t+1
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)

    def forward(self, actions: Optional[torch.Tensor] = None, m: int = 1,
                generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(actions [m, T], log P(a_1..a_T) [m]): samples with `generator` when `actions` is None."""
        if actions is not None:
            m = actions.shape[0]
        x = self.start.expand(m, -1)
        state = None
        chosen, log_prob = [], torch.zeros(m)
        for t, head in enumerate(self.heads):
            state = self.cell(x, state)
            log_p = torch.log_softmax(head(state[0]), dim=1)
            a = actions[:, t] if actions is not None else \
                torch.multinomial(log_p.detach().exp(), 1, generator=generator).squeeze(1)
            log_prob = log_prob + log_p.gather(1, a[:, None]).squeeze(1)  # log P(a_t | a_{(t-1):1})
            chosen.append(a)
            if t + 1 < len(self.heads):
                x = self.embed[t](a)
        return torch.stack(chosen, dim=1), log_prob


def policy_gradient_loss(log_probs: torch.Tensor, rewards: torch.Tensor, baseline: float) -> torch.Tensor:
    """-(1/m) sum_k log P(a^k) (R_k - b): its gradient is minus the lecture's estimate of grad J."""
    return -((rewards - baseline) * log_probs).mean()


class ReinforceSearch:
    def __init__(self, space: ResNetSpace, *, seed: int, budget: int = 3, children: int = 3, lr: float = 0.05,
                 baseline_decay: float = 0.8, hidden: int = 32, val_fraction: float = 0.2,
                 fidelity: Fidelity = Fidelity()):
        checks = [("search.budget", budget, int(budget) >= 1, "an integer >= 1 (candidate trainings per round)"),
                  ("search.children", children, 1 <= int(children) <= int(budget) and int(budget) % int(children) == 0,
                   f"m >= 1 dividing search.budget={budget} (controller steps = budget / m)"),
                  ("search.lr", lr, math.isfinite(lr) and lr > 0, "a finite number > 0"),
                  ("search.baseline_decay", baseline_decay, 0.0 <= baseline_decay < 1.0, "a number in [0, 1)"),
                  ("search.hidden", hidden, int(hidden) >= 1, "an integer >= 1"),
                  ("search.val_fraction", val_fraction, 0.0 < val_fraction < 1.0, "a fraction in (0, 1)")]
        for key, value, ok, accepted in checks:
            if not ok:
                raise ValueError(f"{key}={value}: accepted: {accepted}")
        self.space, self.seed, self.fidelity = space, int(seed), fidelity
        self.children, self.steps = int(children), int(budget) // int(children)
        self.baseline_decay, self.val_fraction = float(baseline_decay), float(val_fraction)
        with torch.random.fork_rng(devices=[]):  # the controller's initialisation depends on the run seed only
            torch.default_generator.manual_seed(derive_seed(self.seed, "controller"))
            self.controller = Controller(space.sizes, int(hidden))
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=float(lr))
        self.baseline: Optional[float] = None  # b: moving average of the children's rewards
        self.updates = 0  # controller steps taken so far, over all rounds

    # ------------------------------------------------------------------ decisions <-> architectures
    def decode(self, actions: Sequence[int]) -> Choice:
        block, n_blocks, n_stacks = (int(a) for a in actions)
        return self.space.blocks[block], n_blocks + 1, n_stacks + 1

    def sample(self, m: int, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.controller(m=m, generator=generator)[0]

    # ------------------------------------------------------------------ REINFORCE
    def update(self, actions: torch.Tensor, rewards: Sequence[float]) -> float:
        """One controller step on m children; returns the baseline b used."""
        rewards = torch.tensor(list(rewards), dtype=torch.float32)
        # b averages the *previous* children; before any, the batch's own mean (centred rewards)
        b = self.baseline if self.baseline is not None else float(rewards.mean())
        _, log_probs = self.controller(actions)
        loss = policy_gradient_loss(log_probs, rewards, b)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        for r in rewards.tolist():  # b <- decay b + (1 - decay) R_k, child by child
            b_prev = r if self.baseline is None else self.baseline
            self.baseline = self.baseline_decay * b_prev + (1.0 - self.baseline_decay) * r
        self.updates += 1
        return b

    def select(self, round_index: int, labeled: torch.Tensor, previous: Optional[ArchSpec],
               estimate: Estimator) -> SearchResult:
        score = RoundEstimator(estimate, self.fidelity, self.seed, round_index, labeled, self.val_fraction)
        generator = torch_generator(self.seed, "reinforce", round_index)
        scored: Dict[Choice, Estimate] = {}  # a child sampled twice in a round is not retrained
        rows: List[Dict] = []
        choices: List[Choice] = []
        for step in range(1, self.steps + 1):
            actions = self.sample(self.children, generator)
            rewards = []
            for a in actions.tolist():
                choice = self.decode(a)
                spec = self.space.spec(choice)
                reused = choice in scored
                started = time.perf_counter()
                if not reused:
                    scored[choice] = score(spec, candidate_seed(self.seed, round_index, spec))
                rows.append(self.space.row(step, choice, scored[choice], time.perf_counter() - started, reused))
                choices.append(choice)
                rewards.append(scored[choice].accuracy)  # R_k: the child's V' accuracy
            self.update(actions, rewards)
        winner = best(rows)
        rows[winner]["chosen"] = True
        return SearchResult(self.space.spec(choices[winner]), rows)

    # ------------------------------------------------------------------ state across rounds
    def state_dict(self) -> Dict:
        return {"sizes": list(self.controller.sizes), "controller": self.controller.state_dict(),
                "optimizer": self.optimizer.state_dict(), "baseline": self.baseline, "updates": self.updates}

    def load_state_dict(self, state: Dict) -> None:
        if list(state["sizes"]) != self.controller.sizes:
            raise ValueError(f"the saved controller decides over {list(state['sizes'])} options, "
                             f"this search over {self.controller.sizes}: the search space changed")
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.updates = int(state["updates"])
