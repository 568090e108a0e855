"""BADGE's MLP: flatten the input, one hidden ReLU layer, then the linear classifier."""

from __future__ import annotations

import math

from torch import nn

from dal_runner.arch import InputShape


def body(input_shape: InputShape, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(inplace=True))
