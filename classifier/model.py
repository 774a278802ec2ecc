"""A trained category model: a scikit-learn Pipeline plus its metadata and abstain threshold.

The pipeline is TF-IDF word 1–2-grams + char_wb 2–5-grams, then one of two candidates, each calibrated by
``CalibratedClassifierCV`` (five folds, three from 10,000 examples on; sigmoid): ``svm`` (LinearSVC) or ``logreg`` (LogisticRegression).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from classifier.features import CompactTfidfVectorizer

CANDIDATES = ("svm", "logreg")
#: calibration folds; a large training set needs fewer (each fold is big) and trains in about half the time
CALIBRATION_FOLDS, LARGE_SET_FOLDS, LARGE_SET = 5, 3, 10_000


@dataclass(frozen=True)
class Prediction:
    category: str
    confidence: float
    abstained: bool
    top: tuple[tuple[str, float], ...]  # the three most probable categories


def build_features() -> FeatureUnion:
    """Word 1–2-grams and char_wb 2–5-grams (sublinear TF-IDF); min_df=2 keeps the vocabulary small."""
    return FeatureUnion(
        [
            ("words", CompactTfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)),
            ("chars", CompactTfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True,
                                             dtype=np.float32)),
        ]
    )


def calibration_folds(seed: int = 0, n_samples: int = 0) -> StratifiedKFold:
    folds = LARGE_SET_FOLDS if n_samples >= LARGE_SET else CALIBRATION_FOLDS
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)


def build_classifier(name: str, seed: int = 0, n_samples: int = 0) -> CalibratedClassifierCV:
    """A fresh calibrated classifier by candidate name (``svm`` or ``logreg``) for ``n_samples`` examples."""
    if name == "svm":
        base: Any = LinearSVC(C=0.5, random_state=seed)
    elif name == "logreg":
        base = LogisticRegression(C=30.0, tol=1e-3, max_iter=300, random_state=seed)
    else:
        raise ValueError(f"unknown candidate {name!r}; choose one of {', '.join(CANDIDATES)}")
    return CalibratedClassifierCV(base, cv=calibration_folds(seed, n_samples), method="sigmoid")


def build_candidate(name: str, seed: int = 0) -> Pipeline:
    """A fresh, unfitted candidate pipeline by name."""
    return Pipeline([("features", build_features()), ("classifier", build_classifier(name, seed))])


def calibrated_proba(classifier: CalibratedClassifierCV, features: Any) -> np.ndarray:
    """``classifier.predict_proba(features)`` for sigmoid-calibrated linear models, in a few numpy operations.

    Same arithmetic as scikit-learn (per fold: one-vs-rest scores, a sigmoid per class, normalised; then the
    mean over folds), without the per-class input validation that made one message cost milliseconds.
    """
    n_classes = len(classifier.classes_)
    if classifier.method != "sigmoid" or n_classes < 3:
        return np.asarray(classifier.predict_proba(features))
    total = np.zeros((features.shape[0], n_classes))
    for fold in classifier.calibrated_classifiers_:
        scores = features @ fold.estimator.coef_.T + fold.estimator.intercept_
        a = np.array([c.a_ for c in fold.calibrators])
        b = np.array([c.b_ for c in fold.calibrators])
        proba = expit(-(a * scores + b))
        sums = proba.sum(axis=1, keepdims=True)
        total += np.divide(proba, sums, out=np.full_like(proba, 1 / n_classes), where=sums != 0)
    return total / len(classifier.calibrated_classifiers_)


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
        """One :class:`Prediction` per text (batch texts: one call is much cheaper than many)."""
        cut = self.threshold if threshold is None else threshold
        features, classifier = self.pipeline[:-1], self.pipeline[-1]
        probabilities = calibrated_proba(classifier, features.transform(list(texts)))
        classes = self.classes
        out = []
        for row in probabilities:
            order = np.argsort(row)[::-1][:3]
            top = tuple((classes[i], round(float(row[i]), 4)) for i in order)
            out.append(Prediction(top[0][0], top[0][1], top[0][1] < cut, top))
        return out
