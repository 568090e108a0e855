"""Run folders as records for dal-report: find them, load them, tell their protocols apart.

A run's *strategy* is its query, plus its search and arch when the search varies across the
runs; its *environment* is everything else that varies. See dal_runner/report.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dal_runner.io import ROUNDS_CSV, STATUS_JSON, SUMMARY_JSON, read_csv, read_json_object

REPORT_DIR = "report"
GROUPS = ("dataset", "experiment", "budget", "trainer", "search", "arch", "query")  # also the label order
IGNORED = {"seed", "device", "output_root", "resume", "dataset.root", "dataset.download"}  # not protocol

class ReportError(Exception):
    """A user mistake: printed as one line `dal-report: error: ...`, exit status 2."""


@dataclass
class Run:
    path: Path
    name: str  # relative to the scanned PATHs' common folder
    attrs: Dict[str, str] = field(default_factory=dict)  # group choices and dotted config leaves
    unread: set = field(default_factory=set)  # keys of its config the run does not read (left out of attrs)
    preset_keys: set = field(default_factory=set)  # the keys its preset (conf/preset/<dataset>_<arch>) sets
    seed: Any = None
    state: str = "missing"
    reason: str = ""  # why it is excluded; empty for a run that counts
    curve: List[Tuple[int, float]] = field(default_factory=list)
    # (n_labeled, parameters of the round's model), where rounds.csv has them (active-iNAS Fig. 6a)
    sizes: List[Tuple[int, int]] = field(default_factory=list)
    environment: str = ""
    strategy: str = ""
    machines: List[str] = field(default_factory=list)  # summary.json: where its rounds ran (> 1: resumed elsewhere)
    versions: Dict[str, str] = field(default_factory=dict)  # summary.json: the packages' and dal-runner's code
    data: str = ""  # summary.json: data.content_sha256, the data set read (runs made before it: empty)
    root: str = ""  # its dataset.root as configured (not a key of its protocol: the same data elsewhere)


# ------------------------------------------------------------------------------ scanning
def find_run_folders(paths: Sequence[Path]) -> List[Path]:
    found = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise ReportError(f"{root}: no such file or folder")
        if not root.is_dir():
            raise ReportError(f"{root}: not a folder (give a run folder or a folder of runs)")
        runs = [config.parent.parent for config in root.rglob(".hydra/config.yaml")]
        # a sweep's job that died before Hydra wrote its config: the sweep's end made its folder and
        # marked it failed (launchers._died); it is listed as excluded, not left out unseen
        runs += [status.parent for status in root.rglob(STATUS_JSON)
                 if not (status.parent / ".hydra" / "config.yaml").exists()
                 and any((a / "multirun.yaml").is_file() for a in status.parent.parents)]  # a nested subdir too
        for run in runs:
            run = run.resolve()
            parts = run.relative_to(root.resolve()).parts if run != root.resolve() else ()
            if REPORT_DIR in parts:
                continue
            found.add(run)
    return sorted(found, key=_natural_key)


def jobs_never_started(paths: Sequence[Path], folders: Sequence[Path]) -> List[str]:
    """A note for each sweep among `paths` (a folder with multirun.yaml) that holds fewer job folders
    than its overrides make jobs: jobs a stopped or killed sweep never started, which no table shows."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    notes = []
    for path in map(Path, paths):
        try:
            task = OmegaConf.to_container(OmegaConf.load(path / "multirun.yaml").hydra.overrides.task, resolve=False)
            parsed = OverridesParser.create().parse_overrides([str(o) for o in task])
            expected = len(BasicSweeper.split_arguments(parsed, None)[0])
        except Exception:  # no sweep, or its file cannot be read: nothing to count against
            continue
        root = path.resolve()
        held = sum(1 for f in folders if f == root or root in f.parents)
        if held < expected:
            notes.append(f"{path}: {expected - held} of the sweep's {expected} jobs have no folder (never started: "
                         f"the sweep was stopped or killed before them); the same command with "
                         f"{shlex.quote(f'hydra.sweep.dir={path}')} runs them")
    return notes


