"""The ``has_steps`` model: does a problem report say, in order, what the user did? (TF-IDF + logistic regression)

Trained on the S2R bug-report gold set (English, ``../shared/data/bug-reports-s2r/``) and our own German and
Dutch support mails (``classifier/data/steps/*.jsonl``). The held-out part is chosen by a hash of a *group* id:
contrast pairs (one problem with and without steps) and de/nl translations of one mail form a group, so no
near-duplicate of a held-out mail is trained on; for S2R it is the category model's S2R dev part
(:func:`classifier.realdata.in_dev_part`). Saved with skops, checksummed, next to ``metadata.json``; loading
refuses a model trained under another scikit-learn minor version.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import FeatureUnion, Pipeline

from classifier.hashing import CachedHashingPipeline
from classifier.paths import S2R_FILE, STEPS_DATA_DIR
from classifier.realdata import DEV_SHARE_PERCENT, in_dev_part
from classifier.registry import ARTIFACT, METADATA, TRUSTED_TYPES, check_sklearn_version, sha256_of
from classifier.textprep import customer_text
from gateway.errors import ModelError

TEST_SHARE_PERCENT = DEV_SHARE_PERCENT
HASH_FEATURES = 2**17
MAX_CHARS = 2000  # steps are told near the top; the rest of a long mail (logs, quoted history) only costs time
THRESHOLDS = np.round(np.arange(0.2, 0.9, 0.025), 3)

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
        return in_dev_part(self.group, "steps", TEST_SHARE_PERCENT)


def prepare(text: str) -> str:
    """The first ``MAX_CHARS`` with layout made visible: list items, click paths, URLs, numbers become tokens."""
    text = _LIST_MARKER.sub(" xxitem ", _URL.sub(" xxurl ", text[:MAX_CHARS]))
    return _DIGITS.sub("0", _ARROW.sub(" xxarrow ", _INLINE_NUMBER.sub(" xxitem ", text)))


def build_pipeline(seed: int = 0) -> Pipeline:
    """Hashed word 1–2- and char 2–5-grams (no vocabulary: a small file), TF-IDF, balanced logistic regression."""
    def hashed(**options: Any) -> Pipeline:
        return Pipeline([("hash", HashingVectorizer(n_features=HASH_FEATURES, alternate_sign=False, norm=None,
                                                    **options)),
                         ("tfidf", TfidfTransformer(sublinear_tf=True))])

    features = FeatureUnion([("words", hashed(ngram_range=(1, 2))),
                             ("chars", hashed(analyzer="char_wb", ngram_range=(2, 5)))])
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
    same, rows = np.equal.outer(np.asarray(langs), np.asarray(langs)), np.arange(len(ids))
    links = np.zeros(similarity.shape, dtype=bool)
    for mask, cut in ((same, same_language), (~same, translation)):
        masked = np.where(mask, similarity, -1.0)
        best = masked.argmax(axis=1)
        mutual = (best[best] == rows) & (masked[rows, best] >= cut)
        links[rows[mutual], best[mutual]] = True
    _, component = connected_components(links, directed=False)
    first = {c: min(i for i, k in zip(ids, component) if k == c) for c in set(component)}
    return [first[c] for c in component]


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
    return {lang: precision_recall([e.has_steps for e in examples if e.lang == lang],
                                   [p for e, p in zip(examples, predicted) if e.lang == lang])
            for lang in sorted({e.lang for e in examples})}


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
        (gain, cut), name = max(((best([*chosen, n]), n) for n in candidates), key=lambda row: row[0][0])
        if gain <= score + 0.005:
            break
        chosen, score, threshold = [*chosen, name], gain, cut
    return tuple(chosen), threshold, score


def out_of_fold(examples: Sequence[StepsExample], seed: int = 0) -> np.ndarray:
    """Probability of steps for each example from a model that never saw its group (5 grouped folds)."""
    texts, labels = [prepare(e.text) for e in examples], np.array([e.has_steps for e in examples])
    weights, out = language_weights(examples), np.zeros(len(examples))
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    for train, rest in folds.split(texts, labels, [e.group for e in examples]):
        model = build_pipeline(seed).fit([texts[i] for i in train], labels[train],
                                         classifier__sample_weight=weights[train])
        out[rest] = model.predict_proba([texts[i] for i in rest])[:, 1]
    return out


def train_steps(examples: Sequence[StepsExample], rules: Mapping[str, Callable[[str], bool]],
                seed: int = 0) -> tuple[Pipeline, dict[str, Any]]:
    """Fit on the train part, choose rules + threshold out-of-fold, score everything on the held-out part."""
    train, test = split(examples)
    names = sorted(rules)

    def fired(part: Sequence[StepsExample]) -> np.ndarray:
        return np.array([[rules[n](e.text[:MAX_CHARS]) for n in names] for e in part],
                        dtype=bool).reshape(len(part), len(names))

    chosen, threshold, oof_score = choose(train, fired(train), names, out_of_fold(train, seed))
    pipeline = build_pipeline(seed).fit([prepare(e.text) for e in train], [e.has_steps for e in train],
                                        classifier__sample_weight=language_weights(train))
    probability, test_fired = pipeline.predict_proba([prepare(e.text) for e in test])[:, 1], fired(test)
    metrics = {
        "held_out": {
            "combined": per_language(test, combine(test_fired, names, chosen, probability, threshold)),
            "model_only": per_language(test, probability >= threshold),
            "all_rules_only": per_language(test, test_fired.any(axis=1)),
            **{f"rule:{n}": per_language(test, test_fired[:, i]) for i, n in enumerate(names)},
        },
        "out_of_fold_mean_f1": round(oof_score, 4),
        "counts": {part: {lang: sum(e.lang == lang for e in rows) for lang in sorted({e.lang for e in rows})}
                   for part, rows in (("train", train), ("held_out", test))},
    }
    return pipeline, {"threshold": threshold, "rules": list(chosen), "seed": seed, "metrics": metrics}


@dataclass(frozen=True)
class StepsModel:
    """The loaded artifact: ``has_steps`` = a chosen rule fires or the probability reaches the threshold."""

    pipeline: Pipeline
    metadata: dict[str, Any]
    _fast: CachedHashingPipeline | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fast", CachedHashingPipeline.compile(self.pipeline))

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.metadata["rules"])

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        """P(has steps) of each text, in one call of the pipeline."""
        column = list(self.pipeline.classes_).index(True)
        predict_proba = self._fast.predict_proba if self._fast else self.pipeline.predict_proba
        return [float(p) for p in predict_proba([prepare(t) for t in texts])[:, column]]


def save_steps_model(directory: Path, pipeline: Pipeline, metadata: dict[str, Any]) -> None:
    """Write ``model.skops`` then ``metadata.json`` (with its sha256), each atomically by rename."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".{ARTIFACT}.tmp"
    sio.dump(pipeline, staging, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    metadata = {**metadata, "created": created, "sklearn_version": sklearn.__version__, "sha256": sha256_of(staging)}
    os.replace(staging, directory / ARTIFACT)
    (directory / f".{METADATA}.tmp").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(directory / f".{METADATA}.tmp", directory / METADATA)


def load_steps_model(directory: Path) -> StepsModel:
    """Load and verify (checksum, trusted types only) the artifact in ``directory``."""
    artifact = directory / ARTIFACT
    try:
        metadata = json.loads((directory / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"steps model: cannot read {directory / METADATA}: {exc}") from None
    if not artifact.is_file() or sha256_of(artifact) != metadata.get("sha256"):
        raise ModelError(f"steps model: {artifact} is missing or does not match its checksum")
    untrusted = set(sio.get_untrusted_types(file=artifact))
    if untrusted - TRUSTED_TYPES:
        raise ModelError(f"steps model: refusing untrusted types {', '.join(sorted(untrusted - TRUSTED_TYPES))}")
    check_sklearn_version("steps model", metadata)
    return StepsModel(sio.load(artifact, trusted=sorted(untrusted)), metadata)
