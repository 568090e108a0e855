"""Homogeneous residual networks A(B, N_blocks, N_stacks) of active-iNAS (Geifman & El-Yaniv 2019).

"Architectures composed of a single block type and with each stack containing the same number of
blocks" (seed 000, lines 97-99): a stem, then ``n_stacks`` stacks of ``n_blocks`` blocks of type B;
stack k (0-based) has width 64 * 2^k and every stack after the first halves the resolution; global
average pooling; a linear head. ResNet-18 (CIFAR variant) is A(basic, 2, 4) (seed 000, line 133).

The blocks are torchvision's ``BasicBlock`` and ``Bottleneck`` (expansion 4, stride on the 3x3 conv).
"""

from __future__ import annotations

from typing import Mapping, Tuple, Union

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from dal_runner.arch import GlobalAvgPool, InputShape

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
STEMS = ("cifar", "paper")
WIDTH = 64  # the paper's first-stack width; `width` scales the whole net (stack k: width * 2^k)


def _check(block: str, n_blocks: int, n_stacks: int, stem: str) -> None:
    if block not in BLOCKS:
        raise ValueError(f"arch.block={block!r} is not a block type; accepted: {sorted(BLOCKS)}")
    if stem not in STEMS:
        raise ValueError(f"arch.stem={stem!r} is not a stem; accepted: {list(STEMS)}")
    for key, value in (("n_blocks", n_blocks), ("n_stacks", n_stacks)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"arch.{key}={value!r} must be an integer >= 1")


def embed_dim(block: str, n_stacks: int, width: int = WIDTH) -> int:
    """Width of the last stack's output: width * 2^(n_stacks - 1), times 4 for bottleneck blocks."""
    return width * 2 ** (n_stacks - 1) * BLOCKS[block].expansion


def _stem(in_channels: int, stem: str, width: int) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
              nn.ReLU(inplace=True)]
    if stem == "paper":  # the authors' code adds a 3x3 max-pool of stride 2 after the first conv
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
    return nn.Sequential(*layers)


