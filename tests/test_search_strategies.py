"""Search strategies behind one interface: random search, REINFORCE, and lower-fidelity estimation."""

import csv
import inspect
import io

import pytest
import torch

from dal_runner.arch import ArchSpec
from dal_runner.errors import ConfigError
from dal_runner.search import SearchStrategy
from dal_runner.search.estimation import Fidelity, RoundEstimator, nested_split, round_split
from dal_runner.search.fixed import FixedSearch
from dal_runner.search.inas import INASSearch
from dal_runner.search.random import RandomSearch
from dal_runner.search.reinforce import Controller, ReinforceSearch, policy_gradient_loss
from dal_runner.search.space import ResNetSpace, best
from dal_runner.train import fit
from dal_runner.config import TrainerConfig

from conftest import compose

LABELED = torch.arange(200, 240)  # 40 pool indices: |V'| = 8, |S'| = 32
SPACE = ResNetSpace(["basic", "bottleneck"], (12, 4))


class Scores:
    """A test input for the estimator argument: a deterministic score per architecture, calls recorded.

    With `curves`, it plays a learning curve instead: accuracy at epoch e is curve[e - 1], and the
    `on_epoch` callback (early stopping) sees the same numbers the loop's estimator would give it.
    """

    def __init__(self, score=None, curves=None, epochs=4):
        self.score, self.curves, self.epochs, self.calls = score, curves or {}, epochs, []

    def __call__(self, spec, train_idx, val_idx, seed, on_epoch=None):
        self.calls.append((spec, train_idx.clone(), val_idx.clone(), seed))
        if spec in self.curves:
            curve = self.curves[spec]
            for epoch in range(1, self.epochs + 1):
                if on_epoch is not None and on_epoch(epoch, lambda: curve[epoch - 1]):
                    return curve[epoch - 1]
            return curve[-1]
        return self.score(spec)


def size_score(spec):
    """Bigger is better, with bottleneck worth one extra block: a unique best at (bottleneck, 12, 4)."""
    p = spec.params
    return (p["n_blocks"] * p["n_stacks"] + (p["block"] == "bottleneck")) / 100


def resnet(block, i, j):
    return ArchSpec("resnet", block=block, n_blocks=i, n_stacks=j)


# ------------------------------------------------------------------ the shared interface
@pytest.mark.parametrize("cls", [FixedSearch, INASSearch, RandomSearch, ReinforceSearch])
def test_every_strategy_has_the_loop_select_signature(cls):
    expected = inspect.signature(SearchStrategy.select)
    assert list(inspect.signature(cls.select).parameters) == list(expected.parameters)


# ------------------------------------------------------------------ random search
def test_random_search_trains_exactly_the_budget_of_distinct_architectures():
    scores = Scores(size_score)
    result = RandomSearch(SPACE, seed=0, budget=5).select(0, LABELED, None, scores)
    assert len(scores.calls) == 5 and len(result.candidates) == 5
    assert len({repr(c[0]) for c in scores.calls}) == 5
    assert [r["step"] for r in result.candidates] == [1, 2, 3, 4, 5]


def test_random_search_picks_the_best_sample_on_v_prime():
    scores = Scores(size_score)
    result = RandomSearch(SPACE, seed=3, budget=6).select(2, LABELED, None, scores)
    best = max(scores.calls, key=lambda c: size_score(c[0]))[0]
    assert result.spec == best
    assert [r["candidate"] for r in result.candidates if r["chosen"]] == [repr(best)]


def test_random_search_trains_a_space_smaller_than_the_budget_whole(caplog):
    small = ResNetSpace(["basic"], (2, 2))
    scores = Scores(size_score)
    with caplog.at_level("INFO", logger="dal_runner"):
        search = RandomSearch(small, seed=0, budget=10)
    # said once, at the start (search.csv then shows 4 candidates a round, not 10)
    assert "search.budget=10: the space holds 4 architectures; each round trains all of them" in caplog.text
    result = search.select(0, LABELED, None, scores)
    assert sorted((r["n_blocks"], r["n_stacks"]) for r in result.candidates) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert result.spec == resnet("basic", 2, 2)


