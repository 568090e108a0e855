"""Batched pool inference: probabilities and penultimate embeddings, on the data's device."""

from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import torch
from torch import nn


def autocast(device: torch.device):
    """bf16 autocast on CUDA; fp32 on the CPU (bf16 is slower there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def infer(model: nn.Module, x: torch.Tensor, batch_size: int, embeddings: bool = False
          ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Softmax probabilities (float32, N x C) and optionally penultimate embeddings (N x D)."""
    model.eval()
    probs, embs = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        with autocast(xb.device):
            h = model.embed(xb)
            logits = model.head(h)
        probs.append(torch.softmax(logits.float(), dim=1))
        if embeddings:
            embs.append(h.float())
    p = torch.cat(probs) if probs else torch.empty(0, device=x.device)
    return p, (torch.cat(embs) if embeddings and embs else None)
