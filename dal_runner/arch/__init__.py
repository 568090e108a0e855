"""Networks: normalisation -> body (architecture-specific) -> embedding -> dropout -> linear head.

Every network exposes ``embed(x)`` (the penultimate features used by core-set and BADGE) and
``head`` (the linear classifier), so query strategies never depend on the architecture.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from dal_runner.data import Normalize


class Network(nn.Module):
    """`dropout`: the rate in training; `mc_dropout`: the rate MC-dropout's passes sample the same
    layer with at query time (None: `dropout`)."""

    def __init__(self, normalize: Normalize, body: nn.Module, embed_dim: int, n_classes: int, dropout: float,
                 mc_dropout: Optional[float] = None):
        super().__init__()
        self.normalize = normalize
        self.body = body
        self.embed_dim = embed_dim
        self.dropout = nn.Dropout(dropout)
        self.mc_dropout = dropout if mc_dropout is None else mc_dropout
        self.head = nn.Linear(embed_dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


class GlobalAvgPool(nn.Module):
    """N x C x H x W -> N x C. A mean over H and W rather than AdaptiveAvgPool2d(1), whose CUDA
    backward has no deterministic kernel (trainer.deterministic would only warn)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(name: str, **params) -> str:
    """A short, stable name for rounds.csv, e.g. 'mlp(hidden=256)'."""
    inner = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{name}({inner})"


InputShape = Tuple[int, ...]


class ArchSpec:
    """An architecture as data: a registered body name and its parameters (hashable, ordered)."""

    def __init__(self, name: str, **params):
        self.name = name
        self.params = dict(params)

    def __eq__(self, other) -> bool:
        return isinstance(other, ArchSpec) and (self.name, self.params) == (other.name, other.params)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        if self.name == "resnet":  # the paper's notation A(B, n_blocks, n_stacks)
            return f"A({self.params['block']},{self.params['n_blocks']},{self.params['n_stacks']})"
        return describe(self.name, **self.params)


def build_network(spec: ArchSpec, input_shape: InputShape, n_classes: int, normalize: Normalize,
                  dropout: float, mc_dropout: Optional[float] = None) -> Network:
    from dal_runner.arch import cnn, mlp, resnet  # the registry of bodies

    bodies = {"mlp": mlp.body, "cnn": cnn.body, "resnet": resnet.body}
    body = bodies[spec.name](input_shape, **spec.params)
    was_training = body.training
    with torch.no_grad():  # one eval-mode pass finds the embedding width (BN needs eval for N=1)
        embed_dim = body.eval()(torch.zeros(1, *input_shape)).shape[1]
    body.train(was_training)
    return Network(normalize, body, embed_dim, n_classes, dropout, mc_dropout)
