"""dal-report: scan run folders, group them, write tables and figures of the comparison.

    dal-report PATH... [--out DIR] [--reference KEY=VALUE ...] [--alpha 0.05]

Every folder with a `.hydra/config.yaml` below a PATH is a run (single runs, multirun sweeps,
or a mix; a `report/` folder is skipped). Runs are told apart by the composed config:

- a run's *strategy* is its query, plus its search and arch when the search varies across the
  runs (active-iNAS compares iNAS with fixed architectures);
- its *environment* is everything else that varies (dataset, budget initial/batch/max_labels,
  trainer, arch when it is not part of the strategy): runs of different protocols are never
  averaged together;
- seeds of one (environment, strategy) group are averaged; std is the sample std (ddof=1).

Runs that did not complete (status.json missing or not `completed`) are listed in
excluded.csv and left out of every table. Tables are tidy CSV; figures are PNG + SVG with
bytes that do not change between two identical reports.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dal_runner.io import write_csv_atomic
from dal_runner.run_folders import (  # noqa: F401  (re-exported: the report's public names)
    REPORT_DIR, ReportError, Run, _fmt, _group_of, _label, _natural_key, find_run_folders, group_runs,
    jobs_never_started, load_run,
)
from dal_runner.report_reference import (BadReference, _reference_of, _spec, check_strategy_keys, choose_reference,
                                         parse_names, parse_reference, strategy_keys_unused, sweep_settings)

FILES = {  # name -> columns; every file dal-report writes (stale ones are removed)
    "curves.csv": ["group", "environment", "strategy", "n_labeled", "mean", "std", "n"],
    "auc.csv": ["group", "environment", "strategy", "mean", "std", "n", "seeds", "from_labels", "to_labels",
                "ranges_differ"],
    "auc_gain.csv": ["group", "environment", "strategy", "reference", "mean", "std", "n", "from_labels", "to_labels"],
    "auc_gain_by_labels.csv": ["group", "environment", "strategy", "reference", "from_labels", "to_labels", "mean",
                               "std", "n"],
    "arch_growth.csv": ["group", "environment", "strategy", "n_labeled", "mean", "std", "n"],
    "penalty.csv": ["split", "subset", "kind", "row", "column", "value", "tests"],
    "penalty_skipped.csv": ["environment", "n_labeled", "reason"],
    "penalty_sizes.csv": ["environment", "counted", "rule"],
    "excluded.csv": ["run", "state", "reason"],
}
FIGURES = ("learning_curves", "arch_growth", "penalty", "penalty_by_batch", "penalty_by_arch", "auc_gain",
           "auc_gain_by_labels")


@dataclass
class Report:
    runs: List[Run]
    excluded: List[Run]
    environment_keys: List[str]
    strategy_keys: List[str]
    reference: Dict[str, str]
    alpha: float
    tables: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    penalties: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # split -> subset -> PenaltyResult
    notes: List[str] = field(default_factory=list)
    names: Dict[str, str] = field(default_factory=dict)  # --name LABEL NAME: the figures' names of labels
    band: str = "std"  # --band: the figures' bands and error bars (report_figures.BANDS)


def check_out(out: Path, folders: Sequence[Path]) -> None:
    """--out must not be a run folder, hold one, or lie inside one (but in its report/): the
    files would mix with a run's own, and a run below it would be left out of the report."""
    out = out.resolve()
    for run in folders:
        inside = run == out or run in out.parents
        if inside and out.relative_to(run).parts[:1] != (REPORT_DIR,) or out in run.parents:
            where = ("is the run folder" if run == out else "is inside the run folder" if inside
                     else "holds the run folder")
            raise ReportError(f"--out {out}: {where} {run}; accepted: a folder outside the runs, "
                              f"e.g. {run.parent / REPORT_DIR if inside else out / REPORT_DIR} (the default: "
                              f"{REPORT_DIR}/ in the first PATH)")


