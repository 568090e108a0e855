"""query=custom: a user's own strategy, from a module in the folder dal-run starts in."""

from __future__ import annotations

import textwrap

import pytest
import torch
from conftest import ONE_THREAD, run_cli, run_cli_inprocess, without_timings
from test_resume import _kill_mid_round

from dal_runner.errors import ConfigError
from dal_runner.io import read_csv, read_json
from dal_runner.query import QueryContext
from dal_runner.query.custom import QueryError, build

BASE = ["search=fixed", "arch=mlp", "budget.initial=50", "budget.batch=50", "budget.max_labels=300",
        "trainer.epochs=60"]

MODULE = textwrap.dedent('''
    import torch


    def smallest_margin(ctx, k, scale=1.0):
        """margin sampling, written as a user would"""
        top = ctx.probs().topk(2, dim=1).values
        return (-(top[:, 0] - top[:, 1]) * scale).argsort(descending=True, stable=True)[:k].tolist()


    class Rotating:
        """random positions, shifted by a count it keeps across rounds (in the run's state)"""

        def __init__(self, shift=1):
            self.shift, self.count = shift, 0
            with open("constructed.txt", "a") as f:  # once per job: not in the checks before it
                f.write("x")

        def select(self, ctx, k):
            self.count += self.shift
            order = torch.randperm(len(ctx.unlabeled), generator=ctx.generator)
            return order.roll(self.count)[:k]

        def state_dict(self):
            return {"count": self.count}

        def load_state_dict(self, state):
            self.count = state["count"]


    class NoSelect:
        pass


    class SavesOnly:
        def select(self, ctx, k):
            return list(range(k))

        def state_dict(self):
            return {}


    def raises(ctx, k):
        ctx.probs()
        raise ValueError("my bug")
''')


@pytest.fixture
def user_folder(tmp_path):
    (tmp_path / "my_queries.py").write_text(MODULE)
    (tmp_path / "raises_on_import.py").write_text("import os\n\nraise RuntimeError('module-level boom')\n")
    (tmp_path / "bad_syntax.py").write_text("class Q:\n    def select(self, ctx, k)\n")
    (tmp_path / "select.py").write_text("class Q:\n    def select(self, ctx, k):\n        return list(range(k))\n")
    return tmp_path


