"""Job control of one dal-run job: SIGTERM as an interruption, and undoing a start that failed."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional


class Terminated(SystemExit):
    """SIGTERM (kill, scancel outside submitit), SIGHUP, SIGUSR1/2: leaves the run interrupted, as Ctrl-C does."""


# the signals that stop a run as SIGTERM does; SIGHUP: the terminal closed, the ssh connection dropped
_STOPS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_STOPPING: list = []  # the stops the signal handlers raised, in order (KeyboardInterrupt, Terminated, submitit's)
_RAISED_AGAIN = [0]  # how many of them raise_lost_stop found lost and raised again


def _handling_a_stop() -> bool:
    """Whether the main thread is in an except clause or a finally block of a stop (KeyboardInterrupt,
    SystemExit, or an error raised while one was handled): what a signal handler sees as the
    exception being handled is that of the code it interrupted."""
    error = sys.exc_info()[1]
    while error is not None:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            return True
        error = error.__cause__ or error.__context__
    return False


def stop_recorded() -> Optional[BaseException]:
    """The stop a signal handler raised, if one did (KeyboardInterrupt, Terminated, or submitit's
    SystemExit after it requeued a SLURM job), for code that caught another exception: a stop raised inside a module's import reaches the run as
    ImportError("initialization failed"), not as itself."""
    return _STOPPING[-1] if _STOPPING else None


def raise_lost_stop() -> None:
    """Raises again a stop that a signal handler raised where Python could not pass it on: inside a
    weakref's callback, a __del__ or the garbage collector, where Python prints "Exception ignored
    in ..." and goes on as if no signal came (a CI run's SLURM preemption was lost so, and the job
    ran to its end). Called where the run can stop cleanly (after each training epoch, before each
    round); a stop on its way up through the except clauses never reaches those calls."""
    if len(_STOPPING) > _RAISED_AGAIN[0]:
        _RAISED_AGAIN[0] = len(_STOPPING)
        stop = _STOPPING[-1]
        import logging

        logging.getLogger("dal_runner").warning("a stop signal arrived inside a callback, where Python drops what "
                                                "it raises; the run stops now")
        raise stop.with_traceback(None)


def _quiet_about_lost_stops(hook: Callable) -> Callable:
    """sys.unraisablehook that leaves out a stop our handlers raised where Python drops it (a
    weakref's callback, a __del__): Python printed 'Exception ignored in ...' and its traceback on
    the terminal above the run's one-line stop, which raise_lost_stop then raises again."""

    def quiet(unraisable) -> None:
        if not any(unraisable.exc_value is stop for stop in _STOPPING):
            hook(unraisable)

    return quiet


def _clear_stops() -> None:
    _STOPPING.clear()
    _RAISED_AGAIN[0] = 0


def _recording(handler: Callable) -> Callable:
    """`handler` (submitit's on SLURM: it requeues the job, then raises SystemExit), with the stop
    it raises recorded as this module's own are, for raise_lost_stop and stop_recorded."""

    def handle(signum, frame):
        try:
            handler(signum, frame)
        except (SystemExit, KeyboardInterrupt) as stop:  # a stop; another error is the library's own to catch
            _STOPPING.append(stop)
            raise

    handle.dal_runner_stop = True
    return handle


def stop_on_sigterm() -> Callable[[], None]:
    """SIGTERM ends the run through its except clauses (status.json: interrupted) instead of at
    once; so do SIGHUP, SIGUSR1 and SIGUSR2 (what sbatch --signal sends before a time limit),
    whose default action would kill the run without a word. Each is left alone where a handler is
    set already (submitit's, which requeues on SLURM; nohup's SIG_IGN). Ctrl-C raises
    KeyboardInterrupt as usual. A second stop while the first is being handled (a double Ctrl-C)
    is ignored, so that the status the first one writes is written; a first stop that nothing
    handled (raised inside a garbage collector's callback, where Python prints it and goes on) does
    not make the next one ignored, and raise_lost_stop raises it again. A handler set already is
    wrapped to record the stop it raises too. Returns what puts the previous handlers back."""
    import threading

    def stop(signum, frame):
        if _STOPPING and _handling_a_stop():  # the process is ending already: its except clauses run
            return
        stop = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(128 + signum)
        _STOPPING.append(stop)
        raise stop

    stop.dal_runner_stop = True
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    # a job of hydra/launcher=local: submitit's SIGTERM handler only "bypasses" it (on SLURM it
    # precedes a requeue); here it is how a stopped sweep stops its jobs (launchers.stop_local_jobs)
    local_job = os.environ.get("SUBMITIT_EXECUTOR") == "local"
    taken = [s for s in _STOPS if signal.getsignal(s) in (signal.SIG_DFL, None)
             or (local_job and s == signal.SIGTERM)]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        taken.append(signal.SIGINT)
    # another's handler (submitit's, on SLURM) stays, wrapped so that what it raises is recorded
    wrapped = [s for s in _STOPS if s not in taken and callable(signal.getsignal(s))
               and not getattr(signal.getsignal(s), "dal_runner_stop", False)]
    previous = {s: signal.getsignal(s) for s in (*taken, *wrapped)}
    if taken or wrapped:  # the outermost of nested calls (a sweep's process runs its jobs in it): a fresh start
        _clear_stops()
    for s in taken:
        signal.signal(s, stop)
    for s in wrapped:
        signal.signal(s, _recording(previous[s]))
    hook = sys.unraisablehook
    if taken or wrapped:
        sys.unraisablehook = _quiet_about_lost_stops(hook)

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if taken or wrapped:  # the stop, if any, is over with the handlers that recorded it
            sys.unraisablehook = hook
            _clear_stops()

    return restore


def signal_name(stop: SystemExit) -> str:
    """SIGTERM for Terminated(143), and so on."""
    try:
        return signal.Signals(int(stop.code) - 128).name
    except (TypeError, ValueError):
        return "SIGTERM"


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM, SIGUSR1/2 held back (delivered when the block ends), so that a file being
    written is written whole; in the main thread only (signals go to it)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, *_STOPS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class FolderBusy(Exception):
    """Another process runs in this run folder."""


_HELD: dict = {}  # run folder -> the open folder whose lock this process took before Hydra wrote there


def hold_folder(run_dir: Path) -> None:
    """Take the existing folder `run_dir`'s lock now, for its job's `only_process_in` to keep: a
    single run's preflight does, so that a second dal-run in the same folder is refused before
    Hydra writes its .hydra/ there. Raises FolderBusy."""
    import fcntl

    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderBusy(str(run_dir)) from None
    except OSError:  # a file system without locks: as only_process_in
        pass
    _HELD[os.path.abspath(run_dir)] = fd


@contextmanager
def only_process_in(run_dir: Path) -> Iterator[None]:
    """Holds an exclusive lock on the run folder for the whole job: a second dal-run in the same
    folder (a run launched twice, or `resume=` of a SLURM job that submitit requeued meanwhile)
    raises FolderBusy instead of writing the same files twice over. flock(2) on the folder itself,
    so nothing is added to it; the lock goes with the process, however it ends. A lock this
    process took already (hold_folder) is kept, then given back at the end."""
    import fcntl

    held = _HELD.pop(os.path.abspath(run_dir), None)
    if held is not None:
        try:
            yield
        finally:
            os.close(held)
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(str(run_dir)) from None
        except OSError:  # a file system without locks (some FUSE or NFS mounts): the run goes on unlocked
            pass
        yield
    finally:
        os.close(fd)


def folder_locked(run_dir: Path) -> bool:
    """Whether a process holds `run_dir`'s lock now (a run runs in it). False for this process's own."""
    if os.path.abspath(run_dir) in _HELD:  # taken by this process's preflight (hold_folder): kept as it is
        return False
    try:
        with only_process_in(run_dir):  # taken, and given back at once
            return False
    except FolderBusy:
        return True
    except OSError:  # no such folder
        return False


def remove_failed_start(run_dir: Path, existing: Optional[Path]) -> None:
    """Undo what Hydra made for a run that could not start: its files in the run folder (.hydra/,
    the log), then the folders it created, up to `existing` (nothing a user put there)."""
    run_dir = Path(os.path.abspath(run_dir))
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "dal-run.log").unlink(missing_ok=True)
    for folder in (run_dir, *run_dir.parents):
        if existing is None:  # not known what existed before: the run folder alone
            if folder != run_dir:
                return
        elif folder == existing or existing not in folder.parents:
            return
        try:
            folder.rmdir()  # only an empty folder
        except OSError:
            return
