"""scripts/benchmark.py runs end to end and writes the JSON the README's figures come from.

Tiny sizes on the CPU: these check that every measurement runs and is recorded, not its speed
(speed is what the benchmark itself reports, on the machine that runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ONE_THREAD

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
sys.path.insert(0, str(SCRIPT.parent))  # benchmark_training


def _benchmark(tmp_path, *args):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(SCRIPT), *args, "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text())


def test_selection_benchmark_times_ours_and_the_references_with_their_memory(tmp_path):
    methods = ["coreset", "badge", "mc_dropout", "albl", "badge_reference_explicit", "coreset_reference_full_matrix"]
    result = _benchmark(tmp_path, "--pool", "3000", "--dim", "32", "--classes", "5", "--picks", "30",
                        "--labeled", "50", "--only", *methods)
    assert result["config"]["n_pool"] == 3000 and result["machine"]["torch_threads"] == 1
    rows = {r["method"]: r for r in result["results"]}
    assert sorted(rows) == sorted(methods)
    for row in rows.values():
        assert row["n_picks"] == 30 and row["distinct"] is True
        assert row["seconds"] > 0 and row["peak_rss_mb"] >= row["rss_data_mb"] > 0


def test_training_benchmark_compares_our_trainer_with_the_dataloader_reference(tmp_path):
    result = _benchmark(tmp_path, "--suite", "training", "--train-steps", "8", "--warmup-steps", "1",
                        "--train-batch", "8", "--workers", "0", "--infer-images", "128", "--eval-batch", "64",
                        "--round-steps", "0", "--inherit-rounds", "1", "--inherit-steps", "1", "--inherit-pool", "200",
                        "--inherit-initial", "50", "--inherit-epochs", "1", "1", "--bounds-rounds", "1")
    t = result["training"]
    assert t["training_ours"]["recipe"].endswith("fp32")  # the CPU's fast path
    assert t["training_ours"]["batch_size"] == t["training_reference"]["batch_size"] == 8
    assert t["training_ours"]["images_per_s"] > 0 and t["training_reference"]["images_per_s"] > 0
    assert t["training_speedup"] == round(t["training_ours"]["images_per_s"]
                                          / t["training_reference"]["images_per_s"], 2)
    assert t["inference"]["images"] == 128 and t["inference"]["images_per_s"] > 0
    prof = t["step_profile"]
    assert prof["time"] == "CPU operators (self)" and prof["ms_per_step"] > 0 and prof["top"]
    assert any("conv" in row["name"] for row in prof["top"])
    assert sum(row["share"] for row in prof["top"]) <= 1.0 + 1e-6
    # one round from A(1, 1): its 3 candidates for 50 epochs, then A(1, 1) or the costliest for 200
    bounds, ips = t["protocol_bounds"], t["protocol_bounds"]["images_per_s"]
    assert sorted(ips) == ["A(1, 1)", "A(1, 2)", "A(2, 1)"]
    step = {a: 128 / v for a, v in ips.items()}
    costliest = bounds["grows_to_costliest"]["path"]
    assert bounds["never_grows"]["path"] == ["A(1, 1)"] and costliest == [max(step, key=step.get)]
    fixed = bounds["fixed_seconds_per_fit"]
    # each architecture's step time is the slope between fits of 1 and 2 (of 8 // 4) steps; what a fit
    # costs whatever its steps (a GPU's warm-up steps and graph capture) is counted once per fit
    assert bounds["timed_steps"] == [1, 2] and set(fixed) == set(ips) and min(fixed.values()) >= 0
    for side, chosen in (("never_grows", "A(1, 1)"), ("grows_to_costliest", costliest[0])):
        expected = sum(step.values()) * 50 * 390 + step[chosen] * 200 * 390 + sum(fixed.values()) + fixed[chosen]
        assert abs(bounds[side]["training_seconds"] - expected) < 0.01 * expected + 0.1
    inh = t["inheritance"]
    assert (inh["rounds"], inh["steps_per_epoch"], inh["search_epochs"], inh["epochs"]) == (1, 1, 1, 1)
    assert len(inh["from_scratch"]["arch"]) == len(inh["inherited"]["arch"]) == 1


def test_templated_cifar_is_cifar_shaped_and_learnable_but_not_trivially():
    from benchmark_training import templated_cifar

    x, y = templated_cifar(2000, seed=1)
    assert x.shape == (2000, 3, 32, 32) and x.dtype == torch.uint8 and sorted(set(y.tolist())) == list(range(10))
    assert torch.equal(x, templated_cifar(2000, seed=1)[0])
    # nearest class mean on raw pixels, fitted on half: well above chance (0.1), well below perfect
    f = x.float().view(2000, -1)
    means = torch.stack([f[:1000][y[:1000] == c].mean(dim=0) for c in range(10)])
    accuracy = float((torch.cdist(f[1000:], means).argmin(dim=1) == y[1000:]).float().mean())
    assert 0.3 < accuracy < 0.95


def test_inheritance_benchmark_runs_both_variants_through_the_real_loop():
    from benchmark_training import inheritance

    inh = inheritance(torch.device("cpu"), rounds=2, steps=1, pool=300, n_test=100, initial=50,
                      search_epochs=1, epochs=1)
    scratch, inherited = inh["from_scratch"], inh["inherited"]
    for variant in (scratch, inherited):
        assert len(variant["test_accuracy"]) == len(variant["arch"]) == len(variant["search_seconds"]) == 2
        assert variant["candidates_trained"] >= 4  # round 0: A(1,1) and its 2 growths; round 1: at least 2
    # round 0 has no model to inherit from: both variants train the same candidates from the same seeds
    assert scratch["test_accuracy"][0] == inherited["test_accuracy"][0] and scratch["arch"][0] == inherited["arch"][0]
    def scores(variant, round_):
        return {c["arch"]: c["val_accuracy"] for c in variant["candidates"] if c["round"] == round_}

    assert scores(scratch, 0) == scores(inherited, 0)
    # round 1: inherited candidates start from round 0's trained model, so they score differently
    later, later_inherited = scores(scratch, 1), scores(inherited, 1)
    shared = sorted(set(later) & set(later_inherited))
    assert shared and any(later[c] != later_inherited[c] for c in shared)
    assert inh["auc_difference"] == round(inherited["auc"] - scratch["auc"], 6)
    assert inh["search_seconds_ratio_after_round_0"] > 0


def test_a_failing_training_section_is_recorded_and_the_others_still_run(monkeypatch):
    import benchmark_training

    def no_shared_memory(*args, **kwargs):
        raise RuntimeError("DataLoader worker killed by a bus error")

    monkeypatch.setattr(benchmark_training, "reference_training", no_shared_memory)
    seen = []
    out = benchmark_training.bench_training("cpu", 1, 1, 0, 16, 16, round_steps=0, batch_size=4,
                                            on_section=lambda o: seen.append(sorted(o)))
    assert out["training_reference"] == {"failed": "RuntimeError: DataLoader worker killed by a bus error"}
    assert out["training_speedup"] is None
    assert out["training_ours"]["images_per_s"] > 0 and out["inference"]["images"] == 16
    # the caller is handed the results after every section, so it can write them as they come
    assert seen == [["training_ours"], ["training_ours", "training_reference"],
                    ["inference", "training_ours", "training_reference", "training_speedup"],
                    ["inference", "step_profile", "training_ours", "training_reference", "training_speedup"]]


def test_a_method_that_fails_fails_the_benchmark_with_the_error_named(tmp_path):
    """Figures that are missing are a failure, not a quiet entry in the JSON: here CUDA, which this
    machine lacks (a broken CUDA path on a lent GPU fails the same way)."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--pool", "300", "--dim", "8", "--picks", "5", "--device",
                          "cuda", "--only", "random", "coreset_reference_full_matrix", "--threads", "1",
                          "--out", str(out)], capture_output=True, text=True, env={**os.environ, **ONE_THREAD},
                         timeout=300)
    assert res.returncode == 1, res.stderr
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert "Error" in rows["random"]["failed"] and "CUDA" in rows["random"]["failed"], rows["random"]
    assert "failed" not in rows["coreset_reference_full_matrix"]  # the references run on the CPU
    assert report["failures"] == [f"random: {rows['random']['failed']}"]
    assert f"benchmark: failed: random: {rows['random']['failed']}" in res.stderr


