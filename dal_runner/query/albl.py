"""Active Learning by Learning (Hsu & Lin, AAAI 2015): EXP4.P over query strategies.

The paper queries one point at a time; a deep loop queries a batch per round. Two readings,
``arms`` (``query.arms``):

- ``strategies`` (the default): as in BADGE's experiments (Ash et al. 2020: ALBL "selects between
  Coreset and Confidence at every round"; the authors' code draws one strategy per round, which
  then picks the whole batch). EXP4.P's arms are the N strategies and expert i advises arm i
  (identity advice), so K = N and T (``horizon``) counts query rounds; every point of the batch
  carries the importance weight W = 1 / p of the strategy drawn. The reward of a round's draw is
  the next model's IW-ACC on every point the bandit queried so far, normalised by the sum of
  their weights, sum W [f(x) = y] / sum W, in [0, 1] as EXP4.P requires (the authors' code takes
  the mean of W [f(x) = y] over the labeled set, which exceeds 1, and updates only the drawn
  strategy's weight; here every weight gets EXP4.P's update). p_min defaults to EXP4.P's
  sqrt(ln N / (K T)) capped at 1 / (2K); the authors' code uses 1 / (10 N).
  ``variant=badge_code`` follows the authors' code instead (to reproduce BADGE's ALBL): the reward
  is the mean over the whole labeled set of W [f(x) = y], W = 1 for the points no draw brought
  (the initial set); only the drawn strategy s moves, log w_s += (p_min / 2) (reward + (1 / p_s)
  sqrt(ln(N / delta) / N)); p_min defaults to 1 / (10 N); p = (1 - N p_min) w / W + p_min as in EXP4.P.
- ``points``: the paper's own form. The pool points are the arms (K = |pool|) and the strategies
  the experts; each query, every expert advises a distribution over the arms, EXP4.P mixes the
  advice with its expert weights plus a floor p_min on every arm, an arm is drawn, and once the
  next model is trained, the reward is that model's importance-weighted accuracy (IW-ACC) on
  every point drawn so far, each weighted by 1 / (the probability with which it was drawn).
  On a pool much larger than its budget this is nearly a fixed mixture: see p_min below.

Choices the paper leaves open for ``arms=points`` in a batch-mode loop (documented here, not hidden):
- Advice. An expert's advice for one query is one-hot: its highest-ranked point among its
  own top-k for the round that has not been drawn yet in this round (so k queries per round
  are k EXP4.P rounds that share one model; the experts rank once per round).
- Labeled arms. As in Hsu & Lin, already-labeled points stay arms (every arm keeps p >= p_min,
  which IW-ACC needs to be unbiased). Drawing one costs no label: the draw is recorded for
  IW-ACC (its label is known) and the draw is repeated; the same for a point drawn earlier in
  the round. The bandit is then updated with the probabilities of the repeated draw, i.e. p
  over the arms that end a draw.
- Reward timing. All k queries of a round get the same reward, the IW-ACC of the model trained
  after the round, applied at the start of the next ``select`` (the loop has no reward hook):
  ``select`` reads the pool labels from ``ctx.y`` (a LongTensor over pool indices; only
  labeled entries are read) when the context has that attribute. Without it the weights stay
  put (a fixed mixture) and a warning says so; a loop can instead call ``observe_reward``.
- p_min. EXP4.P's p_min = sqrt(ln N / (K T)) needs K p_min <= 1, which fails whenever the
  number of queries T is below K ln N (always, in pool-based active learning); the default is
  therefore that value capped at 1 / (2K): at most half the mass goes to uniform exploration.
  Where the cap binds (T < 4 K ln N, e.g. any pool much larger than its budget) exactly half
  of the draws are uniform over the pool. p_min is also EXP4.P's learning rate (the log-weights
  move by p_min / 2 (y_hat + v_hat * width) per query), so on a large pool the weights move
  slowly: with one-hot advice over a run of T queries by at most about 2 T p_min (1 + width).
  That is the algorithm as published (its pools had hundreds to a few thousand points); a
  larger ``p_min`` (at most 1 / K) is the one knob that speeds it up.
  T (``horizon``) defaults to K in this class (either reading); ``dal-run`` passes
  budget.max_labels - budget.initial (points) or the number of query rounds the budget allows
  (strategies). The confidence width is EXP4.P's sqrt(ln(N / delta) / (K T)), computed from
  K and T whatever p_min is. IW-ACC = sum_tau W_tau [f(x_tau) = y_tau] / (K T), clipped
  to [0, 1] as EXP4.P requires rewards in [0, 1].
The bandit state lives in the strategy object and travels in the resume state (state_dict).
"""

