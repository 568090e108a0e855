"""Trainer: the Ranganathan joint objective and the divergence check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dal_runner import train
from dal_runner.config import TrainerConfig


class Uniform(nn.Module):
    """Logits all zero: every prediction is uniform over C classes, entropy log C."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.n_classes = n_classes

    def forward(self, x):
        return self.w * torch.zeros(x.shape[0], self.n_classes)


def test_joint_entropy_term_is_lambda_times_mean_unlabeled_entropy():
    x = torch.randn(50, 4)
    loss = train.entropy_regulariser(x, torch.arange(10, 50), lam=0.3, batch_size=16)
    value = loss(Uniform(5), 0, torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(0.3 * math.log(5), rel=1e-6)


def test_joint_objective_lowers_entropy_on_unlabeled_points():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g)
    y = (x[:, 0] > 0).long()
    labeled, unlabeled = torch.arange(20), torch.arange(20, 400)

    def mean_entropy(lam):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
        reg = train.entropy_regulariser(x, unlabeled, lam, 64)
        train.fit(model, x[labeled], y[labeled], TrainerConfig(epochs=60, batch_size=20, lr=0.01), 1, extra_loss=reg)
        with torch.no_grad():
            p = torch.softmax(model(x[unlabeled]), 1)
        return -(p * p.clamp_min(1e-12).log()).sum(1).mean().item()

    assert mean_entropy(1.0) < 0.8 * mean_entropy(0.0)


def test_diverging_loss_is_reported_with_its_epoch():
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    model = nn.Linear(3, 2)
    with pytest.raises(train.TrainingDiverged, match="epoch 1"):
        train.fit(model, x * float("nan"), y, TrainerConfig(epochs=2, batch_size=8), 0)