def test_the_error_line_is_the_exception_not_the_notes_after_it():
    from benchmark import error_line

    stderr = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
              "torch.AcceleratorError: CUDA error: an illegal memory access was encountered\n"
              "Search for `cudaErrorIllegalAddress' in https://docs.nvidia.com/cuda/ for more information.\n"
              "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")
    assert error_line(stderr, 1) == "torch.AcceleratorError: CUDA error: an illegal memory access was encountered"
    assert error_line("killed\n", -9) == "killed" and error_line("", -9) == "exit status -9"


def test_the_round_projection_scales_only_what_grows_with_the_steps():
    import benchmark_training

    # 3 candidates: 12 s to build and evaluate them, 3 s per step; the model: 5 s fixed, 1 s per step
    short = {"search": 12 + 3 * 5, "train": 5 + 1 * 5, "arch": "A(basic, 1, 1)"}
    timed = {"search": 12 + 3 * 100, "train": 5 + 1 * 100, "arch": "A(basic, 1, 1)"}
    fit = benchmark_training.project_steps(short, timed, 5, 100)
    assert fit["projected"]["search"] == pytest.approx(12 + 3 * 50 * 390)
    assert fit["projected"]["train"] == pytest.approx(5 + 200 * 390)
    assert fit["how"]["search"] == {"fixed_seconds": 12.0, "seconds_per_step": 3.0}
    # the runs chose different models: training is scaled whole (as before), and says why
    other = benchmark_training.project_steps(short, {**timed, "arch": "A(basic, 2, 1)"}, 5, 100)
    assert other["projected"]["train"] == pytest.approx(105 * 200 * 390 / 100)
    assert other["how"]["train"] == "scaled whole (the two runs trained different models)"
    assert other["projected"]["search"] == fit["projected"]["search"]
    # noise: the longer run was not slower
    noisy = benchmark_training.project_steps({**short, "search": 400.0}, timed, 5, 100)
    assert noisy["how"]["search"] == "scaled whole (no positive difference)"