def test_monotone_random_search_never_samples_less_than_the_previous_choice():
    search = RandomSearch(SPACE, seed=0, budget=20, monotone=True)
    for rnd in range(5):
        result = search.select(rnd, LABELED, resnet("basic", 5, 2), Scores(size_score))
        assert all(r["n_blocks"] >= 5 and r["n_stacks"] >= 2 for r in result.candidates)
    free = RandomSearch(SPACE, seed=0, budget=20).select(0, LABELED, resnet("basic", 5, 2), Scores(size_score))
    assert any(r["n_blocks"] < 5 or r["n_stacks"] < 2 for r in free.candidates)


def test_random_search_is_seeded_per_round():
    def arches(seed, rnd):
        return [r["candidate"] for r in RandomSearch(SPACE, seed=seed, budget=4).select(rnd, LABELED, None,
                                                                                    Scores(size_score)).candidates]

    assert arches(1, 2) == arches(1, 2)
    assert arches(1, 2) != arches(1, 3) and arches(1, 2) != arches(2, 2)


# ------------------------------------------------------------------ REINFORCE
def test_policy_gradient_loss_is_the_lecture_estimate_by_hand():
    log_probs = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    rewards, b = torch.tensor([0.9, 0.5, 0.7]), 0.6
    loss = policy_gradient_loss(log_probs, rewards, b)
    # -(1/3) [(-1)(0.3) + (-2)(-0.1) + (-0.5)(0.1)] = -(1/3)(-0.15) = 0.05
    assert loss.item() == pytest.approx(0.05)
    loss.backward()  # d loss / d log P(a^k) = -(R_k - b) / m
    assert log_probs.grad.tolist() == pytest.approx([-0.1, 0.1 / 3, -0.1 / 3])


def marginal(search, keep):
    """P(the controller emits a choice with keep(choice)), summed exactly over the whole space."""
    choices = search.space.choices()
    index = {b: k for k, b in enumerate(search.space.blocks)}
    actions = torch.tensor([[index[b], i - 1, j - 1] for b, i, j in choices])
    with torch.no_grad():
        p = search.controller(actions)[1].exp()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-4)
    return sum(float(pk) for pk, c in zip(p, choices) if keep(c))


@pytest.mark.parametrize("keep", [lambda c: c[0] == "bottleneck", lambda c: c[2] == 2, lambda c: c[1] == 7],
                         ids=["block", "stacks", "blocks"])
def test_a_fixed_reward_favouring_one_choice_raises_its_probability(keep):
    search = ReinforceSearch(SPACE, seed=0, budget=8, children=8, lr=0.05)
    generator = torch.Generator().manual_seed(0)
    before = marginal(search, keep)
    for _ in range(15):
        actions = search.sample(8, generator)
        search.update(actions, [1.0 if keep(search.decode(a)) else 0.0 for a in actions.tolist()])
    after = marginal(search, keep)
    assert after > before + 0.2, (before, after)


def test_a_reward_that_favours_nothing_leaves_the_controller_where_it_was():
    search = ReinforceSearch(SPACE, seed=0, budget=4, children=4)
    before = [p.detach().clone() for p in search.controller.parameters()]
    search.update(search.sample(4, torch.Generator().manual_seed(0)), [0.5, 0.5, 0.5, 0.5])  # R_k - b = 0
    assert all(torch.equal(a, b) for a, b in zip(before, search.controller.parameters()))


def test_the_baseline_is_a_moving_average_of_the_rewards():
    search = ReinforceSearch(SPACE, seed=0, budget=2, children=2, baseline_decay=0.5)
    g = torch.Generator().manual_seed(0)
    assert search.update(search.sample(2, g), [0.2, 0.6]) == pytest.approx(0.4)  # first step: the batch mean
    assert search.baseline == pytest.approx(0.5 * 0.2 + 0.5 * 0.6)  # b: 0.2, then 0.5 * 0.2 + 0.5 * 0.6
    assert search.update(search.sample(2, g), [1.0, 1.0]) == pytest.approx(0.4)  # b of the previous children
    assert search.baseline == pytest.approx(0.85)


def test_reinforce_honours_the_budget_steps_times_children():
    scores = Scores(size_score)
    search = ReinforceSearch(SPACE, seed=0, budget=6, children=2)
    result = search.select(0, LABELED, None, scores)
    assert [r["step"] for r in result.candidates] == [1, 1, 2, 2, 3, 3]
    assert search.updates == 3
    trained = {repr(c[0]) for c in scores.calls}
    assert len(scores.calls) == len(trained) <= 6  # a child drawn twice in a round is reused, not retrained
    assert sum(not r["reused"] for r in result.candidates) == len(scores.calls)
    best = max((r for r in result.candidates), key=lambda r: r["val_accuracy"])
    assert repr(result.spec) == best["candidate"] and best["chosen"]


