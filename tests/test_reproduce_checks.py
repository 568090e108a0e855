"""The reproduction scripts' full (paper-scale) sweeps: every job passes dal-run's checks.
(A file apart from test_reproduce_scripts.py, so that the two share the test workers.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import BIN, REPO

SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("reproduce_*.sh"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_job_of_the_full_reproduction_passes_the_checks_before_a_run(tmp_path, script):
    """The full (paper-scale) sweeps need data sets and GPUs this machine lacks; what can be checked
    here is that every job of every sweep composes and passes the checks dal-run makes before any
    job starts (unknown keys, bad values, another config in a folder): dal-run's own preflight,
    called in place of dal-run. One seed per sweep: the seeds change no check, and all 1,050 jobs
    of the BADGE sweeps would take minutes of Hydra composition."""
    checker = tmp_path / "preflight"
    # with FILE_SETS_ONLY set, the sweeps over OpenML (fetched into a cache: no files to copy) are skipped
    checker.write_text(f"#!{BIN / 'python'}\nimport os, sys\nfrom dal_runner.cli import preflight\n"
                       "args = sys.argv[1:]\n"
                       "if os.environ.get('FILE_SETS_ONLY') and 'dataset=openml' in args:\n"
                       "    sys.exit(print('skipped'))\n"
                       "preflight(['seed=0' if a.startswith('seed=') else a for a in args])\n"
                       "print('checked', len(args), 'arguments')\n")
    checker.chmod(0o755)
    # the preflight also reads a sweep's data files: small files in torchvision's formats and
    # layout stand in for the data sets this machine lacks
    from test_datasets import write_cifar, write_mnist, write_svhn

    data = tmp_path / "data"
    write_cifar(data, "cifar10")
    write_cifar(data, "cifar100")
    write_svhn(data)
    write_mnist(data, "MNIST", gz=True)
    write_mnist(data, "FashionMNIST", gz=False)
    env = {**os.environ, "DAL_RUN": str(checker), "DAL_REPORT": "true", "DAL_DATA_ROOT": str(data)}
    res = subprocess.run(["bash", str(REPO / "scripts" / script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    # every sweep of the script: 2 per data set of active-iNAS, BADGE's 5 image and 4 OpenML sweeps
    sweeps = {"reproduce_active_inas.sh": 2 * 3, "reproduce_badge.sh": 5 + 4, "reproduce_ranganathan.sh": 1}
    assert res.stdout.count("checked") == sweeps[script], res.stdout
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing was written
    if script == "reproduce_ranganathan.sh":  # digits: bundled with scikit-learn
        return
    shutil.rmtree(data)  # and without the files, the sweeps over these data sets are refused
    res = subprocess.run(["bash", str(REPO / "scripts" / script)], cwd=tmp_path, env={**env, "FILE_SETS_ONLY": "1"},
                         capture_output=True, text=True, timeout=900)
    assert res.returncode != 0 and "files there; copy them there" in res.stderr, res.stderr[-2000:]
