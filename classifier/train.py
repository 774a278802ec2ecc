"""Train a category model: fit a candidate, choose its abstain threshold, score it on the frozen test part."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from classifier.model import build_candidate

TARGET_PRECISION = 0.90


@dataclass(frozen=True)
class Labelled:
    """What training needs of an example: its text, category and language."""

    text: str
    category: str
    lang: str


def choose_threshold(confidences: np.ndarray, correct: np.ndarray, target: float = TARGET_PRECISION) -> float:
    """Lowest confidence cut whose automatically routed share reaches ``target`` precision."""
    order = np.argsort(-confidences)
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target)[0]
    if len(ok) == 0:
        return 1.0
    return float(confidences[order][ok[-1]])


def fit(train: Sequence[Labelled], candidate: str, seed: int = 0) -> tuple[Pipeline, float]:
    """Fit ``candidate`` on ``train``; the threshold comes from 5-fold out-of-fold predictions."""
    texts = [e.text for e in train]
    labels = np.array([e.category for e in train])
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    oof = cross_val_predict(build_candidate(candidate, seed), texts, labels, cv=folds, method="predict_proba")
    classes = np.unique(labels)
    confidence = oof.max(axis=1)
    correct = classes[oof.argmax(axis=1)] == labels
    threshold = choose_threshold(confidence, correct)
    pipeline = build_candidate(candidate, seed).fit(texts, labels)
    return pipeline, threshold


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


def metadata_for(candidate: str, seed: int, threshold: float, metrics: dict[str, Any], classes: list[str],
                 data: dict[str, Any]) -> dict[str, Any]:
    """The metadata.json content of a freshly trained model (sha256 is added on save)."""
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return {
        "version": created.strftime("%Y%m%d-%H%M%S") + f"-{candidate}",
        "created": created.isoformat(),
        "candidate": candidate,
        "seed": seed,
        "sklearn_version": sklearn.__version__,
        "classes": classes,
        "threshold": round(threshold, 6),
        "target_precision": TARGET_PRECISION,
        "metrics": metrics,
        "data": data,
    }