def test_reinforce_search_finds_the_rewarded_region_over_rounds():
    search = ReinforceSearch(SPACE, seed=0, budget=8, children=4, lr=0.1)

    def stacks(spec):
        return 1.0 if spec.params["n_stacks"] == 4 else 0.0

    for rnd in range(10):
        search.select(rnd, LABELED, None, Scores(stacks))
    assert marginal(search, lambda c: c[2] == 4) > 0.8


def test_state_dict_round_trip_gives_identical_next_samples(tmp_path):
    first = ReinforceSearch(SPACE, seed=5, budget=4, children=2)
    for rnd in range(3):
        first.select(rnd, LABELED, None, Scores(size_score))
    torch.save(first.state_dict(), tmp_path / "search.pt")
    resumed = ReinforceSearch(SPACE, seed=5, budget=4, children=2)
    resumed.load_state_dict(torch.load(tmp_path / "search.pt", weights_only=True))
    assert resumed.baseline == first.baseline and resumed.updates == first.updates == 6
    for rnd in (3, 4):  # two further rounds, so the optimiser state matters too
        a = first.select(rnd, LABELED, None, Scores(size_score))
        b = resumed.select(rnd, LABELED, None, Scores(size_score))
        assert [r["candidate"] for r in a.candidates] == [r["candidate"] for r in b.candidates]
    fresh = ReinforceSearch(SPACE, seed=5, budget=4, children=2)  # without the state: other samples
    assert [r["candidate"] for r in fresh.select(5, LABELED, None, Scores(size_score)).candidates] != \
        [r["candidate"] for r in first.select(5, LABELED, None, Scores(size_score)).candidates]


def test_loading_a_controller_of_another_space_is_refused():
    state = ReinforceSearch(SPACE, seed=0).state_dict()
    with pytest.raises(ValueError, match="search space changed"):
        ReinforceSearch(ResNetSpace(["basic"], (12, 4)), seed=0).load_state_dict(state)


def test_controller_decisions_follow_the_space_sizes():
    controller = Controller([2, 12, 4])
    actions, log_prob = controller(m=50, generator=torch.Generator().manual_seed(0))
    assert actions.shape == (50, 3) and log_prob.shape == (50,)
    assert actions[:, 0].max() < 2 and actions[:, 1].max() < 12 and actions[:, 2].max() < 4
    _, again = controller(actions)
    assert torch.allclose(again, log_prob)


# ------------------------------------------------------------------ lower fidelity
def test_every_strategy_records_the_fidelity_of_each_estimate():
    fidelity = Fidelity(epochs=7, subset=0.5)
    searches = [INASSearch("basic", seed=0, fidelity=fidelity), RandomSearch(SPACE, seed=0, fidelity=fidelity),
                ReinforceSearch(SPACE, seed=0, fidelity=fidelity)]
    for search in searches:
        scores = Scores(size_score)
        result = search.select(0, LABELED, None, scores)
        s_prime, v_prime = round_split(0, 0, LABELED, 0.2)
        for row in result.candidates:
            assert (row["epochs"], row["n_train"], row["stopped_early"]) == (7, 16, False)
        for _, train_idx, val_idx, _ in scores.calls:  # the same half of S' for every candidate of the round
            assert torch.equal(train_idx, scores.calls[0][1]) and torch.equal(val_idx, v_prime)
            assert set(train_idx.tolist()) <= set(s_prime.tolist())


def test_strategies_share_the_split_and_candidate_seeds():
    scored = {}
    for search in (INASSearch("basic", seed=4), RandomSearch(ResNetSpace(["basic"], (2, 2)), seed=4, budget=4)):
        scores = Scores(size_score)
        search.select(1, LABELED, None, scores)
        for spec, train_idx, val_idx, seed in scores.calls:
            key = repr(spec)
            assert scored.setdefault(key, (train_idx.tolist(), val_idx.tolist(), seed)) == \
                (train_idx.tolist(), val_idx.tolist(), seed)
    assert "A(basic,1,1)" in scored