def _versions_differ(runs: Sequence[Run]) -> List[str]:
    """A note where the runs averaged together were made with different code: a package's version
    or dal-runner's commit (summary.json: versions) that is not the same in all of them."""
    differ = []
    for key in sorted({k for r in runs for k in r.versions}):
        counts = Counter(r.versions[key] for r in runs if key in r.versions)  # runs older than the key: unknown
        if len(counts) > 1:
            unknown = len(runs) - sum(counts.values())
            differ.append(f"{key} " + ", ".join(f"{v} ({n} run{'s' * (n > 1)})" for v, n in sorted(counts.items()))
                          + (f", not recorded in {unknown}" if unknown else ""))
    return [f"the runs were made with different code (summary.json: versions): {'; '.join(differ)}"] if differ else []


def build_report(paths: Sequence[Path], reference: Optional[Dict[str, str]] = None, alpha: float = 0.05,
                 out: Optional[Path] = None, strategy: Sequence[str] = (), penalty_sizes: str = "badge",
                 reference_configured: bool = False) -> Report:
    """The report of the runs under `paths`. reference_configured: `reference` is the sweep's (its
    callback's, e.g. an experiment's), not typed now: one that names no strategy among these runs
    leaves the report without gains, with a note, instead of failing it."""
    from dal_runner.metrics import curves as C
    from dal_runner.metrics.auc import auc
    from dal_runner.metrics.penalty import penalty_report, t_critical, tidy

    if not 0.0 < alpha < 1.0:
        raise ReportError(f"--alpha {alpha}: accepted: a significance level in (0, 1), e.g. 0.05")
    paths = [Path(p) for p in paths]
    folders = find_run_folders(paths)
    if not folders:
        raise ReportError(f"no run folders (a folder with .hydra/config.yaml) under {', '.join(map(str, paths))}")
    if out is not None:
        check_out(Path(out), folders)
    base = Path(os.path.commonpath([p.resolve() for p in paths]))
    runs = [load_run(f, str(f.relative_to(base)) if f != base else str(f)) for f in folders]
    check_strategy_keys(runs, strategy)
    included, excluded, env_keys, strategy_keys, search_compared, data_notes = group_runs(runs, strategy)
    report = Report(included, excluded, env_keys, strategy_keys, {}, alpha)
    report.notes += jobs_never_started(paths, folders)
    if not included:
        return report
    moved = [r.name for r in included if len(r.machines) > 1]
    if moved:  # averaged like the others; the reader should know
        report.notes.append(f"{len(moved)} run(s) resumed on another machine or thread count (summary.json: "
                            f"machines), so their later rounds may differ in the last bits from an uninterrupted "
                            f"run's: {', '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}")
    report.notes += data_notes + _versions_differ(included)
    if not reference_configured:  # a sweep's own settings may name a key for runs it did not make
        report.notes += strategy_keys_unused(strategy, strategy_keys)
    try:
        report.reference = choose_reference(included, reference or {}, search_compared, env_keys, strategy_keys)
    except BadReference as e:
        if not reference_configured:
            raise
        report.notes.append(f"AUC-gain: none, as the sweep's configured reference is no reference here: {e}")
    else:
        if not report.reference and len({r.strategy for r in included}) > 1:
            # a key of the strategies, as one of the runs has it (a run may lack a key another reads)
            example = next((f"{k}={r.attrs[k]}" for k in strategy_keys or ["query"] for r in included if k in r.attrs),
                           "KEY=VALUE")
            which = ("every strategy has query=random, the default reference" if any(
                r.attrs.get("query") == "random" for r in included) else "no run has query=random" +
                (" or is a fixed ResNet-18 (search=fixed arch=resnet18), the default references" if search_compared
                 else ", the default reference"))
            report.notes.append(f"AUC-gain: none: {which}; "
                                f"dal-report --reference KEY=VALUE names one, e.g. --reference {example}")

    groups: Dict[Tuple[str, str], List[Run]] = defaultdict(list)
    for r in included:
        groups[(r.environment, r.strategy)].append(r)
    curves, aucs, gains, gains_by_labels, unmatched, growth = [], [], [], [], [], []
    order = sorted(groups, key=lambda group: (_natural_key(group[0]), _natural_key(group[1])))
    for env, strategy in order:  # budget.batch=50 before budget.batch=100, in every table and figure
        members = groups[(env, strategy)]
        name = f"{env} | {strategy}"
        for n, mean, std, count in C.curve_stats(r.curve for r in members):
            curves.append({"group": name, "environment": env, "strategy": strategy, "n_labeled": n,
                           "mean": mean, "std": std, "n": count})
        if any(len({p for _, p in r.sizes}) > 1 for r in members):  # a search that grew the model (Fig. 6a)
            for n, mean, std, count in C.curve_stats(r.sizes for r in members if r.sizes):
                growth.append({"group": name, "environment": env, "strategy": strategy, "n_labeled": n,
                               "mean": mean, "std": std, "n": count})
        mean, std, count = C.summarize(auc(*zip(*r.curve)) for r in members)
        seeds = " ".join(sorted((_fmt(r.seed) for r in members), key=_natural_key))
        # each run's AUC is over its own label range; a mean over runs of different ranges is flagged
        ranges = sorted({(min(n for n, _ in r.curve), max(n for n, _ in r.curve)) for r in members})
        if len(ranges) > 1:
            report.notes.append(f"AUC of {name}: its runs cover different label ranges "
                                f"({', '.join(f'{a}-{b}' for a, b in ranges)}); the mean mixes them")
        aucs.append({"group": name, "environment": env, "strategy": strategy, "mean": mean, "std": std,
                     "n": count, "seeds": seeds, "from_labels": min(a for a, _ in ranges),
                     "to_labels": max(b for _, b in ranges), "ranges_differ": str(len(ranges) > 1).lower()})
        if not report.reference:
            continue
        ref = _reference_of(members[0], report.reference, strategy_keys,
                            [groups[group] for group in order if group[0] == env])
        if ref is None:
            unmatched.append(name)
            continue
        pair = ({_fmt(r.seed): r.curve for r in members}, {_fmt(r.seed): r.curve for r in ref})
        try:
            gain = C.paired_auc_gain(*pair)
        except ValueError as e:
            report.notes.append(f"AUC-gain of {name}: {e}")
            continue
        keys = {"group": name, "environment": env, "strategy": strategy, "reference": ref[0].strategy}
        gains.append({**keys, **_whole_labels(gain)})
        gains_by_labels += [{**keys, **_whole_labels(row)} for row in C.paired_auc_gain_by_labels(*pair)]
    for env in dict.fromkeys(row["environment"] for row in aucs):  # strategies of one environment, side by side
        spans = {row["strategy"]: f"{row['from_labels']}-{row['to_labels']}" for row in aucs if row["environment"] == env}
        if len(set(spans.values())) > 1:
            report.notes.append(f"AUC of {env}: its strategies cover different label ranges "
                                f"({', '.join(f'{k} {v}' for k, v in spans.items())}), so their AUCs do not "
                                f"compare; auc_gain.csv compares over the range both cover")
    if unmatched:
        spec_groups = {_group_of(k) for k in report.reference}
        same = [k for k in strategy_keys if _group_of(k) not in spec_groups]  # as _reference_of pairs them
        report.notes.append(f"AUC-gain: no single reference strategy ({_spec(report.reference)} in the same "
                            f"environment{', with the same ' + ', '.join(same) if same else ''}) for "
                            f"{len(unmatched)} group(s): {'; '.join(unmatched[:5])}"
                            + ("; ..." if len(unmatched) > 5 else ""))

    penalty_rows = []
    randoms = {r.strategy for r in included if r.attrs.get("query.name", r.attrs.get("query")) == "random"}
    for split, subsets in penalty_splits(included, env_keys).items():
        results = {subset: penalty_report(records, alpha, penalty_sizes, randoms) for subset, records in subsets.items()}
        if split == "overall":  # what could not be tested is listed whether or not anything could
            skipped, overall = results["all"].skipped, results["all"]
        if not any(any(result.sizes.values()) for result in results.values()):
            if split == "overall" and overall.allowed and not any(overall.allowed.values()):
                report.notes.append("penalty matrix: not computed, BADGE's rule picks no label count here "
                                    "(why, per environment: penalty_sizes.csv); --penalty-sizes all tests every "
                                    "label count")
            elif split == "overall":  # an all-zero matrix would read as "no significant wins"
                why = " (why, per label count: penalty_skipped.csv)" if skipped else ""
                report.notes.append("penalty matrix: not computed, no (environment, label count) could be "
                                    "tested; it needs 2 strategies or more with 2 seeds or more each in one "
                                    f"environment{why}")
            continue
        empty = [subset for subset, result in results.items() if not any(result.sizes.values())]
        if empty and split != "overall":  # all zeros would read as "tested, nothing significant"
            report.notes.append(f"penalty matrix by {split}: nothing tested in {', '.join(empty)} (why: "
                                f"penalty_sizes.csv, penalty_skipped.csv); left out of its table and figure")
            results = {subset: result for subset, result in results.items() if subset not in empty}
        report.penalties[split] = results
        if split == "overall" and min(overall.fewest_seeds.values(), default=3) == 2:
            report.notes.append(f"penalty matrix: some t-tests had only 2 seeds (1 degree of freedom): at alpha "
                                f"{alpha:g} a win needs t > {t_critical(alpha, 1):.1f}, that is nearly the same "
                                "difference in both seeds, so the matrix misses most real differences; BADGE "
                                "used 5 seeds")
        for subset, result in report.penalties[split].items():
            if result.untested:  # all zeros would read as "compared, never lost"
                report.notes.append(f"penalty matrix{'' if split == 'overall' else f' by {split}, {subset}'}: "
                                    f"{', '.join(result.untested)} compared with no other strategy (why: "
                                    f"penalty_sizes.csv, penalty_skipped.csv); left out of its table and figure")
        penalty_rows += [{"split": split, "subset": subset, **row} for subset, result in report.penalties[split].items()
                         for row in tidy(result.names, result.matrix, result.tests)]
    report.tables = {
        "curves.csv": curves, "auc.csv": aucs, "auc_gain.csv": gains, "auc_gain_by_labels.csv": gains_by_labels,
        "arch_growth.csv": growth,
        "penalty.csv": penalty_rows,
        # environments in natural order (budget.batch=50 before 100), as in the other tables
        "penalty_skipped.csv": [{"environment": s.environment, "n_labeled": s.n_labeled, "reason": s.reason}
                                for s in sorted(skipped, key=lambda s: (_natural_key(s.environment), s.n_labeled))],
        "penalty_sizes.csv": [{"environment": env, "counted": " ".join(map(str, overall.sizes.get(env, []))),
                               "rule": overall.rules[env]} for env in sorted(overall.rules, key=_natural_key)],
    }
    return report


