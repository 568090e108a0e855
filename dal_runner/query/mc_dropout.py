"""MC-dropout (Gal, Islam & Ghahramani 2017): query by the disagreement of T stochastic passes.

Dropout stays on at query time; T forward passes give T probability vectors per point
(``samples``, T x N x C) and an acquisition function scores each point from them.

Where the dropout is: every ``Network`` (and ``ResNet``) applies its only dropout module
directly before the linear classifier, ``head(dropout(embed(x)))``. So the penultimate
features ``embed(x)`` are deterministic (eval mode: batch-norm uses running statistics) and
are computed ONCE per batch; only ``dropout -> head`` is repeated, T times, batched as a
(T, B, D) tensor. This is exact for these networks, and T passes cost about one forward pass
plus T small matrix products. The masks come from an explicit ``torch.Generator``, so a
query is reproducible from the run seed.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from dal_runner.features import autocast
from dal_runner.query import QueryContext, top_k

ACQUISITIONS = ("bald", "max_entropy", "variation_ratio", "predicted_class_variance")


# ---- acquisition functions: samples (T x N x C) -> scores (N), larger = query first --------
# Computed in float64, the mean as sum / T: the mean of T identical passes is then exactly the pass
# itself (T * p is exact in float64 for float32 p, and so is the division), so a deterministic
# network scores exactly 0 on BALD. (Tensor.mean on CUDA multiplies by a rounded 1 / T instead.)

def _mean_over_passes(s: torch.Tensor) -> torch.Tensor:
    return s.sum(dim=0) / s.shape[0]


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)  # 0 log 0 = 0


def max_entropy(samples: torch.Tensor) -> torch.Tensor:
    # H[y | x, D] with p(y | x, D) ~ (1/T) sum_t p_t(y | x)
    return _entropy(_mean_over_passes(samples.double()))


def bald(samples: torch.Tensor) -> torch.Tensor:
    # I[y; w | x, D] = H[(1/T) sum_t p_t] - (1/T) sum_t H[p_t]  (Houlsby et al. 2011),
    # written as the mean KL(p_t || p_mean), which is exactly 0 when all passes agree
    s = samples.double()
    log_s = torch.log(s.clamp_min(1e-12))
    log_mean = torch.log(_mean_over_passes(s).clamp_min(1e-12))
    return (s * (log_s - log_mean)).sum(dim=-1).mean(dim=0).clamp_min(0.0)


def variation_ratio(samples: torch.Tensor) -> torch.Tensor:
    # 1 - f_mode / T, f_mode = how many passes predict the modal class (Freeman 1965)
    n_passes, n, n_classes = samples.shape
    votes = torch.zeros(n, n_classes, dtype=torch.float64, device=samples.device)
    votes.scatter_add_(1, samples.argmax(dim=-1).T, torch.ones(n, n_passes, dtype=torch.float64,
                                                                device=samples.device))
    return 1.0 - votes.max(dim=1).values / n_passes


def predicted_class_variance(samples: torch.Tensor, predicted: Optional[torch.Tensor] = None) -> torch.Tensor:
    # active-iNAS (Geifman & El-Yaniv): the variance over the T passes (population variance, 1/T)
    # of the probability of the predicted class: `predicted` (N), the class of the network's
    # deterministic pass (dropout off), as the authors' code takes it; None: the mean of the passes'
    s = samples.double()
    if predicted is None:
        predicted = _mean_over_passes(s).argmax(dim=1)  # N
    p_hat = s.gather(2, predicted.view(1, -1, 1).expand(s.shape[0], -1, 1)).squeeze(2)  # T x N
    return p_hat.var(dim=0, unbiased=False)


SCORES = {"bald": bald, "max_entropy": max_entropy, "variation_ratio": variation_ratio,
          "predicted_class_variance": predicted_class_variance}


# ---- the T stochastic passes --------------------------------------------------------------

def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator itself if it lives on ``device``; else one on ``device`` seeded from it
    (one draw), so the masks are drawn where the features are and nothing is copied."""
    if torch.device(generator.device).type == device.type:
        return generator
    g = torch.Generator(device=device)
    g.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
    return g


