"""Area under the learning curve, normalised by the label range (so it is an accuracy)."""

from __future__ import annotations

import numpy as np


def auc(n_labeled, accuracy) -> float:
    """Trapezoid area under accuracy vs number of labels, divided by the label range.

    A single point has no range: its AUC is its accuracy. Points are sorted by label count.
    """
    x = np.asarray(n_labeled, dtype=np.float64).ravel()
    y = np.asarray(accuracy, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError("auc needs equally long, non-empty n_labeled and accuracy")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    span = x[-1] - x[0]
    if span == 0:
        return float(y.mean())
    return float(np.trapezoid(y, x) / span)
