"""The reproduction scripts' --smoke modes run the sweeps and the report on digits."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess

import pytest
from conftest import BIN, REPO

FIGURES = {
    "reproduce_active_inas.sh": ["learning_curves", "auc_gain", "penalty"],
    "reproduce_badge.sh": ["learning_curves", "auc_gain", "penalty", "penalty_by_batch", "penalty_by_arch"],
    "reproduce_ranganathan.sh": ["learning_curves", "auc_gain", "penalty"],
}


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_smoke_mode_produces_every_figure_type(tmp_path, script):
    env = {**os.environ, "DAL_RUN": str(BIN / "dal-run"), "DAL_REPORT": str(BIN / "dal-report")}
    res = subprocess.run(["bash", str(REPO / "scripts" / script), "--smoke"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    (report,) = [p for p in (tmp_path / "outputs" / "reproduce").glob("**/report") if p.is_dir()]
    if script == "reproduce_active_inas.sh":
        # Figs. 2-4: one report per query; Fig. 5: active-iNAS across queries; Fig. 6b: over passive learning
        assert sorted(p.name for p in report.iterdir()) == ["fig6b", "inas", "softmax_response"]
        assert (report / "inas" / "learning_curves.png").is_file()
        gain = [r for r in csv.DictReader((report / "fig6b" / "auc_gain_by_labels.csv").open())
                if r["strategy"] != r["reference"]]
        assert {(r["environment"], r["strategy"], r["reference"]) for r in gain} == {
            (f"dataset=digits arch={a}", "query=softmax_response", "query=random") for a in ("resnet18", "resnet_small")}
        assert (report / "fig6b" / "auc_gain_by_labels.png").is_file()
        # each active-iNAS run has its architecture-growth figure (Fig. 6a)
        assert list((tmp_path / "outputs" / "reproduce").glob("**/inas/*/*/arch_growth.png"))
        report = report / "softmax_response"
    for figure in FIGURES[script]:
        assert (report / f"{figure}.png").is_file() and (report / f"{figure}.svg").is_file(), figure
    for table in ("curves.csv", "auc.csv", "auc_gain.csv", "penalty.csv"):
        assert (report / table).stat().st_size > 0


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_every_job_of_the_full_reproduction_passes_the_checks_before_a_run(tmp_path, script):
    """The full (paper-scale) sweeps need data sets and GPUs this machine lacks; what can be checked
    here is that every job of every sweep composes and passes the checks dal-run makes before any
    job starts (unknown keys, bad values, another config in a folder): dal-run's own preflight,
    called in place of dal-run. One seed per sweep: the seeds change no check, and all 1,050 jobs
    of the BADGE sweeps would take minutes of Hydra composition."""
    checker = tmp_path / "preflight"
    checker.write_text(f"#!{BIN / 'python'}\nimport sys\nfrom dal_runner.cli import preflight\n"
                       "preflight(['seed=0' if a.startswith('seed=') else a for a in sys.argv[1:]])\n"
                       "print('checked', len(sys.argv) - 1, 'arguments')\n")
    checker.chmod(0o755)
    # the preflight also checks that a sweep's data files are there (not what they hold): empty
    # files where torchvision's layout puts them stand in for the data sets this machine lacks
    from dal_runner.data import torchvision_sets

    data = tmp_path / "data"
    for name in torchvision_sets.NAMES:
        for path in torchvision_sets.expected_files(name, data, include_extra=name == "svhn"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    env = {**os.environ, "DAL_RUN": str(checker), "DAL_REPORT": "true", "DAL_DATA_ROOT": str(data)}
    res = subprocess.run(["bash", str(REPO / "scripts" / script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert res.stdout.count("checked") >= 2 if script != "reproduce_ranganathan.sh" else res.stdout.count("checked") == 1
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing was written
    shutil.rmtree(data)  # and without the files, the sweeps over these data sets are refused
    res = subprocess.run(["bash", str(REPO / "scripts" / script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    if script != "reproduce_ranganathan.sh":  # digits: bundled with scikit-learn
        assert res.returncode != 0 and "files there; copy them there" in res.stderr, res.stderr[-2000:]
