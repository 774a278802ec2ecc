"""Train category models: candidates on our corpus plus real data, their abstain thresholds, per-class metrics.

Training data: the corpus' train part; the train parts of the real sources (:mod:`classifier.realdata`), each
source weighted to count a candidate's share of the corpus (they are English: a small share keeps DE and NL
strong, and the all-bug S2R reports get less than NLBSE so that ``incident`` does not become a sink);
operators' corrections (weight 1 each). The TF-IDF features are fitted once per mix (they see no labels)
and shared by the candidates of that mix. Each candidate's ``CalibratedClassifierCV`` fits five classifiers on
four fifths each (three on two thirds from 10,000 examples on), and the same folds give out-of-fold
probabilities for free.

Abstain thresholds, per category: the lowest cut that keeps automatically routed corpus mail ≥ 90 % precise
(out-of-fold, one cut for all), raised for a category until mail predicted as it in each real dev set is routed
≥ 85 % precise (when predicted there at least ``MIN_PREDICTIONS`` times). The raised cuts apply to mail in the
real sets' language (English); German and Dutch mail, for which only our corpus speaks, keeps the corpus cut.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from joblib import parallel_config
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.pipeline import FeatureUnion, Pipeline
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from classifier.evalsets import REAL_PRECISION
from classifier.language import detect_language
from classifier.model import (MAX_CHARS, SUBJECT_TIMES, CategoryModel, Prediction, build_classifier, build_features,
                              model_input)
from classifier.taxonomy import LANGUAGES

TARGET_PRECISION = 0.90
MIN_PREDICTIONS = 10
#: our own mail's weight per category (others 1): a missed outage pages nobody, so outages count double
OWN_WEIGHTS = {"outage": 2.0}
#: the languages of the real dev sets: the per-category cuts they raise apply to mail in these languages
REAL_LANGUAGES = ("en",)


@dataclass(frozen=True)
class Labelled:
    """What training needs of an example: its text, category and language, and which real source it is from."""

    text: str
    category: str
    lang: str
    source: str = ""  # "" for our own mail (corpus, corrections), else the real source's name

    @property
    def real(self) -> bool:
        return bool(self.source)


@dataclass(frozen=True)
class Candidate:
    name: str  # letters only: it ends the version name
    classifier: str  # svm or logreg
    shares: Mapping[str, float]  # real source → its total weight relative to the corpus'; none: corpus only


CANDIDATES = {c.name: c for c in (Candidate("svm", "svm", {"nlbse": 0.4, "s2r": 0.1}),
                                  Candidate("logreg", "logreg", {"nlbse": 0.3, "s2r": 0.1}),
                                  Candidate("corpus", "svm", {}))}


@dataclass(frozen=True)
class Fitted:
    candidate: Candidate
    pipeline: Pipeline
    corpus_cut: float  # lowest confidence at which corpus mail is routed ≥ 90 % precise (out of fold)
    cv_macro_f1: float  # of the out-of-fold predictions on the corpus' training examples

    def model(self, cuts: Mapping[str, float] | None = None) -> CategoryModel:
        metadata = {"version": self.candidate.name, "threshold": self.corpus_cut, "max_chars": MAX_CHARS,
                    "subject_times": SUBJECT_TIMES, "class_thresholds_languages": list(REAL_LANGUAGES),
                    "class_thresholds": dict(cuts or {}), "languages": list(LANGUAGES)}
        return CategoryModel(self.pipeline, metadata)


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


def training_mix(own: Sequence[Labelled], real: Sequence[Labelled], shares: Mapping[str, float]
                 ) -> tuple[list[Labelled], np.ndarray]:
    """The examples a candidate trains on and their sample weights: our own mail 1 each (:data:`OWN_WEIGHTS`),
    each real source its share of our own mail's count."""
    used = [e for e in real if shares.get(e.source, 0) > 0]
    counts = {name: sum(e.source == name for e in used) for name in shares}
    weights = [OWN_WEIGHTS.get(e.category, 1.0) for e in own]
    weights += [shares[e.source] * len(own) / counts[e.source] for e in used]
    return [*own, *used], np.array(weights)


def fit_features(texts: Sequence[str]) -> tuple[FeatureUnion, Any]:
    """Fitted features and the matrix of ``texts`` (as the model reads them, :func:`classifier.model.model_input`)."""
    features = build_features()
    with parallel_config(backend="threading", n_jobs=2):  # words (Python) beside chars (numpy, mostly GIL-free)
        matrix = features.fit_transform([model_input(t, MAX_CHARS, SUBJECT_TIMES) for t in texts])
    return features, matrix


