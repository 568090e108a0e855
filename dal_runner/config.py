"""Typed defaults (structured configs) for every config group.

Each YAML file in ``conf/<group>/<option>.yaml`` starts from the schema registered here as
``schema/<group>/<option>``, so a typo or a wrong type fails when the config is composed,
naming the key. The YAML holds the values a user reads; the dataclass holds the types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

DEFAULT_DATA_ROOT = "${oc.env:DAL_DATA_ROOT,${oc.env:HOME,.}/.cache/dal-runner}"


# ---------------------------------------------------------------- dataset
@dataclass
class DatasetConfig:
    name: str = MISSING
    # fraction of the data held out as the test set (only for sets without a standard split)
    test_fraction: float = 0.3
    # where data files live / are downloaded to (env DAL_DATA_ROOT overrides the default)
    root: str = DEFAULT_DATA_ROOT
    download: bool = False


# ---------------------------------------------------------------- architecture
@dataclass
class ArchConfig:
    name: str = MISSING
    # dropout before the linear classifier (MC-dropout samples it at query time)
    dropout: float = 0.0


@dataclass
class MLPConfig(ArchConfig):
    hidden: int = 256


@dataclass
class CNNConfig(ArchConfig):
    channels: List[int] = field(default_factory=lambda: [32, 64])


# ---------------------------------------------------------------- search
@dataclass
class SearchConfig:
    name: str = MISSING


# ---------------------------------------------------------------- query
@dataclass
class QueryConfig:
    name: str = MISSING


# ---------------------------------------------------------------- budget
@dataclass
class BudgetConfig:
    initial: int = 100  # k: random labels before the first round
    batch: int = 100  # b: labels queried per round
    max_labels: int = 600  # stop once |S| reaches this
    max_rounds: Optional[int] = None  # optional cap on the number of trained rounds


# ---------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0
    epochs: int = 50
    batch_size: int = 64
    # null: one pass over S per epoch; an int: that many steps whatever |S| is
    steps_per_epoch: Optional[int] = None
    lr_milestones: List[int] = field(default_factory=list)  # epochs after which lr *= lr_gamma
    lr_gamma: float = 0.1
    objective: str = "cross_entropy"  # cross_entropy | joint_entropy
    eval_batch_size: int = 1024


# ---------------------------------------------------------------- root
@dataclass
class RunConfig:
    dataset: Any = MISSING
    arch: Any = MISSING
    search: Any = MISSING
    query: Any = MISSING
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    output_root: str = "outputs"
    resume: Optional[str] = None


SCHEMAS = {
    "dataset": {"digits": DatasetConfig},
    "arch": {"mlp": MLPConfig, "cnn": CNNConfig},
    "search": {"fixed": SearchConfig},
    "query": {
        "random": QueryConfig,
        "softmax_response": QueryConfig,
        "margin": QueryConfig,
        "entropy": QueryConfig,
    },
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, options in SCHEMAS.items():
        for option, node in options.items():
            cs.store(group=f"schema/{group}", name=option, node=node)
    cs.store(group="schema/budget", name="budget", node=BudgetConfig)
    cs.store(group="schema/trainer", name="trainer", node=TrainerConfig)