def test_early_stopping_drops_a_clearly_losing_candidate():
    good, close, bad = resnet("basic", 1, 1), resnet("basic", 1, 2), resnet("basic", 2, 1)
    scores = Scores(curves={good: [0.3, 0.6, 0.7, 0.8], close: [0.3, 0.55, 0.7, 0.85], bad: [0.1, 0.2, 0.3, 0.4]})
    round_scores = RoundEstimator(scores, Fidelity(epochs=4, stop_at=0.5, stop_margin=0.1), 0, 0, LABELED, 0.2)
    first, second, third = (round_scores(spec, 0) for spec in (good, close, bad))
    assert (first.accuracy, first.epochs, first.stopped_early) == (0.8, 4, False)  # the first is never stopped
    assert (second.accuracy, second.epochs, second.stopped_early) == (0.85, 4, False)  # 0.55 >= 0.6 - 0.1
    assert (third.accuracy, third.epochs, third.stopped_early) == (0.2, 2, True)  # 0.2 < 0.6 - 0.1 at epoch 2


def test_a_candidate_scored_by_its_best_epoch_is_scored_by_its_best_v_prime_accuracy():
    """search.score=best (the active-iNAS authors' max_accuracy): the best V' accuracy over the
    epochs; last (the default): the accuracy after the last epoch. With early stopping, the best up
    to the stop."""
    peak, late = resnet("basic", 1, 1), resnet("basic", 1, 2)
    curves = {peak: [0.3, 0.8, 0.6, 0.7], late: [0.2, 0.5, 0.6, 0.75]}
    last = RoundEstimator(Scores(curves=curves), Fidelity(epochs=4), 0, 0, LABELED, 0.2)
    best = RoundEstimator(Scores(curves=curves), Fidelity(epochs=4, score="best"), 0, 0, LABELED, 0.2)
    assert [last(spec, 0).accuracy for spec in (peak, late)] == [0.7, 0.75]  # late wins on the last epoch
    assert [best(spec, 0).accuracy for spec in (peak, late)] == [0.8, 0.75]  # peak wins on its best
    # stopped early at epoch 2 (0.3 < 0.8 - 0.1): its best up to then
    dropped = resnet("basic", 2, 1)
    curves[dropped] = [0.9, 0.3, 0.95, 0.95]
    stopping = RoundEstimator(Scores(curves=curves), Fidelity(epochs=4, stop_at=0.5, score="best"), 0, 0, LABELED, 0.2)
    stopping(peak, 0)
    estimate = stopping(dropped, 0)
    assert (estimate.accuracy, estimate.epochs, estimate.stopped_early) == (0.9, 2, True)
    with pytest.raises(ValueError, match="search.score=mean: accepted: null or last"):
        Fidelity(epochs=4, score="mean")


def test_early_stopped_candidates_are_flagged_in_inas_rows():
    curves = {resnet("basic", 1, 1): [0.5, 0.6, 0.6, 0.6], resnet("basic", 1, 2): [0.2, 0.3, 0.9, 0.9],
              resnet("basic", 2, 1): [0.5, 0.7, 0.7, 0.7]}
    search = INASSearch("basic", seed=0, fidelity=Fidelity(epochs=4, stop_at=0.25, stop_margin=0.2))
    result = search.select(0, LABELED, None, Scores(curves=curves))
    rows = {r["candidate"]: r for r in result.candidates}
    assert rows["A(basic,1,2)"]["stopped_early"] and rows["A(basic,1,2)"]["epochs"] == 1  # a late bloomer, lost
    assert rows["A(basic,1,2)"]["val_accuracy"] == 0.2
    assert result.spec == resnet("basic", 2, 1)


def test_a_candidate_stopped_early_is_never_chosen():
    # A(1,1) peaks at the check (epoch 2) and then falls below the partial score of the stopped A(1,2)
    curves = {resnet("basic", 1, 1): [0.3, 0.7, 0.4, 0.35], resnet("basic", 1, 2): [0.1, 0.5, 0.9, 0.9],
              resnet("basic", 2, 1): [0.2, 0.65, 0.3, 0.3]}
    search = INASSearch("basic", seed=0, fidelity=Fidelity(epochs=4, stop_at=0.5, stop_margin=0.1))
    result = search.select(0, LABELED, None, Scores(curves=curves))
    assert [(r["candidate"], r["val_accuracy"], r["stopped_early"]) for r in result.candidates] == [
        ("A(basic,1,1)", 0.35, False), ("A(basic,1,2)", 0.5, True), ("A(basic,2,1)", 0.3, False)]
    assert result.spec == resnet("basic", 1, 1)
    rows = [{"val_accuracy": 0.9, "stopped_early": True, "n_params": 1, "n_blocks": 1, "n_stacks": 1},
            {"val_accuracy": 0.2, "stopped_early": False, "n_params": 9, "n_blocks": 3, "n_stacks": 3}]
    assert best(rows) == 1  # the same rule for random search and REINFORCE


