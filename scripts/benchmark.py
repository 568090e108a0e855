"""Time and memory of every query strategy's selection step on a synthetic pool; with
``--suite training`` or ``all``, training and inference throughput and one active-iNAS round.

    python scripts/benchmark.py --pool 50000 --dim 512 --classes 10 --picks 1000 --out sel.json
    python scripts/benchmark.py --suite all --device cuda --out gpu.json      # everything, one run

The pool: probabilities = softmax of standard normal logits, embeddings standard normal
(float32), plus a labeled set of embeddings for core-set. Besides our strategies it times the
straightforward references found in popular active-learning code: BADGE with the explicit
N x (C * D) gradient matrix and k-means++ on it (scikit-learn distances per centre), and
core-set with a full pool x (pool + labeled) distance matrix computed up front.

Each measurement runs in its own subprocess, so peak memory is that method's alone: the
resident-set high-water mark (getrusage ru_maxrss, which sees torch's allocations) on the
CPU, torch.cuda.max_memory_allocated on CUDA. ``rss_data_mb`` is the high-water mark after
the pool is built; the method adds ``peak_rss_mb - rss_data_mb`` on top of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

OURS = ["random", "softmax_response", "margin", "entropy", "mc_dropout", "coreset", "badge", "albl", "albl_points"]
REFERENCES = ["badge_reference_explicit", "coreset_reference_full_matrix"]
MC_PASSES = 100


class EmbeddingNetwork(nn.Module):
    """A network whose input already is the penultimate embedding: embed = identity, dropout, head."""

    def __init__(self, dim: int, n_classes: int, dropout: float, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


def make_pool(n_pool: int, dim: int, n_classes: int, n_labeled: int, device: str, seed: int = 0) -> Dict:
    g = torch.Generator(device=device).manual_seed(seed)
    probs = torch.softmax(torch.randn(n_pool, n_classes, generator=g, device=device), dim=1)
    emb = torch.randn(n_pool, dim, generator=g, device=device)
    labeled = torch.randn(n_labeled, dim, generator=g, device=device)
    return {"probs": probs, "emb": emb, "labeled": labeled}


# ---- the methods: (data, k, generator) -> positions --------------------------------------

def _ours(name: str) -> Callable:
    from dal_runner.query import QueryContext, top_k
    from dal_runner.query.albl import ALBL
    from dal_runner.query.badge import kmeans_pp
    from dal_runner.query.coreset import k_center_greedy
    from dal_runner.query.entropy import predictive_entropy
    from dal_runner.query.margin import negative_margin
    from dal_runner.query.mc_dropout import mc_scores
    from dal_runner.query.random import random_sample
    from dal_runner.query.softmax_response import least_confidence

    def mc_dropout(d, k, g):
        model = EmbeddingNetwork(d["emb"].shape[1], d["probs"].shape[1], 0.5).to(d["emb"].device)
        return top_k(mc_scores(model, d["emb"], MC_PASSES, "predicted_class_variance", 1024, g), k, ties=g)

    def albl(d, k, g, arms="strategies"):
        # the pool as a context: labeled embeddings first, then the unlabeled ones; arms=strategies
        # draws one strategy for the batch, so it costs what that strategy costs
        model = EmbeddingNetwork(d["emb"].shape[1], d["probs"].shape[1], 0.0).to(d["emb"].device)
        x = torch.cat([d["labeled"], d["emb"]])
        n_lab = d["labeled"].shape[0]
        ctx = QueryContext(model, x, torch.arange(n_lab), torch.arange(n_lab, x.shape[0]), g)
        return ALBL(arms=arms).select(ctx, k)

    return {
        "random": lambda d, k, g: random_sample(d["probs"].shape[0], k, g),
        "softmax_response": lambda d, k, g: top_k(least_confidence(d["probs"]), k, ties=g),
        "margin": lambda d, k, g: top_k(negative_margin(d["probs"]), k, ties=g),
        "entropy": lambda d, k, g: top_k(predictive_entropy(d["probs"]), k, ties=g),
        "mc_dropout": mc_dropout,
        "coreset": lambda d, k, g: k_center_greedy(d["emb"], d["labeled"], k),
        "badge": lambda d, k, g: kmeans_pp(d["probs"], d["emb"], k, g),
        "albl": albl,
        "albl_points": lambda d, k, g: albl(d, k, g, "points"),
    }[name]


def badge_reference_explicit(d: Dict, k: int, g: torch.Generator) -> np.ndarray:
    """k-means++ on the materialised gradient embeddings (N x C*D), one distance column per centre."""
    from sklearn.metrics import pairwise_distances

    from dal_runner.query.badge import explicit_gradient_embedding

    grads = explicit_gradient_embedding(d["probs"].cpu(), d["emb"].cpu()).numpy()
    rng = np.random.default_rng(int(torch.randint(0, 2 ** 31, (1,), generator=g)))
    picks = [int(np.argmax((grads * grads).sum(axis=1)))]
    d2 = pairwise_distances(grads, grads[picks[-1:]]).ravel() ** 2
    while len(picks) < k:
        d2[picks] = 0.0
        picks.append(int(rng.choice(len(d2), p=d2 / d2.sum())))
        d2 = np.minimum(d2, pairwise_distances(grads, grads[picks[-1:]]).ravel() ** 2)
    return np.array(picks)


def coreset_reference_full_matrix(d: Dict, k: int, g: torch.Generator) -> np.ndarray:
    """Greedy k-center over a precomputed pool x (pool + labeled) distance matrix."""
    from sklearn.metrics import pairwise_distances

    pool, labeled = d["emb"].cpu().numpy(), d["labeled"].cpu().numpy()
    n = len(pool)
    dist = pairwise_distances(pool, np.concatenate([pool, labeled]))  # N x (N + L)
    min_d = dist[:, n:].min(axis=1) if len(labeled) else dist[:, 0].copy()
    picks = []
    for _ in range(k):
        u = int(np.argmax(min_d))
        picks.append(u)
        min_d = np.minimum(min_d, dist[:, u])
        min_d[picks] = -1.0
    return np.array(picks)


def reference_bytes(name: str, n_pool: int, dim: int, n_classes: int, n_labeled: int) -> int:
    """The big array a reference allocates (float32), to skip what cannot fit in memory."""
    if name == "badge_reference_explicit":
        return 4 * n_pool * n_classes * dim
    return 4 * n_pool * (n_pool + n_labeled) * 2  # the matrix plus scikit-learn's temporaries


def method(name: str) -> Callable:
    if name in REFERENCES:
        return globals()[name]
    return _ours(name)


# ---- one measurement per subprocess ----------------------------------------------------------

def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(name: str, n_pool: int, dim: int, n_classes: int, k: int, n_labeled: int, device: str,
            threads: Optional[int] = None) -> Dict:
    """Run one method once in this process and report seconds and peak memory."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = "cpu" if name in REFERENCES else device  # the references are CPU (numpy, scikit-learn)
    # warm-up on a tiny pool: imports and lazy initialisation are not the method's time
    method(name)(make_pool(256, dim, n_classes, min(n_labeled, 16), dev), min(k, 8), torch.Generator().manual_seed(1))
    data = make_pool(n_pool, dim, n_classes, n_labeled, dev)
    g = torch.Generator().manual_seed(1)
    cuda = dev.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_data = torch.cuda.memory_allocated() / 2 ** 20
    rss_data = _rss_mb()
    t0 = time.perf_counter()
    picks = method(name)(data, k, g)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    picks = np.asarray(picks.cpu() if isinstance(picks, torch.Tensor) else picks)
    out = {"method": name, "device": dev, "seconds": round(seconds, 4), "rss_data_mb": round(rss_data, 1),
           "peak_rss_mb": round(_rss_mb(), 1), "n_picks": int(len(picks)),
           "distinct": bool(len(np.unique(picks)) == len(picks)), "torch_threads": torch.get_num_threads(),
           # other processes on the machine skew CPU timings: the 1-minute load average says how much
           "load_average_1min": round(os.getloadavg()[0], 2)}
    if cuda:
        out["cuda_data_mb"] = round(cuda_data, 1)
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return out


