"""Train a category model: fit the candidates, choose one and its abstain threshold, score on the frozen test part.

Training is one pass: the TF-IDF features are fitted once (they see no labels) and shared by the candidates;
each candidate's ``CalibratedClassifierCV`` fits five classifiers on four fifths each (three on two thirds
from 10,000 examples on), and the same folds give out-of-fold probabilities for free. Those decide between the
candidates and set the abstain threshold, so the frozen test part is never looked at before the final score.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from joblib import parallel_config
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from classifier.model import build_classifier, build_features

TARGET_PRECISION = 0.90


@dataclass(frozen=True)
class Labelled:
    """What training needs of an example: its text, category and language."""

    text: str
    category: str
    lang: str


@dataclass(frozen=True)
class Fitted:
    candidate: str
    pipeline: Pipeline
    threshold: float
    cv_macro_f1: float  # of the out-of-fold predictions on the training data


def choose_threshold(confidences: np.ndarray, correct: np.ndarray, target: float = TARGET_PRECISION) -> float:
    """Lowest confidence cut whose automatically routed share reaches ``target`` precision."""
    order = np.argsort(-confidences, kind="stable")
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target)[0]
    if len(ok) == 0:
        return 1.0
    return float(confidences[order][ok[-1]])


def out_of_fold_proba(classifier: CalibratedClassifierCV, features: Any, labels: np.ndarray) -> np.ndarray:
    """Probabilities of each training example from the calibrated fold model that did not train on it."""
    proba = np.zeros((len(labels), len(classifier.classes_)))
    splits = classifier.cv.split(np.zeros(len(labels)), labels)
    for (_, held_out), fold_model in zip(splits, classifier.calibrated_classifiers_):
        proba[held_out] = fold_model.predict_proba(features[held_out])
    return proba


def fit_candidates(train: Sequence[Labelled], candidates: Sequence[str], seed: int = 0,
                   progress: Callable[[str], None] = lambda step: None) -> list[Fitted]:
    """Fit every candidate on ``train``; each gets its out-of-fold macro-F1 and abstain threshold.

    ``progress`` is called with the name of each finished stage (``features``, then each candidate)."""
    texts = [e.text for e in train]
    labels = np.array([e.category for e in train])
    features = build_features()
    with parallel_config(backend="threading", n_jobs=2):  # words (Python) beside chars (numpy, mostly GIL-free)
        matrix = features.fit_transform(texts)
    progress("features")
    fitted = []
    for name in candidates:
        # The fold fits release the GIL (threads: no matrix copies). One BLAS thread each: OpenBLAS threads on the
        # calibrators' small vector products cost ~20x their work (~0.2 s per class and fold instead of ~0.01 s).
        with parallel_config(backend="threading", n_jobs=-1), threadpool_limits(limits=1, user_api="blas"):
            classifier = build_classifier(name, seed, len(labels)).fit(matrix, labels)
            oof = out_of_fold_proba(classifier, matrix, labels)
        predicted = classifier.classes_[oof.argmax(axis=1)]
        threshold = choose_threshold(oof.max(axis=1), predicted == labels)
        cv_f1 = round(float(f1_score(labels, predicted, average="macro")), 4)
        pipeline = Pipeline([("features", features), ("classifier", classifier)])
        fitted.append(Fitted(name, pipeline, threshold, cv_f1))
        progress(name)
    return fitted


def score(pipeline: Pipeline, threshold: float, test: Sequence[Labelled]) -> dict[str, Any]:
    """Metrics on a labelled set: per-class P/R/F1, macro-F1, per-language macro-F1, coverage at threshold."""
    labels = [e.category for e in test]
    probabilities = pipeline.predict_proba([e.text for e in test])
    classes = [str(c) for c in pipeline.classes_]
    predicted = [classes[i] for i in probabilities.argmax(axis=1)]
    routed = probabilities.max(axis=1) >= threshold
    p, r, f, n = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    per_language = {
        lang: round(float(f1_score([l for l, e in zip(labels, test) if e.lang == lang],
                                   [q for q, e in zip(predicted, test) if e.lang == lang],
                                   average="macro", zero_division=0)), 4)
        for lang in sorted({e.lang for e in test})
    }
    routed_correct = [q == l for q, l, ok in zip(predicted, labels, routed) if ok]
    return {
        "n": len(test),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro", zero_division=0)), 4),
        "accuracy": round(float(np.mean([q == l for q, l in zip(predicted, labels)])), 4),
        "per_language_macro_f1": per_language,
        "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "f1": round(float(f[i]), 4), "support": int(n[i])} for i, c in enumerate(classes)},
        "coverage": round(float(np.mean(routed)), 4),
        "routed_precision": round(float(np.mean(routed_correct)), 4) if routed_correct else None,
    }


def metadata_for(fitted: Fitted, seed: int, metrics: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The metadata.json content of a freshly trained model (sha256 is added on save)."""
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return {
        "version": created.strftime("%Y%m%d-%H%M%S") + f"-{fitted.candidate}",
        "created": created.isoformat(),
        "candidate": fitted.candidate,
        "seed": seed,
        "sklearn_version": sklearn.__version__,
        "classes": [str(c) for c in fitted.pipeline.classes_],
        "threshold": round(fitted.threshold, 6),
        "target_precision": TARGET_PRECISION,
        "metrics": metrics,
        "data": data,
    }
