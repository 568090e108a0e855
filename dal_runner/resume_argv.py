"""`dal-run resume=PATH`: the command line Hydra runs for a run continued in its folder (its own
overrides, with those given now on top), after checking PATH (a run folder, not still going, its
state readable). The preflight (preflight.py) then checks the config as for any run."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import List

from omegaconf import ListConfig, OmegaConf

from dal_runner.folder_checks import alive_here


def _preflight():
    """preflight.py's shared state and its one-line exit (imported here when used: it imports this)."""
    from dal_runner import preflight

    return preflight.PREFLIGHT, preflight.fail


def _sweep_overrides(sweep: Path) -> str:
    """The command line's overrides of the sweep in `sweep` (its multirun.yaml), each followed by a
    space; '<its overrides> ' where the file is gone or unreadable."""
    try:
        hydra = OmegaConf.load(sweep / "multirun.yaml").hydra
        task = OmegaConf.to_container(hydra.overrides.task, resolve=False)  # seed=${hydra:job.num} as typed
        # Hydra's own (hydra/launcher=local, hydra.sweep.subdir=..., ~hydra.callbacks.report): without them
        # the command would make other job folders and run every job again
        own = [o for o in OmegaConf.to_container(OmegaConf.select(hydra, "overrides.hydra", default=None) or
                                                 OmegaConf.create([]), resolve=False)
               if not str(o).lstrip("+~").startswith(("hydra.sweep.dir=", "hydra.mode="))]
        task = [o for i, o in enumerate(task)  # the null dal-run puts before a batch schedule is its own
                if not (str(o).lstrip("+") == "budget.batch=null" and i + 1 < len(task)
                        and str(task[i + 1]).lstrip("+").startswith("budget.batch={"))]
        return "".join(f"{shlex.quote(str(o))} " for o in [*own, *task])
    except Exception:  # no multirun.yaml (job folders alone), or one this cannot read: the hint stays general
        return "<its overrides> "


def _resolved_job_values(override: str, run: Path) -> str:
    """A sweep job's override that reads Hydra's job (seed=${hydra:job.num}) with the value it had
    in that job (.hydra/hydra.yaml), so that the job resumed alone, where Hydra has no job number,
    runs with its own: seed=3."""
    import re

    pattern = r"\$\\?\{hydra\\?:([\w.]+)\\?\}"  # ${hydra:job.num}, or as overrides.yaml escapes it
    if not re.search(pattern, override):
        return override
    try:
        hydra = OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra
    except Exception:  # no hydra.yaml: left as given, and the config check says what is wrong
        return override

    def value(match: "re.Match") -> str:
        found = OmegaConf.select(hydra, match.group(1), default=None, throw_on_resolution_failure=False)
        return match.group(0) if found is None else str(found)

    return re.sub(pattern, value, override)


def _single_runs(folder: Path, jobs: List[str]) -> bool:
    """Whether Hydra ran every one of `jobs` as a single run (.hydra/hydra.yaml: mode RUN), none as a
    sweep's job: a date folder of runs, not a sweep (a sweep's job resumed alone says RUN since, so
    one job is not enough to tell). The line is read as text: a date folder may hold hundreds."""
    import re

    for job in jobs:
        try:
            text = (folder / job / ".hydra" / "hydra.yaml").read_text()
        except OSError:  # no hydra.yaml: taken for a sweep's job, as before
            return False
        if not re.search(r"^\s+mode: RUN\s*$", text, re.MULTILINE):
            return False
    return bool(jobs)