def fit_candidate(candidate: Candidate, features: FeatureUnion, matrix: Any, train: Sequence[Labelled],
                  weights: np.ndarray, seed: int = 0) -> Fitted:
    """Fit one candidate on prepared features; its corpus cut and CV macro-F1 come from its out-of-fold predictions."""
    labels = np.array([e.category for e in train])
    # One fold after the other: liblinear seeds one random generator for the whole process, so folds fitted in
    # parallel threads drew from it in whatever order they ran and the same seed gave slightly different
    # models. One BLAS thread: OpenBLAS threads on the calibrators' small vector products cost ~20x their work.
    with parallel_config(backend="threading", n_jobs=1), threadpool_limits(limits=1, user_api="blas"):
        classifier = build_classifier(candidate.classifier, seed, len(labels))
        classifier.fit(matrix, labels, sample_weight=weights)
        oof = out_of_fold_proba(classifier, matrix, labels)
    for fold in classifier.calibrated_classifiers_:  # float32 like the features: half the file, same probabilities
        fold.estimator.coef_ = fold.estimator.coef_.astype(np.float32)
    own = np.array([not e.real for e in train])
    predicted = classifier.classes_[oof.argmax(axis=1)]
    cut = choose_threshold(oof.max(axis=1)[own], predicted[own] == labels[own])
    cv_f1 = round(float(f1_score(labels[own], predicted[own], average="macro")), 4)
    return Fitted(candidate, Pipeline([("features", features), ("classifier", classifier)]), cut, cv_f1)


def class_cuts(fitted: Fitted, real_dev: Sequence[tuple[Sequence[Prediction], np.ndarray]]) -> dict[str, float]:
    """Per-category abstain thresholds: the corpus cut, raised where a real dev set needs it.

    ``real_dev``: per real dev set, the fitted model's predictions of its texts and whether each is right."""
    cuts = dict.fromkeys((str(c) for c in fitted.pipeline.classes_), fitted.corpus_cut)
    for predictions, right in real_dev:
        predicted = np.array([p.category for p in predictions])
        confidence = np.array([p.confidence for p in predictions])
        for category in cuts:
            mine = predicted == category
            if mine.sum() >= MIN_PREDICTIONS:
                cuts[category] = max(cuts[category], choose_threshold(confidence[mine], right[mine], REAL_PRECISION))
    return {c: round(v, 6) for c, v in cuts.items()}


def score(model: CategoryModel, test: Sequence[Labelled]) -> dict[str, Any]:
    """Metrics on a labelled set: per-class P/R/F1, macro-F1, per-language macro-F1, coverage at the model's cuts
    (for the language detected, as the gateway does)."""
    truth = [e.category for e in test]
    predictions = model.predict([e.text for e in test], languages=[detect_language(e.text) for e in test])
    predicted = [p.category for p in predictions]
    routed = np.array([not p.abstained for p in predictions], dtype=bool)
    right = np.array([p == t for p, t in zip(predicted, truth)], dtype=bool)
    classes = model.classes
    p, r, f, n = precision_recall_fscore_support(truth, predicted, labels=classes, zero_division=0)
    per_language = {
        lang: round(float(f1_score([t for t, e in zip(truth, test) if e.lang == lang],
                                   [q for q, e in zip(predicted, test) if e.lang == lang],
                                   average="macro", zero_division=0)), 4)
        for lang in sorted({e.lang for e in test})
    }
    return {
        "n": len(test),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4),
        "accuracy": round(float(right.mean()), 4),
        "per_language_macro_f1": per_language,
        "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "f1": round(float(f[i]), 4), "support": int(n[i])} for i, c in enumerate(classes)},
        "coverage": round(float(routed.mean()), 4),
        "routed_precision": round(float(right[routed].mean()), 4) if routed.any() else None,
    }


def metadata_for(fitted: Fitted, cuts: Mapping[str, float], seed: int, metrics: dict[str, Any],
                 data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The metadata.json content of a freshly trained model (sha256 is added on save; ``extra``: sets, selection…)."""
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return {
        **fitted.model(cuts).metadata,
        "version": created.strftime("%Y%m%d-%H%M%S") + f"-{fitted.candidate.name}",
        "created": created.isoformat(),
        "candidate": fitted.candidate.name,
        "real_shares": dict(fitted.candidate.shares),
        "seed": seed,
        "sklearn_version": sklearn.__version__,
        "classes": [str(c) for c in fitted.pipeline.classes_],
        "threshold": round(fitted.corpus_cut, 6),
        "target_precision": {"corpus": TARGET_PRECISION, "real": REAL_PRECISION},
        "metrics": metrics,
        "data": data,
        **extra,
    }

