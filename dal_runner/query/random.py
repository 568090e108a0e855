"""Random sampling: k unlabeled points uniformly without replacement (the passive baseline)."""

from __future__ import annotations

import torch

from dal_runner.query import QueryContext


def random_sample(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[:k]


class RandomQuery:
    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        return random_sample(len(ctx.unlabeled), k, ctx.generator)
