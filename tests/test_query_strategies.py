"""MC-dropout, core-set, BADGE and ALBL: against brute force, hand computations and their invariants."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from dal_runner.arch import ArchSpec, build_network
from dal_runner.data import Normalize
from dal_runner.query import QueryContext, top_k
from dal_runner.query.albl import ALBL, Exp4P, default_p_min
from dal_runner.query.badge import (Badge, explicit_gradient_embedding, gradient_factors, kmeans_pp,
                                    sq_distances_to)
from dal_runner.query.coreset import Coreset, k_center_greedy
from dal_runner.query.entropy import Entropy
from dal_runner.query.margin import Margin
from dal_runner.query.mc_dropout import (MCDropout, bald, dropout_passes, max_entropy, mc_probs, mc_scores,
                                         predicted_class_variance, variation_ratio)
from dal_runner.query.random import RandomQuery
from dal_runner.query.softmax_response import SoftmaxResponse


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_probs(n: int, c: int, seed: int) -> torch.Tensor:
    return torch.softmax(3.0 * torch.randn(n, c, generator=gen(seed)), dim=1)


def small_network(dropout: float) -> nn.Module:
    torch.manual_seed(0)
    return build_network(ArchSpec("mlp", hidden=16), (1, 8, 8), 10,
                         Normalize(1.0, (0.0,), (1.0,), is_image=True), dropout=dropout)


# ---- core-set ------------------------------------------------------------------------------

def brute_force_k_center(pool: np.ndarray, labeled: np.ndarray, k: int) -> list:
    """Sener & Savarese's greedy, literally: full distance matrices in float64."""
    pool = pool.astype(np.float64)
    centres = [row for row in labeled.astype(np.float64)]
    picks = []
    if not centres:
        picks.append(int(np.argmax(((pool - pool.mean(axis=0)) ** 2).sum(axis=1))))
        centres.append(pool[picks[0]])
    while len(picks) < k:
        d = np.sqrt(((pool[:, None, :] - np.stack(centres)[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
        d[picks] = -1.0
        picks.append(int(np.argmax(d)))
        centres.append(pool[picks[-1]])
    return picks


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_labeled", [0, 1, 7])
def test_k_center_greedy_equals_brute_force(seed, n_labeled):
    rng = np.random.default_rng(seed)
    pool, labeled = rng.normal(size=(60, 5)), rng.normal(size=(n_labeled, 5))
    picks = k_center_greedy(pool, labeled, 12)
    assert isinstance(picks, np.ndarray) and picks.dtype == np.int64
    reference = brute_force_k_center(pool, labeled, 12)
    assert picks.tolist() == reference
    for block in (0, 1, 2, 5):  # centres applied in blocks of `block` (0: the plain greedy): the same picks
        assert k_center_greedy(pool, labeled, 12, block=block).tolist() == reference


@pytest.mark.parametrize("seed", range(4))
def test_k_center_greedy_breaks_exact_ties_by_the_first_index(seed):
    """Small integer features: many points tie exactly, and the float32 distances are exact, so
    the picks must be the literal greedy's, which takes the first of equal distances."""
    rng = np.random.default_rng(seed)
    pool, labeled = rng.integers(0, 4, size=(300, 6)).astype(np.float32), rng.integers(0, 4, size=(10, 6))
    reference = brute_force_k_center(pool, labeled.astype(np.float32), 60)
    for block in (0, 128):
        assert k_center_greedy(pool, labeled, 60, chunk_size=64, block=block).tolist() == reference


@pytest.mark.parametrize("seed", range(3))
def test_k_center_greedy_chunked_equals_unchunked(seed):
    g = gen(seed)
    pool, labeled = torch.randn(203, 6, generator=g), torch.randn(45, 6, generator=g)
    whole = k_center_greedy(pool, labeled, 30, chunk_size=100_000)
    assert isinstance(whole, torch.Tensor) and whole.dtype == torch.long
    for chunk in (3, 7, 64):
        assert torch.equal(k_center_greedy(pool, labeled, 30, chunk_size=chunk), whole)
        assert torch.equal(k_center_greedy(pool, labeled, 30, chunk_size=chunk, block=4), whole)
        assert torch.equal(k_center_greedy(pool, labeled, 30, chunk_size=chunk, block=0), whole)


def test_k_center_greedy_on_duplicates_returns_distinct_points():
    pool = torch.randn(5, 3, generator=gen(0)).repeat(4, 1)  # 5 points, each 4 times
    first = None
    for block in (None, 3, 0):
        picks = k_center_greedy(pool, None, 8, block=block)
        assert len(set(picks.tolist())) == 8
        assert len(set((picks[:5] % 5).tolist())) == 5  # every distinct point before any duplicate
        # the first 5 picks are the same whatever the block; the 3 duplicates after them are at
        # distance 0 up to rounding, which depends on the CPU's kernels for each product shape
        first = picks[:5] if first is None else first
        assert torch.equal(picks[:5], first)


def test_k_center_greedy_rejects_k_larger_than_pool():
    with pytest.raises(ValueError, match="k=4"):
        k_center_greedy(torch.randn(3, 2), None, 4)


# ---- BADGE ---------------------------------------------------------------------------------

def test_explicit_gradient_embedding_is_the_last_layer_gradient():
    # (g_x)_i = d CE(W h, y_hat) / d W_i with y_hat = argmax p: check against autograd
    torch.manual_seed(0)
    head = nn.Linear(4, 3, bias=False)
    h = torch.randn(2, 4)
    probs = torch.softmax(head(h), dim=1).detach()
    g = explicit_gradient_embedding(probs, h)
    for i in range(2):
        head.zero_grad()
        logits = head(h[i:i + 1])
        nn.functional.cross_entropy(logits, logits.argmax(dim=1)).backward()
        assert torch.allclose(g[i], head.weight.grad.reshape(-1), atol=1e-6)


def test_factorised_distances_equal_explicit_ones():
    probs, h = random_probs(40, 10, 1), torch.randn(40, 32, generator=gen(2))
    g = explicit_gradient_embedding(probs, h).double()
    a = gradient_factors(probs)
    sq = (a * a).sum(dim=1) * (h * h).sum(dim=1)
    for j in (0, 17, 39):
        explicit = ((g - g[j]) ** 2).sum(dim=1)
        factorised = sq_distances_to(a, h, sq, j).double()
        assert torch.allclose(factorised, explicit, rtol=1e-4, atol=1e-4 * float(explicit.max()))
        assert factorised[j] == 0.0


def test_a_point_near_a_centre_keeps_its_d_squared():
    """A point 1% (of the norm) from the centre is not a duplicate: float64 distances keep its
    D^2 (float32 ones called everything nearer than 1.6% a duplicate, D^2 = 0, never sampled)."""
    c, d = 10, 512
    probs = random_probs(1, c, 0).repeat(3, 1)
    base = torch.rand(d, generator=gen(1)) + 0.5
    away = torch.randn(d, generator=gen(2))  # a little off the line, not only a shorter vector
    # 0: the largest norm; 1: 1% of the norm away from it; 2: 0.01% away
    h = torch.stack([base, base * 0.99 + 0.001 * base.norm() * away / away.norm(), base * 0.9999])
    g = explicit_gradient_embedding(probs, h).double()
    explicit = ((g - g[0]) ** 2).sum(dim=1)
    a = gradient_factors(probs)
    sq = (a * a).sum(dim=1) * (h * h).sum(dim=1)
    factorised = sq_distances_to(a, h, sq, 0).double()
    assert factorised[0] == 0.0 and (factorised[1:] > 0).all()
    assert torch.allclose(factorised[1:], explicit[1:], rtol=1e-4)
    # the first centre is point 0; then point 1 has D^2 about 10^4 times point 2's
    seconds = [int(kmeans_pp(probs, h, 2, gen(seed), first="largest_norm")[1]) for seed in range(100)]
    assert seconds.count(1) >= 98, seconds


@pytest.mark.parametrize("first", ["uniform", "largest_norm"])
@pytest.mark.parametrize("seed", range(3))
def test_kmeans_pp_on_ten_points_repeated_100_times_picks_each_once(first, seed):
    probs = random_probs(10, 10, seed).repeat(100, 1)
    h = torch.randn(10, 16, generator=gen(seed + 100)).repeat(100, 1)
    picks = kmeans_pp(probs, h, 10, gen(seed), first=first)
    assert len(picks) == 10 and len(set(picks.tolist())) == 10
    assert sorted((picks % 10).tolist()) == list(range(10))  # never a duplicate of a centre


def test_kmeans_pp_picks_distinct_points_and_is_reproducible():
    probs, h = random_probs(300, 10, 3), torch.randn(300, 24, generator=gen(4))
    picks = kmeans_pp(probs, h, 60, gen(7))
    assert picks.dtype == torch.long and len(set(picks.tolist())) == 60
    assert torch.equal(picks, kmeans_pp(probs, h, 60, gen(7)))
    assert not torch.equal(picks, kmeans_pp(probs, h, 60, gen(8)))


def test_kmeans_pp_beyond_the_distinct_points_still_returns_distinct_positions():
    probs, h = random_probs(3, 4, 0).repeat(5, 1), torch.randn(3, 6, generator=gen(0)).repeat(5, 1)
    picks = kmeans_pp(probs, h, 9, gen(0))
    assert len(set(picks.tolist())) == 9
    assert sorted((picks[:3] % 3).tolist()) == [0, 1, 2]


def test_kmeans_pp_largest_norm_starts_at_the_largest_gradient():
    probs, h = random_probs(50, 5, 5), torch.randn(50, 8, generator=gen(6))
    picks = kmeans_pp(probs.numpy(), h.numpy(), 5, gen(0), first="largest_norm")
    assert isinstance(picks, np.ndarray)
    assert picks[0] == int(explicit_gradient_embedding(probs, h).norm(dim=1).argmax())


def test_kmeans_pp_samples_proportionally_to_d_squared():
    # three points on a line, first centre forced at 0 (largest norm): next ~ D^2 = (1, 9)
    h = torch.tensor([[3.0], [2.0], [0.0]])
    probs = torch.tensor([[0.5, 0.5]] * 3)  # a = (-0.5, 0.5), |a|^2 = 0.5: g = a (x) h
    counts = torch.zeros(3)
    g = gen(0)
    for _ in range(2000):
        counts[kmeans_pp(probs, h, 2, g, first="largest_norm")[1]] += 1
    # |g_0 - g_1|^2 = 0.5 * 1, |g_0 - g_2|^2 = 0.5 * 9: P(1) = 0.1, P(2) = 0.9
    assert counts[0] == 0
    assert abs(counts[1] / 2000 - 0.1) < 0.03


# ---- MC-dropout ----------------------------------------------------------------------------

def test_acquisitions_by_hand():
    samples = torch.tensor([[[0.8, 0.2]], [[0.4, 0.6]]])  # T = 2 passes, N = 1, C = 2
    mean = torch.tensor([0.6, 0.4], dtype=torch.float64)
    h = lambda p: float(-(p * p.log()).sum())  # noqa: E731
    assert float(max_entropy(samples)) == pytest.approx(h(mean))
    expected_bald = h(mean) - 0.5 * (h(torch.tensor([0.8, 0.2])) + h(torch.tensor([0.4, 0.6])))
    assert float(bald(samples)) == pytest.approx(expected_bald, rel=1e-6)
    assert float(variation_ratio(samples)) == pytest.approx(0.5)  # the passes vote 0 and 1
    # mean picks class 0; its probabilities 0.8, 0.4 have variance 0.04
    assert float(predicted_class_variance(samples)) == pytest.approx(0.04)


def test_without_dropout_the_passes_agree_and_bald_is_exactly_zero():
    model = small_network(dropout=0.0)
    x = torch.rand(37, 1, 8, 8, generator=gen(0))
    samples = mc_probs(model, x, passes=25, batch_size=16, generator=gen(1))
    assert samples.shape == (25, 37, 10)
    assert torch.allclose(samples[0], torch.softmax(model(x), dim=1), atol=1e-6)
    assert torch.all(bald(samples) == 0.0)
    assert torch.all(variation_ratio(samples) == 0.0)
    assert torch.all(predicted_class_variance(samples) == 0.0)


def test_with_dropout_the_passes_disagree_and_are_seeded():
    model = small_network(dropout=0.5)
    x = torch.rand(37, 1, 8, 8, generator=gen(0))
    samples = mc_probs(model, x, passes=25, batch_size=16, generator=gen(1))
    assert torch.allclose(samples.sum(dim=2), torch.ones(25, 37))
    assert float(bald(samples).max()) > 0.0
    assert float(predicted_class_variance(samples).max()) > 0.0
    assert torch.equal(samples, mc_probs(model, x, passes=25, batch_size=16, generator=gen(1)))
    assert not model.training  # queried in eval mode: dropout comes only from our masks


def test_dropout_is_applied_on_the_features_before_the_head():
    # a network whose features are all ones and whose head sums them: each pass's logit is
    # (number of kept features) / (1 - p), so over many passes its mean is D and it varies
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.dropout = nn.Dropout(0.25)
            self.head = nn.Linear(64, 2, bias=False)
            self.head.weight.data = torch.stack([torch.ones(64), torch.zeros(64)])

        def embed(self, x):
            return torch.ones(x.shape[0], 64)

    samples = mc_probs(Probe(), torch.zeros(4, 1), passes=400, batch_size=4, generator=gen(0))
    logit = torch.log(samples[..., 0] / samples[..., 1])  # = sum of kept features / 0.75
    kept = (logit * 0.75).round()
    assert torch.allclose(kept, logit * 0.75, atol=1e-3)  # whole numbers of kept features
    assert abs(float(kept.mean()) / 64 - 0.75) < 0.01


def test_mc_scores_batched_equals_mc_probs_scored_at_once():
    model = small_network(dropout=0.0)
    x = torch.rand(30, 1, 8, 8, generator=gen(0))
    at_once = max_entropy(mc_probs(model, x, 5, 64, gen(0)))
    assert torch.allclose(mc_scores(model, x, 5, "max_entropy", 7, gen(0)), at_once)


def test_dropout_passes_in_chunks_equal_the_passes_at_once():
    # the mask tensor is drawn in chunks of passes; the stream of draws, and so the samples, are the same
    # (an identity head, so bitwise: a Linear head on chunks of another shape may round differently)
    head = nn.Identity()
    h = torch.rand(5, 6, generator=gen(0))
    at_once = dropout_passes(head, h, 0.5, 9, gen(1))
    for max_elements in (1, 30, 80):
        assert torch.equal(dropout_passes(head, h, 0.5, 9, gen(1), max_elements=max_elements), at_once)
    assert not torch.equal(at_once[0], at_once[1])  # the passes differ: dropout is on


@pytest.mark.parametrize("acquisition", ["bald", "variation_ratio", "predicted_class_variance"])
def test_mc_dropout_selects_the_top_scores_of_the_unlabeled_points(acquisition):
    model = small_network(dropout=0.5)
    x = torch.rand(40, 1, 8, 8, generator=gen(0))
    unlabeled = torch.arange(3, 40, 2)
    scores = mc_scores(model, x[unlabeled], 16, acquisition, 7, gen(2))
    assert float(scores.max()) > float(scores.min())  # dropout makes the passes disagree
    ctx = QueryContext(model, x, torch.arange(0, 40, 2), unlabeled, gen(2))
    assert torch.equal(MCDropout(16, acquisition, batch_size=7).select(ctx, 5), top_k(scores, 5, ties=gen(2)))


def test_top_k_shares_exact_ties_at_the_cut_at_random_reproducibly():
    # a pool in its file's order, sorted by class: 3 clear winners, then 200 points tied exactly
    # (variation_ratio takes multiples of 1/T), then the rest
    scores = torch.cat([torch.full((3,), 0.9), torch.full((200,), 0.5), torch.full((50,), 0.1)])
    g = gen(7)
    state = g.get_state()
    picks = top_k(scores, 10, ties=g)
    assert torch.equal(g.get_state(), state)  # the caller's generator is not advanced
    assert picks[:3].tolist() == [0, 1, 2]  # above the cut: all taken, in order
    assert len(set(picks.tolist())) == 10 and all(3 <= p < 203 for p in picks[3:].tolist())
    assert sorted(picks[3:].tolist()) != list(range(3, 10))  # not the first positions of the tie
    assert torch.equal(top_k(scores, 10, ties=gen(7)), picks)  # the seed decides
    assert not torch.equal(top_k(scores, 10, ties=gen(8)), picks)
    # spread over the tie: 200 draws of 7 places reach far beyond the first 7 positions
    reached = torch.cat([top_k(scores, 10, ties=gen(s))[3:] for s in range(200)])
    assert int(reached.max()) > 190 and len(set(reached.tolist())) > 150
    # without a tie at the cut, or without a generator, the plain order
    assert top_k(scores, 3, ties=g).tolist() == [0, 1, 2]
    assert top_k(scores, 203, ties=g).tolist() == list(range(203))
    assert top_k(scores, 10).tolist() == list(range(10))


def test_top_k_with_a_tie_keeps_every_score_above_the_cut_even_beside_a_nan():
    scores = torch.tensor([float("nan"), 0.9, 0.5, 0.5, 0.5])  # argsort puts NaN first
    picks = top_k(scores, 3, ties=gen(0))
    assert picks[:2].tolist() == [0, 1] and int(picks[2]) in (2, 3, 4)


def test_score_strategies_share_ties_by_the_query_generator():
    # a saturated model: every unlabeled point has the same probabilities, so every score ties
    probs = torch.full((60, 4), 0.25)
    ctx = QueryContext(nn.Identity(), torch.zeros(80, 1), torch.arange(20), torch.arange(20, 80), gen(3))
    ctx._cache["unlabeled_probs"] = probs
    for strategy in (SoftmaxResponse(), Margin(), Entropy()):
        picks = strategy.select(ctx, 5)
        assert torch.equal(picks, top_k(torch.zeros(60), 5, ties=gen(3)))
        assert picks.tolist() != list(range(5))


def test_top_k_keeps_float64_scores_exact():
    # 1 + 1e-9 rounds to 1 in float32; its rank must not
    assert top_k(torch.tensor([1.0, 1.0 + 1e-9, 0.5], dtype=torch.float64), 1).tolist() == [1]
    assert top_k(torch.tensor([0.25, 0.5, 0.5], dtype=torch.float16), 2).tolist() == [1, 2]


# ---- ALBL ----------------------------------------------------------------------------------

def test_exp4p_expert_with_high_reward_gains_weight():
    # 2 experts, 4 arms; expert 0 advises arm 0 (reward 1), expert 1 advises arm 1 (reward 0)
    bandit = Exp4P(n_experts=2, n_arms=4, horizon=300, delta=0.1, p_min=0.05, generator=gen(0))
    advice = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    for _ in range(300):
        prob = bandit.distribution(advice)
        assert float(prob.sum()) == pytest.approx(1.0) and float(prob.min()) >= 0.05
        arm = bandit.sample(prob)
        bandit.update(arm, 1.0 if arm == 0 else 0.0, advice, prob)
    w = bandit.weights
    assert w[0] > 0.9 and w[1] < 0.1


def test_exp4p_zero_reward_keeps_symmetric_experts_equal():
    # reward 0: only the exploration bonus v_hat moves the weights, equally for mirrored experts
    bandit = Exp4P(2, 2, 50, 0.1, 0.05, gen(0))
    advice = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for _ in range(50):
        prob = bandit.distribution(advice)
        bandit.update(bandit.sample(prob), 0.0, advice, prob)
    assert torch.allclose(bandit.weights, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert float(bandit.log_w[0]) > 0.0


class FixedRanking:
    """An expert that always ranks the pool points of one parity first."""

    def __init__(self, parity: int):
        self.parity = parity

    def select(self, ctx, k):
        pos = torch.arange(len(ctx.unlabeled))
        mine = pos[ctx.unlabeled % 2 == self.parity]
        return torch.cat([mine, pos[ctx.unlabeled % 2 != self.parity]])[:k]


class ParityModel(nn.Module):
    """Predicts class 0 for inputs (1, 0) and class 1 for (0, 1)."""

    def __init__(self):
        super().__init__()
        self.dropout = nn.Dropout(0.0)
        self.head = nn.Linear(2, 2, bias=False)
        self.head.weight.data = torch.eye(2)

    def embed(self, x):
        return x


def test_albl_expert_with_high_reward_gains_weight():
    # the loop reports reward 1 after an even pool point was queried, 0 after an odd one
    n = 40
    albl = ALBL([FixedRanking(0), FixedRanking(1)], arms="points", p_min=0.5 / n)
    ctx = QueryContext(ParityModel(), torch.rand(n, 2), torch.tensor([], dtype=torch.long), torch.arange(n), gen(0))
    for _ in range(300):
        pick = int(albl.select(ctx, 1))
        albl.observe_reward(1.0 if pick % 2 == 0 else 0.0)
    w = albl.bandit.weights
    assert w[0] > 0.75 > 0.25 > w[1]


def test_albl_reads_labels_from_the_context_and_updates_its_weights():
    # every label is 0; the model is right on even pool points, wrong on odd ones
    n = 40
    x = torch.zeros(n, 2)
    x[0::2, 0], x[1::2, 1] = 1.0, 1.0
    albl = ALBL([FixedRanking(0), FixedRanking(1)], arms="points", p_min=0.2 / n, horizon=10)
    labeled = torch.tensor([], dtype=torch.long)
    for t in range(3):
        unlabeled = torch.tensor(sorted(set(range(n)) - set(labeled.tolist())))
        ctx = QueryContext(ParityModel(), x, labeled, unlabeled, gen(t))
        ctx.y = torch.zeros(n, dtype=torch.long)
        labeled = torch.cat([labeled, unlabeled[albl.select(ctx, 2)]])
        if t == 1:  # before the last select: what its reward update must do
            reward = albl.importance_weighted_accuracy(ParityModel(), x, torch.zeros(n, dtype=torch.long))
            expected_bandit = copy.deepcopy(albl.bandit)
            for advice, prob, chosen in albl.pending:
                expected_bandit.update(chosen, reward, advice, prob)
    assert reward > 0.0
    # the last select applied IW-ACC of the context's model and labels to the previous round's queries
    assert torch.allclose(albl.bandit.log_w, expected_bandit.log_w, rtol=0, atol=1e-15)
    assert not torch.equal(albl.bandit.log_w, torch.zeros(2, dtype=torch.float64))
    assert len(albl.pending) == 2  # the last round's queries wait for their reward
    drawn = torch.tensor(albl.drawn_index)
    expected = float((torch.tensor(albl.drawn_weight) * (drawn % 2 == 0)).sum()) / (n * 10)
    assert albl.importance_weighted_accuracy(ParityModel(), x, ctx.y) == pytest.approx(min(1.0, expected))


def test_albl_badge_code_variant_moves_the_drawn_strategy_by_the_authors_reward():
    """variant=badge_code: reward = mean over the labeled set of W [right] (W = 1 for the initial set,
    1 / p for drawn points); log w_s += (p_min / 2) (reward + sqrt(ln(N / delta) / N) / p_s), s drawn."""
    n = 40
    x = torch.zeros(n, 2)
    x[0::2, 0], x[1::2, 1] = 1.0, 1.0  # every label 0: the model is right on even points only
    y = torch.zeros(n, dtype=torch.long)
    albl = ALBL([FixedRanking(0), FixedRanking(1)], delta=0.1, variant="badge_code")
    labeled = torch.arange(4)  # the initial set: 2 right, 2 wrong, weight 1 each
    drawn = []
    for t in range(2):
        unlabeled = torch.tensor(sorted(set(range(n)) - set(labeled.tolist())))
        ctx = QueryContext(ParityModel(), x, labeled, unlabeled, gen(t))
        ctx.y = y
        before = albl.bandit.log_w.clone() if albl.bandit is not None else None
        picks = unlabeled[albl.select(ctx, 3)]
        (advice, prob, chosen), = albl.pending
        drawn.append((chosen, float(prob[chosen]), picks))
        labeled = torch.cat([labeled, picks])
    assert albl.bandit.p_min == pytest.approx(0.05)  # the authors' 1 / (10 N)
    first, p, picks = drawn[0]
    assert picks.remainder(2).eq(first).all()  # expert 0 picks even points, expert 1 odd ones
    right = 2 + (3 / p if first == 0 else 0.0)  # the drawn even points are right, weight 1 / p
    reward = right / 7
    expected = before.clone()
    expected[first] += 0.5 * 0.05 * (reward + math.sqrt(math.log(2 / 0.1) / 2) / p)
    assert torch.allclose(albl.bandit.log_w, expected, rtol=0, atol=1e-15)  # the other weight did not move
    assert albl.badge_code_reward(ParityModel(), x, y, torch.arange(4)) == pytest.approx(0.5)
    # the state remembers its variant: an EXP4.P run does not continue it
    state = albl.state_dict()
    other = ALBL([FixedRanking(0), FixedRanking(1)])
    with pytest.raises(ValueError, match="query.variant=exp4p: the run's saved bandit is of query.variant=badge_code"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="query.variant=badge_code: BADGE's code draws one strategy per round"):
        ALBL([FixedRanking(0), FixedRanking(1)], arms="points", variant="badge_code")


def test_albl_without_labels_keeps_its_weights():
    n = 20
    x = torch.rand(n, 2)
    albl = ALBL([FixedRanking(0), FixedRanking(1)], arms="points", p_min=0.01)
    labeled = torch.tensor([], dtype=torch.long)
    for t in range(3):
        unlabeled = torch.tensor(sorted(set(range(n)) - set(labeled.tolist())))
        labeled = torch.cat([labeled, unlabeled[albl.select(QueryContext(ParityModel(), x, labeled, unlabeled,
                                                                         gen(t)), 2)]])
    assert torch.equal(albl.bandit.log_w, torch.zeros(2, dtype=torch.float64))  # no update at all


def test_albl_picks_at_most_the_unlabeled_points():
    n = 12
    ctx = QueryContext(ParityModel(), torch.rand(n, 2), torch.arange(8), torch.arange(8, n), gen(0))
    assert sorted(ALBL([FixedRanking(0), FixedRanking(1)], arms="points").select(ctx, 4).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="k=5 picks from 4 unlabeled points"):
        ALBL([FixedRanking(0), FixedRanking(1)], arms="points").select(ctx, 5)


def test_albl_rejects_a_p_min_above_one_over_the_pool_size():
    ctx = QueryContext(ParityModel(), torch.rand(20, 2), torch.arange(5), torch.arange(5, 20), gen(0))
    with pytest.raises(ValueError, match=r"query.p_min: 0.1 for a pool of K = 20 points"):
        ALBL([FixedRanking(0), FixedRanking(1)], arms="points", p_min=0.1).select(ctx, 2)


def test_exp4p_confidence_width_is_sqrt_log_n_over_delta_over_k_t():
    # Beygelzimer et al., Algorithm 1: sqrt(ln(N / delta) / (K T)), whatever p_min is
    for p_min in (1e-4, 1e-3):
        assert Exp4P(2, 100, 10, 0.1, p_min).width == pytest.approx(math.sqrt(math.log(20) / 1000))


def test_albl_importance_weights_are_inverse_draw_probabilities():
    n = 30
    albl = ALBL([FixedRanking(0), FixedRanking(1)], arms="points", p_min=0.01, horizon=5)
    ctx = QueryContext(ParityModel(), torch.rand(n, 2), torch.arange(10), torch.arange(10, n), gen(0))
    albl.select(ctx, 3)
    # every draw's probability is p_min (unadvised arm) or an advised arm's mixture probability
    advised = (1 - n * 0.01) * 0.5 + 0.01  # two experts, equal weights, distinct advice
    both = (1 - n * 0.01) * 1.0 + 0.01  # both experts advising the same arm
    for w in albl.drawn_weight:
        assert min(abs(w - 1 / 0.01), abs(w - 1 / advised), abs(w - 1 / both)) < 1e-9
    assert len(albl.drawn_weight) >= 3


def test_albl_over_strategies_gives_the_batch_to_one_drawn_strategy_as_often_as_its_p():
    # arms=strategies: every batch is one expert's own top-k, drawn with EXP4.P's p over experts
    n, k = 40, 6
    albl = ALBL([FixedRanking(0), FixedRanking(1)], p_min=0.05, horizon=400)
    albl._start(2, gen(0))
    albl.bandit.log_w = torch.tensor([math.log(3.0), 0.0], dtype=torch.float64)  # weights 3/4, 1/4
    ctx = QueryContext(ParityModel(), torch.rand(n, 2), torch.arange(4), torch.arange(4, n), gen(1))
    even = 0
    for _ in range(400):
        picks = albl.select(ctx, k)
        parities = set((ctx.unlabeled[picks] % 2).tolist())
        assert len(parities) == 1  # never a mixture within a batch
        assert torch.equal(picks, FixedRanking(parities.pop()).select(ctx, k))
        even += int(ctx.unlabeled[picks[0]]) % 2 == 0
        _, prob, drawn = albl.pending.pop()
        assert albl.drawn_weight[-k:] == [1.0 / float(prob[drawn])] * k
    p_even = (1 - 2 * 0.05) * 0.75 + 0.05  # 0.725
    assert abs(even / 400 - p_even) < 4 * math.sqrt(p_even * (1 - p_even) / 400)


def test_albl_over_strategies_moves_its_weights_to_the_rewarded_strategy():
    n = 60
    albl = ALBL([FixedRanking(0), FixedRanking(1)], horizon=100)
    ctx = QueryContext(ParityModel(), torch.rand(n, 2), torch.arange(4), torch.arange(4, n), gen(0))
    for _ in range(100):  # reward 1 for a batch of even points, 0 for odd ones
        picks = albl.select(ctx, 3)
        albl.observe_reward(1.0 if int(ctx.unlabeled[picks[0]]) % 2 == 0 else 0.0)
    w = albl.bandit.weights  # 0.89 after 100 rounds at EXP4.P's p_min = sqrt(ln 2 / 200)
    assert w[0] > 0.8 > 0.2 > w[1]


def test_albl_over_strategies_rewards_the_weighted_accuracy_normalised_by_the_weights():
    # every label is 0; the model is right on even pool points, wrong on odd ones
    n = 40
    x = torch.zeros(n, 2)
    x[0::2, 0], x[1::2, 1] = 1.0, 1.0
    y = torch.zeros(n, dtype=torch.long)
    albl = ALBL([FixedRanking(0), FixedRanking(1)], horizon=5)
    labeled = torch.tensor([], dtype=torch.long)
    for t in range(3):
        unlabeled = torch.tensor(sorted(set(range(n)) - set(labeled.tolist())))
        ctx = QueryContext(ParityModel(), x, labeled, unlabeled, gen(t))
        ctx.y = y
        if t == 2:  # what the last select's reward update must do
            w = torch.tensor(albl.drawn_weight, dtype=torch.float64)
            right = (torch.tensor(albl.drawn_index) % 2 == 0).double()
            reward = float((w * right).sum() / w.sum())
            assert reward == pytest.approx(albl.importance_weighted_accuracy(ParityModel(), x, y))
            expected = copy.deepcopy(albl.bandit)
            for advice, prob, chosen in albl.pending:
                expected.update(chosen, reward, advice, prob)
        labeled = torch.cat([labeled, unlabeled[albl.select(ctx, 4)]])
    assert torch.allclose(albl.bandit.log_w, expected.log_w, rtol=0, atol=1e-15)
    assert len(albl.drawn_index) == 12 and sorted(albl.drawn_index) == sorted(labeled.tolist())


def test_albl_refuses_to_continue_a_saved_bandit_of_the_other_arms():
    ctx = QueryContext(ParityModel(), torch.rand(20, 2), torch.arange(5), torch.arange(5, 20), gen(0))
    points = ALBL([FixedRanking(0), FixedRanking(1)], arms="points", p_min=0.01)
    points.select(ctx, 2)
    with pytest.raises(ValueError, match="saved bandit is of query.arms=points"):
        ALBL([FixedRanking(0), FixedRanking(1)]).load_state_dict(points.state_dict())
    points_again = ALBL([FixedRanking(0), FixedRanking(1)], arms="points", p_min=0.01)
    points_again.load_state_dict(points.state_dict())
    assert points_again.drawn_index == points.drawn_index and points_again.n_arms == 20
    strategies = ALBL([FixedRanking(0), FixedRanking(1)])
    strategies.select(ctx, 2)
    again = ALBL([FixedRanking(0), FixedRanking(1)])
    again.load_state_dict(strategies.state_dict())
    assert torch.equal(again.bandit.log_w, strategies.bandit.log_w) and again.pending and again.n_arms == 2


def test_default_p_min_follows_exp4p_and_caps_exploration_at_half():
    assert default_p_min(2, 100, 10_000) == pytest.approx(math.sqrt(math.log(2) / 1e6))
    assert default_p_min(2, 1000, 100) == pytest.approx(0.5 / 1000)


# ---- every strategy: k distinct valid positions ---------------------------------------------

def strategies():
    return {
        "random": RandomQuery(), "softmax_response": SoftmaxResponse(), "margin": Margin(),
        "entropy": Entropy(),
        **{f"mc_dropout_{a}": MCDropout(passes=8, acquisition=a, batch_size=16)
           for a in ("bald", "max_entropy", "variation_ratio", "predicted_class_variance")},
        "coreset": Coreset(), "coreset_chunked": Coreset(chunk_size=3),
        "badge": Badge(), "badge_largest_norm": Badge(first="largest_norm"),
        "albl": ALBL(), "albl_three": ALBL([Margin(), Badge(), RandomQuery()], p_min=0.001),
        "albl_points": ALBL(arms="points"),
        "albl_points_three": ALBL([Margin(), Badge(), RandomQuery()], p_min=0.001, arms="points"),
    }


@pytest.mark.parametrize("name", list(strategies()))
@pytest.mark.parametrize("n_labeled", [0, 12])
def test_select_returns_k_distinct_valid_positions(name, n_labeled):
    strategy = strategies()[name]
    model = small_network(dropout=0.5)
    x = (torch.rand(90, 1, 8, 8, generator=gen(0)) * 255).to(torch.uint8).float() / 255
    y = torch.randint(0, 10, (90,), generator=gen(1))
    labeled = torch.arange(n_labeled)
    for round_ in range(2):  # a second round exercises ALBL's reward update
        unlabeled = torch.tensor(sorted(set(range(90)) - set(labeled.tolist())))
        ctx = QueryContext(model, x, labeled, unlabeled, gen(round_), batch_size=32)
        ctx.y = y
        picks = strategy.select(ctx, 15)
        assert len(picks) == 15 and len(set(picks.tolist())) == 15
        assert int(picks.min()) >= 0 and int(picks.max()) < len(unlabeled)
        labeled = torch.cat([labeled, unlabeled[picks]])


def test_mc_dropout_rejects_an_unknown_acquisition():
    with pytest.raises(ValueError, match="acquisition='bold'"):
        MCDropout(acquisition="bold")


def test_mc_dropout_samples_at_its_own_rate_a_network_trained_without_dropout():
    """arch.mc_dropout: the active-iNAS authors train with no dropout and sample the layer at 0.5 for
    the passes; the training's forward pass stays deterministic."""
    model = small_network(dropout=0.0)
    model.mc_dropout = 0.5
    x = torch.rand(37, 1, 8, 8, generator=gen(0))
    model.train()
    assert torch.equal(model(x), model(x))  # no dropout in training
    samples = mc_probs(model, x, passes=25, batch_size=16, generator=gen(1))
    assert float(bald(samples).max()) > 0.0
    # the rate is the one sampled: about half the features dropped (the passes at rate 0.9 differ more)
    model.mc_dropout = 0.9
    assert float(bald(mc_probs(model, x, passes=25, batch_size=16, generator=gen(1))).mean()) > \
        float(bald(samples).mean())


def test_predicted_class_variance_takes_the_class_of_the_deterministic_pass():
    """As the authors' code: the class the network predicts with dropout off, not the mean of the
    passes' (here they differ: the passes favour class 1, the deterministic pass class 0)."""
    samples = torch.tensor([[[0.8, 0.2]], [[0.1, 0.9]], [[0.3, 0.7]]])  # mean (0.4, 0.6): class 1
    assert float(predicted_class_variance(samples, torch.tensor([0]))) == pytest.approx(torch.tensor(
        [0.8, 0.1, 0.3]).var(unbiased=False).item())
    model = small_network(dropout=0.0)
    model.mc_dropout = 0.5
    x = torch.rand(37, 1, 8, 8, generator=gen(0))
    scores = mc_scores(model, x, 25, "predicted_class_variance", 16, gen(1))
    samples = mc_probs(model, x, passes=25, batch_size=16, generator=gen(1))
    model.eval()
    deterministic = model(x).argmax(dim=1)
    assert torch.allclose(scores, predicted_class_variance(samples, deterministic))


def _cached_context(labeled_emb, unlabeled_emb, probs=None, seed=0) -> QueryContext:
    """A context whose pool outputs are given (cached as if inferred)."""
    n_l, n_u = len(labeled_emb), len(unlabeled_emb)
    ctx = QueryContext(nn.Identity(), torch.zeros(n_l + n_u, 1), torch.arange(n_l), torch.arange(n_l, n_l + n_u),
                       gen(seed))
    ctx._cache.update(labeled_emb=torch.as_tensor(labeled_emb, dtype=torch.float32),
                      unlabeled_emb=torch.as_tensor(unlabeled_emb, dtype=torch.float32))
    if probs is not None:
        ctx._cache["unlabeled_probs"] = torch.as_tensor(probs, dtype=torch.float32)
    return ctx


def test_coreset_covers_the_pool_from_the_labeled_centres():
    """Core-set's centres start at S: on a line with S = {0} and U = {1, 2, 10, 9}, the point
    farthest from S is 10, then 2 (2 from its nearest centre; 1 and 9 are 1 from theirs)."""
    ctx = _cached_context([[0.0]], [[1.0], [2.0], [10.0], [9.0]])
    assert Coreset(chunk_size=2).select(ctx, 2).tolist() == [2, 1]
    # with S far on the other side, the farthest from it comes first
    ctx = _cached_context([[20.0]], [[1.0], [2.0], [10.0], [9.0]])
    assert Coreset().select(ctx, 1).tolist() == [0]


def test_badge_largest_norm_starts_at_the_largest_gradient_embedding():
    """query.first=largest_norm (the authors' code): the first centre is argmax |g_x|, whatever the
    round's generator; uniform (Algorithm 2) draws it."""
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.99, 0.01]])
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [5.0, 5.0]])
    # |g_x|^2 = |p - e_yhat|^2 |h|^2: 0.02, 2.0, 2.88, 0.01
    firsts = {int(Badge("largest_norm").select(_cached_context([[0.0, 0.0]], emb, probs, seed=s), 1)) for s in range(20)}
    assert firsts == {2}
    drawn = {int(Badge("uniform").select(_cached_context([[0.0, 0.0]], emb, probs, seed=s), 1)) for s in range(20)}
    assert len(drawn) > 2


def test_random_query_draws_another_sample_with_another_seed_from_the_whole_pool():
    picks = [RandomQuery().select(_cached_context([[0.0]], torch.zeros(1000, 1), seed=s), 10) for s in range(30)]
    assert len({tuple(p.tolist()) for p in picks}) == 30
    everything = torch.cat(picks)
    assert int(everything.max()) > 900 and len(set(everything.tolist())) > 200  # not the first positions
    assert torch.equal(RandomQuery().select(_cached_context([[0.0]], torch.zeros(1000, 1), seed=3), 10), picks[3])
