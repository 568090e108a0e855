"""submitit's controller of one `hydra/launcher=local` job, started in its stead (launchers.py).

The only change is SIGINT. A terminal's Ctrl-C reaches every process of the foreground group:
dal-run, the controllers, their jobs. submitit's controller took it as KeyboardInterrupt, printed a
traceback per job into the terminal, sent the job a second SIGINT and killed it with SIGKILL a
second later, while the job was recording its own stop (status.json: interrupted). Here the
controller lets the job handle its own Ctrl-C and goes on waiting for it to end; a stop that
reaches dal-run alone still reaches the job through SIGTERM (launchers.stop_local_jobs), which
submitit's controller forwards.

Usage (what launchers.start_controller execs): python -m dal_runner.local_controller FOLDER
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def main(folder: str) -> None:
    from submitit.local.local import Controller

    signal.signal(signal.SIGINT, lambda signum, frame: None)  # reset to the default in the job by exec
    # started through a shell that exec'd this process: its pid is the job id submitit recorded,
    # which is the controller's own pid (without a shell it reads its parent's pid instead)
    os.environ["SUBMITIT_LOCAL_WITH_SHELL"] = ""
    Controller(Path(folder)).run()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m dal_runner.local_controller SUBMITIT_FOLDER")
    main(sys.argv[1])