def _whole_labels(gain: Dict[str, Any]) -> Dict[str, Any]:
    """Label counts as integers where they are (the range's ends are floats)."""
    return {**gain, **{k: int(gain[k]) for k in ("from_labels", "to_labels") if float(gain[k]).is_integer()}}


def penalty_splits(runs: Sequence[Run], env_keys: Sequence[str]) -> Dict[str, Dict[str, List[dict]]]:
    """Penalty records of all environments and, where they vary, by batch size and by model (BADGE Figs 13, 14)."""
    arch_keys = [k for k in env_keys if _group_of(k) == "arch"]  # empty when the arch is part of the strategy
    subset_of = {"overall": lambda r: "all", "batch": lambda r: f"budget.batch={r.attrs.get('budget.batch', '-')}",
                 "arch": lambda r: _label(r, arch_keys)}
    splits = {}
    for split, subset in subset_of.items():
        subsets = defaultdict(list)
        for r in runs:
            subsets[subset(r)] += [{"environment": r.environment, "strategy": r.strategy, "seed": _fmt(r.seed),
                                    "n_labeled": n, "accuracy": a} for n, a in r.curve]
        if split == "overall" or len(subsets) > 1:  # one batch size or model: the overall matrix is that one
            splits[split] = {k: subsets[k] for k in sorted(subsets, key=_natural_key)}
    return splits


