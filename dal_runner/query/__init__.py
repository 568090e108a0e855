"""Query strategies: pure score/selection functions over arrays, plus a thin class per strategy.

A strategy's ``select(ctx, k)`` returns k positions into ``ctx.unlabeled`` (most informative
first); the loop maps them to pool indices. ``QueryContext`` computes the model outputs a
strategy asks for once, batched, on the data's device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
from torch import nn

from dal_runner.features import infer
from dal_runner.seeding import torch_generator


@dataclass
class QueryContext:
    model: nn.Module
    x: torch.Tensor  # the whole pool, on the device
    labeled: torch.Tensor  # pool indices of S (LongTensor)
    unlabeled: torch.Tensor  # pool indices of U (LongTensor)
    generator: torch.Generator  # CPU generator derived from the run seed, round and "query"
    batch_size: int = 1024
    y: Optional[torch.Tensor] = None  # pool labels; strategies may read only the labeled entries (ALBL)
    _cache: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    infer_seconds: float = 0.0  # time spent in pool inference (the rest of a query is selection)

    def _infer(self, which: str) -> None:
        started = time.perf_counter()
        idx = self.unlabeled if which == "unlabeled" else self.labeled
        probs, emb = infer(self.model, self.x, self.batch_size, embeddings=True, index=idx)
        if probs.device.type == "cuda":
            torch.cuda.synchronize(probs.device)
        self._cache[f"{which}_probs"], self._cache[f"{which}_emb"] = probs, emb
        self.infer_seconds += time.perf_counter() - started

    def _check(self, which: str) -> None:
        if which not in ("unlabeled", "labeled"):  # a misspelling must not give the other set's outputs
            raise ValueError(f"which={which!r}: accepted: 'unlabeled' (U, the default) or 'labeled' (S)")

    def probs(self, which: str = "unlabeled") -> torch.Tensor:
        self._check(which)
        if f"{which}_probs" not in self._cache:
            self._infer(which)
        return self._cache[f"{which}_probs"]

    def embeddings(self, which: str = "unlabeled") -> torch.Tensor:
        self._check(which)
        if f"{which}_emb" not in self._cache:
            self._infer(which)
        return self._cache[f"{which}_emb"]


def top_k(scores: torch.Tensor, k: int, ties: Optional[torch.Generator] = None) -> torch.Tensor:
    """Positions of the k largest scores, largest first.

    Points that tie exactly with the k-th score, more of them than places left, share those
    places at random when ``ties`` is given: drawn from a generator seeded from ``ties``'s seed
    (``ties`` itself is not advanced), so a query stays reproducible. Without it, or among the
    scores above the cut, ties go to the lower position. Exact ties are common where a score
    takes few values (variation_ratio: multiples of 1/T; a saturated model's probabilities),
    and a pool in its file's order (e.g. sorted by class) would otherwise decide them.
    """
    scores = scores.cpu()
    if scores.dtype not in (torch.float32, torch.float64):  # half precision sorts in float32; float64 stays exact
        scores = scores.float()
    order = torch.argsort(scores, descending=True, stable=True)
    if ties is None or not 0 < k < len(scores) or scores[order[k]] != scores[order[k - 1]]:
        return order[:k]
    cut = scores[order[k - 1]]
    above = int((scores[order] == cut).nonzero()[0])  # the places before the tie (NaN, sorted first, too)
    tied = (scores == cut).nonzero().squeeze(1)
    draw = torch.randperm(len(tied), generator=torch_generator(ties.initial_seed(), "ties"))
    return torch.cat([order[:above], tied[draw[: k - above]]])


class ScoreStrategy:
    """A strategy that ranks the unlabeled points by a score of their softmax outputs."""

    score_fn = None  # set by subclasses: probs (N x C) -> scores (N), larger = query first

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        return top_k(type(self).score_fn(ctx.probs()), k, ties=ctx.generator)