def _natural_key(path) -> list:
    """Sort key that puts job 2 before job 10."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(path))]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return str(value)


def _flatten(node: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        # a dict of named keys is a config node; a dict keyed by numbers (a batch schedule) is a value
        if isinstance(value, dict) and value and all(isinstance(k, str) and k.isidentifier() for k in value):
            out.update(_flatten(value, name + "."))
        elif value == {}:  # no keys (query=custom's params): runs that have some show them, the others not
            continue
        elif name not in IGNORED:
            out[name] = _fmt(value)
    return out


def _reason(state: str, status: Dict[str, Any], path: Optional[Path] = None) -> str:
    """Why a run that did not complete is excluded: its state, with the last line of its error. A
    `running` one whose process on this machine is gone was killed without a word (SIGKILL)."""
    import socket

    from dal_runner.folder_checks import alive_here

    if (state == "running" and path is not None and status.get("host") == socket.gethostname()
            and not alive_here(status.get("host"), status.get("pid"), path)):
        return (f"killed: status.json says running, but its process (pid {status.get('pid')}) is gone (SIGKILL, out "
                f"of memory); dal-run {shlex.quote(f'resume={path}')} continues it")
    error = str(status.get("error") or "").splitlines()[-1:]
    # "interrupted by the user ..." says its state itself: not "interrupted: interrupted by ..."
    return error[0] if error and error[0].startswith(state) else f"{state}" + (f": {error[0]}" if error else "")


def load_run(path: Path, name: str) -> Run:
    from omegaconf import OmegaConf

    run = Run(path, name)
    if not (path / ".hydra" / "config.yaml").exists():  # a sweep's job that died before it started
        status = read_json_object(path / STATUS_JSON) or {}
        run.state = str(status.get("state", "missing"))
        run.reason = _reason(run.state, status, path) if run.state != "completed" else "no .hydra/config.yaml"
        return run
    try:
        config = OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml"), resolve=False)
        if not isinstance(config, dict):
            raise ValueError("not a mapping")
    except Exception as e:  # an unreadable config cannot be grouped
        run.reason = f"unreadable .hydra/config.yaml ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        return run
    run.seed = config.get("seed")
    dataset = config.get("dataset")
    run.root = _fmt(dataset.get("root")) if isinstance(dataset, dict) and "root" in dataset else ""
    run.attrs = _flatten(config)
    runtime = _hydra_runtime(path)
    run.attrs.update({g: _fmt(c) for g, c in _choices(path, config, runtime).items()})
    run.preset_keys = _preset_keys(path, runtime)
    run.unread = {k for k in run.attrs if _unused(run.attrs, k)}
    for key in run.unread:
        del run.attrs[key]
    status = read_json_object(path / STATUS_JSON)
    if status is None:
        run.reason = "incomplete: no readable status.json"
        return run
    run.state = str(status.get("state", "missing"))
    if run.state != "completed":
        run.reason = _reason(run.state, status, path)
        return run
    try:
        rows = read_csv(path / ROUNDS_CSV)
        run.curve = [(int(r["n_labeled"]), float(r["test_accuracy"])) for r in rows]
    except (OSError, KeyError, ValueError, TypeError):
        run.reason = "incomplete: rounds.csv missing or unreadable"
        return run
    if not run.curve:
        run.reason = "incomplete: rounds.csv has no rounds"
        return run
    bad = next(((i, a) for i, (_, a) in enumerate(run.curve) if not 0.0 <= a <= 1.0), None)  # nan too
    if bad is not None:  # edited by hand, or written by something else: it would reach every mean and AUC
        run.reason = f"inconsistent: rounds.csv has a test_accuracy of {bad[1]} in round {bad[0]}"
        return run
    try:
        run.sizes = [(int(r["n_labeled"]), int(r["n_params"])) for r in rows]
    except (KeyError, ValueError, TypeError):  # older or hand-made files: no sizes, the rest stands
        run.sizes = []
    summary = read_json_object(path / SUMMARY_JSON)
    if summary is None and (path / SUMMARY_JSON).exists():  # damaged: nothing left to check the rounds against
        run.reason = "inconsistent: summary.json cannot be read, so its rounds, data and code cannot be checked"
        return run
    summary = summary or {}
    run.machines = [str(m) for m in summary.get("machines") or []]
    versions = summary.get("versions")
    run.versions = {str(k): str(v) for k, v in versions.items() if v is not None} if isinstance(versions, dict) else {}
    data = summary.get("data")
    run.data = str(data.get("content_sha256") or "") if isinstance(data, dict) else ""
    expected = (summary.get("n_rounds"), summary.get("final_n_labeled"))
    if None not in expected and (len(run.curve), run.curve[-1][0]) != expected:
        # cut short or edited since the run wrote it: its AUC would be another run's
        run.reason = (f"inconsistent: rounds.csv holds {len(run.curve)} rounds up to {run.curve[-1][0]} labels, "
                      f"summary.json {expected[0]} rounds up to {expected[1]}")
    return run


def _hydra_runtime(path: Path) -> Optional[Dict[str, Any]]:
    """hydra.runtime of the run's .hydra/hydra.yaml (its choices, config sources, cwd); None where
    it is missing or unreadable. Read once per run: a large sweep's report reads hundreds."""
    from omegaconf import OmegaConf

    try:
        runtime = OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "hydra.yaml").hydra.runtime, resolve=False)
    except Exception:
        return None
    return runtime if isinstance(runtime, dict) and isinstance(runtime.get("choices"), dict) else None