# ------------------------------------------------------------------------------ writing, printing
def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6f}"
    return value


def write_report(report: Report, out: Path, out_given: bool = True) -> List[Path]:
    """The tables and figures into `out`; `out_given=False`: the folder is the default one (an
    error then says so, and how to choose another)."""
    from dal_runner import report_figures

    out = Path(out)
    what = f"--out {out}" if out_given else f"{out} (the default --out: report/ in the first PATH)"
    accepted = "a folder this user can create and write" if out_given else "--out DIR, a folder this user can write"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "it is a file" if out.is_file() else e.strerror or e
        raise ReportError(f"{what}: cannot create the folder ({why}); accepted: {accepted}") from None
    if not os.access(out, os.W_OK):
        raise ReportError(f"{what}: cannot write in this folder; accepted: {accepted}")
    tables = {**report.tables, "excluded.csv": [{"run": r.name, "state": r.state, "reason": r.reason}
                                                for r in report.excluded]}
    written = []
    for name, columns in FILES.items():
        rows = [{k: _cell(v) for k, v in row.items()} for row in tables.get(name, [])]
        write_csv_atomic(out / name, rows, columns)
        written.append(out / name)
    figures = report_figures.write_figures(report, out)
    for stem in FIGURES:  # a figure an earlier report wrote here that this one has not
        for suffix in (".png", ".svg"):
            stale = out / f"{stem}{suffix}"
            if stale.exists() and stale not in figures:
                stale.unlink()
    return written + figures


