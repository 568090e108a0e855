"""Entropy sampling: query where the predictive distribution has the largest entropy."""

from __future__ import annotations

import torch

from dal_runner.query import ScoreStrategy


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    # H(p) = -sum_c p_c log p_c, with 0 log 0 = 0
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


class Entropy(ScoreStrategy):
    score_fn = staticmethod(predictive_entropy)
