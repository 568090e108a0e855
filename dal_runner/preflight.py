"""The checks `dal-run` makes before Hydra starts: it composes the config of every job the
command line asks for, so that a bad option, key, type, value or output folder is one line (the
key, the value, what is accepted) with exit status 2 before any run folder exists; and for a
run or sweep launched again into its folder, whether it may continue there (`resume=`, whose
command line resume_argv.py makes; the same config; no run still going)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dal_runner import in_processes
from dal_runner.callbacks import KEPT_JOBS, LAUNCHED_JOBS
from dal_runner.cli_help import CONFIG_MODULE
from dal_runner.config_checks import (check_bool_overrides, check_group_deletions, check_launcher, check_overrides,
                                      check_resolvable, check_schema, check_values_given, explain, hydra_message)
from dal_runner.errors import ConfigError
from dal_runner.folder_checks import busy_message, check_not_foreign, check_not_running, check_not_shared, check_writable
from dal_runner.io import completed_summary
from dal_runner.job_control import FolderBusy, hold_folder
from dal_runner.resume_argv import nothing_to_resume, resume_argv

# Hydra flags that take a value (their value is not an override)
_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                "--config-dir", "-cd", "--info", "-i", "--experimental-rerun", "--shell-completion", "-sc"}


# set by the preflight of a single run: the nearest folder of its output path that existed
# before Hydra made the rest (removed again if the run cannot start), and the completed run a
# resume= names
PREFLIGHT: dict = {"existing": None, "completed": None}


def fail(message: str, status: int = 2) -> None:
    print(f"dal-run: error: {message}", file=sys.stderr)
    sys.exit(status)


# ------------------------------------------------------------------------------ preflight
def _split_argv(argv: List[str]):
    overrides, multirun, custom_config = [], False, False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-m", "--multirun"):
            multirun = True
        elif a in _VALUE_FLAGS:
            custom_config |= a in ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
            i += 1
        elif a.startswith("-"):
            custom_config |= a.split("=")[0] in ("--config-path", "--config-name", "--config-dir")
        else:
            overrides.append(a)
        i += 1
    return overrides, multirun, custom_config


def _whole_schedules(argv: List[str]) -> List[str]:
    """budget.batch={from_labels: batch, ...} replaces the schedule of budget=active_inas or an
    experiment: OmegaConf would merge the two dicts (keeping thresholds not given) and refuse a
    new threshold as an unknown key. A null first, then the schedule given. The null is written
    `++budget.batch=null`: Hydra's sweeper keeps one override per key as typed (prefix included), so
    a plain `budget.batch=null` would be dropped from a sweep's jobs and the schedules merged again."""
    out = []
    for a in argv:
        key, sep, value = a.partition("=")
        if sep and key.lstrip("+") == "budget.batch" and value.lstrip().startswith("{"):
            out.append("++budget.batch=null")
        out.append(a)
    return out


def _distinct_schedule_nulls(argv: List[str]) -> List[str]:
    """The null _whole_schedules put before a schedule, written with another prefix than the schedule
    has once the swept groups' keys are held (`++budget.batch={...}` where budget is swept, or as
    typed): the sweeper keeps one override per key as written, and would drop the null."""
    out = list(argv)
    for i in range(1, len(out)):
        key, _, value = out[i].partition("=")
        if key.lstrip("+") == "budget.batch" and value.lstrip().startswith("{") and \
                out[i - 1].partition("=")[0].lstrip("+") == "budget.batch" and out[i - 1].endswith("=null"):
            out[i - 1] = "budget.batch=null" if key.startswith("++") else "++budget.batch=null"
    return out


