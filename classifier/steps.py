"""The ``has_steps`` model: does a problem report say, in order, what the user did? (TF-IDF + logistic regression)

Trained on the S2R bug-report gold set (English, ``../shared/data/bug-reports-s2r/``) and our own German and
Dutch support mails (``classifier/data/steps/*.jsonl``). The held-out part is chosen by a hash of a *group* id:
contrast pairs (the same problem with and without steps) and de/nl translations of one mail form a group, so
no near-duplicate of a test mail is ever trained on. Saved with skops next to a metadata.json with metrics.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.pipeline import FeatureUnion, Pipeline

from classifier.textprep import customer_text

STEPS_DATA_DIR = Path(__file__).parent / "data" / "steps"
S2R_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "bug-reports-s2r" / "train.jsonl.gz"
TEST_SHARE_PERCENT = 30
_SALT = "steps-split:"

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
    group: str = ""  # examples of one group always land on the same side of the split

    @property
    def is_test(self) -> bool:
        digest = hashlib.sha256((_SALT + (self.group or self.id)).encode()).hexdigest()
        return int(digest, 16) % 100 < TEST_SHARE_PERCENT


def prepare(text: str) -> str:
    """Make layout visible to a bag-of-words model: list items, click paths and URLs become tokens."""
    text = _URL.sub(" xxurl ", text)
    text = _LIST_MARKER.sub(" xxitem ", text)
    text = _INLINE_NUMBER.sub(" xxitem ", text)
    text = _ARROW.sub(" xxarrow ", text)
    return _DIGITS.sub("0", text)


def build_pipeline(seed: int = 0) -> Pipeline:
    """An unfitted pipeline: word 1–2-grams and char 2–5-grams, class-balanced logistic regression."""
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=40000)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True,
                                  max_features=60000)),
    ])
    classifier = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000, random_state=seed)
    return Pipeline([("features", features), ("classifier", classifier)])


def load_s2r(path: Path = S2R_FILE) -> list[StepsExample]:
    """The English bug reports (title + description) with their report-level S2R label."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [StepsExample(r["id"], "en", customer_text(r["title"], r["text"]), bool(r["has_steps"])) for r in rows]


def load_own(directory: Path = STEPS_DATA_DIR) -> list[StepsExample]:
    """Our German and Dutch examples, each tagged with its near-duplicate group."""
    rows = []
    for path in sorted(directory.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    texts = [customer_text(r.get("subject", ""), r["body"]) for r in rows]
    groups = near_duplicate_groups([r["id"] for r in rows], [r["lang"] for r in rows], texts)
    return [StepsExample(r["id"], r["lang"], t, bool(r["has_steps"]), g) for r, t, g in zip(rows, texts, groups)]


def near_duplicate_groups(ids: Sequence[str], langs: Sequence[str], texts: Sequence[str],
                          same_language: float = 0.3, translation: float = 0.08) -> list[str]:
    """Group id (smallest member id) per text: mutual nearest neighbours by character n-grams are joined,
    within a language above ``same_language`` similarity, across languages above ``translation``."""
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 6), sublinear_tf=True).fit_transform(texts)
    similarity = cosine_similarity(vectors)
    np.fill_diagonal(similarity, -1.0)
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for lang_match, cut in ((True, same_language), (False, translation)):
        mask = np.array([[(a == b) == lang_match for b in langs] for a in langs])
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


def combined(rules: Sequence[bool], probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The decision used in production: the rules OR the model's probability at or above ``threshold``."""
    return np.asarray(rules, dtype=bool) | (probabilities >= threshold)


def precision_recall(truth: Sequence[bool], predicted: Sequence[bool]) -> dict[str, float | int]:
    truth_a, predicted_a = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    hits = int((truth_a & predicted_a).sum())
    precision = hits / max(int(predicted_a.sum()), 1)
    recall = hits / max(int(truth_a.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3), "n": len(truth_a),
            "positives": int(truth_a.sum())}


def per_language(examples: Sequence[StepsExample], predicted: Sequence[bool]) -> dict[str, dict[str, float | int]]:
    out = {}
    for lang in sorted({e.lang for e in examples}):
        rows = [(e.has_steps, p) for e, p in zip(examples, predicted) if e.lang == lang]
        out[lang] = precision_recall([t for t, _ in rows], [p for _, p in rows])
    return out


def rule_predictions(rule: Callable[[str], bool], examples: Sequence[StepsExample]) -> list[bool]:
    return [rule(e.text) for e in examples]
