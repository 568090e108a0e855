"""A search strategy from its config group (`search=`): the values checked, the strategy built.

Part of reading the composed config (`dal_runner/run.py` calls it): `build_search` for a job,
with its data; `check_searchable`, `make_search` and `search_trainer` also for the checks made
before a sweep starts, without the data.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from omegaconf import DictConfig

from dal_runner.arch import ArchSpec
from dal_runner.checks import check_milestones
from dal_runner.config import TrainerConfig
from dal_runner.data import Dataset
from dal_runner.errors import ConfigError, as_config_error, check_choice, check_positive

log = logging.getLogger("dal_runner")


SEARCHES = ("fixed", "inas", "random", "reinforce")


SPLITS = ("random", "nested")


def split_is_nested(cfg: DictConfig) -> bool:
    """search.split: null means nested with inherit, else random. Inherited weights trained on an
    earlier round's S', so with a fresh random split V' would hold points they memorised."""
    split = cfg.get("split")
    if split is None:
        return bool(cfg.inherit)
    check_choice("search.split", split, SPLITS)
    if split == "random" and cfg.inherit:
        raise ConfigError("search.split", split, "nested or null with search.inherit=true",
                          "V' would hold points the inherited weights trained on")
    return split == "nested"


def build_search(cfg: DictConfig, spec: ArchSpec, data: Dataset, seed: int, candidate_epochs: Optional[int] = None):
    """The search strategy named by cfg.name; `candidate_epochs` (the candidates' trainer) for the records."""
    from dal_runner.search.fixed import FixedSearch

    check_choice("search", cfg.name, SEARCHES)
    if cfg.name == "fixed":
        return FixedSearch(spec)
    from dal_runner.arch import resnet

    check_searchable(cfg, spec)
    if not data.is_image:
        raise ConfigError("search", cfg.name, "fixed (with arch=mlp) for tabular data",
                          "architecture search needs image data")
    stem = spec.params["stem"]
    most = resnet.max_stacks(data.input_shape[1:], stem)
    space = (int(cfg.space[0]), min(int(cfg.space[1]), most))
    c, k = data.input_shape[0], data.n_classes

    def count(s: ArchSpec) -> int:
        return resnet.n_params(in_channels=c, n_classes=k, **s.params)

    search = make_search(cfg, spec, seed, space, count, candidate_epochs)
    if space[1] < cfg.space[1]:  # after the checks: a bad value's error is the only output
        log.info("search space A(B, %d, %d) -> A(B, %d, %d): a %dx%d input with stem=%s supports %d stacks",
                 cfg.space[0], cfg.space[1], space[0], space[1], data.input_shape[1], data.input_shape[2], stem, most)
    return search


def check_searchable(cfg: DictConfig, spec: ArchSpec) -> None:
    """What a search needs of its own keys and of the arch, data aside."""
    if spec.name != "resnet":
        raise ConfigError("arch", spec.name, "resnet, resnet18 or resnet_small",
                          f"search={cfg.name} searches residual nets")
    for key in ("start", "space") if cfg.name == "inas" else ("space",):
        if len(cfg[key]) != 2 or any(v < 1 for v in cfg[key]):
            raise ConfigError(f"search.{key}", list(cfg[key]), "[n_blocks, n_stacks], both >= 1")
    if cfg.name == "inas":
        check_positive("search.max_steps", cfg.max_steps)


def make_search(cfg: DictConfig, spec: ArchSpec, seed: int, space, count, candidate_epochs: Optional[int]):
    """The search strategy over `space`, its values checked by its constructor (one line each)."""
    from dal_runner.search.estimation import Fidelity

    extra = {"stem": spec.params["stem"], "width": spec.params["width"]}
    try:
        fidelity = Fidelity(candidate_epochs, cfg.subset, cfg.stop_at, cfg.stop_margin,
                            nested_split=split_is_nested(cfg), score=cfg.score or "last")
        return _search(cfg, spec, seed, space, extra, count, fidelity)
    except ValueError as e:
        raise as_config_error(e) from None


def check_initial_for_search(search: str, initial: int) -> None:
    if search != "fixed" and initial < 2:
        raise ConfigError("budget.initial", initial, f"at least 2 with search={search}",
                          "the search splits the labeled set into S' and V'")


def _search(cfg: DictConfig, spec: ArchSpec, seed: int, space, extra, count, fidelity):
    from dal_runner.search.inas import INASSearch
    from dal_runner.search.random import RandomSearch
    from dal_runner.search.reinforce import ReinforceSearch
    from dal_runner.search.space import ResNetSpace

    if cfg.name == "inas":
        return INASSearch(spec.params["block"], seed=seed, start=tuple(cfg.start), space=space,
                          val_fraction=cfg.val_fraction, max_steps=cfg.max_steps,
                          reuse_candidates=cfg.reuse_candidates, tie_break=cfg.tie_break,
                          extra_params=extra, count_params=count, fidelity=fidelity)
    blocks = [spec.params["block"]] if cfg.blocks is None else list(cfg.blocks)
    choices = ResNetSpace(blocks, space, extra, count)
    if cfg.name == "random":
        return RandomSearch(choices, seed=seed, budget=cfg.budget, monotone=cfg.monotone,
                            val_fraction=cfg.val_fraction, fidelity=fidelity)
    return ReinforceSearch(choices, seed=seed, budget=cfg.budget, children=cfg.children, lr=cfg.lr,
                           baseline_decay=cfg.baseline_decay, hidden=cfg.hidden, val_fraction=cfg.val_fraction,
                           fidelity=fidelity)


def search_trainer(cfg: DictConfig, trainer: TrainerConfig, warn: bool = True) -> TrainerConfig:
    """Candidates' training: the trainer with the search's own epochs / milestones where given
    (warn: log the trainer's milestones the candidates skip; the job does, the preflight not)."""
    if cfg.name == "fixed":
        return trainer
    if cfg.epochs is not None:
        check_positive("search.epochs", cfg.epochs)
    epochs = trainer.epochs if cfg.epochs is None else cfg.epochs
    if cfg.lr_milestones is None:  # the trainer's: those the candidates' epochs reach
        milestones = [e for e in trainer.lr_milestones if e < epochs]
        if warn and len(milestones) < len(trainer.lr_milestones):
            log.warning("search.epochs=%d: the candidates skip trainer.lr_milestones %s past it; set "
                        "search.lr_milestones for their own schedule", epochs,
                        [e for e in trainer.lr_milestones if e >= epochs])
    else:
        milestones = list(cfg.lr_milestones)
        check_milestones("search.lr_milestones", milestones, epochs,
                         "search.epochs" if cfg.epochs is not None else "trainer.epochs")
    return dataclasses.replace(trainer, epochs=epochs, lr_milestones=milestones)