def dropout_passes(head: nn.Module, h: torch.Tensor, p: float, passes: int,
                   generator: torch.Generator, max_elements: int = 2 ** 25) -> torch.Tensor:
    """softmax(head(dropout_t(h))) for t = 1..T on cached features h (B x D) -> T x B x C."""
    if p == 0.0:
        # dropout is the identity: the T passes are one pass, repeated (bitwise equal)
        return torch.softmax(head(h).float(), dim=-1).unsqueeze(0).expand(passes, -1, -1).contiguous()
    out = []
    scaled = h / (1.0 - p)
    step = max(1, max_elements // max(1, h.numel()))  # passes per chunk: bounds the (t, B, D) mask
    for start in range(0, passes, step):
        # inverted dropout, as nn.Dropout in training mode: keep with prob 1 - p, scale 1 / (1 - p);
        # in place on the uniform draws (U >= p is a keep), the costliest tensor here
        masked = torch.rand((min(step, passes - start), *h.shape), generator=generator, device=h.device)
        masked.ge_(p).mul_(scaled)
        out.append(torch.softmax(head(masked).float(), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def mc_probs(model: nn.Module, x: torch.Tensor, passes: int, batch_size: int,
             generator: torch.Generator, deterministic: bool = False):
    """T stochastic probability samples (float32, T x N x C) of the model on x; with
    `deterministic`, also the classes of its deterministic pass (dropout off, N).

    embed(x) once per batch in eval mode, then T x (dropout at the model's MC-dropout rate -> head)."""
    model.eval()
    p = float(getattr(model, "mc_dropout", model.dropout.p))  # a Network's arch.mc_dropout, else its own rate
    g = _device_generator(generator, x.device)
    out, classes = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        with autocast(model, xb.device):
            h = model.embed(xb)
        out.append(dropout_passes(model.head, h.float(), p, passes, g))
        if deterministic:
            classes.append(model.head(h.float()).argmax(dim=1))
    samples = torch.cat(out, dim=1) if out else torch.empty(passes, 0, model.head.out_features, device=x.device)
    if not deterministic:
        return samples
    return samples, torch.cat(classes) if classes else torch.empty(0, dtype=torch.long, device=x.device)


@torch.no_grad()
def mc_scores(model: nn.Module, x: torch.Tensor, passes: int, acquisition: str, batch_size: int,
              generator: torch.Generator, index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Acquisition scores (float64, N) of x (or of x[index]), batch by batch, so only T x B x C
    samples are held and no copy of the indexed part of x is made."""
    score = SCORES[acquisition]
    g = _device_generator(generator, x.device)
    n = x.shape[0] if index is None else len(index)
    index = None if index is None else index.to(x.device)
    def batch_scores(xb: torch.Tensor) -> torch.Tensor:
        if acquisition == "predicted_class_variance":  # the class of the deterministic pass
            return predicted_class_variance(*mc_probs(model, xb, passes, batch_size, g, deterministic=True))
        return score(mc_probs(model, xb, passes, batch_size, g))

    scores = [batch_scores(x[s:s + batch_size] if index is None else x[index[s:s + batch_size]])
              for s in range(0, n, batch_size)]
    return torch.cat(scores) if scores else torch.empty(0, dtype=torch.float64)


class MCDropout:
    def __init__(self, passes: int = 100, acquisition: str = "predicted_class_variance", batch_size: int = 1024):
        if acquisition not in SCORES:
            raise ValueError(f"query.acquisition={acquisition!r}: expected one of {', '.join(ACQUISITIONS)}")
        if passes < 1:
            raise ValueError(f"query.passes={passes}: expected a positive number of passes")
        self.passes, self.acquisition, self.batch_size = passes, acquisition, batch_size

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        return top_k(mc_scores(ctx.model, ctx.x, self.passes, self.acquisition, self.batch_size, ctx.generator,
                               index=ctx.unlabeled), k, ties=ctx.generator)
