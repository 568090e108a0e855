#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command that fits a 15-minute device lease (at most
# 10 minutes a command, the machine's start included in the lease): tests/test_cuda.py, the
# chunked strategies on a 1M pool with their peak GPU memory, then the benchmark (selection of
# every query on a 50,000 x 512 pool beside the references, training and inference images/s
# beside a plain DataLoader loop, one active-iNAS CIFAR-10 round split by phase, bounds on the
# whole protocol, weight inheritance on CIFAR-shaped data).
#
#   scripts/gpu_check.sh [OUT_DIR] [PART...]   # OUT_DIR default: $OUT if set, else outputs/gpu_check
#
# PART: tests, big, bench, run in that order; default all three. Each part has a time limit
# (seconds: GPU_CHECK_TESTS_S=140, GPU_CHECK_BIG_S=70, GPU_CHECK_BENCH_S=330; 540 s together, so the
# device tool's `run` with timeout_s=600 holds them all). The benchmark writes gpu.json after
# every section, so a section cut off by the limit keeps what the ones before measured. The
# limits were sized by the first run on an NVIDIA H200 (2026-12-04: all three parts in 422 s).
# GPU_CHECK_TESTS_K is a pytest -k expression for the tests ("graph or deterministic");
# GPU_CHECK_BENCH_ARGS adds arguments to the benchmark, split on spaces ("--suite training": a
# later argument overrides an earlier one).
#
# On a machine with `make test` done, it uses .venv. On a bare PyTorch image with no network
# (torch, numpy, scipy, scikit-learn, pandas, rich, matplotlib there; hydra-core & co missing)
# it installs the wheels in .whl/ (made here by scripts/gpu_wheels.sh) and this checkout into
# a temporary folder first; without them (or if that install fails) it skips the tests and runs the rest,
# whose selection timings need no Hydra (training sections are then recorded as failed). Writes, into OUT_DIR: environment.txt, test_cuda.log (tests),
# gpu_1m.json + benchmark_1m.log (big), gpu.json + benchmark.log (bench). Exit status: non-zero
# if the tests or the benchmark failed, or Hydra could not be installed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-outputs/gpu_check}
case "${1:-}" in tests|bench|big|"") ;; *) out=$1; shift ;; esac  # `gpu_check.sh tests big` keeps the default folder
parts=" ${*:-tests big bench} "
for p in $parts; do
  case $p in tests|bench|big) ;; *) echo "gpu_check: unknown part '$p'; accepted: tests, bench, big" >&2; exit 2 ;; esac
done
mkdir -p "$out"
if [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=${PYTHON:-python3}
  if ! "$py" -c 'import hydra, omegaconf, submitit, hydra_plugins.hydra_submitit_launcher, dal_runner.conf' 2>/dev/null; then
    site=$(mktemp -d)
    if ! ls .whl/*.whl >/dev/null 2>&1; then
      missing="no .whl/ here (run scripts/gpu_wheels.sh where pip has a network; the device tool's run needs carry: [\".whl\"])"
    else
      # with the package itself, in one go (a second --target install leaves bin/ as it was): conf/
      # ships as dal_runner.conf only through an install
      "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" .whl/*.whl . \
        2>&1 | grep -v -e BuildBackendWarning -e '^ ' || true
      [ -x "$site/bin/dal-run" ] || missing="installing .whl/ and this checkout into $site failed"
    fi
    if [ -n "${missing:-}" ]; then
      # the lease is not wasted: the selection timings and the 1M pool import neither Hydra nor
      # OmegaConf; the tests and the training sections (which do) are skipped or recorded as failed
      echo "gpu_check: $missing; without Hydra: skipping the tests, running the rest" >&2
      parts=${parts/ tests / }
      export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
      status_missing=1
    else
      export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
    fi
  fi
fi
export PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
    "cuda", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")'
  nproc
} >"$out/environment.txt" 2>&1
cat "$out/environment.txt"
"$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_check: torch sees no CUDA GPU here; nothing to check" >&2; exit 2; }

status=${status_missing:-0}
if [[ $parts == *" tests "* ]]; then
  # the CUDA tests; the rest of the suite is CPU-only and runs in CI
  # -P: the checkout's own dal_runner/ (no conf/ inside) must not shadow the installed package
  timeout "${GPU_CHECK_TESTS_S:-140}" "$py" -P -m pytest tests/test_cuda.py -p no:cacheprovider -n 0 -q -rs \
    --durations=5 ${GPU_CHECK_TESTS_K:+-k "$GPU_CHECK_TESTS_K"} 2>&1 | tee "$out/test_cuda.log" || status=1
fi
if [[ $parts == *" big "* ]]; then
  # the chunked strategies on a 1,000,000 x 512 pool with 100 classes: peak GPU memory (target: under 8 GB)
  timeout "${GPU_CHECK_BIG_S:-70}" "$py" scripts/benchmark.py --pool 1000000 --classes 100 \
    --only coreset badge mc_dropout --device cuda --timeout 25 --out "$out/gpu_1m.json" 2>&1 \
    | tee "$out/benchmark_1m.log" || status=1
fi
if [[ $parts == *" bench "* ]]; then
  # selection on a 50,000 x 512 pool (ours, and the core-set reference on the CPU; the BADGE reference
  # needs minutes there and was measured on the development machine), training, inference, one
  # active-iNAS round, bounds on the whole protocol, weight inheritance (cut to 3 rounds of 100-step
  # epochs to fit the lease); gpu.json grows section by section. --memory-gb: the machine's RAM
  # grows as it is used, so MemAvailable at the start understates it (128 GiB on an nvidia-h200)
  timeout "${GPU_CHECK_BENCH_S:-330}" "$py" scripts/benchmark.py --suite all --device cuda --timeout 40 \
    --out "$out/gpu.json" --inherit-rounds 3 --inherit-steps 100 --memory-gb 100 \
    --only random softmax_response margin entropy mc_dropout coreset badge albl albl_points coreset_reference_full_matrix \
    ${GPU_CHECK_BENCH_ARGS:-} 2>&1 | tee "$out/benchmark.log" || status=1
fi
exit $status