def _available_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def bench_selection(n_pool: int = 50_000, dim: int = 512, n_classes: int = 10, k: int = 1000,
                    device: str = "cpu", n_labeled: int = 1000, skip_reference: bool = False,
                    methods: Optional[List[str]] = None, timeout: Optional[float] = None,
                    threads: Optional[int] = None, memory_gb: Optional[float] = None) -> Dict:
    """Time every strategy (and the references) on a synthetic pool; one subprocess each.
    A reference whose big array would not fit in 80% of the available memory is skipped: the
    memory is MemAvailable, or `memory_gb` where given (a machine whose RAM grows as it is used
    reports far less at the start)."""
    names = list(methods) if methods else OURS + ([] if skip_reference else REFERENCES)
    seen = _available_bytes()
    available = int(memory_gb * 2 ** 30) if memory_gb else seen
    config = {"n_pool": n_pool, "dim": dim, "n_classes": n_classes, "k": k, "n_labeled": n_labeled,
              "device": device, "mc_passes": MC_PASSES, "threads": threads,
              "mem_available_gb": None if seen is None else round(seen / 2 ** 30, 1),
              "memory_assumed_gb": memory_gb}
    results = []
    for name in names:
        row = _measure_in_subprocess(name, n_pool, dim, n_classes, k, n_labeled, device, timeout, threads, available)
        print(row, flush=True)
        results.append(row)
    return {"config": config, "machine": _machine(device), "results": results}


