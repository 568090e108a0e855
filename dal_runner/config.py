"""Typed defaults (structured configs) for every config group.

Each YAML file in ``conf/<group>/<option>.yaml`` starts from the schema registered here as
``schema/<group>/<option>``, so a typo or a wrong type fails when the config is composed,
naming the key. The YAML holds the values a user reads; the dataclass holds the types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

DEFAULT_DATA_ROOT = "${oc.env:DAL_DATA_ROOT,${oc.env:HOME,.}/.cache/dal-runner}"


# ---------------------------------------------------------------- dataset
@dataclass
class AugmentConfig:
    """Training-time augmentation, batched on the data's device (dal_runner/augment.py)."""

    crop_padding: int = 0  # random crop after padding by this many pixels (0: off), padded as `fill` says
    hflip: bool = False  # random horizontal flip
    rotation: float = 0.0  # random rotation, uniform in [-rotation, rotation] degrees
    shift: float = 0.0  # random translation, uniform in [-shift, shift] of the image size
    fill: str = "zeros"  # what comes in from outside the image: zeros | nearest (edge pixel) | reflect


@dataclass
class DatasetConfig:
    name: str = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # the pool is the first this many training examples, in the data set's order (null: all of them);
    # the normalisation statistics stay those of the whole training set
    pool_size: Optional[int] = None


@dataclass
class DigitsConfig(DatasetConfig):
    test_fraction: float = 0.3  # seeded stratified test split


@dataclass
class TorchvisionConfig(DatasetConfig):
    root: str = DEFAULT_DATA_ROOT  # torchvision's layout below it; env DAL_DATA_ROOT overrides the default
    download: bool = False


@dataclass
class CIFAR100Config(TorchvisionConfig):
    labels: str = "fine"  # fine: the 100 classes | coarse: the 20 superclasses (the files hold both)


@dataclass
class SVHNConfig(TorchvisionConfig):
    extra: bool = False  # append SVHN's 531,131 `extra` images to the pool


@dataclass
class OpenMLConfig(DatasetConfig):
    id: int = 6
    test_fraction: float = 0.3
    root: str = DEFAULT_DATA_ROOT


@dataclass
class NPZConfig(DatasetConfig):
    path: str = MISSING
    test_fraction: float = 0.3
    layout: str = "auto"


# ---------------------------------------------------------------- architecture
@dataclass
class ArchConfig:
    name: str = MISSING
    # dropout before the linear classifier (MC-dropout samples it at query time)
    dropout: float = 0.0
    # the rate MC-dropout's passes sample the same layer with at query time; null: dropout's
    mc_dropout: Optional[float] = None


@dataclass
class MLPConfig(ArchConfig):
    hidden: int = 256


@dataclass
class CNNConfig(ArchConfig):
    channels: List[int] = field(default_factory=lambda: [32, 64])


@dataclass
class ResNetConfig(ArchConfig):
    block: str = "basic"  # basic | bottleneck
    n_blocks: int = 1
    n_stacks: int = 1
    stem: str = "cifar"  # cifar: 3x3 conv | paper: 3x3 conv + 3x3 max-pool, stride 2
    width: int = 64  # channels of the stem and first stack; stack k has width * 2^k


# ---------------------------------------------------------------- search
@dataclass
class SearchConfig:
    name: str = MISSING
    # performance estimation of candidates, shared by every strategy that trains them (fixed ignores it)
    val_fraction: float = 0.2  # |V'| / |S|: S is split into S' (train) and V' (validation)
    # lower fidelity (dal_runner/search/estimation.py): fewer epochs, a subset of S', early stopping
    epochs: Optional[int] = None  # candidates' epochs (null: trainer.epochs)
    lr_milestones: Optional[List[int]] = None  # candidates' lr milestones (null: trainer's)
    subset: float = 1.0  # fraction of S' each candidate trains on (the same seeded subset in a round)
    stop_at: Optional[float] = None  # fraction of the candidates' epochs at which clear losers stop (null: off)
    stop_margin: float = 0.1  # clear loser: V' accuracy this much below the round's best at that epoch
    # a candidate's score: null or last (its V' accuracy after its last epoch) | best (the best V'
    # accuracy over its epochs, evaluated after every epoch: the active-iNAS authors' code)
    score: Optional[str] = None
    # network morphism: candidates start from the previous round's chosen candidate (same-place
    # weights copied, added blocks as identity maps); the paper trains every candidate from scratch
    inherit: bool = False
    # S'/V' per round: random (a fresh split each round, the paper) | nested (a point keeps its side
    # as S grows); null: nested with inherit, else random
    split: Optional[str] = None


@dataclass
class INASConfig(SearchConfig):
    start: List[int] = field(default_factory=lambda: [1, 1])  # A(B, i0, j0)
    space: List[int] = field(default_factory=lambda: [12, 5])  # bound A(B, max blocks, max stacks)
    max_steps: int = 1  # T_iNAS: iNAS steps per round
    reuse_candidates: bool = True
    tie_break: str = "smaller"  # smaller | larger