def test_a_function_of_the_users_folder_selects_as_the_built_in_strategy_it_rewrites(user_folder):
    runs, short = {}, ["trainer.epochs=20", "budget.max_labels=200"]
    for name, query in [("builtin", ["query=margin"]),
                        ("custom", ["query=custom", "query.target=my_queries.smallest_margin",
                                    "+query.params.scale=2.0"])]:
        res = run_cli([*BASE, *short, *query, f"hydra.run.dir={user_folder / name}"], cwd=user_folder, env=ONE_THREAD)
        assert res.returncode == 0, res.stderr[-2000:]
        runs[name] = user_folder / name
    assert read_csv(runs["custom"] / "selected.csv") == read_csv(runs["builtin"] / "selected.csv")
    assert without_timings(read_csv(runs["custom"] / "rounds.csv")) == \
        without_timings(read_csv(runs["builtin"] / "rounds.csv"))
    assert read_json(runs["custom"] / "summary.json")["choices"]["query"] == "custom"

    # dal-report names the strategies by what tells them apart: the query, and the targets and
    # params of its custom runs (one without params has no query.params=... of its own)
    res = run_cli([*BASE, *short, "query=custom", "query.target=my_queries.Rotating",
                   f"hydra.run.dir={user_folder / 'rot'}"], cwd=user_folder, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_cli([str(user_folder / n) for n in ("builtin", "custom", "rot")] + ["--out", str(user_folder / "report")],
                  cwd=user_folder, script="dal-report")
    assert res.returncode == 0, res.stderr[-2000:]
    assert {r["strategy"] for r in read_csv(user_folder / "report" / "auc.csv")} == {
        "query=custom query.params.scale=2.0 query.target=my_queries.smallest_margin",
        "query=custom query.target=my_queries.Rotating",
        "query=margin"}


def test_a_custom_strategys_state_is_kept_when_a_killed_run_resumes(user_folder):
    args = [*BASE, "query=custom", "query.target=my_queries.Rotating", "+query.params.shift=3"]
    full, killed = user_folder / "full", user_folder / "killed"
    res = run_cli([*args, f"hydra.run.dir={full}"], cwd=user_folder, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (user_folder / "constructed.txt").read_text() == "x"  # the job built it once; the checks did not
    _kill_mid_round(args, killed, user_folder)
    assert read_json(killed / "status.json")["state"] == "running"  # killed in round 2
    res = run_cli([f"resume={killed}"], cwd=user_folder, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming at round 2" in res.stderr + res.stdout
    # the count went on from the saved one: without it the picks from round 3 on would differ
    assert read_csv(killed / "selected.csv") == read_csv(full / "selected.csv")
    from dal_runner import state

    saved = state.load(killed)
    assert saved["query_state"] == {"count": 3 * 5}  # five queries (rounds 0-4), 3 each


@pytest.mark.parametrize("override, says", [
    ("query.target=no_such_module.Thing", "query.target=no_such_module.Thing: no module named no_such_module "
                                          "(searched: the installed packages and the working folder "),
    ("query.target=my_queries.NoSelect", "query.target=my_queries.NoSelect: the class NoSelect has no select method"),
    ("query.target=my_queries", "query.target=my_queries: it names a module, not a class or function"),
    ("+query.params.shiftt=2", "query.params={'shiftt': 2}: got an unexpected keyword argument 'shiftt'; accepted: "
                               "the keyword arguments of my_queries.Rotating(shift=1)"),
    ("query.target=my_queries.SavesOnly", "query.target=my_queries.SavesOnly: the class SavesOnly has state_dict "
                                          "without load_state_dict: a resumed run could not give it back its state"),
    ("query.target=my_queries.Rotating.select", "query.target=my_queries.Rotating.select: it takes (self, ctx, k), "
                                                "not (ctx, k)"),
    ("query.target=my_queries:Rotating", "query.target=my_queries:Rotating: accepted: an importable class"),
    ("query.target=raises_on_import.Q", "query.target=raises_on_import.Q: importing raises_on_import raised "
                                        "RuntimeError: module-level boom (raises_on_import.py, line 3)"),
    ("query.target=bad_syntax.Q", "query.target=bad_syntax.Q: importing bad_syntax raised SyntaxError: "),
    ("query.target=select.Q", "query.target=select.Q: select has no attribute Q; the working folder's select.py is "
                              "hidden by Python's own module select"),
    ("query.target=builtins.exec", "query.target=builtins.exec: it names Python's built-in exec, not a "
                                   "select(ctx, k); accepted: "),
    ("query.params=5", "query.params=5: wrong type; accepted: a mapping, e.g. +query.params={a:1,b:2} (+ adds keys "
                       "to it), or its keys one by one, +query.params.<key>=<value>"),
])
def test_a_bad_target_or_params_is_one_line_before_any_job(user_folder, override, says, monkeypatch, capsys):
    import sys

    target = [] if override.startswith("query.target=") else ["query.target=my_queries.Rotating"]
    args = [*BASE, "query=custom", *target, override, "seed=0,1", f"output_root={user_folder / 'out'}"]
    monkeypatch.setattr(sys, "path", list(sys.path))  # the working folder dal-run adds goes again
    try:  # in this process: the checks end before any job
        code, _, err = run_cli_inprocess(["-m", *args], user_folder, monkeypatch, capsys)
    finally:  # the user's modules too (every test's folder has its own)
        for name in ("my_queries", "raises_on_import", "bad_syntax"):
            sys.modules.pop(name, None)
    assert code == 2 and err.startswith(f"dal-run: error: {says}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (user_folder / "out").exists()  # no job started, nothing written


def _context(n: int = 40) -> QueryContext:
    from test_query_strategies import small_network

    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return QueryContext(small_network(0.0), x, torch.arange(0, 10), torch.arange(10, n), torch.Generator().manual_seed(1))


@pytest.mark.parametrize("returned, says", [
    ([0, 0, 1], "returned a position twice"),
    ([0, 1], "returned (2,) positions"),
    ([[0, 1, 2]], "returned (1, 3) positions"),
    ([0, 1, 30], "returned position 30, outside the 30 unlabeled points"),
    ([-1, 0, 1], "returned position -1, outside the 30 unlabeled points"),
    (torch.tensor([0.0, 1.0, 2.0]), "returned torch.float32 values"),
    ("abc", "returned a str"),
])
def test_what_a_custom_select_returns_is_checked(monkeypatch, returned, says):
    import sys
    import types

    module = types.ModuleType("returns_given")
    module.select = lambda ctx, k: returned
    monkeypatch.setitem(sys.modules, "returns_given", module)
    strategy = build("returns_given.select", {})
    with pytest.raises(QueryError) as error:
        strategy.select(_context(), 3)
    assert str(error.value).startswith(f"query.target=returns_given.select: select(ctx, k=3) {says}; accepted: 3 "
                                       "distinct integer positions into ctx.unlabeled (0 .. 29)"), str(error.value)


def test_a_custom_select_returning_a_list_or_array_gives_positions(monkeypatch):
    import sys
    import types

    import numpy as np

    module = types.ModuleType("returns_fine")
    module.as_list = lambda ctx, k: [29, 0, 5]
    module.as_array = lambda ctx, k: np.array([29, 0, 5], dtype=np.int32)
    monkeypatch.setitem(sys.modules, "returns_fine", module)
    for name in ("as_list", "as_array"):
        picked = build(f"returns_fine.{name}", {}).select(_context(), 3)
        assert picked.dtype == torch.long and picked.tolist() == [29, 0, 5]


def test_a_custom_select_sees_the_labels_of_s_only(monkeypatch):
    # before: ctx.y held every pool label, so a strategy could read the unlabeled points' (a leak
    # the README only asked users not to make)
    import sys
    import types

    seen = {}
    module = types.ModuleType("reads_labels")
    module.select = lambda ctx, k: seen.setdefault("ctx", ctx) is not None and list(range(k))  # kept, as a class might
    monkeypatch.setitem(sys.modules, "reads_labels", module)
    ctx = _context()
    ctx.y = torch.arange(40) % 7
    build("reads_labels.select", {}).select(ctx, 3)
    kept = seen["ctx"].y  # also after the query: the context it kept never shows the unlabeled points' labels
    assert torch.equal(kept[:10], torch.arange(10) % 7) and bool((kept[10:] == -1).all())
    assert torch.equal(ctx.y, torch.arange(40) % 7)  # the run's own labels are as they were


def test_an_error_in_a_custom_select_or_state_says_where(monkeypatch, caplog):
    import sys
    import types

    import numpy as np

    class Keeps:
        def select(self, ctx, k):
            raise ValueError("my bug")

        def state_dict(self):
            return {"seen": [1, np.zeros(2)]}

        def load_state_dict(self, state):
            pass

    module = types.ModuleType("broken")
    module.Keeps = Keeps
    monkeypatch.setitem(sys.modules, "broken", module)
    strategy = build("broken.Keeps", {})
    with pytest.raises(QueryError, match=r"select\(ctx, k=3\) raised ValueError: my bug \(test_custom_query.py, "):
        strategy.select(_context(), 3)
    assert "Traceback" in caplog.text and "my bug" in caplog.text  # in the run's log
    with pytest.raises(QueryError, match=r"state_dict\(\)\['seen'\]\[1\] is a numpy.ndarray, which the run's state "):
        strategy.state_dict()
    with pytest.raises(ConfigError, match="query.target= x: accepted"):
        build(" x", {})


def test_an_error_in_a_custom_select_is_one_line_on_the_terminal_and_its_traceback_in_the_log(user_folder):
    res = run_cli([*BASE, "trainer.epochs=5", "query=custom", "query.target=my_queries.raises",
                   f"hydra.run.dir={user_folder / 'run'}"], cwd=user_folder, env=ONE_THREAD)
    assert res.returncode == 1
    assert "dal-run: error: run failed in round 0: QueryError: query.target=my_queries.raises: select(ctx, k=50) " \
           "raised ValueError: my bug (my_queries.py, line " in res.stderr, res.stderr
    assert "Traceback" not in res.stdout + res.stderr  # before, the whole traceback was logged to the terminal
    log = (user_folder / "run" / "dal-run.log").read_text()
    assert "Traceback" in log and 'raise ValueError("my bug")' in log
    assert read_json(user_folder / "run" / "status.json")["state"] == "failed"


def test_a_misspelled_set_in_the_context_is_refused_not_taken_for_the_labeled_one():
    ctx = _context()
    for which in ("unlabelled", "Labeled", "pool"):
        with pytest.raises(ValueError, match=f"which='{which}': accepted: 'unlabeled'"):
            ctx.probs(which)
        with pytest.raises(ValueError, match=f"which='{which}': accepted: 'unlabeled'"):
            ctx.embeddings(which)
    assert ctx.probs("labeled").shape == (10, 10) and ctx.probs().shape == (30, 10)


def test_the_checks_before_a_job_do_not_run_the_constructor_and_state_methods_say_whose(monkeypatch):
    import sys
    import types

    import numpy as np

    built = []

    class Learns:
        def __init__(self, depth=1):
            built.append(depth)

        def select(self, ctx, k):
            return list(range(k))

        def state_dict(self):
            return {"best": np.float64(0.5)}  # a float to isinstance: torch.load(weights_only) refuses it

        def load_state_dict(self, state):
            raise KeyError("count")

    module = types.ModuleType("learns")
    module.Learns = Learns
    monkeypatch.setitem(sys.modules, "learns", module)
    assert build("learns.Learns", {"depth": 2}, construct=False) is None and built == []
    strategy = build("learns.Learns", {"depth": 2})
    assert built == [2]
    with pytest.raises(QueryError, match=r"state_dict\(\)\['best'\] is a numpy.float64, which the run's state"):
        strategy.state_dict()
    with pytest.raises(QueryError, match=r"query.target=learns.Learns: load_state_dict\(\) raised KeyError: 'count' "
                                         r"\(test_custom_query.py, line \d+\); its traceback is above \(no log file"):
        strategy.load_state_dict({})  # this process's logging writes no file


def test_an_error_raised_inside_torch_names_the_users_line_not_torchs(monkeypatch):
    """Before, the line named was torch/nn/functional.py's, the innermost outside dal-run."""
    import sys
    import types

    def wrong_dim(ctx, k):
        return torch.nn.functional.softmax(ctx.probs(), dim=5).argsort()[:k]

    module = types.ModuleType("wrong_dim")
    module.select = wrong_dim
    monkeypatch.setitem(sys.modules, "wrong_dim", module)
    with pytest.raises(QueryError) as error:
        build("wrong_dim.select", {}).select(_context(), 3)
    line = wrong_dim.__code__.co_firstlineno + 1
    assert f"raised IndexError: " in str(error.value) and f"(test_custom_query.py, line {line})" in str(error.value)
    # a package of the user site (pip install --user) or Debian's dist-packages: a library too
    from dal_runner.query.custom import where

    for site in ("/home/u/.local/lib/python3.11/site-packages", "/usr/lib/python3/dist-packages"):
        namespace = {}
        exec(compile("def softmax(x):\n    raise IndexError('Dimension out of range')\n",
                     f"{site}/somelib/functional.py", "exec"), namespace)

        def calls_it():
            namespace["softmax"](None)

        with pytest.raises(IndexError) as error:
            calls_it()
        assert where(error.value) == f"test_custom_query.py, line {calls_it.__code__.co_firstlineno + 1}", site


def test_a_stop_that_reached_the_users_code_as_another_error_stops_the_run(monkeypatch):
    """A SIGTERM inside an extension module's import reaches the caller as ImportError; before, the
    run failed with a config error about the user's constructor instead of being interrupted."""
    import sys
    import types

    from dal_runner.job_control import _STOPPING, Terminated, _clear_stops

    class Loads:
        def __init__(self):
            _STOPPING.append(Terminated(143))  # what the SIGTERM handler records as it raises
            raise ImportError("initialization failed")

        def select(self, ctx, k):
            return list(range(k))

    module = types.ModuleType("loads")
    module.Loads = Loads
    monkeypatch.setitem(sys.modules, "loads", module)
    _clear_stops()
    try:
        with pytest.raises(Terminated):
            build("loads.Loads", {})
    finally:
        _clear_stops()
    with pytest.raises(ConfigError, match=r"raised ImportError: initialization failed"):  # no stop: the error
        monkeypatch.setattr(Loads, "__init__", lambda self: (_ for _ in ()).throw(ImportError("initialization failed")))
        build("loads.Loads", {})


def test_a_traceback_meant_for_the_log_stays_off_the_terminal_under_the_progress_bar(capsys, tmp_path):
    """Before, the progress bar's console handler printed the custom strategy's whole traceback.
    Without a log file (hydra/job_logging=stdout) it is printed: nowhere else would have it."""
    import logging

    from dal_runner.progress import round_progress

    log = logging.getLogger("dal_runner")
    file_handler = logging.FileHandler(tmp_path / "dal-run.log")
    logging.getLogger().addHandler(file_handler)
    try:
        with round_progress(2, 0, enabled=True):
            log.error("a line for the terminal")
            log.error("a traceback for dal-run.log", extra={"file_only": True})
    finally:
        logging.getLogger().removeHandler(file_handler)
        file_handler.close()
    err = capsys.readouterr().err
    assert "a line for the terminal" in err and "a traceback for dal-run.log" not in err
    assert "a traceback for dal-run.log" in (tmp_path / "dal-run.log").read_text()
    with round_progress(2, 0, enabled=True):
        log.error("a traceback with no file to go to", extra={"file_only": True})
    assert "a traceback with no file to go to" in capsys.readouterr().err


def test_without_a_log_file_a_custom_strategys_traceback_is_on_the_terminal(user_folder):
    """hydra/job_logging=stdout writes no dal-run.log: the traceback was dropped, and the error said
    it was in dal-run.log."""
    res = run_cli([*BASE, "trainer.epochs=2", "query=custom", "query.target=my_queries.raises",
                   "hydra/job_logging=stdout", f"hydra.run.dir={user_folder / 'run'}"], cwd=user_folder, env=ONE_THREAD)
    assert res.returncode == 1
    assert "its traceback is above (no log file: hydra/job_logging)" in res.stderr, res.stderr[-2000:]
    assert 'raise ValueError("my bug")' in res.stdout + res.stderr
    # hydra/job_logging=disabled disables dal-run's logger too: the traceback is nowhere, and it says so
    res = run_cli([*BASE, "trainer.epochs=2", "query=custom", "query.target=my_queries.raises",
                   "hydra/job_logging=disabled", f"hydra.run.dir={user_folder / 'run2'}"], cwd=user_folder, env=ONE_THREAD)
    assert res.returncode == 1 and "its traceback is not logged (hydra/job_logging disables it)" in res.stderr, \
        res.stderr[-2000:]


def test_a_run_with_hydras_logging_disabled_runs(tmp_path):
    """Before, conf/config.yaml's filter on Hydra's console handler made hydra/job_logging=disabled a
    logging configuration error before the run started."""
    res = run_cli([*BASE, "trainer.epochs=2", "budget.max_labels=100", "hydra/job_logging=disabled",
                   f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    assert read_json(tmp_path / "run" / "status.json")["state"] == "completed"
