"""A trained category model: a scikit-learn Pipeline plus its metadata and abstain thresholds.

The pipeline is TF-IDF word 1–2-grams + char_wb 2–5-grams, then a linear classifier calibrated by
``CalibratedClassifierCV`` (five folds, three from 10,000 examples on; sigmoid): LinearSVC (``svm``) or
LogisticRegression (``logreg``). The saved artifact is that plain Pipeline; :class:`CategoryModel` predicts
through :class:`FastScorer`, the same arithmetic without scikit-learn's per-call overhead (under a millisecond
per message instead of 2–4). It reads the first ``max_chars`` of a text (metadata; the signal is at the start),
with its first line, the subject, ``subject_times`` times (subjects and issue titles say the most).

It abstains, with a reason, when the confidence is below the predicted category's threshold
(``below-threshold``), when the text has too few words the model knows (``out-of-domain``) and when the mail
is in a language it was not trained on (``unsupported-language``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import re

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from classifier.fastscore import FastScorer, calibrated_proba
from classifier.features import CompactTfidfVectorizer

CLASSIFIERS = ("svm", "logreg")
#: the prefix of the customer's text that the model reads (fitting and predicting); see README for the measurement
MAX_CHARS = 1000
#: how often the model reads the subject (the text's first line)
SUBJECT_TIMES = 2
#: out of domain: fewer known words than this, or a smaller share of its words known (words of 2+ letters)
MIN_KNOWN_WORDS, MIN_KNOWN_SHARE = 3, 0.3
_WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern, as the word features use it
#: what language detection says of text that is no language (no letters; links, hashes, logs)
NOT_LANGUAGES = ("und", "zxx")
#: calibration folds; a large training set needs fewer (each fold is big) and trains in about half the time
CALIBRATION_FOLDS, LARGE_SET_FOLDS, LARGE_SET = 5, 3, 10_000


@dataclass(frozen=True)
class Prediction:
    category: str
    confidence: float
    abstained: bool
    top: tuple[tuple[str, float], ...]  # the three most probable categories
    threshold: float = 0.0  # the cut that applied to the predicted category
    abstain_reason: str = ""  # below-threshold, out-of-domain or unsupported-language ("" when not abstained)


def build_features(min_df: int = 3) -> FeatureUnion:
    """Word 1–2-grams and char_wb 2–5-grams (sublinear TF-IDF); ``min_df`` keeps the vocabulary (and file) small."""
    return FeatureUnion(
        [
            ("words", CompactTfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, dtype=np.float32)),
            ("chars", CompactTfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df, sublinear_tf=True,
                                             dtype=np.float32)),
        ]
    )


def calibration_folds(seed: int = 0, n_samples: int = 0) -> StratifiedKFold:
    folds = LARGE_SET_FOLDS if n_samples >= LARGE_SET else CALIBRATION_FOLDS
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)


def build_classifier(name: str, seed: int = 0, n_samples: int = 0) -> CalibratedClassifierCV:
    """A fresh calibrated classifier by candidate name (``svm`` or ``logreg``) for ``n_samples`` examples."""
    if name == "svm":
        base: Any = LinearSVC(C=0.5, tol=1e-3, random_state=seed)  # 1e-4 took a fifth longer, same scores
    elif name == "logreg":
        base = LogisticRegression(C=30.0, tol=1e-3, max_iter=300, random_state=seed)
    else:
        raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    return CalibratedClassifierCV(base, cv=calibration_folds(seed, n_samples), method="sigmoid")


class CategoryModel:
    """Predicts a category with a calibrated confidence; abstains below the category's threshold or out of domain.

    Metadata keys used: ``version``, ``threshold`` (one cut), ``class_thresholds`` (a cut per category, newer
    models) and ``class_thresholds_languages`` (the languages those apply to, the real dev sets' languages;
    mail in another language gets ``threshold``; absent: all), ``max_chars`` (prefix read; absent: all),
    ``subject_times`` and ``languages`` (served; absent: any).
    """

    def __init__(self, pipeline: Pipeline, metadata: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.metadata = metadata
        self.scorer = FastScorer.compile(pipeline)
        self.known = _known_words(pipeline)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities, one row per text, columns in :attr:`classes` order."""
        texts = self.prefixes(texts)
        if not texts:
            return np.zeros((0, len(self.classes)))
        if self.scorer is not None:
            return self.scorer.predict_proba(texts)
        return calibrated_proba(self.pipeline[-1], self.pipeline[:-1].transform(texts))

    def prefixes(self, texts: Sequence[str]) -> list[str]:
        """What the model reads of each text (see :func:`model_input`)."""
        limit, times = self.metadata.get("max_chars"), int(self.metadata.get("subject_times", 1))
        return [model_input(t, limit, times) for t in texts]

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def threshold(self) -> float:
        """The lowest cut of any category (the one cut of older models)."""
        return min(self.cuts.values(), default=float(self.metadata["threshold"]))

    @property
    def cuts(self) -> dict[str, float]:
        """The abstain threshold of each category."""
        own = self.metadata.get("class_thresholds") or {}
        return {c: float(own.get(c, self.metadata["threshold"])) for c in self.classes}

    def cuts_for(self, language: str | None) -> dict[str, float]:
        """The abstain thresholds for mail in ``language``: the corpus cut for a language we serve that the
        per-category cuts do not speak for (German, Dutch), else (also: not known) the per-category ones."""
        raised_for = self.metadata.get("class_thresholds_languages")
        served = self.metadata.get("languages") or ()
        if raised_for is None or language in raised_for or language not in served:
            return self.cuts
        return dict.fromkeys(self.classes, float(self.metadata["threshold"]))

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.pipeline.classes_]

    def predict(self, texts: Sequence[str], *, threshold: float | None = None,
                languages: Sequence[str] | None = None) -> list[Prediction]:
        """One :class:`Prediction` per text (batch texts: one call is much cheaper than many).

        ``threshold`` replaces every category's cut; ``languages`` (one per text) lets the model abstain on mail
        in a language it was not trained on."""
        texts = list(texts)
        return self.predictions(texts, self.predict_proba(texts), threshold=threshold, languages=languages)

    def predictions(self, texts: Sequence[str], probabilities: np.ndarray, *, threshold: float | None = None,
                    languages: Sequence[str] | None = None) -> list[Prediction]:
        """:meth:`predict` for probabilities already computed (one row per text)."""
        classes = self.classes
        fixed = None if threshold is None else dict.fromkeys(classes, threshold)
        served = self.metadata.get("languages")
        out = []
        for i, (text, row) in enumerate(zip(self.prefixes(texts), probabilities)):
            cuts = fixed or self.cuts_for(languages[i] if languages is not None else None)
            order = np.argsort(row)[::-1][:3]
            top = tuple((classes[j], round(float(row[j]), 4)) for j in order)
            category, confidence = top[0]
            known, words = self.known_words(text)
            reason = ""
            if served and languages is not None and languages[i] not in (*served, *NOT_LANGUAGES) \
                    and words >= MIN_KNOWN_WORDS:
                reason = "unsupported-language"
            elif self.known is not None and (known < MIN_KNOWN_WORDS or known < MIN_KNOWN_SHARE * words):
                reason = "out-of-domain"
            elif confidence < cuts[category]:
                reason = "below-threshold"
            out.append(Prediction(category, confidence, bool(reason), top, cuts[category], reason))
        return out

    def known_words(self, text: str) -> tuple[int, int]:
        """(words of the text the model knows, words of the text); words have two letters or more."""
        words = _WORD.findall(text.lower())
        return (sum(w in self.known for w in words) if self.known is not None else len(words)), len(words)


def model_input(text: str, max_chars: int | None = MAX_CHARS, subject_times: int = SUBJECT_TIMES) -> str:
    """The first ``max_chars`` of the text, its first line (the subject) repeated to count ``subject_times``."""
    head = text[:max_chars] if max_chars else text
    if subject_times <= 1:
        return head
    subject = head.split("\n", 1)[0]
    return "\n".join([subject] * (subject_times - 1) + [head])


def _known_words(pipeline: Pipeline) -> frozenset[str] | None:
    """The single words in the vocabulary of the pipeline's word features (None: it has none)."""
    union = pipeline[0] if len(pipeline) == 2 else None
    for _, vectorizer in getattr(union, "transformer_list", []):
        if isinstance(vectorizer, CompactTfidfVectorizer) and vectorizer.analyzer == "word" and vectorizer.lowercase:
            return frozenset(term for term in vectorizer.vocabulary_ if " " not in term)
    return None
