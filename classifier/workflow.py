"""Operator workflows on top of train/registry: train a version, compare candidates, evaluate, promote."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from tqdm import tqdm

from classifier.corpus import Example, files_digest, load_corpus, split
from classifier.model import CANDIDATES, CategoryModel, build_candidate
from classifier.registry import current_version, list_versions, load_model, read_metadata, save_model, set_current
from classifier.train import Labelled, fit, metadata_for, score
from gateway.errors import ModelError


def labelled(examples: Sequence[Example]) -> list[Labelled]:
    return [Labelled(e.text, e.category, e.lang) for e in examples]


@dataclass(frozen=True)
class Trained:
    version: str
    path: Path
    metrics: dict[str, Any]
    promoted: bool
    reason: str


def compare_candidates(train: Sequence[Labelled], seed: int = 0) -> dict[str, float]:
    """5-fold cross-validated macro-F1 of every candidate on the training part (the test part stays unseen)."""
    labels = np.array([e.category for e in train])
    texts = [e.text for e in train]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    out = {}
    for name in tqdm(CANDIDATES, desc="comparing candidates", unit="candidate"):
        predicted = cross_val_predict(build_candidate(name, seed), texts, labels, cv=folds)
        out[name] = round(float(f1_score(labels, predicted, average="macro")), 4)
    return out


def train_version(data_dir: Path, models_dir: Path, *, candidate: str = "best", seed: int = 0,
                  extra: Sequence[Labelled] = (), promote: bool = True, force: bool = False) -> Trained:
    """Train on the corpus' train part (+ ``extra``), score on the frozen test part, save, maybe promote."""
    train_part, test_part = split(load_corpus(data_dir))
    if not train_part or not test_part:
        raise ModelError(f"no corpus in {data_dir}: need *.jsonl files with a train and a test part")
    train = labelled(train_part) + list(extra)
    steps = tqdm(total=3, desc="training", unit="step")
    comparison = compare_candidates(train, seed) if candidate == "best" else {}
    chosen = max(comparison, key=comparison.__getitem__) if comparison else candidate
    steps.update()
    pipeline, threshold = fit(train, chosen, seed)
    steps.update()
    metrics = score(pipeline, threshold, labelled(test_part))
    metrics["candidates_cv_macro_f1"] = comparison
    steps.update()
    steps.close()
    data = {"corpus_files": files_digest(data_dir), "train_count": len(train_part), "test_count": len(test_part),
            "extra_count": len(extra)}
    metadata = metadata_for(chosen, seed, threshold, metrics, [str(c) for c in pipeline.classes_], data)
    path = save_model(models_dir, pipeline, metadata)
    promoted, reason = _maybe_promote(models_dir, metadata, promote=promote, force=force)
    return Trained(metadata["version"], path, metrics, promoted, reason)


def _maybe_promote(models_dir: Path, metadata: dict[str, Any], *, promote: bool, force: bool) -> tuple[bool, str]:
    if not promote:
        return False, "not promoted (--no-promote)"
    try:
        promote_version(models_dir, metadata["version"], force=force)
    except ModelError as exc:
        return False, str(exc)
    return True, "promoted to current"


def promote_version(models_dir: Path, version: str, *, force: bool = False) -> None:
    """Make ``version`` current unless it scores worse than the current one on the same frozen test set."""
    new = read_metadata(models_dir, version)
    try:
        old = read_metadata(models_dir, current_version(models_dir))
    except ModelError:
        old = None
    if old and not force:
        same_test = old["data"].get("corpus_files") == new["data"].get("corpus_files")
        old_f1, new_f1 = old["metrics"]["macro_f1"], new["metrics"]["macro_f1"]
        if same_test and new_f1 < old_f1:
            raise ModelError(f"{version} is worse than current {old['version']} on the frozen test set "
                             f"(macro-F1 {new_f1} < {old_f1}); use --force to promote anyway")
    set_current(models_dir, version)


def evaluate(models_dir: Path, data_dir: Path, version: str | None = None) -> tuple[CategoryModel, dict[str, Any],
                                                                                  list[str], list[str]]:
    """Score a stored model on the frozen test part: (model, metrics, true labels, predicted labels)."""
    model = load_model(models_dir, version)
    _, test_part = split(load_corpus(data_dir))
    test = labelled(test_part)
    metrics = score(model.pipeline, model.threshold, test)
    predicted = [p.category for p in model.predict([e.text for e in test], threshold=0.0)]
    return model, metrics, [e.category for e in test], predicted


def versions_table(models_dir: Path) -> list[dict[str, Any]]:
    """One row per stored version: version, created, candidate, macro-F1, coverage, current?"""
    try:
        current = current_version(models_dir)
    except ModelError:
        current = None
    rows = []
    for version in list_versions(models_dir):
        meta = read_metadata(models_dir, version)
        rows.append({"version": version, "created": meta["created"], "candidate": meta["candidate"],
                     "macro_f1": meta["metrics"]["macro_f1"], "coverage": meta["metrics"]["coverage"],
                     "current": version == current})
    return rows
