"""The preflight of a large sweep in several processes: composing a job with Hydra takes about
0.2 s, so a sweep of a thousand jobs is checked by one forked process per CPU dal-run may use."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, List

# a sweep of this many jobs or more says so, and is checked by several processes where it may
# use several CPUs: Hydra composes about five jobs a second on one core, so the 1,050 jobs of
# the BADGE reproduction took minutes on one
POOL_MIN_JOBS = 32


def n_processes(n_jobs: int) -> int:
    """Processes to check a sweep of n_jobs: one per CPU this process may use (a SLURM
    allocation, taskset), at most one per 8 jobs; 1 where fork (which keeps Hydra's initialised
    state for the workers) is not the platform's."""
    if n_jobs < POOL_MIN_JOBS or sys.platform != "linux":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), n_jobs // 8, 32))


@contextlib.contextmanager
def mapped(function: Callable, jobs: List[List[str]], processes: int):
    """function(number, job) for every job of a sweep in `processes` forked processes: the results
    in the sweep's order, so the first bad job reported is the one a single process would report."""
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor

    # Ctrl-C is dal-run's alone: blocked while the workers are forked (all at the first submit),
    # they keep it blocked; one meanwhile reaches dal-run when it is unblocked here
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_end_with, initargs=(os.getpid(),))
        # small chunks: after a bad job the workers finish theirs before the error is shown
        results = pool.map(function, range(len(jobs)), jobs, chunksize=4)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        yield results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _end_with(parent: int) -> None:
    """A worker ends when dal-run does, however it ends (a SIGTERM or SIGKILL leaves it no time to
    stop its workers): Linux's parent-death signal."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # dal-run ended before that
        os._exit(1)
