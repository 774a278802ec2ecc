"""A trained category model: a scikit-learn Pipeline plus its metadata and abstain threshold."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC


@dataclass(frozen=True)
class Prediction:
    category: str
    confidence: float
    abstained: bool
    top: tuple[tuple[str, float], ...]  # the three most probable categories


def _features() -> FeatureUnion:
    return FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)),
        ]
    )


def build_candidate(name: str, seed: int = 0) -> Pipeline:
    """A fresh, unfitted candidate pipeline by name (``svm`` or ``logreg``)."""
    if name == "svm":
        classifier: Any = CalibratedClassifierCV(LinearSVC(C=0.5, random_state=seed), cv=5, method="sigmoid")
    elif name == "logreg":
        classifier = CalibratedClassifierCV(
            LogisticRegression(C=10.0, max_iter=2000, random_state=seed), cv=5, method="isotonic"
        )
    else:
        raise ValueError(f"unknown candidate {name!r}; choose svm or logreg")
    return Pipeline([("features", _features()), ("classifier", classifier)])


CANDIDATES = ("svm", "logreg")


class CategoryModel:
    """Predicts a category with a calibrated confidence; abstains below the model's threshold."""

    def __init__(self, pipeline: Pipeline, metadata: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.metadata = metadata

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.pipeline.classes_]

    def predict(self, texts: Sequence[str], *, threshold: float | None = None) -> list[Prediction]:
        """One :class:`Prediction` per text."""
        cut = self.threshold if threshold is None else threshold
        probabilities = self.pipeline.predict_proba(list(texts))
        classes = self.classes
        out = []
        for row in probabilities:
            order = np.argsort(row)[::-1][:3]
            top = tuple((classes[i], round(float(row[i]), 4)) for i in order)
            out.append(Prediction(top[0][0], top[0][1], top[0][1] < cut, top))
        return out
