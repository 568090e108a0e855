"""Throughput of what an active-iNAS round spends its time on; called by scripts/benchmark.py.

- training: ResNet-18 (CIFAR variant, A(basic, 2, 4), width 64) images/s on CIFAR-shaped data
  (synthetic uint8 images, 10 classes), with our trainer (`dal_runner.train.fit`: data on the
  device as uint8, augmentation on the device, bf16 autocast and channels_last on CUDA, no
  DataLoader) and with a plain PyTorch reference loop: the usual CIFAR recipe, a DataLoader over
  a Dataset whose per-image transforms (pad-and-crop, flip, to float, normalise) run in worker
  processes, fp32, default memory format, one .to(device) per batch.
- inference: pool images/s of `dal_runner.features.infer` (probabilities and embeddings).
- step_profile: where a training step's time goes (torch.profiler over eager steps): the kernels
  with the most GPU time per step and their sum, to hold against the graphed step's time.
- round: one round of the active-iNAS CIFAR-10 protocol (`+experiment=active_inas_cifar10`) on a
  synthetic CIFAR-shaped pool through the real loop, its training cut to one epoch of
  `--round-steps` steps and again with 5; its split (search, final training, evaluation, inference,
  selection), projected to the protocol's steps from the two (what does not grow with the steps,
  building networks and evaluating them, is not scaled up), and the whole protocol projected from
  it (training time per round is fixed by steps_per_epoch=390, whatever |S| is).
- protocol_bounds: the training time of the whole protocol (13 rounds) along the path where iNAS
  never grows (a lower bound) and the one where it always moves to the costliest candidate (a
  pessimistic path), from the measured step time of every architecture on them.
- inheritance: the same protocol, shortened (a few rounds, short training), with iNAS's candidates
  from scratch and with `search.inherit=true`, on a learnable CIFAR-shaped pool (`templated_cifar`):
  search and round seconds per round, accuracies and AUC of each.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_cifar(n: int, seed: int = 0):
    """n CIFAR-shaped uint8 images (N x 3 x 32 x 32) with labels 0..9, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def resnet(device: torch.device, n_blocks: int = 2, n_stacks: int = 4, stem: str = "cifar", dropout: float = 0.0,
           normalize: bool = True, precision: str = "auto"):
    """A(basic, n_blocks, n_stacks) of width 64 for 32 x 32 x 3 inputs and 10 classes; the defaults
    are ResNet-18 (CIFAR variant). Prepared as dal-run prepares it (precision, memory format)
    unless normalize=False (the reference loop's plain model: fp32, inputs normalised by the loader)."""
    from dal_runner.arch import ArchSpec, build_network
    from dal_runner.data import Normalize
    from dal_runner.train import prepare

    norm = Normalize(255.0, CIFAR_MEAN, CIFAR_STD, True) if normalize else Normalize(1.0, (0,) * 3, (1,) * 3, True)
    spec = ArchSpec("resnet", block="basic", n_blocks=n_blocks, n_stacks=n_stacks, stem=stem, width=64)
    torch.manual_seed(0)
    with torch.device(device):  # built where it runs: initialising a large net on the CPU takes seconds
        net = build_network(spec, (3, 32, 32), 10, norm, dropout)
    return prepare(net, device, True, precision) if normalize else net.to(device)


def resnet18(device: torch.device, normalize: bool = True, precision: str = "auto"):
    return resnet(device, normalize=normalize, precision=precision)


def _trainer(steps: int, batch_size: int = 128, cuda_graphs: bool = True):
    from dal_runner.config import TrainerConfig

    return TrainerConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, epochs=1,
                         batch_size=batch_size, steps_per_epoch=steps, divergence_factor=None,
                         cuda_graphs=cuda_graphs)


def ours_training(device: torch.device, steps: int, warmup: int, n: int = 50_000, precision: str = "auto",
                  batch_size: int = 128, cuda_graphs: bool = True) -> Dict:
    from dal_runner.augment import Augment
    from dal_runner.train import fit

    x, y = synthetic_cifar(n)
    x, y = x.to(device), y.to(device)
    model = resnet18(device, precision=precision)
    augment = Augment(crop_padding=4, hflip=True)
    fit(model, x, y, _trainer(warmup, batch_size, cuda_graphs), 0, augment)  # cuDNN autotuning, allocator warm-up
    _sync(device)
    started = time.perf_counter()
    # the timed fit captures its own graph (after 3 eager steps), as every fit in a run does
    fit(model, x, y, _trainer(steps, batch_size, cuda_graphs), 1, augment)
    _sync(device)
    seconds = time.perf_counter() - started
    return {"steps": steps, "batch_size": batch_size, "seconds": round(seconds, 3),
            "images_per_s": round(steps * batch_size / seconds, 1),
            "recipe": "uint8 on the device, augmentation on the device, "
                      + ("bf16 autocast" if model.amp_dtype is not None else "fp32" + _tf32_note(device))
                      + (", channels_last" if device.type == "cuda" else "")
                      + (", the step replayed as a CUDA graph" if device.type == "cuda" and cuda_graphs else "")}