@pytest.mark.parametrize("reuse", [True, False])
def test_early_stopping_gives_the_same_choice_with_or_without_reuse(reuse):
    # step 1 moves to A(1,2) (0.9 at the end); step 2 retrains it without reuse, where its 0.3 at
    # the check is below A(2,1)'s 0.8 from step 1: it must not be stopped and lose its place
    curves = {resnet("basic", 1, 1): [0.1, 0.1, 0.1, 0.1], resnet("basic", 1, 2): [0.2, 0.3, 0.6, 0.9],
              resnet("basic", 2, 1): [0.5, 0.8, 0.8, 0.8], resnet("basic", 1, 3): [0.2, 0.5, 0.7, 0.77],
              resnet("basic", 2, 2): [0.2, 0.5, 0.7, 0.7]}
    search = INASSearch("basic", seed=0, max_steps=3, reuse_candidates=reuse,
                        fidelity=Fidelity(epochs=4, stop_at=0.5, stop_margin=0.1))
    scores = Scores(curves=curves)
    result = search.select(0, LABELED, None, scores)
    assert result.spec == resnet("basic", 1, 2)
    step2 = [r for r in result.candidates if r["step"] == 2]
    assert step2[0]["candidate"] == "A(basic,1,2)" and step2[0]["val_accuracy"] == 0.9
    assert step2[0]["reused"] is reuse and not step2[0]["stopped_early"]


@pytest.mark.parametrize("reuse", [True, False])
def test_a_candidate_stopped_early_stays_stopped_when_offered_again(reuse):
    # from A(2,1) step 1 offers (2,1), (2,2), (3,1) and moves to (3,1); step 2 offers (2,2) again.
    # (2,2) was stopped at the check in step 1: retrained, it must stop again, not win at the end
    curves = {resnet("basic", 2, 1): [0.5, 0.5, 0.5, 0.5], resnet("basic", 2, 2): [0.1, 0.1, 0.9, 0.95],
              resnet("basic", 3, 1): [0.6, 0.6, 0.7, 0.8], resnet("basic", 4, 1): [0.3, 0.3, 0.3, 0.3]}
    search = INASSearch("basic", seed=0, start=(2, 1), max_steps=3, reuse_candidates=reuse,
                        fidelity=Fidelity(epochs=4, stop_at=0.5, stop_margin=0.1))
    result = search.select(0, LABELED, None, Scores(curves=curves))
    again = [r for r in result.candidates if r["step"] == 2 and r["candidate"] == "A(basic,2,2)"]
    assert again and again[0]["stopped_early"]
    assert result.spec == resnet("basic", 3, 1)


def test_fit_stops_when_the_epoch_callback_says_so():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    seen = []
    history = fit(model, x, y, TrainerConfig(epochs=10, batch_size=5), seed=0,
                  on_epoch=lambda e: seen.append(e) or e == 3)
    assert seen == [1, 2, 3] and len(history) == 3 and model.training


@pytest.mark.parametrize("kwargs,key", [({"subset": 0.0}, "search.subset"), ({"stop_at": 1.0}, "search.stop_at"),
                                        ({"stop_margin": -0.1}, "search.stop_margin")])
def test_bad_fidelity_values_name_their_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Fidelity(epochs=4, **kwargs)