def _choices(path: Path, config: Dict[str, Any], runtime: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Group options (e.g. arch=resnet18): Hydra's runtime choices, else summary.json, else `name` keys."""
    if runtime is not None:
        choices = dict(runtime["choices"])
    else:
        choices = dict((read_json_object(path / SUMMARY_JSON) or {}).get("choices") or {})
    for group in ("dataset", "arch", "search", "query"):
        if choices.get(group) is None and isinstance(config.get(group), dict):
            choices[group] = config[group].get("name")
    return {g: choices[g] for g in GROUPS if choices.get(g) is not None}


def _preset_keys(path: Path, runtime: Optional[Dict[str, Any]]) -> set:
    """The keys the run's preset set (Hydra's choice `preset`, e.g. digits_resnet, read from the
    config sources the run was composed from: dal-run's own, or a --config-dir of the user's, a
    relative one from the run's working folder): what its dataset and arch options set outside their
    own groups. Empty where none applied or its file is gone. A run without hydra.yaml: its
    summary.json's choice, from dal-run's own presets."""
    from dal_runner.cli_help import CONFIG_MODULE

    if runtime is not None:
        name = runtime["choices"].get("preset")
        sources = [(str(c.get("schema")), str(c.get("path"))) for c in runtime.get("config_sources") or []
                   if isinstance(c, dict)]
        cwd = str(runtime.get("cwd") or ".")
    else:
        name, sources, cwd = ((read_json_object(path / SUMMARY_JSON) or {}).get("choices") or {}).get("preset"), [], "."
    if not name:
        return set()
    for schema, where in [*sources, ("pkg", CONFIG_MODULE)]:
        keys = _keys_of_preset(schema, where, str(name), cwd)
        if keys is not None:
            return set(keys)
    return set()


_PRESETS: Dict[Tuple[str, int], frozenset] = {}  # (preset file, its mtime) -> its keys: read once per version


def group_file(schema: str, where: str, cwd: str, group: str, name: str):
    """<group>/<name>.yaml of one of a run's config sources (Hydra's schema pkg or file, a relative
    file source read from the run's working folder `cwd`), or None where that source lacks it."""
    from importlib.resources import files

    folder = files(where) if schema == "pkg" else Path(cwd, where) if schema == "file" else None
    if folder is None or not (folder / group / f"{name}.yaml").is_file():
        return None
    return folder / group / f"{name}.yaml"


def _keys_of_preset(schema: str, where: str, name: str, cwd: str) -> Optional[frozenset]:
    """The keys preset/<name>.yaml of one config source sets; None where it has no such file."""
    from importlib.resources import as_file

    from omegaconf import OmegaConf

    try:
        found = group_file(schema, where, cwd, "preset", name)
        if found is None:
            return None
        with as_file(found) as file:
            version = (str(file), os.stat(file).st_mtime_ns)
            if version not in _PRESETS:
                _PRESETS[version] = frozenset(_flatten(OmegaConf.to_container(OmegaConf.load(file))))
            return _PRESETS[version]
    except Exception:  # a package that is gone, a file that does not parse
        return None


def _can_set(option: str, key: str, preset_keys: set) -> bool:
    """Whether the group option `option` (dataset, arch, ...) can set `key`: its own group's keys;
    dataset and arch also the keys a run's preset set; an experiment any key."""
    return option in (_group_of(key), "experiment") or (option in ("dataset", "arch") and key in preset_keys)


def _unused(attrs: Dict[str, str], key: str) -> bool:
    """Keys a run's own options do not read: they tell no runs apart (labels leave them out).
    search=fixed has the candidates' estimation keys but no candidates; entropy_lambda weighs the
    joint objective only."""
    if key.startswith("search.") and attrs.get("search") == "fixed":
        return True
    return key == "trainer.entropy_lambda" and attrs.get("trainer.objective") != "joint_entropy"


# ------------------------------------------------------------------------------ grouping
def _group_of(key: str) -> str:
    return key.split(".")[0]


def _key_order(key: str):
    group = _group_of(key)
    return (GROUPS.index(group) if group in GROUPS else len(GROUPS), key != group, key)




def label_keys(runs: Sequence[Run], strategy_keys: Sequence[str] = ()) -> Tuple[List[str], List[str], bool]:
    """(environment keys, strategy keys, whether search and arch belong to the strategy).

    A key names runs apart only when it varies across them, and a config leaf only when the
    varying group options that can set it do not already determine it: its own group's option
    (arch.n_blocks says nothing arch=resnet18 does not); dataset and arch for the keys the runs'
    presets set (a preset's search.epochs follows from the arch); an experiment for any key.
    Nothing else sets another group's keys: trainer.epochs that varies along with the query or
    the arch is a difference of protocol, shown (and so an environment), never hidden behind the
    strategy.
    """
    keys = sorted({k for r in runs for k in r.attrs}, key=_key_order)
    varying = [k for k in keys if len({r.attrs.get(k) for r in runs if k not in r.unread}) > 1]
    options = [k for k in varying if k in GROUPS]
    shown = list(options)
    preset_keys = {k for r in runs for k in r.preset_keys}
    for key in varying:
        if key not in GROUPS:
            setting = [g for g in options if _can_set(g, key, preset_keys)]
            by_options = defaultdict(set)
            for r in runs:
                if key not in r.unread:
                    by_options[tuple(r.attrs.get(g) for g in setting)].add(r.attrs.get(key))
            if any(len(v) > 1 for v in by_options.values()):
                shown.append(key)
    shown.sort(key=_key_order)
    search_compared = any(_group_of(k) == "search" for k in shown)
    in_strategy = {"query"} | ({"search", "arch"} if search_compared else set())
    # `strategy_keys` (dal-report --strategy) adds keys or whole groups, e.g. trainer.objective
    strategy = [k for k in shown if _group_of(k) in in_strategy or k in strategy_keys or _group_of(k) in strategy_keys]
    return [k for k in shown if k not in strategy], strategy, search_compared


def _fill_added_keys(runs: Sequence[Run]) -> None:
    """A key some runs lack and others hold as null is one value: a key added in a later version of
    dal-run, whose null keeps the earlier behaviour (as a resumed run's config check reads it,
    state.differences). Runs made before and after it was added are then one protocol, not two
    environments told apart by `key=-` and `key=null`. The same for a key added with another
    default that keeps the earlier behaviour (state.EARLIER_VALUES)."""
    nulls = {k for r in runs for k, v in r.attrs.items() if v == "null"}
    for r in runs:
        for key in nulls - set(r.attrs) - r.unread:
            r.attrs[key] = "null"
    # a key added with another default (state.EARLIER_VALUES): its earlier value, where runs of the
    # same option have the key (query.arms is ALBL's: a margin run does not lack it)
    from dal_runner.state import EARLIER_VALUES

    for key, value in EARLIER_VALUES.items():
        group = _group_of(key)
        options = {r.attrs.get(group) for r in runs if key in r.attrs}
        for r in runs:
            if key not in r.attrs and key not in r.unread and r.attrs.get(group) in options:
                r.attrs[key] = _fmt(value)


def _label(run: Run, keys: Sequence[str]) -> str:
    """`key=value` of each key the run has: a key of another option (query.params of a custom
    strategy, for margin; experiment, for runs without one) is left out, not shown as `key=-`
    (the runs that have it show it, so labels still differ)."""
    return " ".join(f"{k}={run.attrs[k]}" for k in keys if k in run.attrs)


def _strategy_label(run: Run, keys: Sequence[str]) -> str:
    """A strategy is at least its query; a custom one (query=custom) is named by its target too,
    also where every custom run has the same one: `query=custom` alone says nothing of whose."""
    keys = list(keys or ["query"])
    if run.attrs.get("query") == "custom" and "query.target" not in keys:
        keys.insert(keys.index("query") + 1 if "query" in keys else 0, "query.target")
    return _label(run, keys) or _label(run, ["query"])  # none of the keys its own: its query says it


def _environment(run: Run, env_keys: Sequence[str]) -> str:
    return _label(run, env_keys if "dataset" in env_keys else ["dataset", *env_keys])  # the dataset always names one


def _tell_data_apart(runs: Sequence[Run], env_keys: Sequence[str]) -> List[str]:
    """Runs of one environment made on different data (summary.json data.content_sha256: another
    file or a changed one under another dataset.root; dataset.root itself is no protocol key):
    their dataset.root becomes a key of all of them where roots and data sets match one to one
    (runs made before the digest was recorded pair with those of their root), else the digest's
    first 12 characters (those runs then apart, named). Returns a note per such environment."""
    by_env: Dict[str, List[Run]] = defaultdict(list)
    for r in runs:
        by_env[_environment(r, env_keys)].append(r)
    notes = []
    for env, members in sorted(by_env.items()):
        known = [r for r in members if r.data]
        if len(digests := {r.data for r in known}) < 2:
            continue
        by_root = len({r.root for r in known}) == len(digests) == len({(r.root, r.data) for r in known})
        key = "dataset.root" if by_root else "data.content_sha256"
        for r in members if by_root else known:
            r.attrs[key] = r.root if by_root else r.data[:12]
        older = ", ".join(r.name for r in members if not r.data and not by_root)
        notes.append(f"{env}: its runs read {len(digests)} different data sets (summary.json: data.content_sha256), "
                     f"reported apart by {key}" + (f"; runs made before the digest was recorded are apart from "
                                                   f"them: {older[:200]}" if older else ""))
    return notes


def group_runs(runs: Sequence[Run], strategy_keys: Sequence[str] = ()
               ) -> Tuple[List[Run], List[Run], List[str], List[str], bool, List[str]]:
    """Label the completed runs; drop duplicates (same environment, strategy and seed).

    Returns (included, excluded, environment keys, strategy keys, search compared, notes).
    """
    included = [r for r in runs if not r.reason]
    excluded = [r for r in runs if r.reason]
    _fill_added_keys(included)
    notes = _tell_data_apart(included, label_keys(included, strategy_keys)[0])  # may add a key: labelled again
    env_keys, strategy_keys, search_compared = label_keys(included, strategy_keys)
    seen: Dict[Tuple[str, str, str], Run] = {}
    kept = []
    for r in included:
        r.environment = _environment(r, env_keys)
        r.strategy = _strategy_label(r, strategy_keys)
        key = (r.environment, r.strategy, _fmt(r.seed))
        if key in seen:
            r.reason = f"duplicate of {seen[key].name} (same environment, strategy and seed)"
            excluded.append(r)
            continue
        seen[key] = r
        kept.append(r)
    excluded.sort(key=lambda r: _natural_key(Path(r.name)))
    return kept, excluded, env_keys, strategy_keys, search_compared, notes


# ------------------------------------------------------------------------------ the report
