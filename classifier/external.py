"""Real English third-party data (``../shared/data/``) mapped onto our taxonomy, and what it does to the model.

Mappings (only labels with a clear counterpart are used):

* NLBSE'24 GitHub issues: bug → ``incident``, feature → ``feature_request``, question → ``how_to``;
* S2R bug reports (Chaparro et al.): every report → ``incident``;
* Endava IT tickets: Access and Administrative rights → ``configuration`` (accounts, rights); the other topic
  groups (Hardware, HR Support, …) have no counterpart.

``python -m classifier.external`` prints the 5-fold CV macro-F1 on the NLBSE issues (3 classes), then compares
training with and without each source: 5-fold CV on the corpus'
train part (external examples only ever join the training folds) decides; the frozen test part is reported.
"""
from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from classifier.corpus import load_corpus, split
from classifier.model import build_candidate
from classifier.textprep import customer_text
from classifier.train import Labelled

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: issue bodies are long templates; the first part carries the request
MAX_CHARS = 1500
NLBSE_LABELS = {"bug": "incident", "feature": "feature_request", "question": "how_to"}
ENDAVA_LABELS = {"Access": "configuration", "Administrative rights": "configuration"}


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def nlbse_issues(data: Path = SHARED_DATA) -> list[Labelled]:
    rows = _jsonl(data / "issues-nlbse" / "train.jsonl.gz")
    return [Labelled(customer_text(r["title"], r["body"] or "")[:MAX_CHARS], NLBSE_LABELS[r["label"]], "en")
            for r in rows]


def s2r_bug_reports(data: Path = SHARED_DATA) -> list[Labelled]:
    rows = _jsonl(data / "bug-reports-s2r" / "train.jsonl.gz")
    return [Labelled(customer_text(r["title"], r["text"])[:MAX_CHARS], "incident", "en") for r in rows]


def endava_tickets(data: Path = SHARED_DATA) -> list[Labelled]:
    with gzip.open(data / "it-tickets-endava" / "tickets.csv.gz", "rt", encoding="utf-8") as handle:
        return [Labelled(r["Document"], ENDAVA_LABELS[r["Topic_group"]], "en")
                for r in csv.DictReader(handle) if r["Topic_group"] in ENDAVA_LABELS]


def capped(examples: Sequence[Labelled], per_category: int, seed: int = 0) -> list[Labelled]:
    """At most ``per_category`` examples of each category, drawn reproducibly."""
    rng = random.Random(seed)
    out: list[Labelled] = []
    for category in sorted({e.category for e in examples}):
        members = [e for e in examples if e.category == category]
        out += rng.sample(members, min(per_category, len(members)))
    return out


def _macro(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return round(float(f1_score(truth, predicted, average="macro")), 4)


def _by_language(test: Sequence[Labelled], predicted: Sequence[str]) -> dict[str, float]:
    return {lang: _macro([e.category for e in test if e.lang == lang],
                         [p for p, e in zip(predicted, test) if e.lang == lang]) for lang in ("de", "en", "nl")}


def compare(variants: dict[str, Callable[[], list[Labelled]]], candidate: str = "svm", seed: int = 0) -> None:
    """Print CV (train part) and frozen-test macro-F1 for training with each extra set."""
    train_part, test_part = split(load_corpus())
    train = [Labelled(e.text, e.category, e.lang) for e in train_part]
    test = [Labelled(e.text, e.category, e.lang) for e in test_part]
    labels = np.array([e.category for e in train])
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(train)), labels))
    for name, load in variants.items():
        extra = load()
        predicted = np.empty(len(train), dtype=object)
        for fit_idx, held_idx in folds:
            fold_train = [train[i] for i in fit_idx] + extra
            model = build_candidate(candidate, seed).fit([e.text for e in fold_train], [e.category for e in fold_train])
            predicted[held_idx] = model.predict([train[i].text for i in held_idx])
        model = build_candidate(candidate, seed).fit([e.text for e in train + extra],
                                                     [e.category for e in train + extra])
        on_test = list(model.predict([e.text for e in test]))
        print(f"{name:<34} +{len(extra):>5}  CV {_macro(labels, predicted):.4f} {_by_language(train, predicted)}  "
              f"test {_macro([e.category for e in test], on_test):.4f} {_by_language(test, on_test)}", flush=True)


def nlbse_cross_validation(candidate: str = "svm", seed: int = 0) -> float:
    """5-fold CV macro-F1 of our pipeline on the NLBSE'24 train split with its own 3 labels (a sanity check)."""
    issues = nlbse_issues()
    labels = [e.category for e in issues]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    predicted = cross_val_predict(build_candidate(candidate, seed), [e.text for e in issues], labels, cv=folds)
    return _macro(labels, predicted)


def main() -> None:
    print(f"NLBSE'24 issues, 5-fold CV macro-F1 (bug/feature/question): {nlbse_cross_validation():.4f}", flush=True)
    compare({
        "corpus only": list,
        "+ NLBSE issues (all 1,500)": nlbse_issues,
        "+ NLBSE issues (100 per class)": lambda: capped(nlbse_issues(), 100),
        "+ S2R bug reports (all 775)": s2r_bug_reports,
        "+ Endava access/rights (200)": lambda: capped(endava_tickets(), 200),
        "+ NLBSE + S2R (100 per class)": lambda: capped(nlbse_issues() + s2r_bug_reports(), 100),
    })


if __name__ == "__main__":
    main()