def _measure_in_subprocess(name: str, n_pool: int, dim: int, n_classes: int, k: int, n_labeled: int, device: str,
                           timeout: Optional[float], threads: Optional[int], available: Optional[int]) -> Dict:
    if name in REFERENCES and available is not None:
        need = reference_bytes(name, n_pool, dim, n_classes, n_labeled)
        if need > 0.8 * available:
            return {"method": name, "skipped": f"needs ~{need / 2 ** 30:.1f} GiB, {available / 2 ** 30:.1f} GiB available"}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--pool", str(n_pool), "--dim", str(dim),
           "--classes", str(n_classes), "--picks", str(k), "--labeled", str(n_labeled), "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"method": name, "skipped": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        # the whole traceback in the log (a GPU lease may allow one try), the error's line in the JSON
        print(f"{name} failed:\n{proc.stderr.strip()}", file=sys.stderr, flush=True)
        return {"method": name, "failed": error_line(proc.stderr, proc.returncode)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")


def error_line(stderr: str, returncode: int) -> str:
    """The line of a traceback that names the exception (CUDA adds notes after it), else the last
    line, else the exit status (killed, e.g. out of memory)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    named = [line for line in lines if ERROR_LINE.match(line)]
    return named[-1] if named else lines[-1] if lines else f"exit status {returncode}"


def failures(report: Dict) -> List[str]:
    """What failed in a report: selection rows that failed, ours that timed out (a reference that
    takes longer than the limit is a result), training sections that failed."""
    bad = [f"{r['method']}: {r.get('failed') or r.get('skipped')}" for r in report.get("results", [])
           if "failed" in r or (r["method"] in OURS and str(r.get("skipped", "")).startswith("timed out"))]
    bad += [f"training.{name}: {part['failed']}" for name, part in report.get("training", {}).items()
            if isinstance(part, dict) and "failed" in part]
    return bad


def _machine(device: str) -> Dict:
    machine = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name()
    return machine


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--picks", type=int, default=1000)
    ap.add_argument("--labeled", type=int, default=1000, help="labeled set size (core-set, ALBL)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--only", nargs="+", choices=OURS + REFERENCES, help="run only these methods")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per method")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default=None, help="write the JSON here (default: print it)")
    ap.add_argument("--memory-gb", type=float, default=None,
                    help="RAM to size the references by (default: MemAvailable); for a machine whose RAM grows as "
                         "it is used")
    ap.add_argument("--suite", choices=["selection", "training", "all"], default="selection",
                    help="selection: every query strategy; training: training / inference images/s and one "
                         "active-iNAS round (scripts/benchmark_training.py); all: both, in one run")
    ap.add_argument("--train-steps", type=int, default=200, help="timed training steps")
    ap.add_argument("--train-batch", type=int, default=128,
                    help="batch size of the ResNet-18 training comparison (the protocol's 128)")
    ap.add_argument("--warmup-steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                    help="DataLoader workers of the reference loop")
    ap.add_argument("--infer-images", type=int, default=50_000)
    ap.add_argument("--eval-batch", type=int, default=2048)
    ap.add_argument("--round-steps", type=int, default=390,
                    help="steps of the one epoch the timed active-iNAS round trains (0: skip the round)")
    ap.add_argument("--bounds-rounds", type=int, default=13,
                    help="rounds of the protocol whose training time is bounded from measured step times of "
                         "every architecture iNAS can reach (0: skip)")
    ap.add_argument("--inherit-rounds", type=int, default=4,
                    help="rounds of the weight-inheritance comparison (search.inherit false vs true; 0: skip)")
    ap.add_argument("--inherit-steps", type=int, default=150, help="steps per epoch in that comparison")
    ap.add_argument("--inherit-pool", type=int, default=20_000, help="pool size in that comparison")
    ap.add_argument("--inherit-initial", type=int, default=2_000,
                    help="initial labels and batch size in that comparison")
    ap.add_argument("--inherit-epochs", type=int, nargs=2, default=[3, 6], metavar=("CANDIDATES", "MODEL"),
                    help="epochs of the candidates and of the round's model in that comparison")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.pool, args.dim, args.classes, args.picks, args.labeled,
                                 args.device, args.threads)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)

    def write(report: Dict) -> None:
        if args.out:  # after every part, so that a run stopped by a time limit keeps what it measured
            tmp = args.out + ".tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps(report, indent=2) + "\n")
            os.replace(tmp, args.out)

    report: Dict = {"machine": _machine(args.device)}
    if args.suite in ("selection", "all"):
        report.update(bench_selection(args.pool, args.dim, args.classes, args.picks, args.device, args.labeled,
                                      args.skip_reference, args.only, args.timeout, args.threads, args.memory_gb))
        write(report)
    if args.suite in ("training", "all"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from benchmark_training import bench_training

        def on_section(training: Dict) -> None:
            report["training"] = training
            write(report)

        report["training"] = bench_training(args.device, args.train_steps, args.warmup_steps, args.workers,
                                            args.infer_images, args.eval_batch, args.round_steps,
                                            args.inherit_rounds, args.inherit_steps, args.inherit_pool,
                                            args.inherit_initial, tuple(args.inherit_epochs), args.bounds_rounds,
                                            on_section, args.train_batch)
    bad = failures(report)
    report["failures"] = bad
    write(report)
    if not args.out:
        print(json.dumps(report, indent=2))
    for line in bad:  # a method that failed or timed out fails the benchmark: its figures are missing
        print(f"benchmark: failed: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
