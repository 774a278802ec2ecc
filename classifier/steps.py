"""The ``has_steps`` model: does a problem report say, in order, what the user did? (TF-IDF + logistic regression)

Trained on the S2R bug-report gold set (English, ``../shared/data/bug-reports-s2r/``) and our own German and
Dutch support mails (``classifier/data/steps/*.jsonl``). The held-out part is chosen by a hash of a *group* id:
contrast pairs (one problem with and without steps) and de/nl translations of one mail form a group, so no
near-duplicate of a held-out mail is trained on. Saved with skops, checksummed, next to ``metadata.json``.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import FeatureUnion, Pipeline

from classifier.registry import ARTIFACT, METADATA, TRUSTED_TYPES, sha256_of
from classifier.textprep import customer_text
from gateway.errors import ModelError

STEPS_DATA_DIR = Path(__file__).parent / "data" / "steps"
S2R_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "bug-reports-s2r" / "train.jsonl.gz"
TEST_SHARE_PERCENT = 30
THRESHOLDS = np.round(np.arange(0.2, 0.9, 0.025), 3)
Rules = Mapping[str, Callable[[str], bool]]

_LIST_MARKER = re.compile(r"^[ \t]*(\d{1,2}[.)]|[-*•]|[a-z][.)])[ \t]+", re.IGNORECASE | re.MULTILINE)
_INLINE_NUMBER = re.compile(r"(?<=\s)\d{1,2}[.)](?=\s+[^\d\s])")
_ARROW = re.compile(r"\s*(->|→|=>|>)\s*")
_URL = re.compile(r"https?://\S+|www\.\S+")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class StepsExample:
    id: str
    lang: str
    text: str
    has_steps: bool
    group: str  # the examples of one group always land on the same side of the split

    @property
    def is_test(self) -> bool:
        return int(hashlib.sha256(f"steps:{self.group}".encode()).hexdigest(), 16) % 100 < TEST_SHARE_PERCENT


def prepare(text: str) -> str:
    """Make layout visible to a bag-of-words model: list items, click paths, URLs and numbers become tokens."""
    text = _LIST_MARKER.sub(" xxitem ", _URL.sub(" xxurl ", text))
    return _DIGITS.sub("0", _ARROW.sub(" xxarrow ", _INLINE_NUMBER.sub(" xxitem ", text)))


def build_pipeline(seed: int = 0) -> Pipeline:
    """An unfitted pipeline: word 1–2-grams and char 2–5-grams, class-balanced logistic regression."""
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=30000)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True,
                                  max_features=50000)),
    ])
    classifier = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000, random_state=seed)
    return Pipeline([("features", features), ("classifier", classifier)])


def load_s2r(path: Path = S2R_FILE) -> list[StepsExample]:
    """The English bug reports (title + description) with their report-level S2R label."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [StepsExample(r["id"], "en", customer_text(r["title"], r["text"]), bool(r["has_steps"]), r["id"])
            for r in rows]


def load_own(directory: Path = STEPS_DATA_DIR) -> list[StepsExample]:
    """Our German and Dutch examples, each tagged with its near-duplicate group."""
    rows = [json.loads(line) for path in sorted(directory.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [customer_text(r.get("subject", ""), r["body"]) for r in rows]
    groups = near_duplicate_groups([r["id"] for r in rows], [r["lang"] for r in rows], texts)
    return [StepsExample(r["id"], r["lang"], t, bool(r["has_steps"]), g) for r, t, g in zip(rows, texts, groups)]


def near_duplicate_groups(ids: Sequence[str], langs: Sequence[str], texts: Sequence[str],
                          same_language: float = 0.3, translation: float = 0.08) -> list[str]:
    """Group id (the smallest member id) per text. Mutual nearest neighbours by character n-grams are joined:
    within a language above ``same_language`` cosine, across languages (translations) above ``translation``."""
    similarity = cosine_similarity(TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 6), sublinear_tf=True)
                                   .fit_transform(texts))
    np.fill_diagonal(similarity, -1.0)
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    same = np.equal.outer(np.asarray(langs), np.asarray(langs))
    for mask, cut in ((same, same_language), (~same, translation)):
        masked = np.where(mask, similarity, -1.0)
        best = masked.argmax(axis=1)
        for i, j in enumerate(best):
            if best[j] == i and masked[i, j] >= cut:
                parent[root(i)] = root(j)
    members: dict[int, list[str]] = {}
    for i, example_id in enumerate(ids):
        members.setdefault(root(i), []).append(example_id)
    return [min(members[root(i)]) for i in range(len(ids))]


def split(examples: Sequence[StepsExample]) -> tuple[list[StepsExample], list[StepsExample]]:
    """(train, held-out)."""
    return [e for e in examples if not e.is_test], [e for e in examples if e.is_test]


def language_weights(examples: Sequence[StepsExample]) -> np.ndarray:
    """Sample weights giving every language the same total weight (S2R would otherwise drown de and nl)."""
    counts = {lang: sum(e.lang == lang for e in examples) for lang in {e.lang for e in examples}}
    return np.array([len(examples) / (len(counts) * counts[e.lang]) for e in examples])


def precision_recall(truth: Sequence[bool], predicted: Sequence[bool]) -> dict[str, float | int]:
    truth_a, predicted_a = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    hits = int((truth_a & predicted_a).sum())
    precision, recall = hits / max(int(predicted_a.sum()), 1), hits / max(int(truth_a.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3), "n": len(truth_a),
            "with_steps": int(truth_a.sum())}


def per_language(examples: Sequence[StepsExample], predicted: Sequence[bool]) -> dict[str, dict[str, float | int]]:
    langs = sorted({e.lang for e in examples})
    return {lang: precision_recall([e.has_steps for e in examples if e.lang == lang],
                                   [p for e, p in zip(examples, predicted) if e.lang == lang]) for lang in langs}


def combine(fired: np.ndarray, rule_names: Sequence[str], chosen: Sequence[str], probability: np.ndarray,
            threshold: float) -> np.ndarray:
    """Production's decision: any chosen rule fired, or the model's probability reached ``threshold``."""
    columns = [rule_names.index(name) for name in chosen]
    return fired[:, columns].any(axis=1) | (probability >= threshold)


def choose(examples: Sequence[StepsExample], fired: np.ndarray, rule_names: Sequence[str],
           probability: np.ndarray) -> tuple[tuple[str, ...], float, float]:
    """Greedy choice of rules and threshold by mean per-language F1: (rules, threshold, score)."""
    def best(chosen: Sequence[str]) -> tuple[float, float]:
        return max((float(np.mean([m["f1"] for m in per_language(
            examples, combine(fired, rule_names, chosen, probability, t)).values()])), float(t)) for t in THRESHOLDS)

    chosen: list[str] = []
    score, threshold = best(chosen)
    while candidates := [n for n in rule_names if n not in chosen]:
        gain, name, cut = max((*best([*chosen, n]), n) for n in candidates)[0], None, 0.0
        top = max(((best([*chosen, n]), n) for n in candidates), key=lambda row: row[0][0])
        (gain, cut), name = top
        if gain <= score + 0.005:
            break
        chosen, score, threshold = [*chosen, name], gain, cut
    return tuple(chosen), threshold, score
