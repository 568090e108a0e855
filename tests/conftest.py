"""Shared helpers: run the real CLI in a subprocess, or compose a config in-process."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one torch thread per worker and per dal-run it starts (inherited): workers fill the cores
    # instead of fighting over them. Runs compared with each other all use the same count.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


# The files that take longest, slowest first (as timed on 2026-12-06 on 2 cores: test_sweep_stops.py
# about 150 s down to test_sweeps.py about 45 s; test_slurm.py, about 50 s where a SLURM cluster
# runs, as in CI, and skipped elsewhere), are started first. With --dist loadfile a file runs on one worker, and xdist's own order (the files
# with most tests first) left the slowest files, a few tests each a whole sweep, to the end, on one
# worker while the other idled (addopts: --no-loadscope-reorder keeps this order). A file not
# listed runs after these, in the usual order; the list only decides how long the suite takes.
SLOWEST_FIRST = ["test_sweep_stops.py", "test_reproduce_checks.py", "test_cli_end_to_end.py",
                 "test_reproduce_scripts.py", "test_resume.py", "test_datasets_cli.py", "test_custom_query.py",
                 "test_report.py", "test_benchmark.py", "test_slurm.py", "test_sweeps.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


def _scripts_dir() -> Path:
    """Where the dal-run console script is: beside the interpreter (a venv, `make test`), else on
    PATH (an install with pip --target, as scripts/gpu_check.sh makes on a bare PyTorch image)."""
    here = Path(sys.executable).parent
    found = shutil.which("dal-run")
    return Path(found).parent if not (here / "dal-run").exists() and found else here


BIN = _scripts_dir()
REPO = Path(__file__).resolve().parents[1]


def run_cli(args: List[str], cwd: Path, script: str = "dal-run", timeout: int = 900, env=None):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([str(BIN / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def run_cli_inprocess(args: List[str], cwd: Path, monkeypatch, capsys) -> Tuple[int, str, str]:
    """`dal-run ARGS` in this process (what the console script calls): (exit status, stdout, stderr).

    Much faster than a subprocess for inputs rejected before or while a run is built.
    """
    from hydra.core.global_hydra import GlobalHydra

    from dal_runner import cli

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["dal-run", *args])
    capsys.readouterr()
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        cli.run_main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        GlobalHydra.instance().clear()
        # the handlers Hydra's job logging added (dal-run.log) are closed and taken off: a test after
        # this one, in this worker, must not find this run's log file (progress.logged_to_file)
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.handlers[:] = [h for h in root.handlers if h in handlers] + [h for h in handlers if h not in root.handlers]
    out = capsys.readouterr()
    return code, out.out, out.err


def run_dirs(root: Path) -> List[Path]:
    return sorted(p.parent for p in root.glob("**/.hydra"))


def compose(overrides: List[str]):
    from hydra import compose as hydra_compose, initialize_config_module

    from dal_runner.config import register_configs

    register_configs()
    with initialize_config_module("dal_runner.conf", version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


@pytest.fixture
def small_run(tmp_path):
    """Run the active loop in-process on digits with a small budget; returns (summary, folder)."""
    from dal_runner import run
    from dal_runner.execute import execute

    def _run(*overrides: str, folder: Path | None = None):
        cfg = compose(["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50",
                       "budget.max_labels=150", "trainer.epochs=15", *overrides])
        out = folder or tmp_path / "run"
        summary = execute(run.build(cfg), out)
        return summary, out

    return _run


# One protocol for the resume tests (test_resume.py) and the SLURM preemption test: ALBL keeps a
# bandit across rounds, so a resumed run repeats an uninterrupted one only if that state is
# restored too. One torch thread in every process, so that float sums are the same.
RESUME_ARGS = ["search=fixed", "arch=mlp", "query=albl", "budget.initial=50", "budget.batch=50",
               "budget.max_labels=300", "trainer.epochs=60"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory) -> Path:
    """A completed run of RESUME_ARGS (seed 0): what interrupted ones must equal."""
    root = tmp_path_factory.mktemp("uninterrupted")
    res = run_cli([*RESUME_ARGS, f"hydra.run.dir={root / 'run'}"], cwd=root, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    return root / "run"


def without_timings(rows):
    """rounds.csv rows without the *_seconds columns (wall-clock times differ between runs)."""
    return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]