def resume_argv(argv: List[str], overrides: List[str], multirun: bool) -> List[str]:
    """`resume=PATH`: check PATH, reuse its overrides, and write into PATH.

    Returns the command line Hydra runs: the run's own overrides with the ones given now on
    top, resume=<absolute PATH> and hydra.run.dir=<PATH>.
    """
    from dal_runner import state
    from dal_runner.io import STATUS_JSON, read_json

    PREFLIGHT, fail = _preflight()
    given = [o for o in overrides if o.split("=", 1)[0] == "resume"][-1]  # the last counts, as Hydra takes it
    raw = given.split("=", 1)[1].strip("'\"")
    if raw == "null":
        return argv
    if not raw.strip():
        fail("resume=: no run folder given; accepted: resume=PATH (a folder under outputs/runs/<date>/<time>), "
             "or resume=null for a new run")
    if multirun:
        fail(f"{given}: resume continues one run; accepted: dal-run resume=PATH without -m "
             f"(jobs of a sweep on SLURM continue by themselves when requeued)")
    path = Path(raw).expanduser().resolve()
    elsewhere = [o for o in overrides if o.startswith("hydra.run.dir=")
                 and Path(o.split("=", 1)[1].strip("'\"")).expanduser().resolve() != path]
    if elsewhere:  # it used to be dropped without a word
        fail(f"{elsewhere[0]}: a resumed run goes on in its own folder ({given}); accepted: no hydra.run.dir with "
             f"resume=, or a new run (without resume=) into that folder")
    if not (path / ".hydra" / "config.yaml").is_file():
        jobs = sorted((p.name for p in path.iterdir() if (p / ".hydra" / "config.yaml").is_file()),
                      key=lambda n: (len(n), n)) if path.is_dir() else []
        if not (path / "multirun.yaml").is_file() and _single_runs(path, jobs):
            # outputs/runs/<date>: single runs side by side, no sweep to launch again
            fail(f"{given}: a folder of {len(jobs)} run(s), not a run itself; accepted: resume=PATH of one of "
                 f"them, e.g. resume={path}/{jobs[-1]} (the newest by name)")
        if (path / "multirun.yaml").is_file() or jobs:
            fail(f"{given}: a sweep's folder, whose jobs are runs; accepted: resume={path}/{jobs[0] if jobs else 0} "
                 f"for one job, or the sweep launched again into it, which continues every job: "
                 f"dal-run -m {_sweep_overrides(path)}{shlex.quote(f'hydra.sweep.dir={path}')}")
        fail(f"{given}: not a dal-run run folder (no .hydra/config.yaml there); "
             f"accepted: a folder under outputs/runs/<date>/<time>")
    status = {}
    try:
        status = read_json(path / STATUS_JSON)
    except (OSError, ValueError):
        pass
    if status.get("state") == "completed":  # checked against the config given now, then nothing runs
        PREFLIGHT["completed"] = path
    if status.get("state") == "running" and alive_here(status.get("host"), status.get("pid"), path):
        fail(f"{given}: the run is still going (pid {status['pid']} on this machine); "
             f"accepted: a run that stopped (wait for it, or stop it first)")
    try:
        state.load(path, mmap=True)
    except state.ResumeError as e:
        if PREFLIGHT["completed"]:  # its results stand; only the state that would check the config is gone
            nothing_to_resume(path)
        fail(f"{given}: {e}; accepted: {e.accepted}")
    others = [o for o in overrides if o.split("=", 1)[0] not in ("resume",) and not o.startswith("hydra.")]
    flags = [a for a in argv if a not in overrides]
    # the run's own overrides, with those given now on top (a changed protocol key is refused later)
    try:
        listed = OmegaConf.load(path / ".hydra" / "overrides.yaml")
        if not isinstance(listed, ListConfig):
            raise ValueError("not a list of overrides")
    except Exception as e:  # missing, or edited by hand into something else
        fail(f"{given}: its .hydra/overrides.yaml cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
             f"accepted: a run folder as dal-run wrote it (the file lists the run's overrides, one per line, "
             f"e.g. - seed=0)")
    saved = [_resolved_job_values(str(o), path) for o in OmegaConf.to_container(listed, resolve=False)
             if not str(o).startswith(("resume=", "hydra."))]
    key = lambda o: o.split("=", 1)[0].lstrip("+~")  # noqa: E731
    given_keys = {key(o) for o in others}
    others = [o for o in saved if key(o) not in given_keys] + others
    hydra_given = [o for o in overrides if o.startswith("hydra.") and not o.startswith("hydra.run.dir=")]
    _into_started_folder(path)
    quoted = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return [*flags, *others, *hydra_given, f"resume='{quoted}'", f"hydra.run.dir='{quoted}'"]


def _into_started_folder(run: Path) -> None:
    """A resumed run works in the folder it was started from, so that the relative paths of its
    config (dataset.path=my.npz, dataset.root=data) mean what they meant then."""
    PREFLIGHT, _ = _preflight()
    try:
        started = Path(str(OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.runtime.cwd))
    except Exception:  # an older or hand-made folder: stay where we are
        return
    if started.is_dir() and started.resolve() != Path.cwd().resolve():
        os.chdir(started)
        if not PREFLIGHT["completed"]:  # a completed run is not run again: no need to say where
            print(f"dal-run: resuming in {started}, the folder {run.name} was started from (its relative paths "
                  f"are read from there)", file=sys.stderr)


def nothing_to_resume(path: Path) -> None:
    print(f"dal-run: {path} already completed; nothing to resume", file=sys.stderr)
    sys.exit(0)
