"""dal-report's figures, each as PNG and SVG with bytes that two identical reports reproduce.

- learning_curves: mean test accuracy over seeds vs labels, with a band (dal-report --band: +-1 std,
  +-1 standard error or a 95% t-interval), one panel per environment;
- penalty, penalty_by_batch, penalty_by_arch: pairwise penalty matrices with their column
  means in a row below (BADGE Figures 4, 13, 14; lower column mean is better);
- auc_gain: AUC-gain over the reference per strategy and environment (active-iNAS Figure 6b);
- arch_growth: mean parameters of the rounds' models vs labels, where a search grew them
  (active-iNAS Figure 6a, over seeds), one panel per environment.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dal_runner.figures import save_figure  # noqa: E402
from dal_runner.run_folders import _natural_key  # noqa: E402

# save_figure drops PNG/SVG dates and software names; SVG element ids hash with this salt
# instead of a random one, so the same figure is the same bytes.
RC = {"svg.hashsalt": "dal-runner-report", "svg.fonttype": "path"}
PENALTY_TITLES = {"overall": "all environments", "batch": "by batch size", "arch": "by model"}


def _tight_layout(fig) -> None:
    """tight_layout, without matplotlib's warning on the terminal where long strategy labels leave it
    no room (the figure is saved with bbox_inches="tight", which fits them)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tight layout not applied")
        fig.tight_layout()


def _wrap(text: str, width: int = 42) -> str:
    return textwrap.fill(text, width, break_on_hyphens=False, break_long_words=False)  # never inside a word


def _save(draw: Callable[[], "plt.Figure"], out: Path, stem: str) -> List[Path]:
    paths = []
    with plt.rc_context(RC):
        for suffix in (".png", ".svg"):
            path = out / f"{stem}{suffix}"
            save_figure(draw(), path)  # drawn once per format: save_figure closes the figure
            paths.append(path)
    return paths


# a query keeps its colour in every report (figures of several reports side by side in a paper)
QUERY_COLORS = ("random", "softmax_response", "margin", "entropy", "mc_dropout", "coreset", "badge", "albl")


def _colors(names: Sequence[str]) -> Dict[str, tuple]:
    """Strategy label -> colour: a built-in query that no other label shares has its own colour
    (query=margin is the same colour in every report, also beside a custom strategy or `--strategy`
    keys); the other labels take the colours left, in sorted order (tab10's two spare ones first,
    then tab20's lighter shades)."""
    tab10, tab20 = plt.get_cmap("tab10"), plt.get_cmap("tab20")
    queries = {name: dict(part.partition("=")[::2] for part in name.split()).get("query") for name in names}
    counts = Counter(queries.values())
    colors = {name: tab10(QUERY_COLORS.index(q)) for name, q in queries.items() if q in QUERY_COLORS and counts[q] == 1}
    spare = [tab10(i) for i in range(len(QUERY_COLORS), 10)] + [tab20(2 * i + 1) for i in range(10)] + \
        [tab10(i) for i in range(len(QUERY_COLORS))]
    free = [c for c in spare if c not in colors.values()] or spare
    for i, name in enumerate(sorted(n for n in names if n not in colors)):
        colors[name] = free[i % len(free)]
    return colors


def _n(value) -> str:
    """A label count as a whole number where it is one (a range's ends are floats)."""
    return str(int(value)) if float(value).is_integer() else f"{float(value):g}"


BANDS = {"std": "± 1 std", "sem": "± 1 standard error", "ci95": "± 95% t-interval"}  # dal-report --band


def _half_width(row: dict, band: str) -> float:
    """The band's half-width around a mean over row["n"] seeds: the std, the standard error
    std / sqrt(n), or Student's t(0.975, n - 1) x the standard error; nan for one seed (no band)."""
    std, n = float(row["std"]), int(row["n"])
    if band == "std" or math.isnan(std) or n < 2:
        return std
    from scipy.stats import t as student_t

    sem = std / math.sqrt(n)
    return sem if band == "sem" else float(student_t.ppf(0.975, n - 1)) * sem


def _grid(n: int, ncols: int = 3):
    ncols = min(ncols, n)
    return math.ceil(n / ncols), ncols


