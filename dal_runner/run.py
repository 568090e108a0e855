"""The one module that reads the composed config (with `dal_runner/search/from_config.py` for the
search group): it validates values and builds plain objects.

`build(cfg)` turns a DictConfig into an `Experiment` (data, search, query, trainer, budget);
`dal_runner.execute.execute(experiment, run_dir)` runs it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from dal_runner.arch import ArchSpec, Network, build_network
from dal_runner.config import TrainerConfig
from dal_runner.data import IMAGE_SIDE, Dataset, Normalize
from dal_runner.augment import Augment
from dal_runner.checks import (DEVICES, check_augment, check_augment_fits, check_augment_side, check_budget,
                               check_dataset_options, check_decay_scope, check_mc_dropout, check_pool_size,
                               check_tabular, check_trainer, table_augment_error)
from dal_runner.errors import ConfigError, check_choice, check_positive
from dal_runner.loop import Budget
from dal_runner.search.from_config import (SEARCHES, build_search, check_initial_for_search, check_searchable,
                                           make_search, search_trainer)

@dataclass
class Experiment:
    data: Dataset
    search: Any
    query: Any
    trainer: TrainerConfig
    budget: Budget
    build_model: Callable[[ArchSpec], Network]
    seed: int
    device: torch.device
    title: str
    choices: Dict[str, str] = field(default_factory=dict)
    config: Dict[str, Any] = field(default_factory=dict)
    search_trainer: Optional[TrainerConfig] = None
    augment: Optional[Augment] = None
    inherit_weights: bool = False  # search.inherit

# ------------------------------------------------------------------------------ pieces
def resolve_device(name: str) -> torch.device:
    check_choice("device", name, DEVICES)
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "auto or cpu", "CUDA is not available on this machine")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)

def set_determinism(deterministic: bool, device: torch.device) -> None:
    """trainer.deterministic: deterministic CUDA kernels (cuBLAS workspace, no cuDNN autotuning).

    Off (the default), cuDNN picks the fastest kernels, which may differ run to run on a GPU.
    CPU runs repeat exactly either way. Ops without a deterministic CUDA kernel warn, not fail.
    """

    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read at the first cuBLAS call
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)

def set_fp32_kernels(precision: str, device: torch.device) -> None:
    """trainer.precision=fp32 on CUDA is fp32 throughout: cuDNN's TF32 convolutions (PyTorch's
    default on Ampere and later GPUs: 10-bit mantissas) are turned off; auto and bf16 leave them on."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = precision != "fp32"

def set_cpu_threads() -> int:
    """torch's CPU threads = the CPUs this process may run on (a SLURM allocation, taskset), not
    the machine's core count, unless OMP_NUM_THREADS says otherwise. Returns the count."""

    if not os.environ.get("OMP_NUM_THREADS") and hasattr(os, "sched_getaffinity"):
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    return torch.get_num_threads()

