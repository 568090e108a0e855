"""Console entry points `dal-run` and `dal-report`: parse, check (`preflight.py`, before Hydra
starts), call `run.py` / `report.py`; job control of a running job (a stop's message, a failed
start undone)."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from dal_runner.config import register_configs
from dal_runner.config_checks import explain
from dal_runner.errors import ConfigError, as_config_error
from dal_runner.folder_checks import busy_message
from dal_runner.io import completed_summary
from dal_runner.job_control import (FolderBusy, Terminated, only_process_in, remove_failed_start, signal_name,
                                    stop_on_sigterm)
from dal_runner.launchers import jobs_after_stop, stop_local_jobs, sweep_launch
from dal_runner.preflight import PREFLIGHT, fail, preflight
from dal_runner.progress import file_only_off_the_console
from dal_runner.cli_help import CONFIG_MODULE, help_text

register_configs()
log = logging.getLogger("dal_runner")


# ------------------------------------------------------------------------------ entry points
@hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name="config", version_base="1.3")
def _dal_run(cfg: DictConfig) -> Optional[float]:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    _CURRENT["run_dir"], _CURRENT["sweep_dir"] = run_dir, Path(hydra_cfg.sweep.dir) if multirun else None
    file_only_off_the_console()  # a custom query strategy's traceback: dal-run.log only
    restore = stop_on_sigterm()
    try:
        with only_process_in(run_dir):
            result = _job(cfg, hydra_cfg, run_dir, multirun)
    except FolderBusy:
        message = f"{run_dir}: another dal-run process is running in this folder; this job stopped"
        _CURRENT["run_dir"] = None
        if multirun:
            log.error(message)
            return None
        fail(busy_message(run_dir, resuming=cfg.get("resume") is not None))
    finally:
        restore()
    _CURRENT["run_dir"] = None  # a stop from here on (the next job's start, the report) is no job's
    return result


def _job(cfg: DictConfig, hydra_cfg, run_dir: Path, multirun: bool) -> Optional[float]:
    from dal_runner import execute, run

    choices = dict(hydra_cfg.runtime.choices)
    resuming = bool(cfg.get("resume")) or state_exists(run_dir)
    try:
        experiment = run.build(cfg, choices)
        resume = execute.resume_state(experiment, run_dir)  # resume=PATH, or a requeued SLURM job
    except (ConfigError, InterpolationResolutionError) as e:  # the latter: ${hydra:...} resolving badly
        if not isinstance(e, ConfigError):
            task = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)  # as typed
            e = as_config_error(ValueError(explain(e, task)))
        if multirun:  # one bad job neither stops nor hides the others: its status.json says why
            execute.mark_failed(run_dir, e, round_index=None)
            log.error("%s: %s", run_dir, e)
            return None
        if not resuming:  # nothing ran: leave no folder behind that looks like a result
            remove_failed_start(run_dir, PREFLIGHT.get("existing"))
        fail(str(e))
    except (KeyboardInterrupt, Terminated) as stop:  # stopped while loading the data or building the model
        if not multirun and not resuming:  # nothing ran: leave no folder behind that looks like a run
            remove_failed_start(run_dir, PREFLIGHT.get("existing"))
            _CURRENT["run_dir"], _CURRENT["not_started"] = None, True
        elif multirun:  # a sweep's job keeps its folder: its status.json says it was stopped, and how
            execute.mark_interrupted(run_dir, stop)
        raise
    except Exception as e:  # not a bad input we know of: the same one line, as a failure to start
        if multirun:
            execute.mark_failed(run_dir, e, round_index=None)
            log.error("%s: could not start: %s: %s", run_dir, type(e).__name__, e)
            return None
        if not resuming:
            remove_failed_start(run_dir, PREFLIGHT.get("existing"))
        fail(f"could not start the run: {type(e).__name__}: {' '.join(str(e).split())}", status=1)
    done = completed_summary(run_dir) if resume is not None else None
    if done is not None:  # a sweep launched again into its folder: this job is done, with this config
        log.info("%s: already completed with this config; kept as it is", run_dir)
        return done["final_accuracy"]
    try:
        summary = execute.execute(experiment, run_dir, resume)
    except Exception as e:
        where = _failed_round(run_dir)
        if multirun:
            log.error("%s: run failed%s: %s", run_dir, where, e)
            return None
        fail(f"run failed{where}: {type(e).__name__}: {e} (details in {run_dir}/status.json)", status=1)
    log.info("done: final accuracy %.4f at %d labels, AUC %.4f over %d rounds, %.0fs; results in %s",
             summary["final_accuracy"], summary["final_n_labeled"], summary["auc"], summary["n_rounds"],
             summary["seconds"], run_dir)
    return summary["final_accuracy"]


# the job running now (for the message on a stop)
_CURRENT: dict = {"run_dir": None, "sweep_dir": None, "not_started": False}


def _stopped(how: str, status: int) -> None:
    """One line for a run stopped by Ctrl-C or SIGTERM: where, and how to continue; the run's
    dal-run.log gets it too (the terminal only once). A hydra/launcher=local sweep's running jobs
    were stopped with it (stop_local_jobs) before this is called."""
    run_dir, sweep_dir = _CURRENT["run_dir"], _CURRENT["sweep_dir"]
    if run_dir is None:
        from dal_runner.callbacks import LAUNCHED_JOBS

        if _CURRENT.get("not_started"):
            fail(f"{how} while the run was starting; nothing was written: run the command again", status)
        if len(LAUNCHED_JOBS) == 1:  # the sweep's own process (its jobs run elsewhere: submitit's launchers)
            sweep = next(iter(LAUNCHED_JOBS))
            if "Slurm" in PREFLIGHT.get("launcher", ""):  # the jobs are the cluster's: nothing stopped them
                fail(f"{how} of the sweep {sweep}; its SLURM jobs keep running (squeue lists them, scancel stops "
                     f"them); once they have ended, the same command with {_arg('hydra.sweep.dir', sweep)} finishes "
                     f"it (completed jobs are kept, stopped ones continue)", status)
            # its jobs as their status.json says, once stopped (stop_local_jobs waited for them): a count
            # of the processes still running took a job that had just completed for one stopped
            fail(f"{how} of the sweep {sweep}; its jobs: {jobs_after_stop(LAUNCHED_JOBS[sweep])}; the same command "
                 f"with {_arg('hydra.sweep.dir', sweep)} finishes it (completed jobs are kept)", status)
        fail(how, status)
    if sweep_dir is None and not state_exists(run_dir):
        message = (f"{how}{_failed_round(run_dir)} of {run_dir}, before its first round ended; nothing to resume: "
                   f"run the command again")
    elif sweep_dir is not None:
        this = "this one continues" if state_exists(run_dir) else \
            "this one, stopped before its first round ended, runs again"
        message = (f"{how}{_failed_round(run_dir)} of {run_dir}; the same command with "
                   f"{_arg('hydra.sweep.dir', sweep_dir)} finishes the sweep (completed jobs are kept, {this})")
    else:
        message = f"{how}{_failed_round(run_dir)} of {run_dir}; dal-run {_arg('resume', run_dir)} continues it"
    _to_log_files(message)
    fail(message, status)


def _to_log_files(message: str) -> None:
    """`message` into the log files Hydra opened (the run's dal-run.log), not onto the console."""
    record = logging.LogRecord("dal_runner", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def state_exists(run_dir: Path) -> bool:
    from dal_runner import state

    return state.state_path(run_dir).is_file()


def _arg(key: str, path) -> str:
    """key=path as a shell takes it (a path with a space or a quote, quoted)."""
    return shlex.quote(f"{key}={path}")


def _failed_round(run_dir: Path) -> str:
    from dal_runner.io import STATUS_JSON, read_json

    try:
        r = read_json(Path(run_dir) / STATUS_JSON).get("round")
    except (OSError, ValueError):
        return ""
    return f" in round {r}" if r is not None else ""


# Hydra's own flags (dal-run --hydra-help); any other --name is a key given argparse-style
_HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve", "--package", "-p",
                "--run", "-r", "--multirun", "-m", "--shell-completion", "-sc", "--config-path", "-cp",
                "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}


def _refuse_option_style(argv: List[str]) -> None:
    """`--seed 1`, `--seed=1`, `--trainer.lr 0.1`: one line that says how dal-run takes them."""
    for i, a in enumerate(argv):
        flag, eq, value = a.partition("=")
        if not a.startswith("--") or flag in _HYDRA_FLAGS:
            continue
        if not eq and i + 1 < len(argv) and "=" not in argv[i + 1] and not argv[i + 1].startswith("-"):
            value, a = argv[i + 1], f"{a} {argv[i + 1]}"
        key = flag[2:].replace("-", "_") if "." not in flag else flag[2:]
        fail(f"{a}: dal-run takes overrides as key=value, not --options; accepted: {key}={value or '<value>'} "
             f"(dal-run --help lists the keys)")


def _flag_values(argv: List[str], *flags: str) -> List[Tuple[str, str]]:
    """(as typed, value) of each `--flag value` / `--flag=value` in argv."""
    found = []
    for i, a in enumerate(argv):
        flag, eq, value = a.partition("=")
        if flag in flags:
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else ""
            found.append((f"{flag}={value}" if eq else f"{flag} {value}".rstrip(), value))
    return found


def _check_config_flags(argv: List[str]) -> None:
    """Hydra's flags that name files, checked before Hydra (which answers a wrong one with its own
    lines, a search path or a traceback, and exit status 1).

    `--config-name X` (`-cn X`) names dal-run's primary config, of which there is one, `config`,
    unless --config-dir or --config-path brings configs of one's own, where X.yaml must then be."""
    dirs = _flag_values(argv, "--config-dir", "-cd")
    paths = _flag_values(argv, "--config-path", "-cp")
    for given, value in dirs:
        if not Path(value).is_dir():
            fail(f"{given}: no such folder; accepted: a folder of configs of your own (YAML files, config "
                 f"groups as folders), added to dal-run's")
    for given, value in paths:
        if value.startswith(("pkg://", "file://")):
            continue
        if not Path(value).is_absolute():
            fail(f"{given}: a relative --config-path is read from dal-run's package, not from this folder; "
                 f"accepted: an absolute path (--config-path {Path(value).absolute()}), or --config-dir {value} "
                 f"to add configs of your own to dal-run's")
        if not Path(value).is_dir():
            fail(f"{given}: no such folder; accepted: a folder holding a primary config (config.yaml, or "
                 f"the one --config-name names)")
    own = [Path(v) for _, v in dirs + paths if not v.startswith(("pkg://", "file://"))]
    for given, name in _flag_values(argv, "--config-name", "-cn") or [("", "config")]:
        if (name == "config" and not paths) or any((d / f"{name}.yaml").is_file() for d in own):
            continue
        if not own and not paths:
            fail(f"{given}: no such config; accepted: config (the default: leave it out), or a config of your "
                 f"own from --config-dir DIR (dal-run --help lists the config groups and +experiment=...)")
        where = " or ".join(str(d) for d in own)
        if not given:  # --config-path alone: its primary config is config.yaml
            fail(f"--config-path {where}: no config.yaml there; accepted: a folder holding config.yaml, or "
                 f"--config-name NAME for NAME.yaml there")
        fail(f"{given}: no {name}.yaml in {where}; accepted: the name of a YAML file there (without .yaml)"
             + ("" if paths else ", or config (dal-run's own)"))
    for given, value in _flag_values(argv, "--experimental-rerun"):
        if not Path(value).is_file():
            fail(f"{given}: no such file; accepted: a run's .hydra/config.pickle (Hydra writes it with "
                 f"+hydra.callbacks.save_job_info._target_=hydra.experimental.callbacks.PickleJobInfoCallback)")


def run_main() -> None:
    argv = sys.argv[1:]
    if "--help" in argv or "-h" in argv:
        _print(help_text())
        return
    if "--version" in argv:
        _print(_version())
        return
    if any(a in ("-m", "--multirun") for a in argv):  # Hydra takes -m only before the overrides
        argv = [a for a in argv if a in ("-m", "--multirun")][:1] + [a for a in argv if a not in ("-m", "--multirun")]
        sys.argv = [sys.argv[0], *argv]
    _refuse_option_style(argv)
    _check_config_flags(argv)
    completion = [i for i, a in enumerate(argv) if a in ("--shell-completion", "-sc")]
    if completion and not any(a.split("=")[0] in ("install", "uninstall", "query") for a in argv):
        fail(f"{argv[completion[0]]}: no command given; accepted: {argv[completion[0]]} install=bash "
             f"(or zsh, fish), uninstall=bash, or query=... (Hydra's shell completion)")
    if "--hydra-help" in argv:  # Hydra's own help, the same whatever the overrides (some made it fail)
        sys.argv = [sys.argv[0], "--hydra-help"]
    if not any(a in ("--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc") or
               a.startswith("--info") for a in argv):
        try:
            sys.argv = [sys.argv[0], *preflight(argv)]
        except KeyboardInterrupt:
            what = "the jobs; none started" if any(a in ("-m", "--multirun") for a in argv) else \
                "the run; it did not start"
            fail(f"interrupted (Ctrl-C) while checking {what}", 130)
    from dal_runner import callbacks

    callbacks.FAILED_RUNS.clear()
    _CURRENT["not_started"] = False
    sweep = any(a in ("-m", "--multirun") for a in argv)
    # a sweep's own process too: under submitit's launchers it runs no job, whose handler would say it
    restore = stop_on_sigterm() if sweep else (lambda: None)
    try:
        with sweep_launch(sweep=sweep):
            _dal_run()
    except KeyboardInterrupt:
        stop_local_jobs()
        _stopped("interrupted (Ctrl-C)", 130)
    except Terminated as e:
        stop_local_jobs()
        _stopped(f"terminated ({signal_name(e)})", int(e.code))
    finally:
        restore()
    if callbacks.FAILED_RUNS:
        n, total = len(callbacks.FAILED_RUNS), callbacks.FAILED_RUNS[0][2]
        for folder, reason, _ in callbacks.FAILED_RUNS:
            print(f"dal-run: error: {folder}: {reason}", file=sys.stderr)
        fail(f"none of the {total} runs of the sweep completed (see their status.json)" if n == total else
             f"{n} of {total} runs of the sweep did not complete (the others did; see their status.json)", 1)


def report_main(argv: Optional[List[str]] = None) -> None:
    from dal_runner import report

    try:
        sys.exit(report.main(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `dal-report ... | head`: the files are written; the rest of the table goes nowhere
        _quiet_stdout()


def _print(text: str) -> None:
    """print, for output a pipe may close early (`dal-run --help | head`)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _quiet_stdout()


def _quiet_stdout() -> None:
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def _version() -> str:
    from importlib.metadata import version

    import torch

    from dal_runner.provenance import source_commit

    commit = source_commit()
    at = f" at commit {commit}" if commit else ""
    return f"dal-runner {version('dal-runner')}{at} (Hydra {hydra.__version__}, torch {torch.__version__})"