from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence

import torch

from dal_runner.features import infer
from dal_runner.query import QueryContext

log = logging.getLogger(__name__)


class Exp4P:
    """EXP4.P (Beygelzimer et al. 2011, Algorithm 1) for N experts; rewards in [0, 1].

    ``advice`` is N x m: row i is expert i's probability over m listed arms out of ``n_arms``
    (K; arms not listed get no advice from anyone; by default every arm is listed). ``horizon``
    is T, the number of draws the bandit is tuned for."""

    def __init__(self, n_experts: int, n_arms: int, horizon: int, delta: float = 0.1, p_min: float = 0.01,
                 generator: Optional[torch.Generator] = None):
        if n_experts < 2:
            raise ValueError(f"Exp4P: n_experts={n_experts}; a bandit needs at least 2 experts")
        if not 0.0 < delta < 1.0:
            raise ValueError(f"Exp4P: delta={delta}; expected a probability in (0, 1)")
        if n_arms < 1 or horizon < 1:
            raise ValueError(f"Exp4P: n_arms={n_arms}, horizon={horizon}; expected both >= 1")
        if not p_min > 0.0:  # (K p_min <= 1 is checked where the mixture is formed)
            raise ValueError(f"Exp4P: p_min={p_min}; expected p_min > 0 (it is also the learning rate)")
        self.n_experts, self.delta, self.p_min, self.generator = n_experts, delta, p_min, generator
        self.n_arms, self.horizon = n_arms, horizon
        self.log_w = torch.zeros(n_experts, dtype=torch.float64)  # w_i(1) = 1, kept as logs
        # Algorithm 1's confidence width sqrt(ln(N / delta) / (K T)), independent of p_min
        self.width = math.sqrt(math.log(n_experts / delta) / (n_arms * horizon))

    @property
    def weights(self) -> torch.Tensor:
        """w_i / W, the expert weights normalised to sum to 1."""
        return torch.softmax(self.log_w, dim=0)

    def distribution(self, advice: torch.Tensor, n_arms: Optional[int] = None) -> torch.Tensor:
        """p_j = (1 - K p_min) sum_i w_i xi_j^i / W + p_min for the listed arms j (m)."""
        k = advice.shape[1] if n_arms is None else n_arms
        if k * self.p_min > 1.0 + 1e-12:
            raise ValueError(f"Exp4P: K * p_min = {k} * {self.p_min} > 1; lower p_min")
        return (1.0 - k * self.p_min) * (self.weights @ advice.double()) + self.p_min

    def sample(self, prob: torch.Tensor) -> int:
        """Draw an arm j ~ p (all arms listed)."""
        return int(torch.multinomial(prob.double(), 1, generator=self.generator))

    def update(self, chosen: Optional[int], reward: float, advice: torch.Tensor, prob: torch.Tensor) -> None:
        """One EXP4.P weight update after arm ``chosen`` (a column of advice, or None for an arm
        no expert advised) earned ``reward``; ``prob`` is p over the listed arms at the draw."""
        advice, prob = advice.double(), prob.double()
        # r_hat_j = r_j / p_j for the chosen arm, 0 elsewhere; y_hat_i = xi^i . r_hat
        y_hat = (advice[:, chosen] * reward / prob[chosen] if chosen is not None
                 else torch.zeros(self.n_experts, dtype=torch.float64))
        # v_hat_i = sum_j xi_j^i / p_j
        v_hat = (advice / prob).sum(dim=1)
        # w_i <- w_i exp((p_min / 2) (y_hat_i + v_hat_i sqrt(ln(N/delta) / (K T))))
        self.log_w += 0.5 * self.p_min * (y_hat + v_hat * self.width)