def _hold_keys_of_swept_groups(argv: List[str], overrides: List[str]) -> List[str]:
    """Hydra composes a sweep's first config without its sweeps, so a key of a swept group
    (`search=random,reinforce search.blocks=null`) is set on the group's default (inas, which
    has no `blocks`) and fails there, though every job has the key. Hydra runs such an override
    as `++key=value` (add or override): the first config takes it, and every job sets it as
    written. Every job has been checked with the override as given, which refuses a key a job's
    option lacks."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return argv  # Hydra's parse error, reported where the jobs are expanded
    swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
    held = {text: f"++{text}" for text, o in zip(overrides, parsed)
            if not o.is_sweep_override() and not text.startswith(("+", "~"))
            and any(text.startswith(f"{group}.") for group in swept)}
    return [held.get(a, a) for a in argv]


def _job_overrides(overrides: List[str], multirun: bool) -> List[List[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not multirun or not any(o.is_sweep_override() for o in parsed):
        return [overrides]
    for o in parsed:
        if o.is_sweep_override() and o.key_or_group.split("/")[0].split(".")[0] == "hydra":  # Hydra refuses it
            raise ConfigError(o.key_or_group, o.input_line.partition("=")[2], "one value, and one dal-run -m for "
                              "each value", "Hydra cannot sweep its own settings: a sweep runs under one of them")
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def _check_resume(cfg: DictConfig, run_dir: Optional[Path] = None, job: Optional[int] = None) -> bool:
    """A resumed run's config must be the one its state was made with: `resume=PATH`, or a run
    launched again into its folder (`run_dir`: hydra.run.dir, or job `job`'s folder of a sweep
    launched again into hydra.sweep.dir). Checked before Hydra writes the folder's .hydra/, so a
    refused config never replaces the one its results were made with. Returns whether a state
    was read and found to have this config."""
    from dal_runner import state

    if cfg.get("resume"):
        path, key = Path(cfg.resume), "resume"
    elif run_dir is not None and state.state_path(run_dir).is_file():
        path, key = run_dir, "hydra.run.dir" if job is None else "hydra.sweep.dir"
    else:
        return False
    try:
        try:
            saved = state.load(path, mmap=True)
        except state.ResumeError:
            if job is not None:  # an unreadable job of a sweep fails alone, in the job; the others run
                return False
            raise
        current = OmegaConf.to_container(cfg, resolve=False)
        current.pop("hydra", None)
        with _hydra_node(cfg, job):  # seed=${hydra:job.num} resolves as in the job
            current = OmegaConf.to_container(OmegaConf.create(current), resolve=True)
        state.check_same_config(path, saved["config"], current, relaunch=key == "hydra.run.dir")
        return True
    except state.ResumeError as e:
        if job is None:
            raise ConfigError(key, str(path), e.accepted, str(e)) from None
        raise ConfigError(key, str(path.parent), "the sweep's own overrides, in their order (it numbers the jobs; "
                          "its jobs are then kept or continued; values added at the end of its first swept key keep "
                          "the numbers, so only the new jobs run), or another hydra.sweep.dir",
                          f"its job {job} ({path}): {e}") from None


@contextlib.contextmanager
def _hydra_node(cfg: DictConfig, job: Optional[int]):
    """Hydra's node as job `job` of a sweep will see it (hydra.job.num set, as the launchers
    set it), for ${hydra:...} in the run's keys; the node before is restored after."""
    from omegaconf import open_dict

    instance = HydraConfig.instance()
    before = instance.cfg
    if job is not None:
        node = cfg.copy()
        with open_dict(node):
            node.hydra.job.num = job
        instance.set_config(node)
    try:
        yield
    finally:
        instance.cfg = before


def _sweep_job_dir(cfg: DictConfig, sweep_dir: str, job: int) -> Optional[Path]:
    """The folder Hydra gives job number `job` of a sweep (hydra.sweep.subdir with hydra.job.num
    set as the launchers set it: the job's index in the sweep), or None where the subdir needs
    what only the launched job knows."""
    from omegaconf import open_dict

    node = cfg.copy()
    try:
        with open_dict(node):
            node.hydra.job.num = job
        return Path(os.path.abspath(sweep_dir)) / str(node.hydra.sweep.subdir)
    except Exception:  # e.g. ${hydra.job.override_dirname}: the job's own check covers it
        return None


class Checked(NamedTuple):
    """What the preflight learns of one job."""
    target: str  # its output folder (hydra.run.dir, or the sweep's hydra.sweep.dir)
    existing: Path  # the nearest folder of `target` that exists
    job_dir: Optional[Path]  # its own folder in a sweep (None: a run, or a subdir only the job resolves)
    deterministic: bool  # it asks for deterministic kernels
    data: tuple  # (its dataset config, None where it holds what only the job resolves; its launcher)
    kept: Optional[float] = None  # a sweep's job that already completed with this config: its final accuracy


