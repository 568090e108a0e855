"""Softmax response (least confidence): query where the top class probability is lowest."""

from __future__ import annotations

import torch

from dal_runner.query import ScoreStrategy


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    # score = 1 - max_c p_c; the most uncertain point scores highest
    return 1.0 - probs.max(dim=1).values


class SoftmaxResponse(ScoreStrategy):
    score_fn = staticmethod(least_confidence)