def from_start(path: str, key: str) -> str:
    """A relative dataset.path or dataset.root (`key`) as the folder dal-run was started from reads
    it, also in a job that Hydra moved into its run folder (hydra.job.chdir=true); as given outside a
    job. An empty one is refused (it would be the working folder, unasked)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import to_absolute_path

    if str(path).strip() == "":
        if key == "dataset.path":
            raise ConfigError(key, "''", "the path of an .npz file", "empty")
        unset = " (DAL_DATA_ROOT is set and empty)" if os.environ.get("DAL_DATA_ROOT") == "" else ""
        raise ConfigError(key, "''", "a folder (the data cache), or no dataset.root for the default: $DAL_DATA_ROOT, "
                                     "else ~/.cache/dal-runner", f"empty{unset}")
    return to_absolute_path(str(path)) if HydraConfig.initialized() else str(path)


def load_dataset(cfg: DictConfig, seed: int) -> Dataset:
    from dal_runner.data import digits, npz, openml, torchvision_sets

    size = cfg.get("pool_size")
    if size is not None:
        check_positive("dataset.pool_size", size)
    if cfg.name in torchvision_sets.NAMES:
        data = torchvision_sets.load(cfg.name, from_start(cfg.root, "dataset.root"), cfg.download,
                                     include_extra=cfg.get("extra", False), labels=cfg.get("labels", "fine"))
    else:
        loaders = {
            "digits": lambda: digits.load(cfg.test_fraction, seed),
            "openml": lambda: openml.load(cfg.id, from_start(cfg.root, "dataset.root"), cfg.test_fraction, seed),
            "npz": lambda: npz.load(from_start(cfg.path, "dataset.path"), cfg.test_fraction, seed, cfg.layout),
        }
        check_choice("dataset", cfg.name, [*loaders, *torchvision_sets.NAMES])
        data = loaders[cfg.name]()
    data.content = data.content_digest()  # of the data set as read: before the pool is cut, and whatever the split
    if size is None:
        return data
    if size > len(data.x_train):
        raise ConfigError("dataset.pool_size", size, f"null or at most the {len(data.x_train)} training examples of "
                          f"dataset={cfg.name}")
    return _first_examples(data, size)


def _first_examples(data: Dataset, size: int) -> Dataset:
    """dataset.pool_size: the pool is the first `size` training examples, in the data set's order
    (the active-iNAS authors' SVHN pool), normalised with the mean and std of the whole training
    set it is cut from (unlabeled images: no label is read)."""
    x, y = data.x_train[:size].clone(), data.y_train[:size].clone()
    missing = sorted(set(range(data.n_classes)) - set(y.unique().tolist()))
    if missing:  # e.g. a file ordered by class: the model could never learn the others
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        raise ConfigError("dataset.pool_size", size, "a pool_size whose first examples hold every class (shuffle "
                          "a file ordered by class), or null (every training example)",
                          f"the pool is the first {size} training examples, in the data set's order, and they hold "
                          f"{data.n_classes - len(missing)} of the {data.n_classes} classes (none of class {shown})")
    return dataclasses.replace(data, x_train=x, y_train=y)

def check_data_files(cfg: DictConfig) -> None:
    """The files the job will read are there, and read as the job reads them (the preflight of a
    sweep): the same one-line error the job would give. A torchvision set's files are read; digits
    and an npz file (of at most 512 MB) are loaded and split as the job does it, so that a damaged
    file, a NaN or a split the classes cannot take stops the sweep before any job. A download, an
    OpenML set (cached or fetched) and a larger npz file are the job's."""
    from dal_runner.data import npz, torchvision_sets

    if cfg.name in torchvision_sets.NAMES and not cfg.download:
        torchvision_sets.check_files(cfg.name, from_start(cfg.root, "dataset.root"), include_extra=cfg.get("extra", False),
                                     read=True)
    elif cfg.name == "digits" or cfg.name == "npz" and npz.check_file(
            from_start(cfg.path, "dataset.path")).stat().st_size <= torchvision_sets.READ_AT_MOST:
        load_dataset(cfg, 0)

def arch_spec(cfg: DictConfig, input_shape) -> ArchSpec:
    params = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
              if k not in ("name", "dropout", "mc_dropout")}
    if cfg.name == "resnet":
        from dal_runner.arch import resnet

        check_choice("arch.block", params["block"], resnet.BLOCKS)
        check_choice("arch.stem", params["stem"], resnet.STEMS)
        check_positive("arch.n_blocks", params["n_blocks"])
        check_positive("arch.n_stacks", params["n_stacks"])
        check_positive("arch.width", params["width"])
        if len(input_shape) == 3:
            most = resnet.max_stacks(input_shape[1:], params["stem"])
            if params["n_stacks"] > most:
                raise ConfigError("arch.n_stacks", params["n_stacks"], f"at most {most}",
                                  f"a {input_shape[1]}x{input_shape[2]} input with stem={params['stem']} "
                                  f"supports {most} stacks")
    if cfg.name == "mlp":
        check_positive("arch.hidden", params["hidden"])
    if cfg.name == "cnn":
        if not params["channels"] or any(c <= 0 for c in params["channels"]):
            raise ConfigError("arch.channels", params["channels"], "a non-empty list of positive widths")
        if len(input_shape) == 3:  # a 2x2 max-pool between two widths halves the input
            most = min(input_shape[1:]).bit_length()  # 8x8: 8 -> 4 -> 2 -> 1, four widths
            if len(params["channels"]) > most:
                raise ConfigError("arch.channels", list(params["channels"]), f"at most {most} widths for this input",
                                  f"an input of {input_shape[1]}x{input_shape[2]} halves {most - 1} times at most")
        params["channels"] = tuple(params["channels"])
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError("arch.dropout", cfg.dropout, "a probability in [0, 1)")
    if cfg.get("mc_dropout") is not None and not 0.0 < cfg.mc_dropout < 1.0:
        raise ConfigError("arch.mc_dropout", cfg.mc_dropout, "null (arch.dropout, the training's rate) or a "
                          "probability in (0, 1)")
    return ArchSpec(cfg.name, **params)

