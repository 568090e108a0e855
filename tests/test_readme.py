"""The README's table of bad inputs says what dal-run prints: every row whose input is a complete
dal-run command line (no PATH, SWEEP or ... to fill in), but for those in NOT_HERE, is run here and
its line compared with the table's. The others are tested where their case is (test_cli_errors.py,
test_resume.py, test_sweeps.py); this test keeps the table true to what dal-run prints. (Before,
six rows quoted messages that had since changed.)"""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO, run_cli_inprocess

PLACEHOLDERS = ("...", "PATH", "SWEEP", "OTHER", "<")  # in the input: a command line to fill in
# complete inputs that need more than this process: a folder or file made first, or a run that trains
NOT_HERE = {"unwritable output folder", "a run into a folder of other files", "a sweep into a folder of other files",
            "loss NaN or diverging"}


def _error_rows():
    text = (REPO / "README.md").read_text()
    table = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 3 or not cells[1].startswith("`") or cells[0] in ("case", "---"):
            continue
        case, given, message = cells
        given = given.split("`")[1]
        quoted = message.split("`")[1] if message.startswith("`") else ""
        runs_here = quoted and not any(p in given for p in PLACEHOLDERS) and not given.startswith("dal-report") \
            and case not in NOT_HERE
        rows.append(pytest.param(given, quoted, id=case,
                                 marks=[] if runs_here else
                                 pytest.mark.skip(reason="needs a folder or file first: tested with its case")))
    return rows


ROWS = _error_rows()


def test_the_table_is_found_and_most_of_its_rows_run_here():
    runnable = [r for r in ROWS if not r.marks]
    assert len(ROWS) >= 95 and len(runnable) >= 76, (len(ROWS), len(runnable))  # as many as the README had
    assert NOT_HERE <= {r.id for r in ROWS}  # a row renamed in the README is named here too


@pytest.mark.parametrize("given, message", ROWS)
def test_each_bad_input_of_the_readme_prints_the_line_it_quotes(given, message, tmp_path, monkeypatch, capsys):
    from dal_runner import execute

    def ran(*args, **kwargs):
        raise AssertionError(f"{given}: accepted, and the run started")

    monkeypatch.setattr(execute, "execute", ran)
    args = shlex.split(given.removeprefix("dal-run "))
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    lines = [line.removeprefix("dal-run: error: ") for line in err.splitlines() if line.startswith("dal-run: error: ")]
    pattern = ".*".join(re.escape(part) for part in message.split("..."))
    assert code == 2 and lines and re.fullmatch(pattern, lines[-1]), (code, err[-2000:], message)
    assert not (tmp_path / "outputs").exists()


def readme_query_module() -> str:
    """The README's own query strategy (the python block that starts `# my_queries.py`)."""
    text = (REPO / "README.md").read_text()
    return "#" + text.split("```python\n# my_queries.py", 1)[1].split("```", 1)[0]  # its first line a comment


def run_readme_query(tmp_path, monkeypatch, device: str) -> list:
    """The README's SubsetLeastConfidence in a short run on `device`, as a module of the run's folder
    (named readme_queries: test_custom_query's my_queries may be imported in this process already)."""
    from conftest import compose

    from dal_runner import run
    from dal_runner.execute import execute

    (tmp_path / "readme_queries.py").write_text(readme_query_module())
    monkeypatch.chdir(tmp_path)
    cfg = compose([f"device={device}", "search=fixed", "arch=mlp", "budget.initial=100", "budget.batch=100",
                   "budget.max_labels=300", "trainer.epochs=20", "query=custom",
                   "query.target=readme_queries.SubsetLeastConfidence", "+query.params.subset=200"])
    execute(run.build(cfg), tmp_path / "run")
    return (tmp_path / "run" / "rounds.csv").read_text().splitlines()[1:]


def test_the_readmes_own_query_strategy_runs(tmp_path, monkeypatch):
    # tests/test_cuda.py runs it on a GPU, where it indexed a CPU tensor with CUDA positions before
    rounds = run_readme_query(tmp_path, monkeypatch, "cpu")
    assert [int(r.split(",")[1]) for r in rounds] == [100, 200, 300]