def _check_job(number: int, job: List[str], multirun: bool, printing: bool) -> Optional[Checked]:
    """Compose job `number` of the command line and check it; raises on a bad job. None when
    --cfg only prints the config."""
    from hydra import compose

    check_group_deletions(job)
    cfg = compose("config", overrides=job, return_hydra_config=True)
    check_schema(cfg)
    check_bool_overrides(cfg, job)
    if printing:  # --cfg shows a config as it is, ??? included; nothing runs or is written
        return None
    check_values_given(cfg)
    check_resolvable(cfg)
    _check_values(cfg)
    target = str(cfg.hydra["sweep" if multirun else "run"].dir)
    if not target.strip():
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        raise ConfigError(key, "''", f"a folder for the {'sweep' if multirun else 'run'} "
                          f"(the default: under output_root)", "empty")
    existing = check_writable(target, "hydra.sweep.dir / output_root" if multirun else
                              "resume" if cfg.get("resume") is not None else "hydra.run.dir / output_root")
    job_dir, kept = None, None
    if multirun:  # a sweep launched again into its folder: each job's folder as it will be
        check_launcher(cfg.hydra.launcher)
        job_dir = _sweep_job_dir(cfg, target, number)
        check_not_foreign(Path(os.path.abspath(target)), sweep=True)
        check_not_running(job_dir, target, number)
        if _check_resume(cfg, job_dir, number):  # its results were made with this config
            kept = (completed_summary(job_dir) or {}).get("final_accuracy")
    else:
        check_not_foreign(Path(os.path.abspath(target)))
        check_not_running(Path(os.path.abspath(target)))
        _check_resume(cfg, Path(os.path.abspath(target)))
    try:
        dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    except Exception:  # ${hydra:...}: the job checks its own files
        dataset = None
    return Checked(target, existing, job_dir, bool(cfg.trainer.get("deterministic")),
                   (dataset, str(cfg.hydra.launcher._target_)), kept)


def _check_job_or_error(number: int, job: List[str], multirun: bool = True, printing: bool = False):
    """(what _check_job returns, None), or (None, the bad job's one line)."""
    try:
        return _check_job(number, job, multirun, printing), None
    except Exception as e:
        return None, explain(e, job)


def _launcher_exists(name: str) -> bool:
    from importlib.resources import files

    return name in ("submitit_local", "submitit_slurm") or (files(CONFIG_MODULE) / "hydra" / "launcher" /
                                                            f"{name}.yaml").is_file()


def _check_launcher_without_m(overrides: List[str]) -> None:
    """Hydra uses a launcher for -m alone: a single run with hydra/launcher=slurm ran right here, in
    the calling process (a login node's), without a word."""
    def value(key: str) -> str:
        given = [o for o in overrides if "=" in o and o.lstrip("+").split("=", 1)[0].strip() == key]
        return given[-1].split("=", 1)[1].strip().strip("'\"") if given else ""

    if value("hydra/launcher") in ("basic", "null", "") or value("hydra.mode") == "MULTIRUN":  # a sweep, as -m
        return
    if not _launcher_exists(value("hydra/launcher")):  # the composition names the launchers there are
        return
    typed = f"hydra/launcher={value('hydra/launcher')}"
    if value("resume") not in ("", "null"):
        fail(f"{typed}: resume= continues one run here, in this process, and a launcher runs only a sweep's jobs; "
             f"accepted: dal-run resume=PATH without hydra/launcher (in a batch script, to run it on a cluster's "
             f"node; a sweep's SLURM job continues by itself when requeued)")
    fail(f"{typed}: a launcher runs the jobs of a sweep, and without -m Hydra runs this one here, in this "
         f"process; accepted: dal-run -m {typed} ... (a sweep of one job is fine), or no hydra/launcher for a "
         f"run here")