def check_search(cfg: DictConfig) -> None:
    """The search's checks that need no data (the preflight's): its keys, its candidates'
    trainer, the arch it searches, the labeled set it splits; the space as the job will clip it
    where the data set's resolution is known without reading it (IMAGE_SIDE), else as given."""
    if check_choice("search", cfg.search.name, SEARCHES) == "fixed":
        return
    spec = arch_spec(cfg.arch, input_shape=())
    candidates = search_trainer(cfg.search, OmegaConf.to_object(cfg.trainer), warn=False)
    check_searchable(cfg.search, spec)
    space = (int(cfg.search.space[0]), int(cfg.search.space[1]))
    side = IMAGE_SIDE.get(cfg.dataset.name)
    if side is not None:  # a bundled or torchvision set: its resolution is known, clip as build_search will
        from dal_runner.arch import resnet

        space = (space[0], min(space[1], resnet.max_stacks(side, spec.params["stem"])))
    make_search(cfg.search, spec, 0, space, lambda s: 0, candidates.epochs)
    check_initial_for_search(cfg.search.name, cfg.budget.initial)

def _whole(value: Any) -> int:
    """An integer, or a string or float holding one exactly (schedule keys may come as strings)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)

def build_budget(cfg: DictConfig, pool_size: Optional[int] = None) -> Budget:
    """The budget; checked against the pool's size where it is known."""
    batch = cfg.batch
    if isinstance(batch, DictConfig):
        try:
            batch = {_whole(k): _whole(v) for k, v in batch.items()}
        except (TypeError, ValueError):  # 5.5 is not truncated to 5: refused
            batch = None
        if not batch or 0 not in batch or any(v <= 0 or k < 0 for k, v in batch.items()):
            raise ConfigError("budget.batch", OmegaConf.to_container(cfg.batch), _BATCH_ACCEPTED)
        batch = dict(sorted(batch.items()))
    elif isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ConfigError("budget.batch", batch, _BATCH_ACCEPTED)
    return check_budget(Budget(cfg.initial, batch, cfg.max_labels, cfg.max_rounds), pool_size)

_BATCH_ACCEPTED = "an integer > 0, or a schedule {0: b0, from_labels: b, ...} of integers > 0"

QUERIES = ("random", "softmax_response", "margin", "entropy", "mc_dropout", "coreset", "badge", "albl", "custom")

