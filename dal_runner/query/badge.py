"""BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings.

Algorithm 1, line 4: with the hypothetical label y_hat = argmax_i p_i, the gradient of the
cross-entropy with respect to the last layer's weights is, block i,
    (g_x)_i = (p_i - 1[y_hat = i]) h(x),     i.e.  g_x = a(x) (outer) h(x),  a = p - onehot(y_hat),
where h(x) is the penultimate embedding. g_x has C * D entries (5,120 for 10 classes and 512
features); we never build it. Its inner products factorise,
    g_i . g_j = (a_i . a_j)(h_i . h_j),   so
    |g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i . a_j)(h_i . h_j),
and a new centre updates every point's D^2 in O(N (C + D)) with N-sized temporaries only.

Algorithm 1, line 5 / Algorithm 2: k-means++ seeding. The first centre is uniform at random
(the paper, ``first="uniform"``) or the largest gradient norm (the authors' code,
``first="largest_norm"``); each next centre is drawn with probability D(x)^2 / sum D(x)^2.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from dal_runner.query import QueryContext

Array = Union[np.ndarray, torch.Tensor]
FIRST = ("uniform", "largest_norm")


def gradient_factors(probs: torch.Tensor) -> torch.Tensor:
    """a = p - onehot(argmax p), N x C: g_x = a (outer) h(x)."""
    a = probs.clone()
    a[torch.arange(a.shape[0], device=a.device), probs.argmax(dim=1)] -= 1.0
    return a


def explicit_gradient_embedding(probs: Array, embeddings: Array) -> torch.Tensor:
    """The N x (C * D) matrix of g_x, block i = (p_i - 1[y_hat = i]) h(x). Tests and benchmarks only."""
    p, h = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(embeddings, dtype=torch.float32)
    a = gradient_factors(p)
    return (a.unsqueeze(2) * h.unsqueeze(1)).reshape(a.shape[0], -1)


def sq_distances_to(a: torch.Tensor, h: torch.Tensor, sq: torch.Tensor, j: Union[int, torch.Tensor]) -> torch.Tensor:
    """|g_i - g_j|^2 for every i from the factors alone (N), exactly 0 for a duplicate of the centre.

    j: a position, or a 1-element LongTensor on the factors' device. The factorised form cancels
    for points close to the centre: in float32 its rounding is at most about 2 (C + D) eps
    (|g_i|^2 + |g_j|^2), so a point nearer than about sqrt(4 (C + D) eps) of their norms (1.6% at
    C = 10, D = 512) cannot be told from a duplicate. Those few points (the centre itself, its
    duplicates, its near-duplicates) are computed again in float64, where the same bound is about
    2e-6 of the norms: a duplicate gets D^2 = 0 exactly and is never sampled, a near-duplicate
    keeps its own small D^2, as k-means++ has it. Finding them costs one host synchronisation per
    centre on a GPU; the N x D work stays in float32."""
    j = torch.as_tensor(j, device=a.device).view(1)
    a_j, h_j, sq_j = a.index_select(0, j)[0], h.index_select(0, j)[0], sq.index_select(0, j)
    d2, unresolved = _factorised(a, h, sq, a_j, h_j, sq_j)
    close = unresolved.nonzero().view(-1)  # the centre itself at least
    a_c, h_c = a.index_select(0, close).double(), h.index_select(0, close).double()
    a_j, h_j = a_j.double(), h_j.double()
    sq_c, sq_j = (a_c * a_c).sum(dim=1) * (h_c * h_c).sum(dim=1), (a_j @ a_j) * (h_j @ h_j)
    d2[close] = _factorised(a_c, h_c, sq_c, a_j, h_j, sq_j)[0].to(d2.dtype)
    return d2


def _factorised(a, h, sq, a_j, h_j, sq_j):
    """(|g_i - g_j|^2 in the factors' precision, 0 where it is below that precision's rounding
    bound; where it is, a boolean mask)."""
    d2 = sq + sq_j - 2.0 * (a @ a_j) * (h @ h_j)
    floor = 2.0 * (a.shape[1] + h.shape[1]) * torch.finfo(d2.dtype).eps * (sq + sq_j)
    below = ~(d2 > floor)  # NaN too, as before
    return torch.where(below, torch.zeros_like(d2), d2), below


def _draw(min_d2: torch.Tensor, not_chosen: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One position (a 1-element LongTensor) drawn with probability D^2 / sum D^2, by inverting the
    cumulative weights at u * total for u in (0, 1]; uniformly among the points not yet chosen
    when every D^2 is 0. Runs where the weights are, with no host synchronisation."""
    cdf = torch.cumsum(min_d2, 0, dtype=torch.float64)
    weights = torch.where(cdf[-1] > 0, min_d2.double(), not_chosen)
    cdf = torch.where(cdf[-1] > 0, cdf, torch.cumsum(not_chosen, 0))
    # the first position whose cumulative weight reaches u * total > 0 has a positive weight
    c = torch.searchsorted(cdf, (u * cdf[-1]).view(1)).clamp_(max=cdf.shape[0] - 1)
    # a guarantee, not a likely case: a parallel prefix sum may round a zero weight's step to non-zero
    return torch.where(weights.index_select(0, c) > 0, c, weights.argmax().view(1))


