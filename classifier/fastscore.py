"""Predictions of a fitted TF-IDF + sigmoid-calibrated linear pipeline in a few numpy operations.

Same probabilities as scikit-learn's ``predict_proba`` (``test_fast_scorer_equals_the_pipeline``; checked again on
sample texts whenever a model is loaded, see :mod:`classifier.registry`), without its per-call overhead.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import FeatureUnion, Pipeline

from classifier.features import CompactTfidfVectorizer


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


class _Block:
    """One fitted TF-IDF vectorizer of the feature union and the rows of the stacked weights it feeds."""

    def __init__(self, vectorizer: CompactTfidfVectorizer, weights: np.ndarray) -> None:
        self.count = vectorizer.term_counts
        self.count([])  # builds the vectorizer's lookup index now rather than on the first message
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self.sublinear, self.binary, self.norm = vectorizer.sublinear_tf, vectorizer.binary, vectorizer.norm
        self.weights = weights  # (terms, folds × classes), float32

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """``tfidf(texts) @ weights`` computed like ``TfidfVectorizer.transform`` but without its per-call checks."""
        counts = self.count(texts)
        columns, indptr = counts.indices, counts.indptr
        values = np.ones(len(columns)) if self.binary else counts.data.astype(np.float64)
        if self.sublinear:
            values = np.log(values) + 1.0
        values *= self.idf[columns]
        if self.norm is not None:
            rows = np.repeat(np.arange(len(texts)), np.diff(indptr))
            sizes = values**2 if self.norm == "l2" else np.abs(values)
            norms = np.bincount(rows, weights=sizes, minlength=len(texts))
            norms = np.sqrt(norms) if self.norm == "l2" else norms
            norms[norms == 0] = 1.0
            values /= norms[rows]
        values = values.astype(self.weights.dtype)
        if len(texts) == 1:
            return (values @ self.weights[columns])[None, :]
        return np.asarray(sp.csr_array((values, columns, indptr), shape=counts.shape) @ self.weights)


class FastScorer:
    """The calibrated probabilities of a TF-IDF + sigmoid-calibrated linear pipeline, for a handful of messages.

    Scikit-learn spends most of a one-message prediction on input validation, the feature union's parallel
    machinery, stacking sparse blocks and one matrix product per calibration fold. Here the weights of all folds
    are stacked once (one product per vectorizer block, no hstack) and each text's TF-IDF vector is built
    directly (char n-grams counted as numbers, see :mod:`classifier.features`); the arithmetic is the same (``test_fast_scorer_equals_the_pipeline``). :meth:`compile` returns
    ``None`` for a pipeline of another shape, which then goes the scikit-learn way.
    """

    def __init__(self, blocks: list[_Block], intercepts: np.ndarray, a: np.ndarray, b: np.ndarray,
                 n_classes: int) -> None:
        self.blocks, self.intercepts, self.a, self.b, self.n_classes = blocks, intercepts, a, b, n_classes

    @classmethod
    def compile(cls, pipeline: Pipeline) -> FastScorer | None:
        if len(pipeline) != 2:
            return None
        union, classifier = pipeline[0], pipeline[-1]
        if not (isinstance(union, FeatureUnion) and union.transformer_weights is None
                and isinstance(classifier, CalibratedClassifierCV) and classifier.method == "sigmoid"
                and len(classifier.classes_) >= 3):
            return None
        vectorizers = [v for _, v in union.transformer_list]
        if not all(isinstance(v, CompactTfidfVectorizer) and v.norm in (None, "l1", "l2") and v.use_idf
                   for v in vectorizers):
            return None
        folds = classifier.calibrated_classifiers_
        if not all(hasattr(f.estimator, "coef_") and np.array_equal(f.estimator.classes_, classifier.classes_)
                   for f in folds):
            return None
        # (features, folds × classes); float32 like the features: half the memory, same probabilities to ~1e-7
        n_classes = len(classifier.classes_)
        weights = np.empty((folds[0].estimator.coef_.shape[1], len(folds) * n_classes), dtype=np.float32)
        for i, fold in enumerate(folds):
            weights[:, i * n_classes:(i + 1) * n_classes] = fold.estimator.coef_.T
        sizes = [len(v.vocabulary_) for v in vectorizers]
        if sum(sizes) != weights.shape[0]:
            return None
        offsets = np.cumsum([0, *sizes])
        blocks = [_Block(v, np.ascontiguousarray(weights[start:end]))
                  for v, start, end in zip(vectorizers, offsets, offsets[1:])]
        intercepts = np.concatenate([np.broadcast_to(f.estimator.intercept_, n_classes)
                                     for f in folds]).astype(np.float64)
        a = np.array([c.a_ for f in folds for c in f.calibrators], dtype=np.float64)
        b = np.array([c.b_ for f in folds for c in f.calibrators], dtype=np.float64)
        return cls(blocks, intercepts, a, b, n_classes)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        scores = self.intercepts + sum(block.scores(texts) for block in self.blocks)
        proba = expit(-(self.a * scores + self.b)).reshape(len(texts), -1, self.n_classes)  # (texts, folds, classes)
        sums = proba.sum(axis=2, keepdims=True)
        proba = np.divide(proba, sums, out=np.full_like(proba, 1 / self.n_classes), where=sums != 0)
        return proba.mean(axis=1)