def _console():
    from rich.console import Console

    # a pipe or a log file gets the table unwrapped rather than folded at 80 columns
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def print_excluded(report: Report, console, written: bool = True) -> None:
    if report.excluded:
        listed = " (listed in excluded.csv)" if written else ""
        console.print(f"excluded {len(report.excluded)} run(s) from every average{listed}:")
        for r in report.excluded:
            console.print(f"  {r.name}: {r.reason}", markup=False)


def print_summary(report: Report, out: Path, written: Sequence[Path], console=None) -> None:
    """A short table of AUC per group, the excluded runs, where the files are."""
    from rich.table import Table
    from rich.text import Text

    console = console or _console()
    several = len({r.environment for r in report.runs}) > 1
    table = Table(title="AUC of the learning curve (mean ± std over seeds)", title_justify="left")
    for name, justify in ([("environment", "left")] if several else []) + [
            ("strategy", "left"), ("AUC", "right"), ("seeds", "right")]:
        table.add_column(name, justify=justify)
    for row in report.tables.get("auc.csv", []):
        std = "" if math.isnan(row["std"]) else f" ± {row['std']:.4f}"
        cells = ([row["environment"]] if several else []) + [row["strategy"], f"{row['mean']:.4f}{std}", str(row["n"])]
        table.add_row(*(Text(c) for c in cells))
    console.print(table)
    print_excluded(report, console)
    if report.reference:
        console.print(f"AUC-gain reference: {_spec(report.reference)}", markup=False)
    skipped = report.tables.get("penalty_skipped.csv", [])
    if skipped:
        console.print(f"penalty matrix: {len(skipped)} (environment, size) cell(s) not tested "
                      "(listed in penalty_skipped.csv)", markup=False)
    for note in report.notes:
        console.print(note, markup=False)
    console.print(f"wrote {len(written)} files to {out}", markup=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        raise ReportError(message)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    from dal_runner.metrics.penalty import SIZE_RULES

    parser = _Parser(prog="dal-report", description="Learning curves, AUC, AUC-gain and pairwise penalty "
                                                    "matrices of dal-run run folders (single runs or sweeps).")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="run folders or folders of runs")
    parser.add_argument("--out", help="output folder (default: PATH/report of the first PATH)")
    parser.add_argument("--reference", nargs="+", action="extend", metavar="KEY=VALUE",
                        help="AUC-gain reference, e.g. query=random (default) or search=fixed arch=resnet18")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the penalty t-tests")
    parser.add_argument("--penalty-sizes", choices=SIZE_RULES, default="badge",
                        help="label counts the penalty matrix tests: badge (the paper's: rounds 1, 2, 4, ... while "
                             "random sampling is below 99%% of its final accuracy; default), badge_code (the rule of the "
                             "authors' released script: the initial count too, then rounds 1, 2, 4, ... while "
                             "random is at most 99%%) or all")
    parser.add_argument("--band", choices=("std", "sem", "ci95"), default="std",
                        help="the figures' bands and error bars around a mean over seeds: std (default), sem "
                             "(standard error) or ci95 (Student's t 95%% interval); the tables give mean, std and n")
    parser.add_argument("--name", nargs=2, action="append", metavar=("LABEL", "NAME"), default=[],
                        help="a strategy's or environment's name in the figures, e.g. --name query=margin Margin "
                             "(the tables keep the config's labels); repeat it for several")
    parser.add_argument("--strategy", nargs="+", action="extend", metavar="KEY", default=[],
                        help="config keys or groups that belong to the compared strategy besides the query, "
                             "e.g. trainer.objective (default: query; + search and arch when search varies)")
    args = parser.parse_args(list(argv))
    for option, values in (("PATH", args.paths), ("--reference", args.reference), ("--strategy", args.strategy),
                           ("--out", [] if args.out is None else [args.out])):
        if any(not v.strip() for v in values or ()):
            raise ReportError(f"{option} '': an empty value (an unset shell variable?); accepted: "
                              + {"PATH": "a run folder or a folder of runs", "--reference": "KEY=VALUE",
                                 "--out": "a folder"}.get(option, "a config key, e.g. trainer.objective"))
    args.paths = [Path(p) for p in args.paths]
    args.out = None if args.out is None else Path(args.out)
    # `--reference query=random SWEEP`: the option's values took the folders given after them
    for option in ("reference", "strategy"):
        values = getattr(args, option) or []
        moved = [v for v in values if "=" not in v and Path(v).is_dir()]
        args.paths += [Path(v) for v in moved]
        setattr(args, option, [v for v in values if v not in moved] or ([] if option == "strategy" else None))
    if not args.paths:
        parser.error("the following arguments are required: PATH")
    return args


