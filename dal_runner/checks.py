"""Checks of the plain objects run.py builds from the config (budget, trainer), and of the config's
keys that need neither the data nor the device (run.check_config): each bad value is a ConfigError
naming the key, the value and what is accepted."""

from __future__ import annotations

from typing import Optional

from omegaconf import DictConfig, OmegaConf

from dal_runner.augment import FILLS, Augment
from dal_runner.config import TrainerConfig
from dal_runner.data import IMAGE_SIDE
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
    if t.grad_clip_value is not None and not 0 < t.grad_clip_value < float("inf"):  # nan too
        raise ConfigError("trainer.grad_clip_value", t.grad_clip_value, "a finite number > 0, or null (no clamping)")
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


# ------------------------------------------------------------------------------ checks of the config
# (run.check_config: before any job starts, with neither the data nor the device)
def check_tabular(cfg: DictConfig) -> None:
    """OpenML's data sets are tables: known before they are loaded (an npz file's shape is not)."""
    if cfg.dataset.name == "openml" and cfg.arch.name != "mlp":
        # the option as given (arch=resnet18), where Hydra's node says it (the checks before any job)
        option = OmegaConf.select(cfg, "hydra.runtime.choices.arch", default=None) or cfg.arch.name
        raise ConfigError("arch", option, "mlp (with search=fixed) for dataset=openml",
                          f"a {cfg.arch.name} needs image data and OpenML data sets are tables")


def check_augment_side(cfg: DictConfig) -> None:
    """Pad-and-crop against the image side, where it is known before the data is read."""
    side = IMAGE_SIDE.get(cfg.dataset.name)
    if side is not None:
        check_augment_fits(Augment(**OmegaConf.to_container(cfg.dataset.augment, resolve=True)), side)


def check_pool_size(cfg: DictConfig) -> None:
    """dataset.pool_size bounds the pool, so a budget past it is known to fail without the data."""
    size, labels = cfg.dataset.get("pool_size"), cfg.budget.max_labels
    if size is not None and isinstance(labels, int) and labels > size:
        raise ConfigError("budget.max_labels", labels, f"at most dataset.pool_size={size} (the most the pool can "
                          f"hold), or a larger dataset.pool_size", "larger than the pool")


def check_decay_scope(cfg: DictConfig) -> None:
    """trainer.weight_decay_scope=conv decays convolution kernels alone: an MLP has none."""
    if cfg.trainer.weight_decay_scope == "conv" and cfg.trainer.weight_decay > 0 and cfg.arch.name == "mlp":
        raise ConfigError("trainer.weight_decay_scope", "conv", "all (or null) with arch=mlp, or trainer.weight_decay=0",
                          f"arch=mlp has no convolution kernels, so trainer.weight_decay={cfg.trainer.weight_decay} "
                          "would decay nothing")


def check_mc_dropout(cfg: DictConfig) -> None:
    uses_mc = cfg.query.name == "mc_dropout" or (cfg.query.name == "albl" and "mc_dropout" in cfg.query.strategies)
    if uses_mc and cfg.arch.dropout == 0 and cfg.arch.get("mc_dropout") is None:
        # every pass the same: scores all tie and the pool's order decides
        who = "query=mc_dropout samples" if cfg.query.name == "mc_dropout" else \
            "query=albl with mc_dropout in query.strategies: mc_dropout samples"
        raise ConfigError("arch.dropout", 0.0, "a probability in (0, 1) with MC-dropout, e.g. arch.dropout=0.5, or "
                          "arch.mc_dropout=0.5 (dropout at query time only: the active-iNAS protocol's)",
                          f"{who} dropout masks, and without dropout its passes are identical")


def check_dataset_options(cfg: DictConfig) -> None:
    """The dataset's own choices, before any job reads the data (the loaders check them again)."""
    from dal_runner.data import npz, torchvision_sets

    if cfg.get("pool_size") is not None:
        check_positive("dataset.pool_size", cfg.pool_size)
    fraction = cfg.get("test_fraction")
    if fraction is not None and not 0.0 < fraction < 1.0:  # nan too
        raise ConfigError("dataset.test_fraction", fraction, "a fraction in (0, 1), e.g. 0.3")
    if cfg.name == "openml" and (isinstance(cfg.id, bool) or cfg.id <= 0):
        raise ConfigError("dataset.id", cfg.id, "a positive OpenML data id, e.g. 6 (letter) or 61 (iris)")
    if cfg.name == "npz":
        check_choice("dataset.layout", cfg.layout, npz.LAYOUTS)
    if cfg.name == "cifar100":
        check_choice("dataset.labels", cfg.labels, torchvision_sets.CIFAR100_LABELS)
