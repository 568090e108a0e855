"""Which dal-runner code a run ran: the git commit of a checkout, for summary.json and `dal-run
--version` (the version number is the same at every commit, so runs of different code looked alike).

Read once per process, when first asked (execute asks before the first round): the code that was
imported, not what the checkout holds when the run ends hours later.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from pathlib import Path
from typing import List, Optional

PACKAGE = Path(__file__).resolve().parent
CONF = PACKAGE.parent / "conf"  # the configs, shipped as dal_runner.conf (pyproject's package-dir)


def _git(*args: str) -> str:
    # no optional locks: `git status` would otherwise take index.lock, and a user's own commit while
    # jobs end could fail on it; safe.directory: a checkout another user owns (a shared cluster
    # checkout, a container's bind mount) is still read
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(PACKAGE), *args], capture_output=True,
                          text=True, timeout=10, check=True, env=env).stdout


@functools.lru_cache(maxsize=1)
def source_commit() -> Optional[str]:
    """The commit of the checkout dal-runner's code is in, with "+changes-<digest>" where its files
    (the package and conf/, untracked ones included) differ from it: the digest of those
    differences, so two runs of different uncommitted edits differ too. None for a copy that is no
    checkout's tracked files (an installed wheel, also one inside some repository's .venv), or
    without git."""
    try:
        if not _git("ls-files", "--", "__init__.py").strip():  # not tracked here: an installed copy
            return None
        commit = _git("rev-parse", "HEAD").strip()
        paths: List[str] = [str(PACKAGE)] + ([str(CONF)] if CONF.is_dir() else [])
        status = _git("status", "--porcelain", "--untracked-files=all", "--", *paths)
        if not status.strip():
            return commit
        digest = hashlib.sha256(_git("diff", "HEAD", "--", *paths).encode())
        top = Path(_git("rev-parse", "--show-toplevel").strip())
        for line in sorted(status.splitlines()):
            if line.startswith("??"):  # untracked: its content, which git diff leaves out
                path = top / line[3:].strip('"')
                digest.update(line.encode() + (path.read_bytes() if path.is_file() else b""))
        return f"{commit}+changes-{digest.hexdigest()[:8]}"
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