def kmeans_pp(probs: Array, embeddings: Array, k: int, generator: torch.Generator,
              first: str = "uniform") -> Array:
    """k distinct positions chosen by k-means++ seeding on the implicit gradient embeddings.

    probs: N x C softmax outputs; embeddings: N x D penultimate features (same device).
    generator: a CPU generator; its k - 1 uniform draws are made up front, so a GPU selection
    uses the same random stream and never waits on the host. Returns a CPU LongTensor (numpy
    int64 if probs was numpy)."""
    if first not in FIRST:
        raise ValueError(f"query.first={first!r}: expected one of {', '.join(FIRST)}")
    as_numpy = isinstance(probs, np.ndarray)
    p = torch.as_tensor(probs).float()
    h = torch.as_tensor(embeddings).to(device=p.device, dtype=torch.float32)
    n, dev = p.shape[0], p.device
    if not 0 <= k <= n:
        raise ValueError(f"kmeans_pp: k={k} but the pool has {n} points")
    picks = torch.empty(k, dtype=torch.long, device=dev)
    if k > 0:
        a = gradient_factors(p)
        # |g_x|^2 = |a|^2 |h|^2 (norm reductions: no N x D temporary)
        sq = torch.linalg.vector_norm(a, dim=1).square_() * torch.linalg.vector_norm(h, dim=1).square_()
        # Algorithm 2, line 1: c_1 uniform at random from G, or (authors' code) argmax |g_x|
        if first == "uniform":
            c = torch.randint(0, n, (1,), generator=generator).to(dev)
        else:
            c = torch.argmax(sq).view(1)
        draws = (1.0 - torch.rand(k - 1, generator=generator, dtype=torch.float64)).to(dev)  # in (0, 1]
        not_chosen = torch.ones(n, dtype=torch.float64, device=dev)
        min_d2 = None
        for t in range(k):
            if t > 0:
                # line 4: c_t ~ D_t(x)^2 / sum_x D_t(x)^2
                c = _draw(min_d2, not_chosen, draws[t - 1])
            picks[t:t + 1] = c
            not_chosen.index_fill_(0, c, 0.0)
            # line 5: C_t = C_{t-1} u {c_t}; D_{t+1}(x)^2 = min(D_t(x)^2, |g_x - g_c|^2)
            d2 = sq_distances_to(a, h, sq, c)
            min_d2 = d2 if min_d2 is None else torch.minimum(min_d2, d2, out=min_d2)
            min_d2.index_fill_(0, c, 0.0)
    out = picks.cpu()
    return out.numpy() if as_numpy else out


class Badge:
    def __init__(self, first: str = "uniform"):
        if first not in FIRST:
            raise ValueError(f"query.first={first!r}: expected one of {', '.join(FIRST)}")
        self.first = first

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        return kmeans_pp(ctx.probs(), ctx.embeddings(), k, ctx.generator, self.first)