def preflight(argv: List[str]) -> List[str]:
    """Check every job of the command line; returns the command line Hydra should run. A key given
    twice is warned of once the checks pass (a command refused says only why)."""
    try:
        warnings = check_overrides(_split_argv(argv)[0])  # as typed: before the null _whole_schedules adds
    except ConfigError as e:
        fail(str(e))
    hydra_argv = _checked(argv)
    for warning in warnings:
        print(f"dal-run: warning: {warning}", file=sys.stderr)
    return hydra_argv


def _checked(argv: List[str]) -> List[str]:
    from hydra import initialize_config_module
    from hydra.core.utils import setup_globals

    PREFLIGHT["completed"] = PREFLIGHT["existing"] = None
    LAUNCHED_JOBS.clear()
    KEPT_JOBS.clear()
    argv = _whole_schedules(argv)
    overrides, multirun, custom_config = _split_argv(argv)
    printing = any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in argv)
    if custom_config:
        # the user brought their own config tree; Hydra reports its errors (it may set hydra.mode:
        # MULTIRUN, which runs a sweep without -m, so a launcher there is not checked either)
        return argv
    if not multirun and not printing:
        _check_launcher_without_m(overrides)
    if printing and multirun:
        fail("--cfg with -m: --cfg prints the config of one run; accepted: dal-run --cfg job with one value "
             "per key (e.g. seed=0), or dal-run -m ... without --cfg")
    if any(o.split("=", 1)[0] == "resume" for o in overrides):
        argv = resume_argv(argv, overrides, multirun)
        overrides, multirun, _ = _split_argv(argv)
    # what Hydra runs; the jobs are checked with the overrides as given
    hydra_argv = _distinct_schedule_nulls(_hold_keys_of_swept_groups(argv, overrides)) if multirun else argv
    setup_globals()
    try:
        jobs = _job_overrides(overrides, multirun)
    except Exception as e:  # an override Hydra cannot parse
        fail(hydra_message(e, overrides))
    if not jobs:  # range(0, 0), range(5, 0): Hydra would launch nothing, silently
        empty = [o for o in overrides if len(_job_overrides([o], True)) == 0] or overrides
        fail(f"{' '.join(empty)}: the sweep has no jobs (an empty range); accepted: a sweep of one job or more, "
             "e.g. seed=range(0,3) for seeds 0, 1, 2")
    processes = in_processes.n_processes(len(jobs)) if multirun and not printing else 1
    if len(jobs) >= in_processes.POOL_MIN_JOBS:
        print(f"dal-run: checking the {len(jobs)} jobs of the sweep before any starts"
              + (f" ({processes} processes)" if processes > 1 else ""), file=sys.stderr, flush=True)
    here = (_check_job_or_error(number, job, multirun, printing) for number, job in enumerate(jobs))
    checking = (in_processes.mapped(_check_job_or_error, jobs, processes) if processes > 1
                else contextlib.nullcontext(here))
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"), checking as results:
        checked, datasets_seen = [], set()
        for result, error in results:
            if error:
                fail(error)
            checked.append(result)
            # a run alone reads its files at once; a sweep's jobs would each fail the same way: stop
            # at the first (a job kept as it is reads none)
            if multirun and not printing and result.kept is None:
                _check_data_files([result.data], datasets_seen)
    if printing:
        return argv
    if not multirun:
        existing = checked[0].existing
        if PREFLIGHT.get("completed"):  # resume= of a completed run, with its own config
            nothing_to_resume(PREFLIGHT["completed"])
        PREFLIGHT["existing"] = existing  # what Hydra will create below it is removed again if the run cannot start
        run_dir = Path(os.path.abspath(checked[0].target))
        try:  # before Hydra writes .hydra/ there: a second dal-run in the folder must not overwrite it.
            # Only a folder that exists: a new one's path may hold ${now:...}, which Hydra resolves again
            if run_dir.is_dir():
                hold_folder(run_dir)
        except FolderBusy:
            fail(busy_message(run_dir, resuming=any(o.split("=", 1)[0] == "resume" for o in overrides)))
    if any(c.deterministic for c in checked):
        # read once, at cuBLAS's first use: in a sweep whose jobs share this process, that may be
        # an earlier job's, so it is set before any job runs
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    target = checked[-1].target
    job_dirs = [c.job_dir for c in checked]
    # ${now:...} in the sweep's folder (the default's) resolved again for each job, milliseconds apart:
    # the folder Hydra writes is pinned to the last job's, and so are the jobs' folders (a given folder
    # only where ${now:...} is all it interpolates: with ${query.name} too, each job's is its own)
    pinned = multirun and "'" not in str(target) and all(
        "${now:" in value and all(i.startswith("now:") for i in re.findall(r"\$\{([^}]*)\}", value))
        for value in [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "hydra.sweep.dir"])
    sweep_dirs = [Path(os.path.abspath(target if pinned else c.target)) for c in checked]
    if pinned:  # a subdir that leads out of the sweep's folder (/abs/${hydra.job.num}, ../x) is as it was
        within = [d and os.path.relpath(d, os.path.abspath(c.target)) for d, c in zip(job_dirs, checked)]
        job_dirs = [d and Path(os.path.normpath(sweep_dirs[0] / rel if not rel.startswith("..") else d))
                    for d, rel in zip(job_dirs, within)]
    if multirun:
        try:
            check_not_shared(job_dirs, sweep_dirs)
        except ConfigError as e:
            fail(str(e))
        PREFLIGHT["launcher"] = checked[-1].data[1]  # what a stop of the sweep says (cli._stopped)
    if multirun and job_dirs and None not in job_dirs:  # the sweep's end counts and reports these jobs
        LAUNCHED_JOBS[os.path.abspath(target)] = job_dirs
        KEPT_JOBS.update({number: c.kept for number, c in enumerate(checked) if c.kept is not None})
        if KEPT_JOBS:
            _say_kept(len(checked))
    if pinned:
        # the folder checked here is the one Hydra writes: ${now:...} would resolve again there, some
        # milliseconds later, and a stop of the sweep named a folder that is not
        hydra_argv = [*[a for a in hydra_argv if a.split("=", 1)[0].lstrip("+") != "hydra.sweep.dir"],
                      f"hydra.sweep.dir='{target}'"]
    return hydra_argv


