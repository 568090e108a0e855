"""Core-set (Sener & Savarese 2018): greedy k-center on penultimate embeddings.

Centres start as the labeled set; k times, the unlabeled point farthest from its nearest centre
becomes a centre (the 2-approximation of the k-center problem, their Algorithm 1).

Memory: the only N-sized state is the distance of every pool point to its nearest centre. The
initial distances to the labeled set are computed block by block (pool chunk x labeled chunk),
so a 1,000,000 x 512 pool against any labeled set needs the pool itself (2 GB in float32) plus
a few chunk x chunk blocks. Each greedy step is one matrix-vector product with the pool.
Squared Euclidean distances are used throughout (same argmax, no square roots).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from dal_runner.query import QueryContext

Array = Union[np.ndarray, torch.Tensor]


def _as_float32(a: Optional[Array], device: Optional[torch.device] = None) -> Optional[torch.Tensor]:
    if a is None:
        return None
    t = torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a
    return t.to(device=device if device is not None else t.device, dtype=torch.float32)


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    # a batched dot product: no N x D temporary (x * x would double the pool's memory), and no
    # square root squared again, which rounds: exactly representable data (integer features)
    # keeps exact distances, so equal distances tie and the first index wins, as documented
    return torch.einsum("nd,nd->n", x, x)


def min_sq_distances(pool: torch.Tensor, centres: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """min_j |pool_i - centres_j|^2 for every pool point, in chunk x chunk blocks (float32, N)."""
    out = torch.full((pool.shape[0],), float("inf"), device=pool.device)
    centre_sq = _sq_norms(centres)
    for a in range(0, pool.shape[0], chunk_size):
        p = pool[a:a + chunk_size]
        p_sq = _sq_norms(p).unsqueeze(1)
        best = out[a:a + chunk_size]
        for b in range(0, centres.shape[0], chunk_size):
            c = centres[b:b + chunk_size]
            # |p - c|^2 = |p|^2 + |c|^2 - 2 p.c, one chunk x chunk block at a time
            d2 = torch.addmm(p_sq + centre_sq[b:b + chunk_size], p, c.T, beta=1.0, alpha=-2.0)
            torch.minimum(best, d2.min(dim=1).values, out=best)
    return out.clamp_min_(0.0)  # rounding can make |p - c|^2 slightly negative


def k_center_greedy(pool_emb: Array, labeled_emb: Optional[Array], k: int, chunk_size: int = 4096,
                    block: Optional[int] = None) -> Array:
    """k positions into pool_emb, chosen greedily to minimise the largest distance to a centre.

    Runs on the device of pool_emb, in float32. Returns numpy int64 if pool_emb is numpy, else
    a LongTensor on the pool's device. With an empty (or None) labeled set the first centre is
    the pool point farthest from the pool mean (the first such point on ties): deterministic,
    and it is the point that an empty centre set at the mean would pick.

    Picks are exactly those of the plain greedy (argmax of the distance to the nearest centre,
    the first index on ties; where two distances differ by no more than float32 rounding, as
    duplicates of a centre do, the products of the two paths may round them in another order),
    but the pool is not read once per pick: new centres wait in a
    block of up to ``block`` and update every distance with one matrix product per block. Until
    then the stored distances are upper bounds; each pick refreshes only the largest bounds
    against the waiting centres, widening the set until its best exact value beats every bound
    outside it (see `_pick`). Reading the pool k / block times instead of k times is what makes
    this several times faster than a full distance matrix on the CPU.

    block=0 is the plain greedy: one pass over the pool per pick, entirely on the device with no
    host synchronisation, which suits a GPU (memory bandwidth is plenty, a round trip to the host
    per pick is not). block=None: 0 on CUDA, 128 elsewhere.
    """
    as_numpy = isinstance(pool_emb, np.ndarray)
    pool = _as_float32(pool_emb)
    labeled = _as_float32(labeled_emb, pool.device)
    n = pool.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k_center_greedy: k={k} but the pool has {n} points")
    picks = torch.empty(k, dtype=torch.long, device=pool.device)
    if k == 0:
        return picks.cpu().numpy() if as_numpy else picks

    if block is None:
        block = 0 if pool.device.type == "cuda" else 128
    if block < 0:
        raise ValueError(f"query.block={block}: expected 0 (plain greedy) or a positive block size")
    pool_sq = _sq_norms(pool)
    start = 0
    if labeled is not None and labeled.shape[0] > 0:
        # line 1: s = the labeled set; delta(x) = min_{s in S} |x - s|
        bound = min_sq_distances(pool, labeled, chunk_size)
    else:
        # no labeled set: the first centre is the point farthest from the pool mean; distances are to it alone
        u = int(torch.argmax(min_sq_distances(pool, pool.mean(dim=0, keepdim=True), chunk_size)))
        picks[0] = u
        bound = (pool_sq + pool_sq[u] - 2.0 * torch.mv(pool, pool[u])).clamp_min_(0.0)
        bound[u] = -1.0  # a centre is never picked again, even where duplicates leave every distance at 0
        start = 1
    if block == 0:
        _plain_greedy(pool, pool_sq, bound, picks, start)
        return picks.cpu().numpy() if as_numpy else picks
    waiting: list = []
    for t in range(start, k):
        # line 3: u = argmax_{i in U} min_{j in s} delta(x_i, x_j)
        u = _pick(pool, pool_sq, bound, waiting)
        picks[t] = u
        bound[u] = -1.0
        # line 4: s = s u {u}; the distances to u are applied with the rest of its block
        waiting.append(u)
        if len(waiting) == block:
            _apply(pool, pool_sq, bound, waiting, chunk_size)
            waiting = []
    return picks.cpu().numpy() if as_numpy else picks


def _plain_greedy(pool: torch.Tensor, pool_sq: torch.Tensor, dist: torch.Tensor, picks: torch.Tensor,
                  start: int) -> None:
    """picks[start:] by the textbook greedy, every centre applied at once; no host synchronisation."""
    for t in range(start, picks.numel()):
        # line 3: u = argmax_{i in U} min_{j in s} delta(x_i, x_j) (argmax: the first index on ties)
        u = torch.argmax(dist).view(1)
        picks[t:t + 1] = u
        # line 4: s = s u {u}
        d2 = torch.addmv(pool_sq + pool_sq.index_select(0, u), pool, pool.index_select(0, u)[0], alpha=-2.0)
        torch.minimum(dist, d2.clamp_min_(0.0), out=dist)
        dist.index_fill_(0, u, -1.0)  # a centre is never picked again


def _to_waiting(pool: torch.Tensor, pool_sq: torch.Tensor, idx: torch.Tensor, waiting: list) -> torch.Tensor:
    """Squared distances of pool[idx] to their nearest waiting centre (len(idx); inf if none wait)."""
    if not waiting:
        return torch.full((idx.numel(),), float("inf"), device=pool.device)
    w = torch.tensor(waiting, device=pool.device)
    d2 = torch.addmm(pool_sq[idx].unsqueeze(1) + pool_sq[w], pool[idx], pool[w].T, beta=1.0, alpha=-2.0)
    return d2.min(dim=1).values.clamp_min_(0.0)


def _pick(pool: torch.Tensor, pool_sq: torch.Tensor, bound: torch.Tensor, waiting: list) -> int:
    """argmax of the exact distances min(bound, distance to the waiting centres), first index on ties.

    Exact values never exceed their bounds, so once the best exact value among the m largest
    bounds is above the largest bound left out, nothing outside can reach it (nor tie with it).
    """
    n, m = bound.numel(), 16
    while True:
        m = min(m, n)
        top, idx = torch.topk(bound, m)
        exact = torch.minimum(top, _to_waiting(pool, pool_sq, idx, waiting))
        exact[top < 0] = -1.0  # chosen centres stay out
        bound[idx] = exact  # still upper bounds for later picks, now tight for these points
        best = exact.max()
        if m == n or bool(best > top[-1]):
            return int(idx[exact == best].min())
        m *= 4


def _apply(pool: torch.Tensor, pool_sq: torch.Tensor, bound: torch.Tensor, waiting: list, chunk_size: int) -> None:
    """bound <- min(bound, distance to the nearest waiting centre), one block product per pool chunk."""
    centres = torch.tensor(waiting, device=pool.device)
    c, c_sq = pool[centres], pool_sq[centres]
    for a in range(0, pool.shape[0], chunk_size):
        d2 = torch.addmm(pool_sq[a:a + chunk_size].unsqueeze(1) + c_sq, pool[a:a + chunk_size], c.T,
                         beta=1.0, alpha=-2.0)
        best = bound[a:a + chunk_size]
        torch.minimum(best, d2.min(dim=1).values.clamp_min_(0.0), out=best)
    bound[centres] = -1.0


class Coreset:
    def __init__(self, chunk_size: int = 4096, block: Optional[int] = None):
        self.chunk_size, self.block = chunk_size, block

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        # ctx.embeddings("labeled") is None when S is empty: greedy then starts from the pool alone
        labeled = ctx.embeddings("labeled") if len(ctx.labeled) else None
        return k_center_greedy(ctx.embeddings("unlabeled"), labeled, k, self.chunk_size, self.block).cpu()