# ------------------------------------------------------------------ config and end to end
@pytest.mark.parametrize("override,message", [
    ("search.budget=0", "search.budget=0: accepted: an integer >= 1"),
    ("search.children=2", "search.children=2: accepted: m >= 1 dividing search.budget=3"),
    ("search.blocks=[basic,wide]", "search.blocks=['basic', 'wide']: accepted: a non-empty list"),
    ("search.subset=1.5", "search.subset=1.5: accepted: a fraction of S' in (0, 1]"),
    ("search.stop_at=2", "search.stop_at=2.0: accepted: null (no early stopping)"),
    # search.epochs 15 (digits preset): 0.98 x 15 rounds to 15, the last epoch: nothing could stop early
    ("search.stop_at=0.98", "search.stop_at=0.98: the check would fall on the last of the 15 candidate epochs"),
    ("search.baseline_decay=1", "search.baseline_decay=1.0: accepted: a number in [0, 1)"),
])
def test_bad_search_values_are_one_line_config_errors(override, message):
    from dal_runner import run

    cfg = compose(["search=reinforce", override])
    with pytest.raises(ConfigError) as err:
        run.build(cfg)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_search_yamls_compose_with_their_documented_defaults():
    random_cfg = compose(["search=random"]).search
    assert (random_cfg.budget, random_cfg.monotone, list(random_cfg.blocks)) == (3, False, ["basic", "bottleneck"])
    reinforce_cfg = compose(["search=reinforce"]).search
    assert (reinforce_cfg.budget, reinforce_cfg.children, reinforce_cfg.baseline_decay) == (3, 3, 0.8)
    for name in ("fixed", "inas", "random", "reinforce"):
        cfg = compose([f"search={name}"]).search
        assert (cfg.subset, cfg.stop_at, cfg.stop_margin) == (1.0, None, 0.1)


TINY_RESNET = ["arch=resnet", "arch.width=4", "trainer.epochs=3", "search.epochs=2", "search.space=[3,2]"]


def _search_rows(folder):
    return list(csv.DictReader(io.StringIO((folder / "search.csv").read_text())))


def test_random_search_runs_end_to_end_on_digits(small_run):
    summary, folder = small_run("search=random", *TINY_RESNET, "search.budget=2", "search.monotone=true")
    assert summary["n_rounds"] == 3 and 0.0 <= summary["auc"] <= 1.0
    rows = _search_rows(folder)
    assert [int(r["round"]) for r in rows] == [0, 0, 1, 1, 2, 2]
    assert all(r["epochs"] == "2" and r["stopped_early"] == "False" for r in rows)
    assert [int(r["n_train"]) for r in rows] == [40, 40, 80, 80, 120, 120]  # S' = 80% of 50, 100, 150
    rounds = list(csv.DictReader(io.StringIO((folder / "rounds.csv").read_text())))
    chosen = [r["candidate"] for r in rows if r["chosen"] == "True"]
    assert chosen == [r["arch"] for r in rounds]
    for earlier, later in zip(chosen, chosen[1:]):  # monotone: never fewer blocks or stacks
        (i0, j0), (i1, j1) = (tuple(map(int, a.rstrip(")").split(",")[1:])) for a in (earlier, later))
        assert i1 >= i0 and j1 >= j0


def test_reinforce_runs_end_to_end_with_lower_fidelity(small_run):
    summary, folder = small_run("search=reinforce", *TINY_RESNET, "search.epochs=4", "search.budget=4",
                                "search.children=2", "search.subset=0.5", "search.stop_at=0.5",
                                "search.stop_margin=0.0")
    assert summary["n_rounds"] == 3
    rows = _search_rows(folder)
    assert [int(r["step"]) for r in rows] == [1, 1, 2, 2] * 3
    assert [int(r["n_train"]) for r in rows] == [20] * 4 + [40] * 4 + [60] * 4  # half of S'
    assert {(r["stopped_early"], r["epochs"]) for r in rows} == {("False", "4"), ("True", "2")}  # some stopped
    assert sum(1 for r in rows if r["chosen"] == "True") == 3


@pytest.mark.parametrize("search", [("search=reinforce", "search.budget=2", "search.children=2"),
                                    ("search=inas", "search.inherit=true")], ids=["reinforce", "inas-inherit"])