def _say_kept(n_jobs: int) -> None:
    """One line for the jobs of a sweep launched again into its folder that are not launched."""
    numbers = sorted(KEPT_JOBS)
    spans, start = [], numbers[0]  # 0-3, 5
    for previous, number in zip(numbers, numbers[1:] + [None]):
        if number != previous + 1:
            spans.append(f"{start}-{previous}" if previous > start else str(start))
            start = number
    which = f"job{'s' if len(numbers) > 1 else ''} {', '.join(spans)}"
    rest = n_jobs - len(numbers)
    them = "they are" if len(numbers) > 1 else "it is"
    then = f"launching the other {rest}" if rest else "nothing to launch (the sweep's end counts and reports them again)"
    print(f"dal-run: {which} of the sweep already completed with this config: kept as {them}, not launched again; "
          f"{then}", file=sys.stderr, flush=True)


def _check_data_files(datasets, seen: set) -> None:
    """Every dataset of a sweep not in `seen` (which it extends): its files are there. On this
    machine's launchers a missing file stops the sweep before any job starts; on SLURM the nodes
    may see files this machine does not, so it is a warning."""
    import json

    from dal_runner.run import check_data_files

    for dataset, launcher in datasets:
        # the keys that say which files and how they are split (not augment, ...): each is read once
        key = dataset and json.dumps([dataset.get(k) for k in ("name", "root", "path", "extra", "download", "layout",
                                                               "test_fraction", "pool_size")], default=str)
        if dataset is None or key in seen:
            continue
        seen.add(key)
        try:
            check_data_files(OmegaConf.create(dataset))
        except ConfigError as e:
            if "Slurm" not in launcher:
                fail(str(e))
            print(f"dal-run: warning: {e} (on this machine; the SLURM jobs fail alike unless their nodes see "
                  f"the files)", file=sys.stderr)


def _check_values(cfg: DictConfig) -> None:
    """The values' checks that need no data, before any job starts; a check of a key that holds
    ${hydra:...} runs in its job, where Hydra's node resolves it."""
    from dal_runner.run import check_config

    check_config(cfg, unresolved_ok=True)