def main(argv: Optional[Sequence[str]] = None, reference_configured: bool = False) -> int:
    """dal-report ARGV; reference_configured: the sweep's callback, whose --reference came from
    the sweep's config (see build_report)."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        out = args.out or args.paths[0] / REPORT_DIR
        if not args.strategy and args.reference is None and not reference_configured:
            settings = sweep_settings(args.paths)  # what the sweep's own report compares
            if settings is not None:
                args.strategy, reference, source = settings
                args.reference, reference_configured = reference or None, bool(reference)
                given = (["--strategy", *args.strategy] if args.strategy else []) + \
                    (["--reference", *reference] if reference else [])
                print(f"dal-report: {' '.join(given)} (from {source})", file=sys.stderr)
        report = build_report(args.paths, parse_reference(args.reference), args.alpha, out=out,
                              strategy=args.strategy, penalty_sizes=args.penalty_sizes,
                              reference_configured=reference_configured)
        if not report.runs:
            print_excluded(report, _console(), written=False)
            raise ReportError(f"none of the {len(report.excluded)} run folder(s) completed; nothing to report")
        report.band = args.band
        report.names = parse_names(args.name, {r.strategy for r in report.runs} | {r.environment for r in report.runs})
        written = write_report(report, out, out_given=args.out is not None)
        print_summary(report, out, written)
        return 0
    except ReportError as e:
        print(f"dal-report: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
