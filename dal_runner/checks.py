"""Checks of the plain objects run.py builds from the config (budget, trainer): each bad value
is a ConfigError naming the key, the value and what is accepted."""

from __future__ import annotations

from typing import Optional

from dal_runner.augment import FILLS, Augment
from dal_runner.config import TrainerConfig
from dal_runner.errors import ConfigError, check_choice, check_positive
from dal_runner.features import PRECISIONS
from dal_runner.loop import Budget

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adam", "sgd")
OBJECTIVES = ("cross_entropy", "joint_entropy")


def check_budget(b: Budget, pool_size: Optional[int] = None) -> Budget:
    check_positive("budget.initial", b.initial)
    check_positive("budget.max_labels", b.max_labels)
    if b.max_rounds is not None:
        check_positive("budget.max_rounds", b.max_rounds)
    if pool_size is not None and b.max_labels > pool_size:
        raise ConfigError("budget.max_labels", b.max_labels, f"at most the pool size {pool_size}",
                          "larger than the unlabeled pool")
    if b.initial > b.max_labels:
        raise ConfigError("budget.initial", b.initial, f"at most budget.max_labels={b.max_labels}",
                          "more initial labels than the whole budget")
    return b


def check_trainer(t: TrainerConfig) -> TrainerConfig:
    check_choice("trainer.optimizer", t.optimizer, OPTIMIZERS)
    check_choice("trainer.objective", t.objective, OBJECTIVES)
    check_choice("trainer.precision", t.precision, PRECISIONS)
    check_positive("trainer.lr", t.lr)
    check_positive("trainer.epochs", t.epochs)
    check_positive("trainer.batch_size", t.batch_size)
    check_positive("trainer.eval_batch_size", t.eval_batch_size)
    if t.steps_per_epoch is not None:
        check_positive("trainer.steps_per_epoch", t.steps_per_epoch)
    check_positive("trainer.weight_decay", t.weight_decay, allow_zero=True)
    if t.weight_decay_scope is not None:
        check_choice("trainer.weight_decay_scope", t.weight_decay_scope, ("all", "conv"))
    if not 0.0 <= t.momentum < 1.0:  # with adam too: unread there, but a value no optimizer takes
        raise ConfigError("trainer.momentum", t.momentum, "a number in [0, 1)"
                          + ("" if t.optimizer == "sgd" else " (read with trainer.optimizer=sgd only)"))
    if t.optimizer == "sgd" and t.nesterov and t.momentum == 0.0:
        raise ConfigError("trainer.nesterov", t.nesterov, "false with trainer.momentum=0, or a momentum in (0, 1)",
                          "Nesterov's momentum needs a momentum")
    check_positive("trainer.lr_gamma", t.lr_gamma)
    check_milestones("trainer.lr_milestones", t.lr_milestones, t.epochs, "trainer.epochs")
    check_positive("trainer.entropy_lambda", t.entropy_lambda, allow_zero=True)
    if t.stop_at_train_accuracy is not None and not 0.0 < t.stop_at_train_accuracy <= 1.0:  # nan too
        raise ConfigError("trainer.stop_at_train_accuracy", t.stop_at_train_accuracy,
                          "null (train all trainer.epochs) or an accuracy in (0, 1], e.g. 0.99 (BADGE's)")
    if t.divergence_factor is not None and not t.divergence_factor > 1:  # nan too
        raise ConfigError("trainer.divergence_factor", t.divergence_factor, "a number > 1, or null (NaN/inf only)")
    return t


def check_milestones(key: str, milestones, epochs: int, epochs_key: str) -> None:
    """Learning-rate milestones: increasing epochs before the last (a later one never acts)."""
    m = list(milestones)
    accepted = (f"increasing epochs in 1..{epochs - 1} ({epochs_key}={epochs}), or []" if epochs > 1 else
                f"[] ({epochs_key}={epochs}: no epoch after which to lower it)")
    if any(e < 1 for e in m):
        raise ConfigError(key, m, accepted, "a milestone is the number of epochs after which lr *= lr_gamma")
    if m != sorted(set(m)):
        raise ConfigError(key, m, accepted, "milestones must increase")
    if any(e >= epochs for e in m):
        raise ConfigError(key, m, accepted, "a milestone at or after the last epoch never lowers the learning rate")


def check_augment(a: Augment) -> Augment:
    """dataset.augment: pad-and-crop pixels, flip, rotation degrees, shift fraction."""
    check_positive("dataset.augment.crop_padding", a.crop_padding, allow_zero=True)
    check_positive("dataset.augment.rotation", a.rotation, allow_zero=True)
    if a.rotation > 180:
        raise ConfigError("dataset.augment.rotation", a.rotation, "degrees in [0, 180] (uniform in [-r, r])")
    if not 0.0 <= a.shift < 1.0:
        raise ConfigError("dataset.augment.shift", a.shift, "a fraction of the image size in [0, 1)")
    check_choice("dataset.augment.fill", a.fill, FILLS)
    return a


def check_augment_fits(a: Augment, side: int) -> None:
    """Pad-and-crop by P pixels shifts an image by up to P: at P >= its side a crop can hold none of
    it (CIFAR with P = 40 trained to near chance without a word)."""
    if a.crop_padding >= side:
        raise ConfigError("dataset.augment.crop_padding", a.crop_padding,
                          f"0 .. {side - 1} for images of side {side} (4 is the usual for 32 x 32)",
                          "a crop shifted by that many pixels can miss the whole image")


def table_augment_error(augment: dict) -> ConfigError:
    """Image augmentation asked for on a table: the first key that is on, named."""
    key, value = next((k, v) for k, v in augment.items() if k != "fill" and v)
    shown = str(value).lower() if isinstance(value, bool) else value
    off = "false" if isinstance(value, bool) else "0"
    return ConfigError(f"dataset.augment.{key}", shown, f"dataset.augment.{key}={off}: all off for tabular data",
                       "image augmentation on a table")
