"""Learning curves over seeds, AUC over a label range, AUC-gain over a reference.

AUC-gain of A over reference R (active-iNAS Figure 6b): AUC(A) - AUC(R), both taken over the
label range that both curves cover, so that a curve that goes further does not gain area the
other could not have. Curves are linearly interpolated at the ends of that range (the
trapezoid rule of `auc` assumes the same straight lines between measured points).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import numpy as np

from dal_runner.metrics.auc import auc


def summarize(values: Iterable[float]) -> Tuple[float, float, int]:
    """(mean, sample standard deviation (ddof=1; nan for a single value), n) over seeds."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, 0
    std = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return float(v.mean()), std, int(v.size)


def _sorted_curve(n_labeled, accuracy) -> Tuple[np.ndarray, np.ndarray]:
    x = np.asarray(n_labeled, dtype=np.float64).ravel()
    y = np.asarray(accuracy, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError("a learning curve needs equally long, non-empty n_labeled and accuracy")
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def common_range(*n_labeled_lists) -> Tuple[float, float]:
    """The label range every curve covers: (largest first size, smallest last size).

    Raises ValueError when the curves do not overlap.
    """
    lo = max(float(np.min(n)) for n in n_labeled_lists)
    hi = min(float(np.max(n)) for n in n_labeled_lists)
    if hi < lo:
        raise ValueError(f"the learning curves do not overlap (common range would be {lo:g}..{hi:g} labels)")
    return lo, hi


def clip_curve(n_labeled, accuracy, lo: float, hi: float) -> Tuple[np.ndarray, np.ndarray]:
    """The curve restricted to [lo, hi], with linearly interpolated end points."""
    x, y = _sorted_curve(n_labeled, accuracy)
    if lo < x[0] or hi > x[-1] or hi < lo:
        raise ValueError(f"range {lo:g}..{hi:g} is not within the curve's {x[0]:g}..{x[-1]:g} labels")
    inside = (x > lo) & (x < hi)
    xs = np.concatenate([[lo], x[inside], [hi]]) if hi > lo else np.array([lo])
    return xs, np.interp(xs, x, y)


def auc_between(n_labeled, accuracy, lo: float, hi: float) -> float:
    """`auc` of the curve restricted to the label range [lo, hi]."""
    return auc(*clip_curve(n_labeled, accuracy, lo, hi))


def auc_gain(n_labeled, accuracy, ref_n_labeled, ref_accuracy) -> float:
    """AUC(curve) - AUC(reference curve) over the label range both cover."""
    lo, hi = common_range(n_labeled, ref_n_labeled)
    return auc_between(n_labeled, accuracy, lo, hi) - auc_between(ref_n_labeled, ref_accuracy, lo, hi)


Curve = Sequence[Tuple[float, float]]  # (n_labeled, accuracy) points of one run


def curve_stats(curves: Iterable[Curve]) -> List[Tuple[int, float, float, int]]:
    """Per labeled-set size: (n_labeled, mean, std, n) over curves (one per seed)."""
    by_size: Dict[float, List[float]] = defaultdict(list)
    for curve in curves:
        for n, a in curve:
            by_size[n].append(a)
    return [(n, *summarize(by_size[n])) for n in sorted(by_size)]


def mean_curve(curves: Iterable[Curve]) -> Tuple[List[float], List[float]]:
    stats = curve_stats(curves)
    return [s[0] for s in stats], [s[1] for s in stats]


def paired_auc_gain(curves: Dict[Any, Curve], reference: Dict[Any, Curve]) -> Dict[str, float]:
    """AUC-gain of curves over reference curves (both keyed by seed) on the label range all cover.

    mean, std (ddof=1) and n are over the seeds the two share; with no seed in common the
    gain of the seed-averaged curves is given, with n = 0. Raises ValueError when they do not overlap.
    """
    lo, hi = common_range(*[[n for n, _ in c] for c in [*curves.values(), *reference.values()]])
    return {**_gain_over(curves, reference, lo, hi), "from_labels": lo, "to_labels": hi}


def paired_auc_gain_by_labels(curves: Dict[Any, Curve], reference: Dict[Any, Curve]) -> List[Dict[str, float]]:
    """`paired_auc_gain` over [lo, n] for every label count n the curves measured in the range all
    cover (lo its start): how the gain builds up as the budget grows (active-iNAS Figure 6b)."""
    lo, hi = common_range(*[[n for n, _ in c] for c in [*curves.values(), *reference.values()]])
    counts = sorted({float(n) for c in curves.values() for n, _ in c if lo <= n <= hi})
    return [{**_gain_over(curves, reference, lo, n), "from_labels": lo, "to_labels": n} for n in counts]


def _gain_over(curves: Dict[Any, Curve], reference: Dict[Any, Curve], lo: float, hi: float) -> Dict[str, float]:
    gains = [auc_between(*zip(*curves[s]), lo, hi) - auc_between(*zip(*reference[s]), lo, hi)
             for s in curves if s in reference]
    mean, std, n = summarize(gains)
    if not gains:
        mean = auc_between(*mean_curve(curves.values()), lo, hi) - auc_between(*mean_curve(reference.values()), lo, hi)
    return {"mean": mean, "std": std, "n": n}