def test_a_stateful_search_resumes_to_the_uninterrupted_run(small_run, tmp_path, monkeypatch, search):
    """A run stopped after round 0 and resumed from state/ equals an uninterrupted run: the
    controller's weights, optimiser and baseline (REINFORCE), or the last model that candidates
    inherit from (search.inherit), travel in the state."""
    from dal_runner import run
    from dal_runner.execute import execute, resume_state
    from dal_runner.io import read_csv
    from dal_runner.query.softmax_response import SoftmaxResponse

    args = (*search, *TINY_RESNET, "search.epochs=2")
    small_run(*args, folder=tmp_path / "full")

    calls = {"n": 0}
    original = SoftmaxResponse.select

    def stop_in_round_1(self, ctx, k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # stands for a kill: the state of round 0 is on disk
        return original(self, ctx, k)

    monkeypatch.setattr(SoftmaxResponse, "select", stop_in_round_1)
    with pytest.raises(KeyboardInterrupt):
        small_run(*args, folder=tmp_path / "cut")
    monkeypatch.setattr(SoftmaxResponse, "select", original)
    from conftest import compose

    cfg = compose(["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=150",
                   "trainer.epochs=15", *args])
    exp = run.build(cfg)
    execute(exp, tmp_path / "cut", resume_state(exp, tmp_path / "cut"))
    assert read_csv(tmp_path / "cut" / "selected.csv") == read_csv(tmp_path / "full" / "selected.csv")
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    for name in ("search.csv", "rounds.csv"):
        assert strip(read_csv(tmp_path / "cut" / name)) == strip(read_csv(tmp_path / "full" / name))
    assert len({r["candidate"] for r in read_csv(tmp_path / "full" / "search.csv")}) > 1  # the search explored


def test_inherited_candidates_score_differently_from_scratch(small_run, tmp_path):
    from dal_runner.io import read_csv

    scores = {}
    for inherit in ("false", "true"):  # the same (nested) split both ways
        small_run("search=inas", *TINY_RESNET, "search.epochs=2", f"search.inherit={inherit}", "search.split=nested",
                  folder=tmp_path / inherit)
        scores[inherit] = [r["val_accuracy"] for r in read_csv(tmp_path / inherit / "search.csv")]
    first_round = sum(1 for r in read_csv(tmp_path / "true" / "search.csv") if r["round"] == "0")
    # round 0 has nothing to inherit from; later rounds' candidates start from the last chosen one
    assert scores["true"][:first_round] == scores["false"][:first_round]
    assert scores["true"][first_round:] != scores["false"][first_round:]


def test_candidates_inherit_the_chosen_candidate_which_never_saw_v_prime(small_run, tmp_path):
    # the weights the next round starts from (in the resume state) are the chosen candidate's: on
    # this round's V' they score exactly its recorded val_accuracy (the round's final model, trained
    # on V' too, would not)
    from dal_runner import run, state, train
    from dal_runner.io import read_csv
    from dal_runner.search.estimation import nested_split

    args = ("search=inas", *TINY_RESNET, "arch.width=8", "trainer.epochs=15", "search.epochs=10", "search.inherit=true")
    small_run(*args, folder=tmp_path / "run")
    saved = state.load(tmp_path / "run")
    t = saved["next_round"] - 1
    chosen = [r for r in read_csv(tmp_path / "run" / "search.csv") if r["round"] == str(t) and r["chosen"] == "True"]
    labeled = torch.tensor([r["pool_index"] for r in saved["selected"] if r["round"] <= t])
    _, v_prime = nested_split(0, labeled, 0.2)
    exp = run.build(compose(["budget.initial=50", "budget.batch=50", "budget.max_labels=150", *args]))
    spec = exp.search.spec((int(chosen[-1]["n_blocks"]), int(chosen[-1]["n_stacks"])))
    model = train.prepare(exp.build_model(spec), exp.device, exp.data.is_image)
    model.load_state_dict(saved["parent"])
    accuracy, _ = train.evaluate(model, exp.data.x_train[v_prime], exp.data.y_train[v_prime], 256)
    assert round(accuracy, 6) == float(chosen[-1]["val_accuracy"])


def test_nested_split_keeps_every_point_on_its_side_as_s_grows():
    pool = torch.randperm(20_000, generator=torch.Generator().manual_seed(3))
    seen_train, seen_val = set(), set()
    for n in (40, 400, 4000, 20_000):  # labeled sets that only grow, across blocks of pool indices
        s_prime, v_prime = nested_split(7, pool[:n], 0.2)
        s_set, v_set = set(s_prime.tolist()), set(v_prime.tolist())
        assert s_set | v_set == set(pool[:n].tolist()) and not s_set & v_set
        assert not v_set & seen_train and seen_val <= v_set  # no point changes side
        seen_train, seen_val = s_set, v_set
    assert abs(len(v_set) / 20_000 - 0.2) < 0.01
    assert torch.equal(nested_split(7, pool[:400], 0.2)[1], nested_split(7, pool[:400], 0.2)[1])
    assert not torch.equal(nested_split(8, pool[:400], 0.2)[1], nested_split(7, pool[:400], 0.2)[1])
    # a side left empty takes one point
    for fraction in (1e-6, 1 - 1e-6):
        s_prime, v_prime = nested_split(7, pool[:3], fraction)
        assert len(s_prime) >= 1 and len(v_prime) >= 1


def test_random_split_with_inheritance_is_refused():
    from dal_runner import run

    with pytest.raises(ConfigError, match="search.split=random: V' would hold points the inherited weights"):
        run.build(compose(["search=inas", "search.inherit=true", "search.split=random"]))


def test_search_estimates_train_under_the_joint_objective_too(small_run, tmp_path):
    from dal_runner.io import read_csv

    scores = {}
    for objective in ("cross_entropy", "joint_entropy"):
        small_run("search=inas", *TINY_RESNET, "arch.width=8", "search.epochs=6", f"trainer.objective={objective}",
                  "trainer.entropy_lambda=1.0", "budget.initial=300", "budget.max_labels=300", folder=tmp_path / objective)
        scores[objective] = [r["val_accuracy"] for r in read_csv(tmp_path / objective / "search.csv")
                             if r["round"] == "0"]
    # round 0: the same split, seeds and labeled set; only the unlabeled entropy term can move the scores
    assert len(set(scores["cross_entropy"])) > 1  # the candidates learn something
    assert scores["joint_entropy"] != scores["cross_entropy"]


def test_a_round_with_a_tiny_validation_set_says_so(caplog):
    scores = Scores(curves={})
    with caplog.at_level("WARNING", logger="dal_runner"):
        RoundEstimator(scores, Fidelity(), 0, 3, torch.arange(20), 0.2)  # |V'| = 4
        RoundEstimator(scores, Fidelity(), 0, 4, torch.arange(50), 0.2)  # |V'| = 10: enough
        RoundEstimator(scores, Fidelity(), 0, 5, torch.arange(100), 0.999)  # |S'| = 1 (it went on without a word)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["round 3: V' holds 4 of the 20 labeled points (search.val_fraction=0.2), so a candidate's "
                        "V' accuracy moves in steps of 0.25 and ties or noise choose the architecture; a larger "
                        "budget.initial or search.val_fraction helps",
                        "round 5: the candidates train on 1 of the 100 labeled points (search.val_fraction=0.999, "
                        "search.subset=1), too few for their V' accuracies to rank architectures; a smaller "
                        "search.val_fraction helps"]


