"""The reproduction scripts' --smoke modes run the sweeps and the report on digits. (Their full
sweeps: test_reproduce_checks.py.)"""

from __future__ import annotations

import csv
import os
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
