"""An installed, non-editable dal-run finds its configs from any working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from conftest import REPO, run_dirs


def test_installed_wheel_runs_from_another_directory(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(wheels), str(REPO)],
                           check=True, capture_output=True, text=True)
    assert "Package would be ignored" not in built.stdout + built.stderr  # every conf/ folder is listed
    (wheel,) = wheels.glob("dal_runner-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("dal_runner/conf/") and n.endswith(".yaml")}
    assert shipped == {f"dal_runner/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import dal_runner.conf as c; print(c.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(target)), where  # the installed copy, not the source tree
    res = subprocess.run([str(target / "bin" / "dal-run"), "budget.initial=30", "budget.batch=30",
                          "budget.max_labels=60", "trainer.epochs=3", "query=entropy"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (run,) = run_dirs(elsewhere / "outputs" / "runs")
    assert (run / "summary.json").is_file()
    assert "name: entropy" in (run / ".hydra" / "config.yaml").read_text()