@dataclass
class RandomSearchConfig(SearchConfig):
    blocks: Optional[List[str]] = field(default_factory=lambda: ["basic", "bottleneck"])  # null: [arch.block]
    space: List[int] = field(default_factory=lambda: [12, 5])  # A(B, 1..n_blocks, 1..n_stacks)
    budget: int = 3  # candidate trainings per round (iNAS with max_steps=1 trains 3)
    monotone: bool = False  # only sample n_blocks, n_stacks >= the previous round's


@dataclass
class ReinforceConfig(SearchConfig):
    blocks: Optional[List[str]] = field(default_factory=lambda: ["basic", "bottleneck"])  # null: [arch.block]
    space: List[int] = field(default_factory=lambda: [12, 5])
    budget: int = 3  # candidate trainings per round = controller steps x children
    children: int = 3  # m: children sampled per controller step
    lr: float = 0.05  # the controller's Adam learning rate
    baseline_decay: float = 0.8  # b <- decay b + (1 - decay) R
    hidden: int = 32  # LSTM width of the controller


# ---------------------------------------------------------------- query
@dataclass
class QueryConfig:
    name: str = MISSING


@dataclass
class MCDropoutConfig(QueryConfig):
    passes: int = 100  # T stochastic passes
    acquisition: str = "predicted_class_variance"  # bald | max_entropy | variation_ratio | predicted_class_variance


@dataclass
class CoresetConfig(QueryConfig):
    chunk_size: int = 4096  # pool rows per distance block (bounds memory)
    block: Optional[int] = None  # centres applied per pass over the pool; null: 128 on the CPU, 0 on CUDA


@dataclass
class BadgeConfig(QueryConfig):
    first: str = "uniform"  # uniform (the paper's k-means++) | largest_norm (the authors' code)


@dataclass
class ALBLConfig(QueryConfig):
    strategies: List[str] = field(default_factory=lambda: ["coreset", "softmax_response"])
    delta: float = 0.1  # EXP4.P confidence parameter
    arms: str = "strategies"  # strategies (one draws each round's batch: BADGE's experiments) | points (Hsu & Lin)
    p_min: Optional[float] = None  # null: sqrt(ln N / (K T)) capped at 1 / (2K)
    horizon: Optional[int] = None  # T: query rounds (arms=strategies) or queries (points); null: from the budget
    variant: str = "exp4p"  # exp4p (EXP4.P, Hsu & Lin) | badge_code (BADGE's released ALBL; arms=strategies only)


@dataclass
class CustomQueryConfig(QueryConfig):
    target: str = MISSING  # package.module.ClassName, or a function select(ctx, k, **params)
    params: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of the class (or function)


# ---------------------------------------------------------------- budget
@dataclass
class BudgetConfig:
    initial: int = 100  # k: random labels before the first round
    # b: labels queried per round; an int, or a schedule {from_labels: batch, ...}
    batch: Any = 100
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
    # the parameters weight_decay applies to: null (all: PyTorch's usual) | conv (convolution kernels
    # only, as Keras' kernel_regularizer on Conv2D layers: no decay of batch norm, biases, linear layers)
    weight_decay_scope: Optional[str] = None
    epochs: int = 50
    batch_size: int = 64
    # null: one pass over S per epoch; an int: that many steps whatever |S| is
    steps_per_epoch: Optional[int] = None
    lr_milestones: List[int] = field(default_factory=list)  # epochs after which lr *= lr_gamma
    lr_gamma: float = 0.1
    objective: str = "cross_entropy"  # cross_entropy | joint_entropy (Ranganathan et al. 2017)
    entropy_lambda: float = 0.1  # joint_entropy: weight of the mean entropy of unlabeled predictions
    eval_batch_size: int = 1024
    precision: str = "auto"  # auto (bf16 on GPUs that have it natively, else fp32) | bf16 | fp32
    channels_last: Optional[bool] = None  # image models; null: on CUDA only
    cuda_graphs: bool = True  # CUDA: replay the training step as a captured CUDA graph
    deterministic: bool = False  # CUDA: deterministic kernels (slower); CPU runs repeat exactly either way
    divergence_factor: Optional[float] = 100.0  # fail when an epoch's loss exceeds this x the first's
    # stop once an epoch's training accuracy reaches this (BADGE: 0.99); epochs is then the cap
    stop_at_train_accuracy: Optional[float] = None
    # clamp every gradient element to [-v, v] before each optimizer step (BADGE's code: 0.1); null: none
    grad_clip_value: Optional[float] = None


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
    "dataset": {"digits": DigitsConfig, "cifar10": TorchvisionConfig, "cifar100": CIFAR100Config,
                "svhn": SVHNConfig, "mnist": TorchvisionConfig, "fashion_mnist": TorchvisionConfig,
                "openml": OpenMLConfig, "npz": NPZConfig},
    "arch": {"mlp": MLPConfig, "cnn": CNNConfig, "resnet": ResNetConfig},
    "search": {"fixed": SearchConfig, "inas": INASConfig, "random": RandomSearchConfig,
               "reinforce": ReinforceConfig},
    "query": {
        "random": QueryConfig,
        "softmax_response": QueryConfig,
        "margin": QueryConfig,
        "entropy": QueryConfig,
        "mc_dropout": MCDropoutConfig,
        "coreset": CoresetConfig,
        "badge": BadgeConfig,
        "albl": ALBLConfig,
        "custom": CustomQueryConfig,
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
