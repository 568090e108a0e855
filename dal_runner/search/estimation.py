"""Performance estimation of candidate architectures, shared by every strategy that trains them.

NAS is a search space, a search strategy and a performance estimation strategy (Elsken et al.
2019, Fig. 1). Every strategy here estimates a candidate the same way:

    S', V' <- holdout_split(S)          iNAS's split (Algorithm 1, line 2), seeded per round
    train the candidate on S' (or a seeded subset of it), score it by its accuracy on V'
    (search.score: after its last epoch, Algorithm 1's line 6; or the best over its epochs,
    as the active-iNAS authors' code scores candidates, their max_accuracy)

Lower-fidelity estimates (Elsken et al. 2019, "speed-up methods", first row), each from config:
    fewer epochs     search.epochs (the candidates' trainer; recorded per estimate)
    a subset of S'   search.subset: every candidate of a round trains on the same seeded subset
    early stopping   search.stop_at, search.stop_margin: at epoch e = round(stop_at * epochs) a
                     candidate whose V' accuracy is more than stop_margin below the best V'
                     accuracy an earlier candidate of the same round had at epoch e is clearly
                     losing; its training stops there and its score is that accuracy.
The rule compares like with like (the same epoch, S' and V'), needs no parallel candidates (so
iNAS's 3 candidates, random samples and REINFORCE children use it alike), and never stops the
first candidate of a round.

A candidate whose training diverges (train.TrainingDiverged: a NaN or exploding loss) is out of the
running, as one stopped early is: it scores 0 (REINFORCE's reward), search.csv marks it `diverged`,
and the log says why. Only when every candidate of a round diverged does the run fail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from dal_runner.arch import ArchSpec
from dal_runner.search import Estimator
from dal_runner.seeding import derive_seed, torch_generator

log = logging.getLogger("dal_runner")

# below this many V' points a candidate's score moves in steps of more than 0.1: ties and noise
# choose the architecture, and the log says so
FEW_VALIDATION_POINTS = 10
# below this many S' points (after search.subset) a candidate learns next to nothing to be ranked by
FEW_TRAINING_POINTS = 10


def holdout_split(labeled: torch.Tensor, val_fraction: float, generator: torch.Generator
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """S', V' <- a random split of S; |V'| = round(val_fraction |S|), kept in [1, |S| - 1]."""
    n = labeled.numel()
    if n < 2:
        raise ValueError(f"the search needs at least 2 labeled points to split into S' and V'; got {n}")
    n_val = min(max(int(n * val_fraction + 0.5), 1), n - 1)
    order = torch.randperm(n, generator=generator).to(labeled.device)
    return labeled[order[n_val:]], labeled[order[:n_val]]


NESTED_BLOCK = 4096  # pool indices per block of the nested split's fixed uniforms


