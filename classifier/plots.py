"""Confusion-matrix plot for ``gateway eval --plot`` (matplotlib, headless)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_confusion_matrix(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str], path: Path,
                          *, title: str = "") -> None:
    """Write a row-normalised confusion matrix PNG (rows: true category, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = plt.subplots(figsize=(9, 8))
    ConfusionMatrixDisplay.from_predictions(truth, predicted, labels=list(classes), normalize="true",
                                            values_format=".2f", ax=axes, colorbar=False, xticks_rotation=45)
    axes.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