def default_p_min(n_experts: int, n_arms: int, horizon: int) -> float:
    # EXP4.P's sqrt(ln N / (K T)), capped so that uniform exploration takes at most half the mass
    return min(math.sqrt(math.log(n_experts) / (n_arms * horizon)), 0.5 / n_arms)


ARMS = ("strategies", "points")
VARIANTS = ("exp4p", "badge_code")  # EXP4.P (Hsu & Lin) | the update of BADGE's released ALBL code


class ALBL:
    def __init__(self, strategies: Optional[Sequence] = None, delta: float = 0.1, p_min: Optional[float] = None,
                 horizon: Optional[int] = None, batch_size: int = 1024, arms: str = "strategies",
                 names: Optional[Sequence[str]] = None, variant: str = "exp4p"):
        if strategies is None:
            # BADGE's experiments: ALBL blending core-set and confidence (softmax response)
            from dal_runner.query.coreset import Coreset
            from dal_runner.query.softmax_response import SoftmaxResponse
            strategies = [Coreset(), SoftmaxResponse()]
        self.strategies: List = list(strategies)
        if len(self.strategies) < 2:
            raise ValueError(f"query.strategies: ALBL needs at least 2 strategies, got {len(self.strategies)}")
        if arms not in ARMS:
            raise ValueError(f"query.arms={arms}: accepted: one of {', '.join(ARMS)}")
        self.arms = arms
        if variant not in VARIANTS:
            raise ValueError(f"query.variant={variant}: accepted: one of {', '.join(VARIANTS)}")
        if variant == "badge_code" and arms != "strategies":
            raise ValueError("query.variant=badge_code: BADGE's code draws one strategy per round; accepted: "
                             "query.arms=strategies")
        self.variant = variant
        # for the log: the strategies' config names (dal-run's), else their class names
        self.names = list(names) if names is not None else [type(st).__name__ for st in self.strategies]
        self.delta, self.p_min, self.horizon, self.batch_size = delta, p_min, horizon, batch_size
        self.bandit: Optional[Exp4P] = None  # built at the first select, when K is known
        self.n_arms: Optional[int] = None
        self.pending: List[tuple] = []  # (advice, prob, chosen column) of queries awaiting a reward
        self.drawn_index: List[int] = []  # pool index of every draw so far (IW-ACC terms)
        self.drawn_weight: List[float] = []  # W_tau = 1 / p of that draw
        self._warned = False

    # ---- reward --------------------------------------------------------------------------

    @torch.no_grad()
    def importance_weighted_accuracy(self, model, x: torch.Tensor, y: torch.Tensor) -> float:
        """IW-ACC over every draw so far: sum_tau W_tau [f(x_tau) = y_tau] / (K T) (arms=points, as
        Hsu & Lin), or / sum_tau W_tau (arms=strategies, where K T is N rounds' worth, not the pool)."""
        if not self.drawn_index:
            return 0.0
        idx = torch.tensor(self.drawn_index, dtype=torch.long)
        probs, _ = infer(model, x, self.batch_size, index=idx)
        correct = (probs.argmax(dim=1).cpu() == y[idx.to(y.device)].cpu()).double()
        weight = torch.tensor(self.drawn_weight, dtype=torch.float64)
        norm = weight.sum() if self.arms == "strategies" else self.n_arms * self._horizon
        return float(((weight * correct).sum() / norm).clamp(0.0, 1.0))

    @torch.no_grad()
    def badge_code_reward(self, model, x: torch.Tensor, y: torch.Tensor, labeled: torch.Tensor) -> float:
        """variant=badge_code: the mean over the labeled set of W [f(x) = y], W = 1 / p for the points
        the bandit's draws brought and 1 for the others (the initial set), as BADGE's ALBL code."""
        labeled = labeled.cpu().long()
        probs, _ = infer(model, x, self.batch_size, index=labeled)
        correct = (probs.argmax(dim=1).cpu() == y[labeled.to(y.device)].cpu()).double()
        weight = torch.ones(len(labeled), dtype=torch.float64)
        drawn = dict(zip(self.drawn_index, self.drawn_weight))
        for position, index in enumerate(labeled.tolist()):
            weight[position] = drawn.get(index, 1.0)
        return float((weight * correct).mean())

    def observe_reward(self, reward: float) -> None:
        """Apply the reward of the model trained after the last round to that round's queries."""
        for advice, prob, chosen in self.pending:
            if self.variant == "badge_code":  # the drawn strategy's weight alone moves
                n = len(self.strategies)
                width = math.sqrt(math.log(n / self.bandit.delta) / n) / float(prob[chosen])
                self.bandit.log_w[chosen] += 0.5 * self.bandit.p_min * (reward + width)
            else:
                self.bandit.update(chosen, reward, advice, prob)
        self.pending.clear()

    # ---- resume --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The bandit's weights, the draws so far and the queries awaiting their reward."""
        if self.bandit is None:
            return {"started": False}
        return {"started": True, "arms": self.arms, "variant": self.variant, "n_arms": self.n_arms,
                "horizon": self._horizon, "p_min": self.bandit.p_min,
                "log_w": self.bandit.log_w.clone(), "drawn_index": list(self.drawn_index),
                "drawn_weight": list(self.drawn_weight),
                "pending": [[a.clone(), p.clone(), c] for a, p, c in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        if not state.get("started"):
            return
        saved = state.get("arms", "points")  # states written before query.arms existed: points
        if saved != self.arms:
            raise ValueError(f"query.arms={self.arms}: the run's saved bandit is of query.arms={saved}; "
                             f"accepted: query.arms={saved} to continue it")
        saved = state.get("variant", "exp4p")
        if saved != self.variant:
            raise ValueError(f"query.variant={self.variant}: the run's saved bandit is of query.variant={saved}; "
                             f"accepted: query.variant={saved} to continue it")
        self.n_arms, self._horizon = int(state["n_arms"]), int(state["horizon"])
        self.bandit = Exp4P(len(self.strategies), self.n_arms, self._horizon, self.delta, float(state["p_min"]), None)
        if self.bandit.log_w.shape != state["log_w"].shape:
            raise ValueError(f"ALBL: the saved state has {state['log_w'].numel()} experts, "
                             f"this run {len(self.strategies)}")
        self.bandit.log_w = state["log_w"].clone()
        self.drawn_index, self.drawn_weight = list(state["drawn_index"]), list(state["drawn_weight"])
        self.pending = [(a, p, c) for a, p, c in state["pending"]]

    # ---- query ---------------------------------------------------------------------------

    def _start(self, n_arms: int, generator: torch.Generator) -> None:
        self.n_arms = n_arms
        self._horizon = self.horizon if self.horizon is not None else n_arms
        if self.p_min is not None:
            p_min = self.p_min
        elif self.variant == "badge_code":
            p_min = 0.1 / len(self.strategies)  # the authors' code: 1 / (10 N)
        else:
            p_min = default_p_min(len(self.strategies), n_arms, self._horizon)
        if not 0.0 < p_min <= 1.0 / n_arms:
            what = f"{n_arms} strategies" if self.arms == "strategies" else f"a pool of K = {n_arms} points"
            raise ValueError(f"query.p_min: {p_min} for {what}; expected "
                             f"0 < p_min <= 1 / K = {1.0 / n_arms:.3g}, or null for "
                             f"{'BADGE code' if self.variant == 'badge_code' else 'EXP4.P'}'s default")
        self.bandit = Exp4P(len(self.strategies), n_arms, self._horizon, self.delta, p_min, generator)

    def _draw(self, prob: torch.Tensor, listed: torch.Tensor, generator: torch.Generator) -> tuple:
        """One arm from the mixture: a listed arm with its p, else uniform over the unlisted arms
        (each has p = p_min). Returns (arm, column in listed or None, p of the arm)."""
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        if u < float(prob.sum()):
            col = int(torch.multinomial(prob, 1, generator=generator))
            return int(listed[col]), col, float(prob[col])
        while True:
            arm = int(torch.randint(0, self.n_arms, (1,), generator=generator))
            if not bool((listed == arm).any()):
                return arm, None, self.bandit.p_min

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        n_unlabeled = len(ctx.unlabeled)
        if not 0 <= k <= n_unlabeled:
            raise ValueError(f"ALBL: k={k} picks from {n_unlabeled} unlabeled points; expected 0 <= k <= {n_unlabeled}")
        if self.arms == "strategies":
            n_arms = len(self.strategies)
        else:
            n_arms = n_unlabeled + len(ctx.labeled)  # arms 0..|U|-1: unlabeled positions; then labeled
        if self.bandit is None:
            self._start(n_arms, ctx.generator)
        elif n_arms != self.n_arms:
            raise ValueError(f"ALBL: the pool changed size ({self.n_arms} -> {n_arms}) during a run")
        self.bandit.generator = ctx.generator  # this round's stream

        # the reward of the model trained on last round's queries (Hsu & Lin: IW-ACC)
        if self.pending:
            y = getattr(ctx, "y", None)
            if y is not None:
                self.observe_reward(self.badge_code_reward(ctx.model, ctx.x, y, ctx.labeled)
                                    if self.variant == "badge_code"
                                    else self.importance_weighted_accuracy(ctx.model, ctx.x, y))
            else:
                if not self._warned:
                    log.warning("ALBL: the query context has no labels (ctx.y); expert weights stay fixed")
                    self._warned = True
                self.pending.clear()
        if self.arms == "strategies":
            return self._select_by_one_strategy(ctx, k)

        # each expert ranks once per round: its top-k, most informative first
        ranked = [s.select(ctx, k).cpu().long() for s in self.strategies]
        cursor = [0] * len(ranked)
        taken = torch.zeros(n_unlabeled, dtype=torch.bool)
        picks = []
        labeled = ctx.labeled.cpu()
        unlabeled = ctx.unlabeled.cpu()
        for _ in range(k):
            # advice: each expert's best point not drawn yet in this round, one-hot
            recs = []
            for i, order in enumerate(ranked):
                while cursor[i] < len(order) and taken[order[cursor[i]]]:
                    cursor[i] += 1
                recs.append(int(order[cursor[i]]) if cursor[i] < len(order) else None)
            listed = torch.tensor(sorted({r for r in recs if r is not None}), dtype=torch.long)
            advice = torch.zeros(len(recs), len(listed), dtype=torch.float64)
            for i, r in enumerate(recs):
                if r is not None:
                    advice[i, int((listed == r).nonzero())] = 1.0
                else:  # an expert out of advice (k > its list): uniform over the listed arms
                    advice[i] = 1.0 / max(1, len(listed))
            prob = self.bandit.distribution(advice, n_arms)
            # free draws (labeled, or drawn this round) repeat; every draw is an IW-ACC term
            n_free = n_arms - n_unlabeled + len(picks)  # every pick so far is taken
            while True:
                arm, col, p = self._draw(prob, listed, ctx.generator)
                self.drawn_index.append(int(unlabeled[arm] if arm < n_unlabeled else labeled[arm - n_unlabeled]))
                self.drawn_weight.append(1.0 / p)
                if arm < n_unlabeled and not taken[arm]:
                    break
            taken[arm] = True
            picks.append(arm)
            # the arm's probability given that the draw ended: free arms are unlisted, p_min each
            self.pending.append((advice, prob / (1.0 - n_free * self.bandit.p_min), col))
        return torch.tensor(picks, dtype=torch.long)

    def _select_by_one_strategy(self, ctx: QueryContext, k: int) -> torch.Tensor:
        """arms=strategies: EXP4.P draws one strategy (identity advice), which picks the batch."""
        advice = torch.eye(len(self.strategies), dtype=torch.float64)
        prob = self.bandit.distribution(advice)
        drawn = self.bandit.sample(prob)
        picks = self.strategies[drawn].select(ctx, k).cpu().long()
        self.drawn_index.extend(ctx.unlabeled.cpu()[picks].tolist())
        self.drawn_weight.extend([1.0 / float(prob[drawn])] * len(picks))
        self.pending.append((advice, prob, drawn))
        log.info("ALBL: %s picks this round's batch of %d (p: %s)", self.names[drawn], len(picks),
                 ", ".join(f"{name} {float(q):.3f}" for name, q in zip(self.names, prob)))
        return picks