def build_query(cfg: DictConfig, budget: Budget, eval_batch_size: int, pool_size: Optional[int] = None,
                construct: bool = True):
    """The query strategy named by cfg.name, its keys from cfg (ALBL's experts with their defaults).
    construct=False (check_config): a custom strategy's target and params are checked, the user's
    constructor is not run (None)."""
    from dal_runner.query import albl, badge, coreset, entropy, margin, mc_dropout, random, softmax_response

    check_choice("query", cfg.name, QUERIES)
    if cfg.name == "mc_dropout":
        check_positive("query.passes", cfg.passes)
        check_choice("query.acquisition", cfg.acquisition, mc_dropout.SCORES)
        if cfg.passes < 2 and cfg.acquisition != "max_entropy":  # disagreement needs two passes
            raise ConfigError("query.passes", cfg.passes, "an integer >= 2 (query.acquisition=max_entropy alone "
                              "takes 1)", f"one pass scores every point 0 with query.acquisition={cfg.acquisition}, "
                              "which makes it random sampling")
        return mc_dropout.MCDropout(cfg.passes, cfg.acquisition, eval_batch_size)
    if cfg.name == "coreset":
        check_positive("query.chunk_size", cfg.chunk_size)
        if cfg.block is not None:
            check_positive("query.block", cfg.block, allow_zero=True)
        return coreset.Coreset(cfg.chunk_size, cfg.block)
    if cfg.name == "badge":
        check_choice("query.first", cfg.first, ("uniform", "largest_norm"))
        return badge.Badge(cfg.first)
    if cfg.name == "custom":
        from dal_runner.query import custom

        return custom.build(cfg.target, OmegaConf.to_container(cfg.params, resolve=True), construct)
    if cfg.name == "albl":
        if len(set(cfg.strategies)) != len(cfg.strategies):
            raise ConfigError("query.strategies", list(cfg.strategies), "distinct strategies, each once",
                              "a strategy twice would be two experts with the same advice")
        experts = []
        for name in cfg.strategies:
            check_choice("query.strategies", name, [q for q in QUERIES if q not in ("albl", "custom")])
            experts.append(_default_query(name, budget, eval_batch_size))
        if len(experts) < 2:
            raise ConfigError("query.strategies", list(cfg.strategies), "a list of at least 2 strategies")
        if not 0.0 < cfg.delta < 1.0:
            raise ConfigError("query.delta", cfg.delta, "a probability in (0, 1)")
        check_choice("query.arms", cfg.arms, albl.ARMS)
        check_choice("query.variant", cfg.variant, albl.VARIANTS)
        if cfg.variant == "badge_code" and cfg.arms != "strategies":
            raise ConfigError("query.variant", cfg.variant, "exp4p with query.arms=points",
                              "BADGE's code draws one strategy per round: query.arms=strategies")
        # K: the strategies (arms=strategies), or the pool (arms=points; known in the job)
        n_arms, what = ((len(experts), "the number of strategies") if cfg.arms == "strategies"
                        else (pool_size, "the pool size"))
        if cfg.p_min is not None and not (0.0 < cfg.p_min and (n_arms is None or cfg.p_min <= 1.0 / n_arms)):
            limit = "> 0" if n_arms is None else f"in (0, 1 / K] = (0, {1.0 / n_arms:.3g}] (K = {what} {n_arms})"
            default = "1 / (10 N), BADGE's code's" if cfg.variant == "badge_code" else "EXP4.P's default"
            raise ConfigError("query.p_min", cfg.p_min, f"null ({default}) or a number {limit}")
        if cfg.horizon is not None:
            check_positive("query.horizon", cfg.horizon)
            horizon = cfg.horizon
        elif cfg.arms == "strategies":  # the rounds that query: all but the last
            horizon = max(budget.n_rounds(pool_size if pool_size is not None else budget.max_labels) - 1, 1)
        else:
            horizon = max(budget.max_labels - budget.initial, 1)
        return albl.ALBL(experts, cfg.delta, cfg.p_min, horizon, eval_batch_size, cfg.arms, list(cfg.strategies),
                         cfg.variant)
    simple = {"random": random.RandomQuery, "softmax_response": softmax_response.SoftmaxResponse,
              "margin": margin.Margin, "entropy": entropy.Entropy}
    return simple[cfg.name]()

def _default_query(name: str, budget: Budget, eval_batch_size: int):
    """A strategy with its schema's defaults (ALBL's experts)."""
    from dal_runner.config import SCHEMAS

    return build_query(OmegaConf.structured(SCHEMAS["query"][name](name=name)), budget, eval_batch_size)

# ------------------------------------------------------------------------------ build
def check_config(cfg: DictConfig, unresolved_ok: bool = False) -> None:
    """The checks of `build` that need neither the data nor the device. The preflight runs them for
    every job of a command line, so a sweep with one bad value starts no job (submits none to
    SLURM); the checks that need the data (the pool's size, the input's shape) run in the job.

    unresolved_ok (the preflight): a check whose keys hold ${hydra:...}, which only the job
    resolves (seed=${hydra:job.num}), is left to the job; the other checks still run."""
    from omegaconf.errors import InterpolationResolutionError

    checks = [
        lambda: check_positive("seed", cfg.seed, allow_zero=True),
        lambda: check_choice("device", cfg.device, DEVICES),
        lambda: check_trainer(OmegaConf.to_object(cfg.trainer)),
        lambda: check_augment(Augment(**OmegaConf.to_container(cfg.dataset.augment, resolve=True))),
        lambda: check_augment_side(cfg),
        # the input's side where the data set's is known without its files (an arch too deep for it)
        lambda: arch_spec(cfg.arch, input_shape=(1, IMAGE_SIDE[cfg.dataset.name], IMAGE_SIDE[cfg.dataset.name])
                          if cfg.dataset.name in IMAGE_SIDE else ()),
        lambda: check_search(cfg),
        lambda: build_query(cfg.query, build_budget(cfg.budget), 1, construct=False),
        lambda: check_mc_dropout(cfg),
        lambda: check_tabular(cfg),
        lambda: check_dataset_options(cfg.dataset),
        lambda: check_pool_size(cfg),
        lambda: check_decay_scope(cfg),
    ]
    for check in checks:
        try:
            check()
        except InterpolationResolutionError:
            if not unresolved_ok:
                raise