@pytest.mark.parametrize("stop_at", [None, 0.5])
def test_an_estimate_records_the_epochs_trained_when_the_trainer_stops_early(stop_at):
    """trainer.stop_at_train_accuracy (BADGE's rule) ends a candidate's training before its planned
    epochs, outside the search's own early stopping: search.csv's `epochs` says how many it trained
    (the loop's estimator calls on_epoch after every epoch it trains)."""
    def trains_three_of_seven(spec, train_idx, val_idx, seed, on_epoch=None):
        for epoch in range(1, 4):
            if on_epoch is not None and on_epoch(epoch, lambda: 0.5):
                break
        return 0.5

    estimate = RoundEstimator(trains_three_of_seven, Fidelity(epochs=7, stop_at=stop_at), 0, 0, LABELED, 0.2)
    first = estimate(resnet("basic", 1, 1), 0)
    assert (first.epochs, first.stopped_early) == (3, False)


# ------------------------------------------------------------------ a candidate that diverges
def test_a_candidate_whose_training_diverges_is_out_of_the_running_and_the_round_goes_on():
    from dal_runner.train import TrainingDiverged

    def score(spec):  # A(1, 2) would win on size; its training blows up instead
        if (spec.params["n_blocks"], spec.params["n_stacks"]) == (1, 2):
            raise TrainingDiverged("training loss became nan at epoch 1")
        return size_score(spec)

    for search in (INASSearch("basic", seed=0), RandomSearch(ResNetSpace(["basic"], (1, 2)), seed=0, budget=2)):
        result = search.select(0, LABELED, None, Scores(score))
        rows = {r["candidate"]: r for r in result.candidates}
        assert rows["A(basic,1,2)"]["diverged"] is True and rows["A(basic,1,2)"]["val_accuracy"] == 0.0
        assert not rows["A(basic,1,2)"]["chosen"] and result.spec != resnet("basic", 1, 2)
        assert all(r["diverged"] is False for name, r in rows.items() if name != "A(basic,1,2)")