def nested_split(seed: int, labeled: torch.Tensor, val_fraction: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """S', V' with V' = {i in S : u_i < val_fraction}, u_i a fixed uniform per pool index (drawn in
    seeded blocks of NESTED_BLOCK indices, so no pool size is needed). A point keeps its side as S
    grows: no later V' holds a point an earlier S' trained on, which inherited weights need. |V'| is
    then binomial around val_fraction |S|; an empty side takes the one point nearest the threshold.
    (So while every labeled point falls under the threshold, a tiny S such as 2 initial labels, one
    of them trains and returns to V' once S has a point above it: the one exception to nesting.)"""
    n = labeled.numel()
    if n < 2:
        raise ValueError(f"the search needs at least 2 labeled points to split into S' and V'; got {n}")
    idx = labeled.cpu()
    blocks = idx // NESTED_BLOCK
    u = torch.empty(n, dtype=torch.float64)
    for b in blocks.unique().tolist():
        draws = torch.rand(NESTED_BLOCK, generator=torch_generator(seed, "nested_split", b), dtype=torch.float64)
        here = blocks == b
        u[here] = draws[idx[here] % NESTED_BLOCK]
    val = u < val_fraction
    if not val.any():
        val[u.argmin()] = True
    if val.all():
        val[u.argmax()] = False
    val = val.to(labeled.device)
    return labeled[~val], labeled[val]


def round_split(seed: int, round_index: int, labeled: torch.Tensor, val_fraction: float, nested: bool = False
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    if nested:
        return nested_split(seed, labeled, val_fraction)
    # the purpose name predates the other strategies; kept so that iNAS runs reproduce, and so that
    # every strategy of a seed scores its candidates on the same V'
    return holdout_split(labeled, val_fraction, torch_generator(seed, "inas_split", round_index))


def candidate_seed(seed: int, round_index: int, spec: ArchSpec) -> int:
    """The training seed of a candidate: the run seed, the round and the architecture only.

    The purpose name is iNAS's (so its runs reproduce); every strategy uses it, so strategies that
    try the same architecture in the same round get the same estimate (common random numbers).
    """
    return derive_seed(seed, "inas", round_index, repr(spec))


SCORES = ("last", "best")  # search.score


def _bad(key: str, value, accepted: str) -> ValueError:
    return ValueError(f"{key}={value}: accepted: {accepted}")


@dataclass(frozen=True)
class Fidelity:
    """How faithfully a candidate is estimated. The defaults are full fidelity."""

    epochs: Optional[int] = None  # the candidates' epochs (search.epochs or trainer.epochs), for the records
    subset: float = 1.0  # fraction of S' a candidate trains on
    stop_at: Optional[float] = None  # fraction of the epochs at which a clearly losing candidate stops
    stop_margin: float = 0.1  # "clearly": this much V' accuracy below the round's best at that epoch
    nested_split: bool = False  # S'/V' nested across rounds (nested_split): set with search.inherit
    score: str = "last"  # a candidate's V' accuracy after its last epoch | the best over its epochs

    def __post_init__(self):
        if self.score not in SCORES:
            raise _bad("search.score", self.score, "null or last (the V' accuracy after the last epoch) | best (the "
                       "best V' accuracy over the epochs, the active-iNAS authors' code's)")
        if not 0.0 < self.subset <= 1.0:
            raise _bad("search.subset", self.subset, "a fraction of S' in (0, 1]")
        if self.stop_at is not None and not 0.0 < self.stop_at < 1.0:
            raise _bad("search.stop_at", self.stop_at, "null (no early stopping) or a fraction of the epochs in (0, 1)")
        if not self.stop_margin >= 0:  # nan too: no V' accuracy would ever be that far below
            raise _bad("search.stop_margin", self.stop_margin, "an accuracy difference >= 0")
        if self.stop_at is not None and self.epochs is None:
            raise ValueError("search.stop_at needs the candidates' epochs (Fidelity.epochs)")
        if self.stop_at is not None and self.stop_epoch is None:  # the check would fall on the last epoch
            most = f" (below {(self.epochs - 0.5) / self.epochs:.3g})" if self.epochs > 1 else ""
            raise ValueError(f"search.stop_at={self.stop_at}: the check would fall on the last of the {self.epochs} "
                             f"candidate epochs, so no candidate could stop early; accepted: null, or a fraction "
                             f"that rounds to an epoch before the last{most}")

    @property
    def stop_epoch(self) -> Optional[int]:
        """The epoch of the early-stopping check; None when no candidate can stop early."""
        if self.stop_at is None:
            return None
        epoch = max(1, int(self.stop_at * self.epochs + 0.5))
        return epoch if epoch < self.epochs else None


@dataclass
class Estimate:
    accuracy: float  # on V'
    epochs: Optional[int]  # epochs trained (fewer when stopped early)
    n_train: int  # points of S' trained on
    stopped_early: bool
    diverged: bool = False  # training diverged: scored 0, out of the running

    @property
    def out_of_running(self) -> bool:
        return self.stopped_early or self.diverged

    def fields(self) -> Dict:
        """The columns of search.csv that record the estimate and its fidelity."""
        return {"val_accuracy": self.accuracy, "epochs": self.epochs, "n_train": self.n_train,
                "stopped_early": self.stopped_early, "diverged": self.diverged}


def out_of_running(row: Dict) -> bool:
    """A search.csv row (Estimate.fields) that cannot be chosen: stopped early, or diverged."""
    return bool(row["stopped_early"] or row.get("diverged", False))


class RoundEstimator:
    """One round's estimates: the split S'/V', the training subset and the early-stopping reference.

    ``RoundEstimator(...)(spec, seed) -> Estimate``; the loop's ``estimate`` does the training.
    """

    def __init__(self, estimate: Estimator, fidelity: Fidelity, seed: int, round_index: int,
                 labeled: torch.Tensor, val_fraction: float):
        self.estimate, self.fidelity, self.round_index = estimate, fidelity, round_index
        self.s_prime, self.v_prime = round_split(seed, round_index, labeled, val_fraction, fidelity.nested_split)
        n_val = self.v_prime.numel()
        if n_val < FEW_VALIDATION_POINTS:
            log.warning("round %d: V' holds %d of the %d labeled points (search.val_fraction=%g), so a candidate's "
                        "V' accuracy moves in steps of %.2f and ties or noise choose the architecture; a larger "
                        "budget.initial or search.val_fraction helps", round_index, n_val, labeled.numel(),
                        val_fraction, 1.0 / max(n_val, 1))
        self.train_idx = self.s_prime
        if fidelity.subset < 1.0:
            n = self.s_prime.numel()
            keep = min(max(int(fidelity.subset * n + 0.5), 1), n)
            order = torch.randperm(n, generator=torch_generator(seed, "search_subset", round_index))
            self.train_idx = self.s_prime[order[:keep].to(self.s_prime.device)]
        if self.train_idx.numel() < FEW_TRAINING_POINTS:  # search.val_fraction=0.999 left one
            log.warning("round %d: the candidates train on %d of the %d labeled points (search.val_fraction=%g, "
                        "search.subset=%g), too few for their V' accuracies to rank architectures; a smaller "
                        "search.val_fraction helps", round_index, self.train_idx.numel(), labeled.numel(),
                        val_fraction, fidelity.subset)
        self.best_at_check: Optional[float] = None  # best V' accuracy at the stop epoch so far

    def __call__(self, spec: ArchSpec, seed: int, may_stop: bool = True) -> Estimate:
        """``may_stop=False``: train to the end whatever the check says (an architecture this round
        already trained to the end, retrained: stopping it now would only drop a finished estimate)."""
        n_train, check = self.train_idx.numel(), self.fidelity.stop_epoch
        seen: Dict[str, float] = {}

        def on_epoch(epoch: int, score) -> bool:
            seen["epochs"] = epoch  # the epochs trained: fewer than planned when a stop rule ends it
            accuracy = float(score()) if epoch == check or self.fidelity.score == "best" else None
            if accuracy is not None:
                seen["best"] = max(accuracy, seen.get("best", -1.0))
            if epoch != check:
                return False
            seen["check"] = accuracy
            best = self.best_at_check
            seen["stopped"] = may_stop and best is not None and accuracy < best - self.fidelity.stop_margin
            return seen["stopped"]

        from dal_runner.train import TrainingDiverged

        try:
            accuracy = float(self.estimate(spec, self.train_idx, self.v_prime, seed, on_epoch=on_epoch))
        except TrainingDiverged as e:
            log.warning("round %d: candidate %s diverged, out of the running: %s", self.round_index, spec, e)
            return Estimate(0.0, seen.get("epochs"), n_train, False, diverged=True)
        if "check" in seen:
            self.best_at_check = max(seen["check"], -1.0 if self.best_at_check is None else self.best_at_check)
        if self.fidelity.score == "best":  # the last epoch's is among those seen, unless none was
            accuracy = max(accuracy, seen.get("best", accuracy))
        # an estimator that reports no epochs is taken to have trained them all
        epochs = seen.get("epochs", self.fidelity.epochs)
        return Estimate(accuracy, None if epochs is None else int(epochs), n_train, bool(seen.get("stopped", False)))
