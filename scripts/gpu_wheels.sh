#!/usr/bin/env bash
# Wheels of what dal-runner needs beyond a PyTorch image (hydra-core, omegaconf, antlr4, submitit
# and its Hydra launcher), built into .whl/ (git-ignored) at the versions of this checkout's .venv,
# for a GPU machine that has torch, numpy, scipy, scikit-learn, pandas, rich and matplotlib but no
# network. scripts/gpu_check.sh installs them there. All are pure Python; antlr4-python3-runtime
# 4.9.3 is published only as a source archive, hence `pip wheel` (it builds one) rather than
# `pip download`.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
pkgs=(hydra-core omegaconf antlr4-python3-runtime hydra-submitit-launcher submitit)
pins=()
for p in "${pkgs[@]}"; do
  v=$("$py" -m pip show "$p" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$v" ] || { echo "gpu_wheels: $p is not installed in $py (run make test first)" >&2; exit 2; }
  pins+=("$p==$v")
done
rm -rf .whl && mkdir -p .whl
"$py" -m pip wheel --quiet --no-deps -w .whl "${pins[@]}"
ls .whl