def build(cfg: DictConfig, choices: Optional[Dict[str, str]] = None) -> Experiment:
    check_config(cfg)  # the trainer and augmentation below included
    device = resolve_device(cfg.device)
    trainer = OmegaConf.to_object(cfg.trainer)
    augment = Augment(**OmegaConf.to_container(cfg.dataset.augment, resolve=True))
    set_determinism(trainer.deterministic, device)
    set_fp32_kernels(trainer.precision, device)
    set_cpu_threads()  # also on CUDA: the host side (data, selection on the CPU) uses them
    data = load_dataset(cfg.dataset, cfg.seed)
    spec = arch_spec(cfg.arch, data.input_shape)
    budget = build_budget(cfg.budget, data.x_train.shape[0])
    check_initial_for_search(cfg.search.name, budget.initial)
    query = build_query(cfg.query, budget, trainer.eval_batch_size, data.x_train.shape[0])
    candidates_trainer = search_trainer(cfg.search, trainer)
    search = build_search(cfg.search, spec, data, int(cfg.seed), candidates_trainer.epochs)
    if augment.active and not data.is_image:
        raise table_augment_error(OmegaConf.to_container(cfg.dataset.augment, resolve=True))
    if data.is_image:
        check_augment_fits(augment, min(data.input_shape[1:]))
    option = (choices or {}).get("arch") or cfg.arch.name  # as typed (arch=resnet18)
    if not data.is_image and cfg.arch.name != "mlp":
        raise ConfigError("arch", option, f"mlp (with search=fixed) for a table (dataset={cfg.dataset.name})",
                          f"a {cfg.arch.name} needs image data (C x H x W) and the input is {data.input_shape[0]} "
                          f"features")
    try:  # build once now, so an architecture the data cannot take fails before the loop
        build_network(spec, data.input_shape, data.n_classes,
                      Normalize(data.scale, data.mean, data.std, data.is_image), cfg.arch.dropout, cfg.arch.mc_dropout)
    except (ValueError, RuntimeError) as e:
        raise ConfigError("arch", option, "an architecture that fits this dataset's input",
                          str(e).splitlines()[0]) from None
    data = data.to(device)
    normalize = Normalize(data.scale, data.mean, data.std, data.is_image)
    build_model = partial(_build_model, input_shape=data.input_shape, n_classes=data.n_classes,
                          normalize=normalize, dropout=cfg.arch.dropout, mc_dropout=cfg.arch.mc_dropout,
                          seed=cfg.seed)
    choices = {k: v for k, v in (choices or {}).items() if not k.startswith("hydra")}
    if "preset" in choices and not _preset_exists(choices["preset"]):  # `optional preset`: none applied
        choices.pop("preset")
    method = {"inas": "active-iNAS", "random": "random search", "reinforce": "REINFORCE search"}.get(
        cfg.search.name, f"fixed {spec}")
    title = f"{cfg.dataset.name} | {method} | {cfg.query.name} | seed {cfg.seed}"
    return Experiment(data, search, query, trainer, budget, build_model, int(cfg.seed), device, title,
                      choices, OmegaConf.to_container(cfg, resolve=True),
                      candidates_trainer, augment if augment.active else None,
                      bool(cfg.search.get("inherit", False)) and cfg.search.name != "fixed")

def _preset_exists(name: Optional[str]) -> bool:
    from importlib.resources import files

    return bool(name) and (files("dal_runner.conf") / "preset" / f"{name}.yaml").is_file()

def _build_model(spec: ArchSpec, input_shape, n_classes, normalize, dropout, seed, mc_dropout=None) -> Network:
    from dal_runner.seeding import derive_seed

    # the initialisation depends on the run seed and the architecture only
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(derive_seed(seed, "init", repr(spec)))
        return build_network(spec, input_shape, n_classes, normalize, dropout, mc_dropout)
