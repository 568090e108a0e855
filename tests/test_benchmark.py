"""scripts/benchmark.py runs end to end and writes the JSON the README's figures come from.

Tiny sizes on the CPU: these check that every measurement runs and is recorded, not its speed
(speed is what the benchmark itself reports, on the machine that runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ONE_THREAD

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


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
    result = _benchmark(tmp_path, "--suite", "training", "--train-steps", "1", "--warmup-steps", "1",
                        "--workers", "0", "--infer-images", "128", "--eval-batch", "64", "--round-steps", "0")
    t = result["training"]
    assert t["training_ours"]["recipe"].endswith("fp32")  # the CPU's fast path
    assert t["training_ours"]["images_per_s"] > 0 and t["training_reference"]["images_per_s"] > 0
    assert t["training_speedup"] == round(t["training_ours"]["images_per_s"]
                                          / t["training_reference"]["images_per_s"], 2)
    assert t["inference"]["images"] == 128 and t["inference"]["images_per_s"] > 0