# ------------------------------------------------------------------------------ learning curves
def learning_curves(rows: Sequence[dict], colors: Dict[str, tuple], ylabel: str = "test accuracy (mean ± 1 std)",
                    log: bool = False, common: str = "", sharey: bool = False) -> "plt.Figure":
    """Mean over seeds vs labels with a band of the rows' "std" (the half-width write_figures puts
    there: 1 std by default), one panel per environment: test accuracy, or (arch_growth) the rounds'
    parameter counts on a log axis, where the band is mean x/÷ (1 + h / mean) (mean - h can be below
    0). `common`: what every run shares that the labels leave out (query=softmax_response in a report
    of one query), in each panel's title. `sharey`: one y scale for every panel (one data set's)."""
    by_env: Dict[str, Dict[str, List[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_env[r["environment"]][r["strategy"]].append(r)
    envs = sorted(by_env, key=_natural_key)
    nrows, ncols = _grid(len(envs))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False, sharey=sharey)
    handles = {}
    for ax, env in zip(axes.flat, envs):
        seeds = set()
        for strategy in sorted(by_env[env]):
            points = sorted(by_env[env][strategy], key=lambda r: r["n_labeled"])
            x = np.array([p["n_labeled"] for p in points], dtype=float)
            mean = np.array([p["mean"] for p in points])
            std = np.nan_to_num(np.array([p["std"] for p in points], dtype=float))  # one seed: no band
            seeds |= {p["n"] for p in points}
            # a model's size holds from its round to the next (steps, as each run's arch_growth.png)
            step = {"drawstyle": "steps-post"} if log else {}
            (handles[strategy],) = ax.plot(x, mean, marker="o", ms=3, lw=1.4, color=colors[strategy], **step)
            factor = 1.0 + std / np.where(mean > 0, mean, 1.0)
            # an accuracy band stops at 0 and 1 (a t-interval over 2 seeds is 12.7 standard errors wide)
            low, high = (mean / factor, mean * factor) if log else (np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1))
            ax.fill_between(x, low, high, color=colors[strategy], alpha=0.18, lw=0, step="post" if log else None)
        n = f"{min(seeds)}" if len(seeds) == 1 else f"{min(seeds)}-{max(seeds)}"
        ax.set_title(_wrap(f"{env}{', ' + common if common else ''} ({n} seed{'s' if max(seeds) > 1 else ''})", 60),
                     fontsize=9)
        ax.set_xlabel("labeled examples")
        ax.set_ylabel(ylabel)
        ax.yaxis.set_tick_params(labelleft=True)  # sharey hides them on inner panels
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(envs):]:
        ax.set_visible(False)
    _tight_layout(fig)
    # one legend for every panel, below them (a strategy has the same colour everywhere)
    fig.legend([handles[s] for s in sorted(handles)], sorted(handles), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(3 if ncols > 1 else 2, len(handles)), fontsize=8, frameon=False)
    return fig


