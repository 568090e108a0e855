"""Per-run figures (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dal_runner.io import write_bytes_atomic  # noqa: E402


def save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".")
    # fixed metadata so two identical runs write identical bytes
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None} if fmt in ("svg", "pdf") else None
    fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    write_bytes_atomic(Path(path), buf.getvalue())


def learning_curve(rounds: List[Dict], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    x = [r["n_labeled"] for r in rounds]
    y = [r["test_accuracy"] for r in rounds]
    ax.plot(x, y, marker="o", ms=3)
    ax.set_xlabel("labeled examples")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def arch_growth(rounds: List[Dict], title: str, path: Path) -> None:
    """Architecture capacity against labels (active-iNAS Figure 6a): parameters, each round's A(B, i, j)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    x = [r["n_labeled"] for r in rounds]
    y = [r["n_params"] for r in rounds]
    ax.step(x, y, where="post", marker="o", ms=3)
    last, middle = None, (min(x) + max(x)) / 2
    for r in rounds:
        if r["arch"] != last:  # labels on the right half extend leftwards, so they stay in the frame
            right = r["n_labeled"] > middle
            ax.annotate(r["arch"], (r["n_labeled"], r["n_params"]), fontsize=7, rotation=20,
                        xytext=(-3 if right else 3, 4), textcoords="offset points", ha="right" if right else "left")
            last = r["arch"]
    ax.margins(x=0.05, y=0.15)  # room for the labels above the highest step, inside the frame
    ax.set_xlabel("labeled examples")
    ax.set_ylabel("parameters")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
