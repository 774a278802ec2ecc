"""Hashed character n-gram counts equal to a fitted ``HashingVectorizer(analyzer="char_wb")``'s, made faster.

scikit-learn builds every n-gram of every word as a string and hashes each one, for every document. The
n-grams of ``char_wb`` never cross a word's edge, so a word's feature columns depend on the word alone, and
in mail most words repeat: :class:`WordCachedCharHasher` hashes each distinct word's n-grams once and
keeps their columns. The counts are the same numbers (tests compare both on real text).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32

from classifier.features import count_matrix

#: distinct words remembered; past this the cache starts again (a few MB at most)
CACHED_WORDS = 200_000


class WordCachedCharHasher:
    """``transform`` gives what ``vectorizer.transform`` gives; ``supports`` tells for which vectorizers."""

    def __init__(self, vectorizer: HashingVectorizer) -> None:
        if not self.supports(vectorizer):
            raise ValueError("only a plain char_wb HashingVectorizer without signs or norm is supported")
        self.n_features = vectorizer.n_features
        self.min_n, self.max_n = vectorizer.ngram_range
        self.dtype = vectorizer.dtype
        self._preprocess = vectorizer.build_preprocessor()
        self._columns: dict[str, np.ndarray] = {}

    @staticmethod
    def supports(vectorizer: object) -> bool:
        return (isinstance(vectorizer, HashingVectorizer) and vectorizer.analyzer == "char_wb"
                and not vectorizer.alternate_sign and vectorizer.norm is None and not vectorizer.binary
                and vectorizer.input == "content" and vectorizer.decode_error == "strict"
                and vectorizer.preprocessor is None and vectorizer.tokenizer is None)

    def transform(self, documents: Sequence[str]) -> sp.csr_matrix:
        rows: list[np.ndarray] = []
        columns: list[np.ndarray] = []
        for row, document in enumerate(documents):
            found = [self._word_columns(word) for word in self._preprocess(document).split()]
            if found:
                joined = np.concatenate(found)
                columns.append(joined)
                rows.append(np.full(len(joined), row, dtype=np.int32))
        shape = (len(documents), self.n_features)
        if not columns:
            return sp.csr_matrix(shape, dtype=self.dtype)
        return count_matrix(np.concatenate(rows), np.concatenate(columns), shape, self.dtype)

    def _word_columns(self, word: str) -> np.ndarray:
        columns = self._columns.get(word)
        if columns is None:
            if len(self._columns) >= CACHED_WORDS:
                self._columns.clear()
            columns = np.array([abs(murmurhash3_32(gram, seed=0)) % self.n_features for gram in self._grams(word)],
                               dtype=np.int32)
            self._columns[word] = columns
        return columns

    def _grams(self, word: str) -> list[str]:
        """The word's n-grams, padded with a space on each side, exactly as scikit-learn's ``char_wb`` makes them."""
        padded = f" {word} "
        grams = []
        for n in range(self.min_n, self.max_n + 1):
            if len(padded) <= n:
                grams.append(padded)  # a short word counts once, however many sizes it is too short for
                break
            grams.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
        return grams


class CachedHashingPipeline:
    """``predict_proba`` of a fitted ``Pipeline([features: FeatureUnion of Pipelines, classifier])`` in which each
    char_wb hashing step is a :class:`WordCachedCharHasher`; :meth:`compile` gives None for any other shape."""

    def __init__(self, parts: list[tuple[object, list[object]]], classifier: object) -> None:
        self._parts = parts  # (first step, or its cached twin; the steps after it) of each feature block
        self._classifier = classifier

    @classmethod
    def compile(cls, pipeline: object) -> CachedHashingPipeline | None:
        steps = getattr(pipeline, "steps", None)
        if not steps or len(steps) != 2 or not hasattr(steps[0][1], "transformer_list"):
            return None
        union, classifier = steps[0][1], steps[1][1]
        if union.transformer_weights is not None or not hasattr(classifier, "predict_proba"):
            return None
        parts = []
        for _, part in union.transformer_list:
            inner = [step for _, step in getattr(part, "steps", [])]
            if not inner:
                return None
            first = WordCachedCharHasher(inner[0]) if WordCachedCharHasher.supports(inner[0]) else inner[0]
            parts.append((first, inner[1:]))
        return cls(parts, classifier)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        blocks = []
        for first, rest in self._parts:
            features = first.transform(texts)
            for step in rest:
                features = step.transform(features)
            blocks.append(features)
        return self._classifier.predict_proba(sp.hstack(blocks).tocsr())
