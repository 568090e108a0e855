"""Running a built `Experiment` (`run.build`): the active loop into its run folder, then
summary.json and status.json; a run that fails or is stopped says so in its status.json."""

from __future__ import annotations

import logging
import os
import platform
import shlex
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

import torch

from dal_runner import state
from dal_runner.errors import ConfigError
from dal_runner.features import amp_dtype
from dal_runner.io import STATUS_JSON, RunFolder, read_json
from dal_runner.job_control import signals_held, stop_recorded
from dal_runner.loop import run_active_learning
from dal_runner.provenance import source_commit

if TYPE_CHECKING:
    from dal_runner.run import Experiment

log = logging.getLogger("dal_runner")


def versions() -> Dict[str, str]:
    import hydra
    import numpy
    import torchvision

    from dal_runner import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "hydra": hydra.__version__, "dal_runner": __version__,
            "dal_runner_commit": source_commit()}  # as the run started (the loop asks first; cached)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def resume_state(exp: Experiment, run_dir: Path) -> Optional[Dict[str, Any]]:
    """The state to continue from, if `run_dir` holds one (a `resume=` run, or a requeued job).

    Raises ConfigError when the folder was run with another protocol.
    """
    if not state.state_path(run_dir).is_file():
        return None
    try:
        saved = state.load(run_dir)
        state.check_same_config(run_dir, saved["config"], exp.config)
        state.check_same_data(saved.get("data"), exp.data.fingerprint())
    except state.ResumeError as e:
        raise ConfigError("resume", str(run_dir), e.accepted, str(e)) from None
    return saved


def describe_data(data) -> Dict[str, Any]:
    """What the run read, for summary.json: sizes, classes, input and its type, an image set's
    normalisation per channel (a table's, per feature, is left out: one number per column), and the
    digest a resumed run checks (the same data in two runs: the same sha256)."""
    described = {**data.fingerprint(), "dtype": str(data.x_train.dtype).replace("torch.", "")}
    if data.content:  # dal-report: runs of one config on different data
        described["content_sha256"] = data.content
    if data.is_image:
        described.update(mean=[round(float(m), 6) for m in data.mean], std=[round(float(v), 6) for v in data.std])
    return described


def execute(exp: Experiment, run_dir: Path, resume: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    folder = RunFolder(run_dir)
    for partial in folder.remove_partial_writes():
        log.info("removed %s, a write cut short when the run was killed", partial.relative_to(run_dir))
    try:
        result = run_active_learning(exp.data, exp.search, exp.query, exp.trainer, exp.budget, exp.build_model,
                                     exp.seed, folder, exp.title, exp.search_trainer, exp.augment,
                                     config=exp.config, resume=resume, inherit_weights=exp.inherit_weights)
        # inside the try: a stop while the results are written leaves the run interrupted, not running
        # seconds: every round of the run, over all its processes when it was resumed (loop_seconds
        # adds the elapsed time saved in the state), not only this process's
        at_start, code = result.pop("commit_at_start", None), versions()
        if at_start is not None and at_start != code["dal_runner_commit"]:  # resumed with other code
            code["dal_runner_commit_at_start"] = at_start
        summary = {**result, "seconds": result["loop_seconds"],
                   "device": device_name(exp.device),
                   "precision": "bf16" if amp_dtype(exp.trainer.precision, exp.device) else "fp32",
                   "versions": code, "seed": exp.seed, "choices": exp.choices, "data": describe_data(exp.data),
                   "budget": {"initial": exp.budget.initial, "batch": exp.budget.batch,
                              "max_labels": exp.budget.max_labels, "max_rounds": exp.budget.max_rounds}}
        folder.summary(summary)
        folder.status("completed", round=result["n_rounds"] - 1, n_labeled=result["final_n_labeled"])
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, or SLURM preemption (submitit requeues the job)
        mark_interrupted(run_dir, e)
        raise
    except BaseException as e:
        stop = stop_recorded()
        if stop is not None:  # a stop that became another exception on its way (raised inside an import)
            mark_interrupted(run_dir, stop)
            raise stop from e
        mark_failed(run_dir, e)
        raise
    return summary


def mark_interrupted(run_dir: Path, stop: BaseException) -> None:
    """status.json = interrupted, by whom, and how the run continues: `resume=`, or by itself where
    submitit requeued its SLURM job (a resume= by hand then took its folder, and the requeued job
    stopped)."""
    how = ("by the user (Ctrl-C)" if isinstance(stop, KeyboardInterrupt) else
           "by a signal (SIGTERM, SIGUSR1/2, or preempted or timed out)")
    then = (f"; dal-run {shlex.quote(f'resume={run_dir}')} continues it" if state.state_path(run_dir).is_file() else
            " before its first round ended; nothing to resume: run it again")
    if type(stop) is SystemExit and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        # submitit's preemption handler exits so once it has requeued the job (our own stops: Terminated)
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "?")  # as squeue shows it
        how = f"by SLURM (preempted or at its time limit) and requeued by submitit as job {job}"
        then = ("; it continues by itself from its last complete round" if state.state_path(run_dir).is_file() else
                "; it runs again by itself from the start (no round had ended)") + " (squeue lists it)"
    with signals_held():  # a second Ctrl-C (submitit forwards one to each job) must not cut this write
        mark_failed(run_dir, f"interrupted {how}{then}", state_name="interrupted")


def mark_failed(run_dir: Path, error: Any, round_index: Optional[int] = None, state_name: str = "failed") -> None:
    """status.json = failed (or interrupted), with the error and the last round that completed."""
    path = Path(run_dir) / STATUS_JSON
    if round_index is None and path.exists():
        try:
            round_index = read_json(path).get("round")
        except (OSError, ValueError):
            pass
    if isinstance(error, ConfigError) or not isinstance(error, BaseException):
        detail = str(error)  # a bad input: its one line says it all
    elif "timed-out too many times" in str(error):  # submitit's, on a launcher's time limit
        detail = ("the job reached its time limit (hydra.launcher.timeout_min) once more than "
                  "hydra.launcher.max_num_timeout requeues allow; a larger timeout_min, or the same command with "
                  "hydra.sweep.dir, continues it from its last round")
    else:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    RunFolder(run_dir).status(state_name, error=detail, round=round_index)
