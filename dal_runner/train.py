"""Training and evaluation of one model on one index set.

Data stays as one tensor on the device; batches are gathered by index (no DataLoader, no
per-sample Python). On a GPU with native bf16 the forward passes run under bf16 autocast, and
image models use channels_last (trainer.precision, trainer.channels_last). On a GPU the training
step (gather, augmentation, forward, backward, optimizer step) is captured once as a CUDA graph
and replayed (trainer.cuda_graphs): the small networks and batches of active learning leave the
GPU idle between kernel launches otherwise.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dal_runner.augment import Augment
from dal_runner.config import TrainerConfig
from dal_runner.features import amp_dtype, autocast, infer
from dal_runner.job_control import raise_lost_stop

log = logging.getLogger("dal_runner")


class TrainingDiverged(RuntimeError):
    pass


def prepare(model: nn.Module, device: torch.device, is_image: bool, precision: str = "auto",
            channels_last: Optional[bool] = None) -> nn.Module:
    """The model on the device, with the precision its forward passes use (`model.amp_dtype`,
    read by training, evaluation and queries alike) and, for images, its memory format
    (channels_last=None: on CUDA only)."""
    model = model.to(device)
    model.amp_dtype = amp_dtype(precision, device)
    if is_image and (device.type == "cuda" if channels_last is None else channels_last):
        model = model.to(memory_format=torch.channels_last)
    return model


def _decay_groups(model: nn.Module, p: TrainerConfig) -> List[dict]:
    """The parameters as optimizer groups, each with its weight decay (trainer.weight_decay_scope):
    all of them decayed, or (conv) the convolution kernels alone, as Keras' kernel_regularizer=l2(c)
    on Conv2D layers does (its gradient, 2c w, is PyTorch's weight_decay = 2c)."""
    if p.weight_decay_scope in (None, "all") or p.weight_decay == 0:
        return [{"params": list(model.parameters()), "weight_decay": p.weight_decay}]
    kernels = [m.weight for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    chosen = {id(w) for w in kernels}
    rest = [w for w in model.parameters() if id(w) not in chosen]
    return [{"params": kernels, "weight_decay": p.weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _optimizer(model: nn.Module, p: TrainerConfig, capturable: bool = False) -> torch.optim.Optimizer:
    groups = _decay_groups(model, p)
    if p.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov)
    if p.optimizer == "adam":
        if capturable:
            # its step counts live on the GPU, so that its step can be part of a CUDA graph; the eager
            # warm-up steps and short last batches (`_GraphedStep`) are expected, not worth a warning
            warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True",
                                    category=UserWarning)
        return torch.optim.Adam(groups, lr=p.lr, capturable=capturable)
    raise ValueError(f"unknown optimizer {p.optimizer!r}")


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small tensor made on the CPU (indices drawn from a CPU generator), copied to a GPU without
    making the host wait for the GPU: from pinned memory, non-blocking. A plain `.to(cuda)` of
    pageable memory synchronises, which once per training step stalls the GPU's queue."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _batches(n: int, batch_size: int, steps: Optional[int], generator: torch.Generator, device: torch.device):
    """The index batches of one epoch, from random permutations of range(n).

    steps=None: one pass over the n points, one permutation cut into batches of `batch_size`,
    the last one the remainder (as a DataLoader without drop_last; a remainder of one point
    joins the batch before it). An int: that many full
    batches from consecutive permutations, each started where the one before has fewer points
    left than a batch (the authors' fixed steps per epoch). Each permutation is drawn
    on the CPU (the same order on every device) and copied to the device once, without a
    host-GPU synchronisation (`to_device_async`)."""
    if n == 1:  # one point (a tiny S' or subset): twice per batch, so batch norm sees two values per channel
        perm = torch.randperm(1, generator=generator)  # the stream advances as for any n
        for _ in range(1 if steps is None else steps):
            yield to_device_async(perm.repeat(2), device)
        return
    perm = to_device_async(torch.randperm(n, generator=generator), device)
    if steps is None:
        batches = list(perm.split(batch_size))
        if len(batches) > 1 and len(batches[-1]) == 1:
            # a batch of one point is no batch for batch norm (one value per channel on a 1 x 1 map)
            batches[-2:] = [torch.cat(batches[-2:])]
        yield from batches
        return
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n and pos > 0:
            perm, pos = to_device_async(torch.randperm(n, generator=generator), device), 0
        yield perm[pos:pos + batch_size]
        pos += batch_size


class _GraphedStep:
    """The training step on full batches of `batch_size`, captured as a CUDA graph and replayed.

    What changes from step to step enters through fixed tensors copied before each replay: the
    batch's indices and its augmentation draws (`Augment.draw`, on the same generator and in the
    same order as an eager step's). The first `WARMUP` steps run eagerly on a side stream, as
    PyTorch's whole-network capture recipe does (cuDNN autotuning, the optimizer's state); they
    are real steps of the training. The graph bakes the learning rate in, so a change of it (an
    lr milestone) captures the step again. Dropout draws from the default CUDA generator, whose
    state graphs advance on every replay."""

    WARMUP = 3

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                 augment: Optional[Augment], aug_gen: torch.Generator, batch_size: int, clip: Optional[float]):
        self.model, self.x, self.y, self.opt, self.clip = model, x, y, opt, clip
        self.augment, self.aug_gen, self.batch_size = augment, aug_gen, batch_size
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=x.device)
        self.maps = torch.zeros(4, batch_size, device=x.device)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.out: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
        self.lrs: Optional[List[float]] = None
        self.warm = 0

    def _step(self, capturing: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xb, yb = self.x[self.idx], self.y[self.idx]
        if self.augment is not None:
            xb = self.augment.apply(xb, self.maps)
        with autocast(self.model, self.x.device, cache=not capturing):
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
        loss.backward()  # the gradients were set to None before: written, not accumulated
        _clip(self.model, self.clip)
        self.opt.step()
        # detached, so that no autograd node of this step outlives it: the parameters' gradient
        # accumulators are then made afresh on the stream of each warm-up step and of the capture
        return loss.detach(), logits.detach(), yb

    def __call__(self, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.idx.copy_(idx)
        if self.augment is not None:
            h, w = self.x.shape[2], self.x.shape[3]
            self.maps.copy_(self.augment.draw(self.batch_size, h, w, self.x.device, self.aug_gen))
        lrs = [group["lr"] for group in self.opt.param_groups]
        if self.warm < self.WARMUP:
            self.warm += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.opt.zero_grad(set_to_none=True)
                out = self._step(capturing=False)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None or lrs != self.lrs:
            self.graph = self.out = None  # the last capture's memory goes back first
            self.opt.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    out = self._step(capturing=True)
            except RuntimeError as err:  # an operation that cannot be captured (a host synchronisation, say)
                raise RuntimeError(f"capturing the training step as a CUDA graph failed: {err}. "
                                   "trainer.cuda_graphs=false trains with eager steps") from err
            self.graph, self.out, self.lrs = graph, out, lrs
        self.graph.replay()
        return self.out


def _clip(model: nn.Module, value: Optional[float]) -> None:
    """trainer.grad_clip_value: every gradient element into [-value, value] (BADGE's code clamps
    at 0.1 before each Adam step); elementwise on the device, so a captured step holds it too."""
    if value is not None:
        torch.nn.utils.clip_grad_value_(model.parameters(), value)  # parameters without a gradient are left


def _graphs_apply(params: TrainerConfig, device: torch.device, augment, extra_loss) -> bool:
    """Whether the step is captured: trainer.cuda_graphs on a CUDA device, the plain cross-entropy
    objective (the joint one draws its unlabeled batch on the CPU every step) and no augmentation
    or `Augment`'s (whose draws can be kept outside the graph)."""
    return (params.cuda_graphs and device.type == "cuda" and extra_loss is None
            and (augment is None or isinstance(augment, Augment)))


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: TrainerConfig,
    seed: int,
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    extra_loss: Optional[Callable[[nn.Module, int, torch.Generator], torch.Tensor]] = None,
    on_epoch: Optional[Callable[[int], Optional[bool]]] = None,
    heartbeat: Optional[Callable[[int, float], None]] = None,
) -> List[float]:
    """Train `model` (already on x's device) on (x, y); returns the mean loss of each epoch.

    `extra_loss(model, step, generator)` is added to every step's loss (the joint objective); its
    generator is its own (seed + 3), so the labeled batches and their augmentation are the same
    with or without it (dropout masks are not: its forward pass draws dropout too).
    `on_epoch(epoch)` runs after every epoch and may evaluate the model; True stops the training.
    `heartbeat(epoch, mean_loss)` too, for progress (`dal_runner.progress.Heartbeat`).
    `params.stop_at_train_accuracy`: the training stops after the first epoch whose accuracy on
    its own (augmented, training-mode) batches reaches it, as BADGE's code measures it; no extra
    pass over S.
    `params.cuda_graphs` on a GPU: full batches replay a captured step (`_GraphedStep`); a shorter
    last batch of an epoch runs eagerly.
    """
    device = x.device
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
    extra_gen = torch.Generator().manual_seed(seed + 3)
    graphs = _graphs_apply(params, device, augment, extra_loss)
    opt = _optimizer(model, params, capturable=graphs)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(params.lr_milestones), gamma=params.lr_gamma)
    bs = min(params.batch_size, n)
    graphed = _GraphedStep(model, x, y, opt, augment, aug_gen, bs, params.grad_clip_value) if graphs else None
    history = []
    # dropout draws from the global generator: fork it so the run's seed alone decides it
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 2)
        model.train()
        for epoch in range(params.epochs):
            total, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
            for step, idx in enumerate(_batches(n, bs, params.steps_per_epoch, gen, device)):
                if graphed is not None and len(idx) == bs:
                    loss, logits, yb = graphed(idx)
                else:
                    xb, yb = x[idx], y[idx]
                    if augment is not None:
                        xb = augment(xb, aug_gen)
                    with autocast(model, device):
                        logits = model(xb)
                        loss = F.cross_entropy(logits, yb)
                        if extra_loss is not None:
                            loss = loss + extra_loss(model, step, extra_gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    _clip(model, params.grad_clip_value)
                    opt.step()
                    loss, logits = loss.detach(), logits.detach()  # this step's autograd graph goes now (see _step)
                total += loss * len(idx)  # the mean over the epoch's points, not over its batches
                if params.stop_at_train_accuracy is not None:
                    correct += (logits.argmax(1) == yb).sum()
                seen += len(idx)
            sched.step()
            raise_lost_stop()  # a SIGTERM or SLURM preemption that Python dropped inside a callback
            mean_loss = float(total) / seen
            if not math.isfinite(mean_loss):
                raise TrainingDiverged(f"training loss became {mean_loss} at epoch {epoch + 1} "
                                       f"(lr={params.lr}; a smaller trainer.lr usually helps)")
            factor = params.divergence_factor
            if factor is not None:
                # the reference: the first epoch's loss, or the loss of a chance-level prediction where
                # that is lower (a run that diverges within its first epoch has a first loss far above it)
                chance = math.log(max(int(logits.shape[1]), 2)) * (1.0 + (params.entropy_lambda if extra_loss else 0.0))
                reference = min(history[0] if history else mean_loss, chance)
                if mean_loss > factor * reference:
                    which = "the first epoch's" if history and history[0] <= chance else "chance level's"
                    raise TrainingDiverged(
                        f"training loss grew to {mean_loss:.4g} at epoch {epoch + 1}, over trainer.divergence_factor="
                        f"{factor:g} x {which} {reference:.4g} (lr={params.lr}; a smaller trainer.lr usually helps)")
            history.append(mean_loss)
            if heartbeat is not None:
                heartbeat(epoch + 1, mean_loss)
            if on_epoch is not None:
                stop = on_epoch(epoch + 1)
                model.train()  # the callback may have evaluated the model
                if stop:
                    break
            if params.stop_at_train_accuracy is not None:
                accuracy = float(correct) / seen
                if accuracy >= params.stop_at_train_accuracy:
                    break
                if epoch + 1 == params.epochs:  # the cap, not the target, ended it: the protocol was not met
                    log.warning("training stopped at its last epoch (%d) with a training accuracy of %.4f, short of "
                                "trainer.stop_at_train_accuracy=%g (the cap: trainer.epochs, or search.epochs for a "
                                "search's candidates)", params.epochs, accuracy, params.stop_at_train_accuracy)
    if graphed is not None:
        # the gradients live in the graph's private memory: dropping them lets it go with the graph
        opt.zero_grad(set_to_none=True)
    return history


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Tuple[float, float]:
    """(accuracy, mean cross-entropy) on (x, y)."""
    probs, _ = infer(model, x, batch_size)
    acc = float((probs.argmax(1) == y).float().mean())
    loss = float(F.nll_loss(torch.log(probs.clamp_min(1e-12)), y))
    return acc, loss


def entropy_regulariser(x: torch.Tensor, unlabeled: torch.Tensor, lam: float, batch_size: int
                        ) -> Callable[[nn.Module, int, torch.Generator], torch.Tensor]:
    """Ranganathan et al. (2017), joint objective: + lambda/n_u * sum_i H(f(x_i)) over unlabeled x_i.

    Estimated per step on an unlabeled batch of `batch_size` points drawn alongside the labeled one,
    in training mode like the labeled batch (batch-norm statistics, dropout), without augmentation.
    """
    unlabeled = unlabeled.to(x.device)

    def loss(model: nn.Module, step: int, generator: torch.Generator) -> torch.Tensor:
        pick = to_device_async(torch.randint(unlabeled.numel(), (batch_size,), generator=generator), x.device)
        log_p = F.log_softmax(model(x[unlabeled[pick]]).float(), dim=1)
        return lam * -(log_p.exp() * log_p).sum(dim=1).mean()

    return loss
