"""Trainer: the Ranganathan joint objective, the divergence check, precision and memory format."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from dal_runner import train
from dal_runner.config import TrainerConfig


class Logits(nn.Module):
    """Returns its input as the logits."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.w * x


def test_joint_entropy_term_is_lambda_times_mean_unlabeled_entropy():
    # labeled points 0..39 are confident (entropy ~ 0), unlabeled 40..49 uniform (entropy log 5):
    # the term is lambda log 5 only if every draw is an unlabeled point
    x = torch.zeros(50, 5)
    x[:40, 0] = 50.0
    loss = train.entropy_regulariser(x, torch.arange(40, 50), lam=0.3, batch_size=16)
    value = loss(Logits(), 0, torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(0.3 * math.log(5), rel=1e-6)


def test_the_joint_term_draws_from_its_own_generator():
    # with lambda = 0 the joint objective must train exactly as cross-entropy: same labeled batches
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    y = (x[:, 0] > 0).long()
    weights = {}
    for name, reg in (("ce", None), ("joint", train.entropy_regulariser(x, torch.arange(40, 200), 0.0, 16))):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
        train.fit(model, x[:40], y[:40], TrainerConfig(epochs=4, batch_size=8, lr=0.01), 1, extra_loss=reg)
        weights[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.equal(weights["ce"], weights["joint"])


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


# ---- precision and memory format (the GPU's fast path, exercised on the CPU) ----------------

def _small_resnet():
    from dal_runner.arch import ArchSpec, build_network
    from dal_runner.data import Normalize

    torch.manual_seed(0)
    return build_network(ArchSpec("resnet", block="basic", n_blocks=1, n_stacks=2, stem="cifar", width=8),
                         (3, 8, 8), 4, Normalize(255.0, (0.5,) * 3, (0.25,) * 3, True), 0.0)


def _conv_output_dtypes(model):
    seen = []
    first_conv = next(m for m in model.body.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    return seen


def test_auto_precision_is_fp32_on_the_cpu_and_bf16_only_when_asked():
    cpu = torch.device("cpu")
    assert train.amp_dtype("auto", cpu) is None
    assert train.amp_dtype("fp32", cpu) is None
    assert train.amp_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="trainer.precision='fp16'.*auto, bf16, fp32"):
        train.amp_dtype("fp16", cpu)


@pytest.mark.parametrize("precision, expected", [("auto", torch.float32), ("bf16", torch.bfloat16)])
def test_training_evaluation_and_queries_run_in_the_prepared_precision(precision, expected):
    from dal_runner.features import infer

    model = train.prepare(_small_resnet(), torch.device("cpu"), True, precision, channels_last=True)
    conv = next(m for m in model.body.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = _conv_output_dtypes(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    params = TrainerConfig(epochs=2, batch_size=16, lr=1e-2)
    history = train.fit(model, x, y, params, seed=0)
    assert len(history) == 2 and all(math.isfinite(v) for v in history)
    assert seen and set(seen) == {expected}  # every training forward pass
    seen.clear()
    probs, emb = infer(model, x, batch_size=32, embeddings=True)
    assert set(seen) == {expected}
    # whatever the compute precision, the outputs that selection works on are float32
    assert probs.dtype == emb.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(64), atol=1e-5)
    acc, loss = train.evaluate(model, x, y, batch_size=32)
    assert 0.0 <= acc <= 1.0 and math.isfinite(loss)


def test_bf16_forward_passes_agree_with_fp32_to_bf16_accuracy():
    from dal_runner.features import infer

    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    fp32 = train.prepare(_small_resnet(), torch.device("cpu"), True, "fp32")
    bf16 = train.prepare(_small_resnet(), torch.device("cpu"), True, "bf16", channels_last=True)
    p32, _ = infer(fp32, x, 32)
    p16, _ = infer(bf16, x, 32)
    assert not torch.equal(p32, p16)  # the bf16 path really ran
    assert torch.allclose(p32, p16, atol=0.05)


def test_inference_on_indexed_rows_equals_inference_on_their_copy():
    from dal_runner.features import infer

    model = train.prepare(_small_resnet(), torch.device("cpu"), True)
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    idx = torch.tensor([49, 3, 3, 17, 0, 22, 8])
    p_idx, e_idx = infer(model, x, 3, embeddings=True, index=idx)  # batches of 3: a ragged last batch
    p_copy, e_copy = infer(model, x[idx], 3, embeddings=True)
    assert torch.equal(p_idx, p_copy) and torch.equal(e_idx, e_copy)
    assert infer(model, x, 3, index=torch.tensor([], dtype=torch.long))[0].shape[0] == 0


def test_an_epoch_is_one_pass_over_the_labeled_set_unless_its_steps_are_fixed():
    from dal_runner.train import _batches

    cpu = torch.device("cpu")
    # steps_per_epoch=null: every point once, batches of 64 and the remainder (130 = 64 + 64 + 2)
    batches = list(_batches(130, 64, None, torch.Generator().manual_seed(0), cpu))
    assert [len(b) for b in batches] == [64, 64, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(130))
    # a remainder of one point joins the batch before it (batch norm needs two values per channel)
    assert [len(b) for b in _batches(129, 64, None, torch.Generator().manual_seed(0), cpu)] == [64, 65]
    # one point alone: twice in its batch, for the same reason
    assert [b.tolist() for b in _batches(1, 64, None, torch.Generator().manual_seed(0), cpu)] == [[0, 0]]
    # a fixed number of steps: full batches only, a new permutation where the last has too few left
    batches = list(_batches(130, 64, 5, torch.Generator().manual_seed(0), cpu))
    assert [len(b) for b in batches] == [64] * 5
    assert sorted(torch.cat(batches[:2]).tolist()) != sorted(torch.cat(batches[2:4]).tolist())
    for first, second in ((0, 1), (2, 3)):  # within one permutation, no point twice
        assert not set(batches[first].tolist()) & set(batches[second].tolist())


def test_a_long_training_logs_a_heartbeat_and_a_short_one_stays_quiet(caplog):
    from dal_runner.progress import Heartbeat

    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    params = TrainerConfig(epochs=3, batch_size=4)
    with caplog.at_level("INFO", logger="dal_runner"):
        train.fit(Logits(), x, y, params, 0, heartbeat=Heartbeat("round 2: train A", 3, every=0.0))
        train.fit(Logits(), x, y, params, 0, heartbeat=Heartbeat("round 3: train B", 3, every=3600.0))
    lines = [r.getMessage() for r in caplog.records]
    # every epoch but the last (the round's own line follows it), none for the quick one
    assert [m.split(", loss")[0] for m in lines] == ["round 2: train A: epoch 1/3", "round 2: train A: epoch 2/3"]


def test_training_stops_at_the_first_epoch_that_reaches_the_train_accuracy(caplog):
    """BADGE's rule: train until the epoch's accuracy on its own batches reaches the threshold.
    The epochs before the stop are the same as without the rule (same seed, same batches)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()

    def run(**kw):
        torch.manual_seed(1)
        model = nn.Linear(4, 2)
        losses = train.fit(model, x, y, TrainerConfig(epochs=60, batch_size=32, lr=0.01, **kw), seed=3)
        return model, losses

    _, full = run()
    model, stopped = run(stop_at_train_accuracy=0.9)
    assert 1 <= len(stopped) < len(full) == 60 and stopped == full[:len(stopped)]
    # the model it stopped with is at least near the threshold on S (the rule counts the epoch's
    # batches while the weights still move, so the final weights are measured here, loosely)
    with torch.no_grad():
        assert float((model(x).argmax(1) == y).float().mean()) >= 0.85
    # an accuracy never reached (random labels, a linear model): every epoch runs, and the log says
    # that the cap, not the target, ended it (the round departs from the protocol)
    noisy = torch.randint(0, 2, (300,), generator=g)
    with caplog.at_level(logging.WARNING, logger="dal_runner"):
        losses = train.fit(nn.Linear(4, 2), x, noisy,
                           TrainerConfig(epochs=20, batch_size=32, stop_at_train_accuracy=1.0), seed=3)
    assert len(losses) == 20
    assert "training stopped at its last epoch (20) with a training accuracy of 0." in caplog.text
    assert "short of trainer.stop_at_train_accuracy=1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dal_runner"):
        run(stop_at_train_accuracy=0.9)  # reached: no warning
    assert caplog.text == ""


def test_a_loss_far_above_chance_level_within_the_first_epoch_is_divergence():
    # a first epoch that is already far off: the first epoch's loss is no reference, chance level is
    torch.manual_seed(0)
    x, y = torch.randn(64, 3) * 1e4, torch.randint(0, 4, (64,))
    model = nn.Linear(3, 4)
    with pytest.raises(train.TrainingDiverged, match=r"over trainer.divergence_factor=100 x chance level's 1.386"):
        train.fit(model, x, y, TrainerConfig(epochs=3, batch_size=8, lr=1.0), 0)
    # a sane run is not stopped (its loss stays near or below chance level)
    torch.manual_seed(0)
    losses = train.fit(nn.Linear(3, 4), torch.randn(64, 3), y, TrainerConfig(epochs=3, batch_size=8), 0)
    assert len(losses) == 3


def test_a_single_training_point_is_trained_on_twice_per_batch_so_batch_norm_has_two_values():
    from dal_runner.arch import ArchSpec, build_network
    from dal_runner.data import Normalize

    torch.manual_seed(0)
    # 8 x 8 input, 4 stacks: the last feature map is 1 x 1, where batch norm needs two values per channel
    model = build_network(ArchSpec("resnet", block="basic", n_blocks=1, n_stacks=4, stem="cifar", width=4),
                          (1, 8, 8), 3, Normalize(255.0, (0.5,), (0.25,), True), 0.0)
    x, y = torch.randint(0, 256, (1, 1, 8, 8), dtype=torch.uint8), torch.tensor([2])
    for steps in (None, 3):
        losses = train.fit(model, x, y, TrainerConfig(epochs=2, batch_size=8, steps_per_epoch=steps), 0)
        assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    batches = list(train._batches(1, 8, None, torch.Generator().manual_seed(0), torch.device("cpu")))
    assert [b.tolist() for b in batches] == [[0, 0]]


def test_sgd_nesterov_without_momentum_is_refused_naming_the_key():
    from dal_runner.checks import check_trainer
    from dal_runner.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.nesterov=True: Nesterov's momentum needs a momentum"):
        check_trainer(TrainerConfig(optimizer="sgd", momentum=0.0, nesterov=True))
    check_trainer(TrainerConfig(optimizer="sgd", momentum=0.9, nesterov=True))


def test_weight_decay_on_conv_kernels_alone_is_kerass_l2_kernel_regulariser():
    """trainer.weight_decay_scope=conv with weight_decay 2c takes the step that SGD (Nesterov) takes
    on the loss plus c * (sum of squared conv kernels), Keras' kernel_regularizer=l2(c) on every
    Conv2D (the active-iNAS authors' code): batch norm and the linear head are not decayed."""
    from dal_runner.arch import resnet

    def net():
        torch.manual_seed(0)
        return nn.Sequential(resnet.body((3, 8, 8), "basic", 1, 2), nn.Linear(128, 4))

    x, y = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 4
    c = 5e-4
    params = dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True)
    keras, ours = net(), net()
    opt_keras = train._optimizer(keras, TrainerConfig(**params, weight_decay=0.0))
    opt_ours = train._optimizer(ours, TrainerConfig(**params, weight_decay=2 * c, weight_decay_scope="conv"))
    for _ in range(3):  # momentum carries the decay into later steps too
        kernels = [m.weight for m in keras.modules() if isinstance(m, nn.Conv2d)]
        loss = nn.functional.cross_entropy(keras(x), y) + c * sum((w ** 2).sum() for w in kernels)
        opt_keras.zero_grad()
        loss.backward()
        opt_keras.step()
        opt_ours.zero_grad()
        nn.functional.cross_entropy(ours(x), y).backward()
        opt_ours.step()
    for (name, a), b in zip(keras.named_parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    # and it is not decay of everything: the same with scope "all" moves the head and batch norm too
    everything = net()
    opt_all = train._optimizer(everything, TrainerConfig(**params, weight_decay=2 * c, weight_decay_scope="all"))
    for _ in range(3):
        opt_all.zero_grad()
        nn.functional.cross_entropy(everything(x), y).backward()
        opt_all.step()
    assert not torch.allclose(everything[1].weight, ours[1].weight, rtol=0, atol=1e-6)


def test_grad_clip_value_clamps_every_gradient_element_before_the_step():
    """BADGE's code: p.grad clamped into [-0.1, 0.1] before each Adam step. With plain SGD (lr 1,
    no momentum) one step moves each weight by exactly its clamped gradient."""
    g = torch.Generator().manual_seed(0)
    x = 10 * torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()

    def step(clip):
        torch.manual_seed(1)
        model = nn.Linear(4, 2)
        before = [p.detach().clone() for p in model.parameters()]
        train.fit(model, x, y, TrainerConfig(optimizer="sgd", lr=1.0, momentum=0.0, epochs=1, batch_size=64,
                                             grad_clip_value=clip), seed=0)
        return torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])

    free, clipped = step(None), step(0.01)
    assert free.abs().max() > 0.1  # the unclipped step is large: the clamp has work to do
    assert torch.allclose(clipped, free.clamp(-0.01, 0.01), rtol=0, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_lr_milestone_multiplies_the_rate_by_gamma_from_that_epoch_on(optimizer):
    """lr_milestones=[2] with lr_gamma=0: from the third epoch the rate is 0, so 5 epochs leave the
    weights where 2 epochs do (a linear model: no batch-norm statistics move either); without the
    milestone they go on moving."""
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()

    def weights(**kw):
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        train.fit(model, x, y, TrainerConfig(optimizer=optimizer, lr=0.05, batch_size=16, **kw), seed=1)
        return model.weight.detach().clone()

    two = weights(epochs=2)
    assert torch.equal(weights(epochs=5, lr_milestones=[2], lr_gamma=0.0), two)
    assert not torch.allclose(weights(epochs=5), two)
    # gamma 0.5 at epoch 2: the next epochs move the weights, by less than the full rate does
    half, full = weights(epochs=3, lr_milestones=[2], lr_gamma=0.5), weights(epochs=3)
    assert 0 < float((half - two).norm()) < float((full - two).norm())


def test_evaluate_gives_the_accuracy_and_the_mean_cross_entropy():
    class Fixed(nn.Module):  # probabilities (0.8, 0.2) for every input
        def embed(self, x):
            return torch.ones(x.shape[0], 1)

        def head(self, h):
            return h * torch.log(torch.tensor([[0.8, 0.2]]))

    acc, loss = train.evaluate(Fixed(), torch.zeros(4, 1), torch.tensor([0, 0, 0, 1]), batch_size=3)
    assert acc == pytest.approx(0.75)
    assert loss == pytest.approx(-(3 * math.log(0.8) + math.log(0.2)) / 4, rel=1e-5)
