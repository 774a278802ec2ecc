"""Plots for ``gateway eval --plot DIR`` (matplotlib, headless): per eval set a confusion matrix and a reliability
diagram, ``<set>-confusion.png`` and ``<set>-reliability.png``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier.evalsets import right

if TYPE_CHECKING:
    from classifier.workflow import SetRun

BINS = 10


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_set_plots(run: SetRun, directory: Path, *, title: str = "") -> tuple[Path, Path]:
    """Write the set's two PNGs into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    name = run.eval_set.name
    return (save_confusion_matrix(run, directory / f"{name}-confusion.png", title=f"{title} — {name}"),
            save_reliability_diagram(run, directory / f"{name}-reliability.png", title=f"{title} — {name}"))


def save_confusion_matrix(run: SetRun, path: Path, *, title: str = "") -> Path:
    """Row-normalised confusion matrix in the set's labels (rows: truth; columns: predicted, mapped to them)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    confusion = run.scores["confusion"]
    matrix = np.array(confusion["matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(5, 0.8 * len(confusion["labels"]) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    ConfusionMatrixDisplay(normalised, display_labels=confusion["labels"]).plot(
        ax=axes, colorbar=False, values_format=".2f", xticks_rotation=45)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def save_reliability_diagram(run: SetRun, path: Path, *, title: str = "") -> Path:
    """Share of right predictions against confidence (10 bins), with the number of messages per bin below."""
    plt = _pyplot()
    confidence = np.array([p.confidence for p in run.predictions])
    correct = right(run.eval_set, [p.category for p in run.predictions])
    cuts = [p.threshold for p in run.predictions]
    edges = np.linspace(0, 1, BINS + 1)
    which = np.clip(np.digitize(confidence, edges) - 1, 0, BINS - 1)
    counts = np.bincount(which, minlength=BINS)
    hits = np.bincount(which, weights=correct.astype(float), minlength=BINS)
    centres = (edges[:-1] + edges[1:]) / 2
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    filled = counts > 0
    top.plot(centres[filled], hits[filled] / counts[filled], marker="o", label="share right")
    if cuts:
        top.axvspan(min(cuts), max(cuts), color="orange", alpha=0.2, label="abstain thresholds")
    top.set_ylabel("share of predictions right")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(title)
    bottom.bar(centres, counts, width=1 / BINS * 0.9)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("messages")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