# ------------------------------------------------------------------------------ penalty matrices
def _penalty_panel(fig, cell, result, title: str, vmax: float, rename: Callable[[str], str] = str) -> None:
    names, matrix, means = [rename(n) for n in result.names], result.matrix, result.column_means
    k = len(names)
    inner = cell.subgridspec(2, 1, height_ratios=[k, 1], hspace=0.08)
    ax, ax_mean = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
    ax.set_anchor("S")  # square cells leave slack: keep the column means right below the matrix
    ax_mean.set_anchor("N")
    tests = result.tests if result.tests is not None else np.ones_like(matrix)
    never = (tests == 0) & ~np.eye(k, dtype=bool)  # a pair never compared: no number, a grey cell
    for axis, values, blank in ((ax, matrix, never), (ax_mean, means[None, :], np.zeros((1, k), dtype=bool))):
        axis.imshow(np.ma.masked_array(values, blank), cmap=plt.get_cmap("Reds").with_extremes(bad="0.85"),
                    vmin=0.0, vmax=vmax, aspect="equal")
        for (i, j), v in np.ndenumerate(values):
            axis.text(j, i, "n/a" if blank[i, j] else f"{v:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if v > 0.6 * vmax and not blank[i, j] else "black")
    labels = [_wrap(n, 30) for n in names]
    ax.set_xticks(range(k), [""] * k)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax_mean.set_xticks(range(k), labels, fontsize=7, rotation=40, ha="right", rotation_mode="anchor")
    ax_mean.set_yticks([0], ["column mean"], fontsize=7)
    n_env = sum(1 for counted in result.sizes.values() if counted)  # an environment with no size tested counts nothing
    left_out = len(result.sizes) - n_env
    note = f", {left_out} left out: see penalty_sizes.csv, penalty_skipped.csv" if left_out else ""
    note += "; n/a: a pair never compared" if never.any() else ""
    detail = f"({n_env} environment{'s' if n_env != 1 else ''}{note}; row beats column)"
    ax.set_title(f"{_wrap(title, 50)}\n{_wrap(detail, 50)}", fontsize=8)


def penalty_figure(results: Dict[str, object], title: str, rename: Callable[[str], str] = str) -> "plt.Figure":
    subsets = list(results)
    k = max(len(r.names) for r in results.values())
    vmax = max([1.0] + [float(r.matrix.max()) for r in results.values() if r.matrix.size])
    nrows, ncols = _grid(len(subsets))
    side = 1.2 + 0.55 * k
    fig = plt.figure(figsize=(ncols * (side + 2.2), nrows * (side + 2.0)))
    grid = fig.add_gridspec(nrows, ncols, wspace=0.9, hspace=0.6)
    for index, subset in enumerate(subsets):
        name = title if subset == "all" else f"{title}: {rename(subset)}"
        _penalty_panel(fig, grid[index // ncols, index % ncols], results[subset], name, vmax, rename)
    return fig


# ------------------------------------------------------------------------------ AUC-gain
def auc_gain_bars(rows: Sequence[dict], colors: Dict[str, tuple], reference: str, common: str = "",
                  band: str = BANDS["std"]) -> "plt.Figure":
    rows = [r for r in rows if r["strategy"] != r["reference"]]
    envs = sorted({r["environment"] for r in rows}, key=_natural_key)
    strategies = sorted({r["strategy"] for r in rows})
    width = min(0.35, 0.8 / len(strategies))
    # each environment's tick label, wrapped at 24 characters of 7 pt type, needs about 1.4 in of the axes
    # (+ 2 in for the legend at the right, outside the axes)
    fig, ax = plt.subplots(figsize=(2.0 + max(5.0, 1.0 + len(envs) * max(1.8, 0.6 + 0.35 * len(strategies))), 4.0))
    for s_index, strategy in enumerate(strategies):
        mine = {r["environment"]: r for r in rows if r["strategy"] == strategy}
        x = [e_index + width * (s_index + 0.5 - len(strategies) / 2) for e_index, env in enumerate(envs) if env in mine]
        y = [mine[env]["mean"] for env in envs if env in mine]
        err = [0.0 if math.isnan(mine[env]["std"]) else mine[env]["std"] for env in envs if env in mine]
        ax.bar(x, y, width * 0.92, yerr=err, capsize=3, color=colors[strategy], label=_wrap(strategy, 30),
               error_kw={"lw": 0.8})
    ax.axhline(0.0, color="black", lw=0.8)
    ranges = {env: sorted({(r["from_labels"], r["to_labels"]) for r in rows if r["environment"] == env}) for env in envs}
    ax.set_xticks(range(len(envs)), [_wrap(e, 24) + "\n" + ("labels " + " | ".join(f"{_n(a)}-{_n(b)}" for a, b in ranges[e])
                                                           if len(ranges[e]) <= 2 else "label ranges differ")
                                     for e in envs], fontsize=7)
    spread = any(not math.isnan(r["std"]) for r in rows)
    ax.set_ylabel(f"AUC-gain (accuracy; {band} over seeds)" if spread else "AUC-gain (accuracy; 1 seed: no spread)")
    ax.set_title(_wrap(f"AUC-gain over the reference {reference}, over the label range both curves cover"
                       f"{'; all runs: ' + common if common else ''}", 70), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # clear of the bars
    _tight_layout(fig)
    return fig


def auc_gain_by_labels(rows: Sequence[dict], reference: str, common: str = "", band: str = BANDS["std"]) -> "plt.Figure":
    """One panel per strategy, one line per environment: the AUC-gain over [first common label
    count, x] against x (active-iNAS Figure 6b: softmax response over passive learning, by model)."""
    rows = [r for r in rows if r["strategy"] != r["reference"]]
    strategies = sorted({r["strategy"] for r in rows}, key=_natural_key)
    envs = sorted({r["environment"] for r in rows}, key=_natural_key)
    palette = plt.get_cmap("Dark2")  # environments: not tab10, whose colours are the queries' elsewhere
    nrows, ncols = _grid(len(strategies))
    # one y scale for every panel: the strategies' gains are compared across panels
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False, sharey=True)
    for ax, strategy in zip(axes.flat, strategies):
        for e_index, env in enumerate(envs):
            points = sorted((r for r in rows if r["strategy"] == strategy and r["environment"] == env),
                            key=lambda r: r["to_labels"])
            if not points:
                continue
            x = np.array([p["to_labels"] for p in points], dtype=float)
            mean = np.array([p["mean"] for p in points])
            std = np.nan_to_num(np.array([p["std"] for p in points], dtype=float))  # one seed: no band
            color = palette(e_index % palette.N)
            ax.plot(x, mean, marker="o", ms=3, lw=1.4, color=color, label=_wrap(env, 40))
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, lw=0)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_title(_wrap(f"{strategy} over {reference}{'; ' + common if common else ''}", 60), fontsize=9)
        ax.set_xlabel("labeled examples (end of the range)")
        spread = any(not math.isnan(r["std"]) for r in rows if r["strategy"] == strategy)
        ax.set_ylabel("AUC-gain from the first label count" + (f" ({band})" if spread else " (1 seed)"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(strategies):]:
        ax.set_visible(False)
    _tight_layout(fig)
    return fig


def write_figures(report, out: Path) -> List[Path]:
    """Draw every figure the report has data for; returns the paths written. `report.names`
    (dal-report --name LABEL NAME) renames strategies and environments in the figures, which keep
    their colours; the tables keep the labels of the config."""
    def rename(label: str) -> str:  # a $ drawn as it is, not as the start of matplotlib's math text
        return report.names.get(label, label).replace("$", r"\$")

    def drawn(row: dict) -> dict:  # renamed, and "std" the half-width of the band --band asks for
        return {**{k: rename(v) if k in ("strategy", "environment", "reference") else v for k, v in row.items()},
                **({"std": _half_width(row, report.band)} if "std" in row and "n" in row else {})}

    tables = {name: [drawn(row) for row in rows] for name, rows in report.tables.items()}
    band = BANDS[report.band]
    colors = {rename(k): v for k, v in _colors(sorted({r["strategy"] for r in report.tables["auc.csv"]})).items()}
    common = _common_options(report)
    # accuracy on one data set: one y scale, so that panels compare by eye; data sets of other accuracies
    # (digits at 0.95, CIFAR-100 at 0.3) each their own
    one_set = len({(r.attrs.get("dataset"), r.attrs.get("dataset.id"), r.attrs.get("dataset.path"))
                   for r in report.runs}) == 1
    paths = _save(lambda: learning_curves(tables["curves.csv"], colors, f"test accuracy (mean {band})", common=common,
                                          sharey=one_set), out, "learning_curves")
    if tables.get("arch_growth.csv"):
        paths += _save(lambda: learning_curves(tables["arch_growth.csv"], colors, "parameters of the round's model\n"
                                               f"(mean over seeds; band ×/÷ 1 + h/mean, h: {band.lstrip('± ')})",
                                               log=True, common=common),
                       out, "arch_growth")
    for split, results in report.penalties.items():
        stem = "penalty" if split == "overall" else f"penalty_by_{split}"
        paths += _save(lambda: penalty_figure(results, f"Pairwise penalty, {PENALTY_TITLES[split]}", rename), out, stem)
    if any(r["strategy"] != r["reference"] for r in tables["auc_gain.csv"]):
        reference = rename(" ".join(f"{k}={v}" for k, v in report.reference.items()))
        paths += _save(lambda: auc_gain_bars(tables["auc_gain.csv"], colors, reference, common, band), out, "auc_gain")
        paths += _save(lambda: auc_gain_by_labels(tables["auc_gain_by_labels.csv"], reference, common, band), out,
                       "auc_gain_by_labels")
    return paths


def _common_options(report) -> str:
    """The search and query every run shares, which no label shows (a report of one query's runs
    said nothing of the query): e.g. 'query=softmax_response'."""
    shown = set(report.environment_keys) | set(report.strategy_keys)
    common = []
    for group in ("search", "query"):
        values = {r.attrs.get(group) for r in report.runs}
        if group not in shown and len(values) == 1 and None not in values:
            common.append(f"{group}={values.pop()}")
    return " ".join(common)
