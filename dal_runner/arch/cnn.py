"""A small convolutional net: [3x3 conv, BN, ReLU] per width, 2x2 max-pool between them."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from dal_runner.arch import GlobalAvgPool, InputShape


def body(input_shape: InputShape, channels: Sequence[int]) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError("arch=cnn needs image data (C x H x W)")
    layers, c_in = [], input_shape[0]
    for k, c_out in enumerate(channels):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        if k < len(channels) - 1:
            layers.append(nn.MaxPool2d(2))
        c_in = c_out
    layers.append(GlobalAvgPool())
    return nn.Sequential(*layers)
