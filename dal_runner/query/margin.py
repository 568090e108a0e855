"""Margin sampling: query where the two most probable classes are closest."""

from __future__ import annotations

import torch

from dal_runner.query import ScoreStrategy


def negative_margin(probs: torch.Tensor) -> torch.Tensor:
    top2 = probs.topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1])  # smallest margin scores highest


class Margin(ScoreStrategy):
    score_fn = staticmethod(negative_margin)