def step_profile(device: torch.device, steps: int, batch_size: int = 128, top: int = 12) -> Dict:
    """Where a training step's time goes: `steps` eager steps of our trainer (trainer.cuda_graphs=false,
    so that the kernels a graph would replay are seen one by one) under torch.profiler. On a GPU: the
    kernels with the most device time per step, and all kernels' sum per step, to hold against the
    graphed step's time (training_ours): near it, the step is bound by its kernels and only faster
    kernels help; far under it, by what runs between them. On a CPU: the operators with the most
    self time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from dal_runner.augment import Augment
    from dal_runner.train import fit

    x, y = synthetic_cifar(max(4 * batch_size, 512))
    x, y = x.to(device), y.to(device)
    model = resnet18(device)
    augment = Augment(crop_padding=4, hflip=True)
    fit(model, x, y, _trainer(3, batch_size, cuda_graphs=False), 0, augment)  # cuDNN autotuning
    _sync(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fit(model, x, y, _trainer(steps, batch_size, cuda_graphs=False), 1, augment)
        _sync(device)

    def self_us(event) -> float:
        if not cuda:
            return event.self_cpu_time_total
        return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)

    events = [e for e in prof.key_averages() if (e.device_type == DeviceType.CUDA) == cuda]
    events.sort(key=self_us, reverse=True)
    total = sum(self_us(e) for e in events)
    return {"steps": steps, "batch_size": batch_size, "time": "GPU kernels" if cuda else "CPU operators (self)",
            "ms_per_step": round(total / steps / 1000, 3),
            "top": [{"name": e.key[:100], "ms_per_step": round(self_us(e) / steps / 1000, 4),
                     "calls_per_step": round(e.count / steps, 2), "share": round(self_us(e) / total, 4)}
                    for e in events[:top] if total > 0]}


def _tf32_note(device: torch.device) -> str:
    """What "fp32" means here: both fp32 loops keep PyTorch's defaults, under which cuDNN runs
    convolutions in TF32 on Ampere and later GPUs (dal-run's trainer.precision=fp32 turns that off)."""
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32 and torch.cuda.get_device_capability(device) >= (8, 0):
        return " (cuDNN convolutions in TF32, PyTorch's default)"
    return ""


class _CifarLike(torch.utils.data.Dataset):
    """What a CIFAR script hands a DataLoader: HWC uint8 images, transformed one at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        from torchvision.transforms import v2

        self.x, self.y = x.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy()
        self.transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR_MEAN, CIFAR_STD)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.transform(torch.from_numpy(self.x[i]).permute(2, 0, 1)), int(self.y[i])


def reference_training(device: torch.device, steps: int, warmup: int, workers: int, n: int = 50_000,
                       batch_size: int = 128) -> Dict:
    x, y = synthetic_cifar(n)
    loader = torch.utils.data.DataLoader(_CifarLike(x, y), batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=True,
                                         persistent_workers=workers > 0)
    model = resnet18(device, normalize=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    done, started = 0, None
    while done < warmup + steps:
        for xb, yb in loader:
            if done == warmup:
                _sync(device)
                started = time.perf_counter()
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == warmup + steps:
                break
    _sync(device)
    seconds = time.perf_counter() - started
    return {"steps": steps, "batch_size": batch_size, "seconds": round(seconds, 3),
            "images_per_s": round(steps * batch_size / seconds, 1), "dataloader_workers": workers,
            "recipe": "DataLoader with per-image transforms in workers, fp32" + _tf32_note(device)}


def inference(device: torch.device, n: int, batch_size: int) -> Dict:
    from dal_runner.features import infer

    x, _ = synthetic_cifar(n)
    x = x.to(device)
    model = resnet18(device)
    # warm-up: the whole pass once, so that the last, partial batch's shape (cuDNN autotunes every
    # new one) is not tuned inside the timed pass
    infer(model, x, batch_size, embeddings=True)
    _sync(device)
    started = time.perf_counter()
    infer(model, x, batch_size, embeddings=True)
    _sync(device)
    seconds = time.perf_counter() - started
    return {"images": n, "batch_size": batch_size, "seconds": round(seconds, 3),
            "images_per_s": round(n / seconds, 1)}


def templated_cifar(n: int, seed: int = 0, signal: float = 0.15):
    """n CIFAR-shaped uint8 images that can be learned, though not trivially: a smooth random
    colour pattern per class (4 x 4 upsampled to 40 x 40), cropped to 32 x 32 at a random offset
    per image, mixed with noise of the same kind (an image's own smooth random pattern) and pixel
    noise: ``signal`` of the class pattern, the rest half and half. For accuracies that mean
    something where real CIFAR-10 cannot be fetched (a GPU machine without a network); chance 0.1."""
    g = torch.Generator().manual_seed(seed)

    def smooth(m: int, size: int) -> torch.Tensor:
        return F.interpolate(torch.rand(m, 3, 4, 4, generator=g), size=size, mode="bilinear", align_corners=False)

    templates = smooth(10, 40)
    y = torch.randint(0, 10, (n,), generator=g)
    dx, dy = torch.randint(0, 9, (2, n), generator=g)
    rows, cols = dy.view(n, 1) + torch.arange(32), dx.view(n, 1) + torch.arange(32)  # n x 32 each
    # image i = templates[y_i] cropped at (dy_i, dx_i): n x 3 x 32 x 32 by advanced indexing
    crop = templates[y.view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1), rows.view(n, 1, 32, 1),
                     cols.view(n, 1, 1, 32)]
    noise = 0.5 * smooth(n, 32) + 0.5 * torch.rand(n, 3, 32, 32, generator=g)
    x = signal * crop + (1.0 - signal) * noise
    return (x * 255).round().clamp_(0, 255).to(torch.uint8), y


def _protocol_run(device: torch.device, x: torch.Tensor, y: torch.Tensor, n_train: int, overrides) -> Dict:
    """The active-iNAS CIFAR-10 protocol (+experiment=active_inas_cifar10) through the real loop on
    x[:n_train] (pool) and x[n_train:] (test), with `overrides` on top: its rounds.csv and search.csv."""
    from hydra import compose, initialize_config_module

    from dal_runner import run
    from dal_runner.config import register_configs
    from dal_runner.execute import execute
    from dal_runner.io import read_csv

    register_configs()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cifar_shaped.npz"
        np.savez(path, x=x[:n_train].numpy(), y=y[:n_train].numpy(), x_test=x[n_train:].numpy(),
                 y_test=y[n_train:].numpy())
        base = ["+experiment=active_inas_cifar10", "dataset=npz", f"dataset.path={path}",
                "dataset.augment.hflip=true", "dataset.augment.rotation=15.0", "dataset.augment.shift=0.1",
                f"device={device.type}"]
        with initialize_config_module("dal_runner.conf", version_base="1.3"):
            cfg = compose("config", overrides=base + list(overrides))
        summary = execute(run.build(cfg), Path(tmp) / "run")
        return {"rounds": read_csv(Path(tmp) / "run" / "rounds.csv"),
                "search": read_csv(Path(tmp) / "run" / "search.csv"), "summary": summary}


PROTOCOL_STEPS = {"search": 50 * 390, "train": 200 * 390}  # per candidate / for the model: epochs x steps


def project_steps(short: Dict, timed: Dict, short_steps: int, steps: int) -> Dict:
    """Search and training seconds at the protocol's steps, from the same round timed at two step
    counts: seconds = fixed + per_step x steps, where fixed is what does not grow with the steps
    (building each network, evaluating on V' and the test set). Where the two runs trained different
    final models, or the difference is not positive (noise), that part is scaled whole (errs high)."""
    projected, how = {}, {}
    for part, protocol in PROTOCOL_STEPS.items():
        per_step = (timed[part] - short[part]) / (steps - short_steps) if steps > short_steps else 0.0
        same = part == "search" or short["arch"] == timed["arch"]
        if per_step > 0 and same:
            fixed = max(timed[part] - per_step * steps, 0.0)
            projected[part], how[part] = fixed + per_step * protocol, {"fixed_seconds": round(fixed, 3),
                                                                       "seconds_per_step": round(per_step, 6)}
        else:
            why = ("the two runs trained different models" if not same else
                   "the timed run is not longer than the short one" if steps <= short_steps else
                   "no positive difference")
            projected[part], how[part] = timed[part] * protocol / steps, f"scaled whole ({why})"
    return {"projected": projected, "how": how}


def protocol_round(device: torch.device, steps: int, pool: int = 50_000, n_test: int = 10_000,
                   short_steps: int = 5, overrides: Tuple[str, ...] = ()) -> Dict:
    """Round 0 of the active-iNAS CIFAR-10 protocol (2,000 labels, one iNAS step, selection of
    2,000) through the real loop, with the candidates and the final model trained for one epoch of
    `steps` steps (the protocol: 50 and 200 epochs of 390 steps). The round's search and training
    also run with `short_steps` steps, and the full round is projected from the two
    (`project_steps`): the costs that do not grow with the steps are not scaled up. `overrides` go
    on top of the protocol (a smaller pool needs a smaller budget.max_labels)."""
    x, y = synthetic_cifar(pool + n_test)
    shortened = ["trainer.epochs=1", "trainer.lr_milestones=[]", "search.epochs=1", "search.lr_milestones=[]"]

    def timed(steps_per_epoch: int, rounds: int) -> Dict:
        result = _protocol_run(device, x, y, pool, [f"budget.max_rounds={rounds}",
                                                    f"trainer.steps_per_epoch={steps_per_epoch}", *shortened, *overrides])
        row = result["rounds"][0]
        parts = {k: float(row[f"{k}_seconds"]) for k in ("search", "train", "eval", "infer", "select", "round")}
        return {**parts, "arch": row["arch"],
                "candidates": len([r for r in result["search"] if r["round"] == "0"])}

    # warm-up: round 0's networks and batch shapes once, so that cuDNN's autotuning of every new
    # shape (a fixed cost per architecture) is in neither timed run
    timed(short_steps, 1)
    short = timed(short_steps, 1)
    parts = timed(steps, 2)  # two rounds: round 0 selects only when a round follows it
    fit = project_steps(short, parts, short_steps, steps)
    projected = {**fit["projected"], "eval": parts["eval"], "infer": parts["infer"], "select": parts["select"]}
    full_round = sum(projected.values())
    n_rounds = len(range(2000, 10_000, 2000)) + len(range(10_000, 50_001, 5000))  # 2k..8k by 2k, 10k..50k by 5k
    return {"timed_steps_per_epoch": steps, "short_steps_per_epoch": short_steps,
            "candidates_trained": parts["candidates"],
            "measured_seconds": {k: v for k, v in parts.items() if k not in ("arch", "candidates")},
            "measured_seconds_short": {k: short[k] for k in ("search", "train")},
            "projection": fit["how"],
            "projected_round_seconds": {k: round(v, 1) for k, v in projected.items()},
            "projected_share": {k: round(v / full_round, 4) for k, v in projected.items()},
            "projected_protocol_rounds": n_rounds,
            "projected_protocol_seconds": round(full_round * n_rounds, 1),
            "note": "synthetic CIFAR-shaped pool; later rounds train as many candidates as round 0 "
                    "(one iNAS step: 2 or 3), and their models are larger once iNAS grows them"}


def inheritance(device: torch.device, rounds: int, steps: int, pool: int = 20_000, n_test: int = 5_000,
                initial: int = 2_000, search_epochs: int = 3, epochs: int = 6) -> Dict:
    """search.inherit=false vs true on the same learnable CIFAR-shaped pool (`templated_cifar`):
    the active-iNAS CIFAR-10 protocol, shortened to `rounds` rounds of `initial` labels each, with
    candidates trained `search_epochs` and models `epochs` epochs of `steps` steps; per variant
    the search and round seconds of every round, the test accuracies, the AUC and the architectures.
    Both variants use the nested split (inheritance needs it), so inheritance is the only difference."""
    x, y = templated_cifar(pool + n_test)
    out = {"pool": pool, "test": n_test, "rounds": rounds, "steps_per_epoch": steps,
           "search_epochs": search_epochs, "epochs": epochs, "data": "templated_cifar (learnable, chance 0.1)"}
    for inherit in (False, True):
        result = _protocol_run(device, x, y, pool, [
            f"budget.initial={initial}", f"budget.batch={initial}", f"budget.max_labels={initial * rounds}",
            f"budget.max_rounds={rounds}",
            f"trainer.epochs={epochs}", "trainer.lr_milestones=[]", f"trainer.steps_per_epoch={steps}",
            f"search.epochs={search_epochs}", "search.lr_milestones=[]", f"search.inherit={str(inherit).lower()}",
            "search.split=nested"])
        rows = result["rounds"]
        out["inherited" if inherit else "from_scratch"] = {
            "auc": result["summary"]["auc"],
            "test_accuracy": [float(r["test_accuracy"]) for r in rows],
            "arch": [r["arch"] for r in rows],
            "search_seconds": [float(r["search_seconds"]) for r in rows],
            "round_seconds": [float(r["round_seconds"]) for r in rows],
            "candidates_trained": len(result["search"]),
            "candidates": [{"round": int(r["round"]), "arch": r["candidate"], "seconds": float(r["seconds"]),
                            "val_accuracy": float(r["val_accuracy"])} for r in result["search"]],
        }
    scratch, inherited = out["from_scratch"], out["inherited"]
    later = slice(1, None)  # round 0 has no model to inherit from: the two variants are the same there
    if rounds > 1:
        out["search_seconds_ratio_after_round_0"] = round(sum(inherited["search_seconds"][later])
                                                          / max(sum(scratch["search_seconds"][later]), 1e-9), 3)
    out["auc_difference"] = round(inherited["auc"] - scratch["auc"], 6)
    return out


def protocol_bounds(device: torch.device, steps: int, warmup: int, n_rounds: int = 13) -> Dict:
    """The training time of the whole active-iNAS CIFAR-10 protocol along two paths of iNAS, from
    the measured step time of every architecture on them (paper stem, width 64, dropout 0.5, the
    protocol's augmentation, batch 128, our trainer).

    Each round trains the current architecture's candidates (Algorithm 1, lines 4-5: 2 or 3) for 50
    epochs and the round's choice for 200, of 390 steps each. With T_iNAS = 1 iNAS moves at most one
    step per round. ``never_grows`` keeps A(1, 1) in every round: a lower bound for any run (a larger
    architecture costs more per step). ``grows_to_costliest`` moves every round to the candidate with
    the largest step time: a pessimistic path (iNAS grows whenever it can), though not a strict upper
    bound, since a path that is cheaper early could reach costlier architectures later."""
    from dal_runner.arch.resnet import max_stacks
    from dal_runner.augment import Augment
    from dal_runner.search.inas import candidates
    from dal_runner.train import fit

    space = (12, min(5, max_stacks(32, "paper")))  # the protocol's A(B, 12, 5), cut by the resolution
    x, y = synthetic_cifar(2000)
    x, y = x.to(device), y.to(device)
    augment = Augment(hflip=True, rotation=15.0, shift=0.1)
    step_seconds: Dict = {}
    fixed_seconds: Dict = {}
    short = max(1, steps // 5)

    def timed_fit(model, n_steps: int, seed: int) -> float:
        _sync(device)
        started = time.perf_counter()
        fit(model, x, y, _trainer(n_steps), seed, augment)
        _sync(device)
        return time.perf_counter() - started

    def seconds_per_step(position) -> float:
        """The slope between fits of `short` and `steps` steps: every fit also has a cost that does not
        grow with its steps (on a GPU: the eager warm-up steps and the capture of the CUDA graph),
        kept apart in `fixed_seconds` and counted once per fit."""
        if position not in step_seconds:
            model = resnet(device, *position, stem="paper", dropout=0.5)
            fit(model, x, y, _trainer(warmup), 0, augment)  # cuDNN autotuning for this shape
            t_short, t_long = timed_fit(model, short, 1), timed_fit(model, steps, 2)
            per_step = (t_long - t_short) / (steps - short) if steps > short else 0.0
            if per_step <= 0.0:  # one step count only, or timings noisier than the steps between them
                per_step = t_long / steps
            step_seconds[position] = per_step
            fixed_seconds[position] = max(0.0, t_long - per_step * steps)
        return step_seconds[position]

    def fit_seconds(position, epochs: int) -> float:
        per_step = seconds_per_step(position)  # measures the position's fixed part too
        return fixed_seconds[position] + per_step * epochs * 390

    def walk(grow: bool) -> Dict:
        position, seconds, path = (1, 1), 0.0, []
        for _ in range(n_rounds):
            options = candidates(position, space)
            seconds += sum(fit_seconds(c, 50) for c in options)
            if grow:
                position = max(options, key=seconds_per_step)
            seconds += fit_seconds(position, 200)
            path.append(f"A({position[0]}, {position[1]})")
        return {"training_seconds": round(seconds, 1), "path": path}

    never_grows, grows_to_costliest = walk(False), walk(True)
    return {"rounds": n_rounds, "timed_steps": [short, steps], "never_grows": never_grows,
            "grows_to_costliest": grows_to_costliest,
            "images_per_s": {f"A({i}, {j})": round(128 / t, 1) for (i, j), t in sorted(step_seconds.items())},
            "fixed_seconds_per_fit": {f"A({i}, {j})": round(t, 4) for (i, j), t in sorted(fixed_seconds.items())},
            "note": "training only (candidates 50 and models 200 epochs of 390 steps); add eval, inference "
                    "and selection per round from 'round'"}


def bench_training(device: str, steps: int, warmup: int, workers: int, infer_n: int, eval_batch: int,
                   round_steps: int, inherit_rounds: int = 0, inherit_steps: int = 150, inherit_pool: int = 20_000,
                   inherit_initial: int = 2_000, inherit_epochs: Tuple[int, int] = (3, 6),
                   bounds_rounds: int = 0, on_section: Callable[[Dict], None] = lambda out: None,
                   batch_size: int = 128) -> Dict:
    """Every measurement above, each in its own section: one that fails is recorded as
    {"failed": "..."} and the others still run; `on_section(out)` is called after each (the
    caller writes the JSON then, so a run cut off by a time limit keeps what it measured)."""
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = True  # as dal-run sets it (trainer.deterministic=false), for every loop here
    out: Dict = {}

    def section(name: str, measure: Callable[[], Dict]) -> bool:
        try:
            out[name] = measure()
        except Exception as e:  # one failing part must not lose the figures of the others
            traceback.print_exc()  # the whole traceback in the log; its last line in the JSON
            out[name] = {"failed": f"{type(e).__name__}: {e}"}
        print(name, out[name], flush=True)
        on_section(out)
        return "failed" not in out[name]

    def speedup(ours: str) -> Optional[float]:
        if "failed" in out[ours] or "failed" in out["training_reference"]:
            return None
        return round(out[ours]["images_per_s"] / out["training_reference"]["images_per_s"], 2)

    section("training_ours", lambda: ours_training(dev, steps, warmup, batch_size=batch_size))
    section("training_reference", lambda: reference_training(dev, steps, warmup, workers, batch_size=batch_size))
    out["training_speedup"] = speedup("training_ours")
    section("inference", lambda: inference(dev, infer_n, eval_batch))
    if "bf16" in out["training_ours"].get("recipe", ""):
        # the same trainer in fp32: how much of the speed-up is the data path, how much the precision
        section("training_ours_fp32", lambda: ours_training(dev, steps, warmup, precision="fp32",
                                                            batch_size=batch_size))
        out["training_speedup_fp32"] = speedup("training_ours_fp32")
    if dev.type == "cuda":
        # the same trainer with eager steps (trainer.cuda_graphs=false): what the graph replay buys
        section("training_ours_eager", lambda: ours_training(dev, steps, warmup, batch_size=batch_size,
                                                             cuda_graphs=False))
        out["training_speedup_eager"] = speedup("training_ours_eager")
    section("step_profile", lambda: step_profile(dev, max(1, min(steps, 20)), batch_size=batch_size))
    round_ok = round_steps > 0 and section("round", lambda: protocol_round(dev, round_steps))

    def bounds() -> Dict:
        result = protocol_bounds(dev, max(1, steps // 4), max(1, warmup // 4), bounds_rounds)
        if round_ok:
            # eval, inference and selection as measured in round 0 (the largest unlabeled pool), every round
            per_round = sum(out["round"]["projected_round_seconds"][k] for k in ("eval", "infer", "select"))
            for path in ("never_grows", "grows_to_costliest"):
                result[path]["protocol_seconds"] = round(result[path]["training_seconds"] + per_round * bounds_rounds, 1)
        return result

    if bounds_rounds > 0:
        section("protocol_bounds", bounds)
    if inherit_rounds > 0:
        section("inheritance", lambda: inheritance(dev, inherit_rounds, inherit_steps, inherit_pool,
                                                   n_test=max(inherit_pool // 4, 100), initial=inherit_initial,
                                                   search_epochs=inherit_epochs[0], epochs=inherit_epochs[1]))
    return out