def _stack(block_type, inplanes: int, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
    out = planes * block_type.expansion
    # a 1x1 conv + BN projection on the shortcut wherever the shape changes (torchvision's rule)
    projection = None
    if stride != 1 or inplanes != out:
        projection = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    blocks = [block_type(inplanes, planes, stride, projection)]
    blocks += [block_type(out, planes) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


def residual_body(in_channels: int, block: str, n_blocks: int, n_stacks: int, stem: str = "cifar",
                  width: int = WIDTH) -> nn.Sequential:
    """(N, in_channels, H, W) -> (N, embed_dim(block, n_stacks)): stem, stacks, global average pool."""
    _check(block, n_blocks, n_stacks, stem)
    block_type = BLOCKS[block]
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"arch.width={width!r} must be an integer >= 1")
    layers, inplanes = [_stem(in_channels, stem, width)], width
    for k in range(n_stacks):
        planes = width * 2 ** k
        layers.append(_stack(block_type, inplanes, planes, n_blocks, stride=1 if k == 0 else 2))
        inplanes = planes * block_type.expansion
    layers.append(GlobalAvgPool())
    body = nn.Sequential(*layers)
    for m in body.modules():  # torchvision's ResNet initialisation of the convolutions
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return body


def body(input_shape: InputShape, block: str, n_blocks: int, n_stacks: int, stem: str = "cifar",
         width: int = WIDTH) -> nn.Module:
    """The registry entry for ``build_network`` (Network adds Normalize in front and the head after)."""
    if len(input_shape) != 3:
        raise ValueError(f"arch=resnet needs image data (C x H x W); got input shape {tuple(input_shape)}")
    return residual_body(input_shape[0], block, n_blocks, n_stacks, stem, width)


class ResNet(nn.Module):
    """A(block, n_blocks, n_stacks) as a standalone classifier: body -> dropout -> linear ``head``."""

    def __init__(self, block: str, n_blocks: int, n_stacks: int, in_channels: int, n_classes: int,
                 stem: str = "cifar", dropout: float = 0.0, width: int = WIDTH):
        super().__init__()
        self.body = residual_body(in_channels, block, n_blocks, n_stacks, stem, width)
        self.embed_dim = embed_dim(block, n_stacks, width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.embed_dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


def n_params(block: str, n_blocks: int, n_stacks: int, in_channels: int, n_classes: int,
             stem: str = "cifar", width: int = WIDTH) -> int:
    """Parameter count of ResNet(...), built on the meta device so nothing is allocated."""
    with torch.device("meta"):
        model = ResNet(block, n_blocks, n_stacks, in_channels, n_classes, stem, width=width)
    return sum(p.numel() for p in model.parameters())


def max_stacks(image_size: Union[int, Tuple[int, int]], stem: str = "cifar") -> int:
    """The number of stacks an input resolution supports.

    Rule: the first stack runs at the stem's output size; every later stack halves the feature
    map (3x3 conv, stride 2, padding 1: s -> ceil(s / 2)) and is kept only while the map entering
    it is at least 2 pixels, i.e. while it still has a resolution to halve. The paper stem's
    max-pool halves once more before the first stack. For a non-square input the smaller side
    counts. Equivalently ``1 + ceil(log2(s0))`` with s0 the stem's output size.

    Examples: 8 px, cifar stem: 8 | 8->4 | 4->2 | 2->1 -> 4 stacks; 28 px: 6; 32 px: 6;
    32 px with the paper stem (16 after the pool): 5, the paper's A(B_r, 12, 5) space.
    """
    if stem not in STEMS:
        raise ValueError(f"arch.stem={stem!r} is not a stem; accepted: {list(STEMS)}")
    size = min(image_size) if isinstance(image_size, (tuple, list)) else int(image_size)
    if size < 1:
        raise ValueError(f"image size {image_size!r} must be at least 1 pixel")
    if stem == "paper":
        size = (size + 1) // 2  # 3x3 max-pool, stride 2, padding 1
    stacks = 1
    while size >= 2:
        size = (size + 1) // 2
        stacks += 1
    return stacks


def _is_bottleneck(state: Mapping[str, torch.Tensor]) -> bool:
    return any(name.endswith("conv3.weight") for name in state)


@torch.no_grad()
def inherit(dst: nn.Module, src: Union[nn.Module, Mapping[str, torch.Tensor]]) -> int:
    """Start `dst` from the trained `src` (a network or its state dict; network morphism, as far
    as it goes for A(B, i, j)).

    Every parameter and buffer found in both at the same place with the same shape is copied:
    the stem, the blocks `src` had in each stack, the head when the embedding width matches.
    A block `src` did not have starts with its last batch-norm scale at 0, so its residual
    branch adds nothing at first: a block added to a stack leaves the function unchanged. The
    blocks of a new stack (new resolution and width) start so too, so the new stack is at first
    its first block's projection shortcut (random, as is a head of a new width). Between
    nets of different block types only the stem would fit, and their blocks' tensors only share
    names: nothing is copied, the net starts from scratch.
    Returns the number of tensors copied.
    """
    theirs = src.state_dict() if isinstance(src, nn.Module) else src
    mine = dst.state_dict()
    if _is_bottleneck(theirs) != _is_bottleneck(mine):
        return 0
    copied = 0
    for name, tensor in mine.items():
        other = theirs.get(name)
        if other is not None and other.shape == tensor.shape:
            tensor.copy_(other)
            copied += 1
    for name, module in dst.named_modules():
        if isinstance(module, (BasicBlock, Bottleneck)) and f"{name}.conv1.weight" not in theirs:
            nn.init.zeros_((module.bn3 if isinstance(module, Bottleneck) else module.bn2).weight)
    return copied
