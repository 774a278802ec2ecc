"""Operator workflows on top of train/registry: train a version, compare candidates, evaluate, promote."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from classifier.corpus import Example, files_digest, load_corpus, split
from classifier.model import CANDIDATES, CategoryModel
from classifier.registry import current_version, list_versions, load_model, read_metadata, save_model, set_current
from classifier.train import Labelled, fit_candidates, metadata_for, score
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


def train_version(data_dir: Path, models_dir: Path, *, candidate: str = "best", seed: int = 0,
                  extra: Sequence[Labelled] = (), promote: bool = True, force: bool = False,
                  progress: Callable[[str, float], None] | None = None) -> Trained:
    """Train on the corpus' train part (+ ``extra``), score on the frozen test part, save, maybe promote.

    ``progress`` is told each step as it ends: its name and the fraction of the steps done.
    """
    train_part, test_part = split(load_corpus(data_dir))
    if not train_part or not test_part:
        raise ModelError(f"no corpus in {data_dir}: need *.jsonl files with a train and a test part")
    train = labelled(train_part) + list(extra)
    names = CANDIDATES if candidate == "best" else (candidate,)
    with tqdm(total=len(names) + 3, desc="training", unit="step") as bar:
        def step(done: str) -> None:
            bar.set_postfix_str(f"{done} done")
            bar.update()
            if progress is not None:
                progress(done, min(bar.n / bar.total, 1.0))

        fitted = fit_candidates(train, names, seed, progress=step)
        chosen = max(fitted, key=lambda f: f.cv_macro_f1)  # ties keep the first (svm: faster)
        metrics = score(chosen.pipeline, chosen.threshold, labelled(test_part))
        metrics["candidates_cv_macro_f1"] = {f.candidate: f.cv_macro_f1 for f in fitted}
        step("frozen test")
        data = {"corpus_files": files_digest(data_dir), "train_count": len(train_part),
                "test_count": len(test_part), "extra_count": len(extra)}
        metadata = metadata_for(chosen, seed, metrics, data)
        path = save_model(models_dir, chosen.pipeline, metadata)
        step("save")
    promoted, reason = _maybe_promote(models_dir, data_dir, metadata["version"], promote=promote, force=force)
    return Trained(metadata["version"], path, metrics, promoted, reason)


def _maybe_promote(models_dir: Path, data_dir: Path, version: str, *, promote: bool,
                   force: bool) -> tuple[bool, str]:
    if not promote:
        return False, "not promoted (--no-promote)"
    try:
        promote_version(models_dir, version, data_dir, force=force)
    except ModelError as exc:
        return False, f"not promoted: {exc}"
    return True, "promoted to current"


def promote_version(models_dir: Path, version: str, data_dir: Path, *, force: bool = False) -> None:
    """Make ``version`` current unless it scores worse than the current one on the same frozen test part.

    Both models are scored now, on the test part of ``data_dir``; a current model that no longer loads
    (tampered, incompatible) does not block the promotion. The new one must load.
    """
    new = load_model(models_dir, version)
    try:
        old: CategoryModel | None = load_model(models_dir)
    except ModelError:
        old = None
    if old is not None and old.version != version and not force:
        test = labelled(split(load_corpus(data_dir))[1])
        new_f1 = score(new.pipeline, new.threshold, test)["macro_f1"]
        old_f1 = score(old.pipeline, old.threshold, test)["macro_f1"]
        if new_f1 < old_f1:
            raise ModelError(f"{version} is worse than current {old.version} on the frozen test part "
                             f"(macro-F1 {new_f1:.4f} < {old_f1:.4f}); use --force to promote anyway")
    set_current(models_dir, version)


def evaluate(models_dir: Path, data_dir: Path, version: str | None = None) -> tuple[CategoryModel, dict[str, Any],
                                                                                  list[str], list[str]]:
    """Score a stored model on the frozen test part: (model, metrics, true labels, predicted labels)."""
    model = load_model(models_dir, version)
    test = labelled(split(load_corpus(data_dir))[1])
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
