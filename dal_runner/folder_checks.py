"""The folders a run or sweep will write into, checked before any job starts (`preflight`):
writable, not a folder of other files, not one where a run is still going, one per job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from dal_runner.errors import ConfigError
from dal_runner.job_control import folder_locked


def check_writable(directory: str, key: str = "hydra.run.dir / output_root") -> Path:
    """The nearest existing ancestor of the output folder must be a folder we can write in; returns it."""
    import tempfile

    path = Path(os.path.abspath(directory))  # as Hydra makes it (no ~ expansion, .. resolved)
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is a file")
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as e:
        raise ConfigError(key, str(path), "a folder this user can create and write",
                          f"cannot write there ({e.strerror or e})") from None
    return ancestor


def alive_here(host, pid, run_dir: Optional[Path] = None) -> bool:
    """Whether the process a `running` status.json names still runs here. `run_dir`: a run holds
    its folder's lock while it runs (job_control.only_process_in), so a free lock means the pid now
    belongs to another program."""
    import socket

    if host != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    if run_dir is not None and not folder_locked(run_dir):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # Linux: a pid the system gave again to another program is not the run
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return any(name in cmdline for name in (b"python", b"dal-run", b"dal_runner"))


def check_not_foreign(folder: Path, sweep: bool = False) -> None:
    """A run's (or sweep's) folder is new, empty, or a run's own (a sweep's own: its multirun.yaml or job folders),
    kept or continued there: one written into a folder of other files (hydra.run.dir=/, or
    hydra.sweep.dir=a project folder) would mix its files with them."""
    own = folder / ("multirun.yaml" if sweep else ".hydra/config.yaml")
    if not folder.is_dir() or own.is_file():
        return
    if sweep and any((p / ".hydra" / "config.yaml").is_file() or (p / "status.json").is_file()
                     for p in folder.iterdir() if p.is_dir()):
        return  # its job folders, with or without Hydra's multirun.yaml
    entries = sorted(p.name for p in folder.iterdir())
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        what = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
        kind = "sweep" if sweep else "run"
        raise ConfigError(f"hydra.{kind}.dir", str(folder), f"a new or empty folder, or the folder of a dal-run "
                          f"{kind} (kept or continued there)", f"holds {what} and no {kind} ({shown})")


def check_not_running(run_dir: Optional[Path], sweep_dir: Optional[str] = None, job: Optional[int] = None) -> None:
    """A run launched into a folder where a run is still going (its status.json: running, by a
    process alive on this machine) would write the same files twice over: refused. A process on
    another host (a SLURM node) cannot be checked from here."""
    from dal_runner.io import STATUS_JSON, read_json

    if run_dir is None:
        return
    try:
        status = read_json(run_dir / STATUS_JSON)
    except (OSError, ValueError):
        return
    if status.get("state") != "running" or not alive_here(status.get("host"), status.get("pid"), run_dir):
        return
    going = f"still going (pid {status['pid']} on this machine)"
    if job is None:
        raise ConfigError("hydra.run.dir", str(run_dir), "another folder, or this one once the run stopped "
                          "(wait for it, or stop it first)", f"a run there is {going}")
    raise ConfigError("hydra.sweep.dir", str(Path(os.path.abspath(sweep_dir))), "another hydra.sweep.dir, or this "
                      "one once its jobs stopped (wait for them, or stop them first)",
                      f"its job {job} ({run_dir}) is {going}")


def check_not_shared(job_dirs: Sequence[Optional[Path]], sweep_dirs: Sequence[Path]) -> None:
    """Two jobs in one folder would overwrite each other's results (a hydra.sweep.subdir that does
    not differ by job). Compared within the sweep folder: each job's check resolved its own
    ${now:...}, while Hydra resolves the sweep folder once."""
    first: dict = {}
    for job, (folder, sweep) in enumerate(zip(job_dirs, sweep_dirs)):
        if folder is None:
            continue
        subdir = os.path.relpath(folder, sweep)
        if first.setdefault(subdir, job) != job:
            raise ConfigError("hydra.sweep.subdir", subdir, "a subdir that differs by job, e.g. one holding "
                              "${hydra.job.num} (the default)", f"jobs {first[subdir]} and {job} would share it")


def busy_message(run_dir: Path, resuming: bool = False) -> str:
    """The refusal of a run whose folder's lock another process holds (preflight, or the job);
    `resuming`: the folder is the run resume= names (a second resume of it at the same moment)."""
    if resuming:
        return (f"resume={run_dir}: the run is still going (another dal-run process runs in it); accepted: a run "
                f"that stopped (wait for it, or stop it first)")
    return (f"hydra.run.dir={run_dir}: a run there is still going (another dal-run process runs in it); "
            f"accepted: another folder, or this one once that run stopped")
