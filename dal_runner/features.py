"""Batched pool inference: probabilities and penultimate embeddings, on the data's device."""

from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import torch
from torch import nn


PRECISIONS = ("auto", "bf16", "fp32")


def amp_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """trainer.precision -> the autocast dtype (None: fp32).

    auto: bf16 on a GPU that has it natively (compute capability 8.0 and later: A100, H100, ...),
    fp32 elsewhere (older GPUs only emulate bf16, and on the CPU bf16 is slower than fp32).
    bf16 needs no loss scaling, unlike fp16, which is therefore not offered."""
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return torch.bfloat16 if precision == "bf16" else None
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return None


def autocast(model: nn.Module, device: torch.device, cache: bool = True):
    """The model's forward passes in the precision it was prepared for (`train.prepare`);
    fp32 for a model that was not prepared. cache=False: no cache of the weights' casts, as a
    pass captured in a CUDA graph needs (the casts are then part of what the graph replays)."""
    dtype = getattr(model, "amp_dtype", None)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)


@torch.no_grad()
def infer(model: nn.Module, x: torch.Tensor, batch_size: int, embeddings: bool = False,
          index: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Softmax probabilities (float32, N x C) and optionally penultimate embeddings (N x D) of x,
    or of x[index], gathered batch by batch (no copy of the indexed part of the pool)."""
    model.eval()
    if index is not None:
        index = index.to(x.device)
    n = x.shape[0] if index is None else index.numel()
    # written batch by batch into tensors of their final size: no list of batches and torch.cat,
    # which would hold every result twice (2 x 2 GB of embeddings for a 1,000,000 x 512 pool)
    probs: Optional[torch.Tensor] = None
    embs: Optional[torch.Tensor] = None
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size] if index is None else x[index[start:start + batch_size]]
        with autocast(model, xb.device):
            h = model.embed(xb).float()
        # the head (small) in fp32: bf16 logits would round scores and create ties that decide queries
        p = torch.softmax(model.head(h).float(), dim=1)
        if probs is None:
            probs = torch.empty(n, p.shape[1], device=p.device)
            embs = torch.empty(n, h.shape[1], device=h.device) if embeddings else None
        probs[start:start + len(p)] = p
        if embs is not None:
            embs[start:start + len(h)] = h
    if probs is None:
        return torch.empty(0, device=x.device), None
    return probs, embs
