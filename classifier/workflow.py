"""Operator workflows on top of train/registry: train a version, choose among candidates, evaluate, promote."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.corpus import Example, files_digest, load_corpus, split
from classifier.evalsets import (EvalSet, best_candidate, corpus_sets, judge, real_sets, right, selection,
                                 worse_sets)
from classifier.model import CategoryModel, Prediction
from classifier.realdata import SHARED_DATA, RealSource, real_sources
from classifier.realdata import files_digest as real_files_digest
from classifier.registry import current_version, list_versions, load_model, read_metadata, save_model, set_current
from classifier.taxonomy import CATEGORIES
from classifier.train import (CANDIDATES, Fitted, Labelled, class_cuts, fit_candidate, fit_features, metadata_for,
                              score, training_mix)
from gateway.errors import ModelError

#: a long step's description and the share of the whole work done (0..1); the CLI shows it with tqdm
Progress = Callable[[str, float], None]


def labelled(examples: Sequence[Example]) -> list[Labelled]:
    return [Labelled(e.text, e.category, e.lang) for e in examples]


def real_examples(sources: Sequence[RealSource]) -> list[Labelled]:
    """The train parts of the real sources, labelled with the categories they train as."""
    return [Labelled(e.text, s.trains_as[e.label], "en", s.name) for s in sources for e in s.part(dev=False)]


def load_real(real_data: Path) -> list[RealSource]:
    try:
        return real_sources(real_data)
    except OSError as exc:
        raise ModelError(f"real data not readable in {real_data} ({exc}); see ../shared/data/README.md") from None


def eval_sets(data_dir: Path, sources: Sequence[RealSource]) -> list[EvalSet]:
    """The frozen corpus test part (overall, per language) and the real dev sets."""
    test_part = split(load_corpus(data_dir))[1]
    if not test_part:
        raise ModelError(f"no corpus in {data_dir}: need *.jsonl files with a train and a test part")
    return corpus_sets(test_part, CATEGORIES) + real_sets(sources)


@dataclass(frozen=True)
class SetRun:
    """One eval set as a model saw it."""

    eval_set: EvalSet
    predictions: list[Prediction]

    @property
    def scores(self) -> dict[str, Any]:
        return judge(self.eval_set, self.predictions)


def run_sets(model: CategoryModel, sets: Sequence[EvalSet], progress: Progress | None = None) -> list[SetRun]:
    """Predict every set as the gateway would (its detected language included)."""
    runs = []
    for done, eval_set in enumerate(sets):
        if progress:
            progress(f"score {model.version} on {eval_set.name}", done / len(sets))
        runs.append(SetRun(eval_set, model.predict(eval_set.texts, languages=eval_set.languages)))
    if progress:
        progress(f"scored {model.version}", 1.0)
    return runs


def calibrate(fitted: Fitted, sets: Sequence[EvalSet]) -> tuple[dict[str, float], list[SetRun]]:
    """The candidate's per-category cuts (see :func:`classifier.train.class_cuts`) and its runs at those cuts."""
    model = fitted.model()
    probabilities = [model.predict_proba(s.texts) for s in sets]
    classes = model.classes
    real_dev = [(model.predictions(s.texts, proba), right(s, [classes[i] for i in proba.argmax(axis=1)]))
                for s, proba in zip(sets, probabilities) if s.real]
    cuts = class_cuts(fitted, real_dev)
    model = fitted.model(cuts)
    return cuts, [SetRun(s, model.predictions(s.texts, proba, languages=s.languages))
                  for s, proba in zip(sets, probabilities)]


@dataclass(frozen=True)
class Trained:
    version: str
    path: Path
    metadata: dict[str, Any]
    promoted: bool
    reason: str


def train_version(data_dir: Path, models_dir: Path, *, candidate: str = "best", seed: int = 0,
                  extra: Sequence[Labelled] = (), promote: bool = True, force: bool = False,
                  real_data: Path = SHARED_DATA, progress: Progress | None = None) -> Trained:
    """Train the candidates on corpus + real data (+ ``extra``), keep the one whose worst eval set is best, save it."""
    report = progress or (lambda step, done: None)
    train_part, test_part = split(load_corpus(data_dir))
    sources = load_real(real_data)
    sets = eval_sets(data_dir, sources)
    names = list(CANDIDATES) if candidate == "best" else [candidate]
    if not set(names) <= set(CANDIDATES):
        raise ModelError(f"unknown candidate {candidate!r}; choose best or one of {', '.join(CANDIDATES)}")
    corpus, real = labelled(train_part) + list(extra), real_examples(sources)
    mixes = {name: frozenset(s for s, share in CANDIDATES[name].shares.items() if share > 0) for name in names}
    total, done = 2 * len(names) + len(set(mixes.values())) + 1, 0
    features: dict[frozenset[str], Any] = {}
    results = []
    for name in names:
        train, weights = training_mix(corpus, real, CANDIDATES[name].shares)
        mix = mixes[name]
        if mix not in features:
            report(f"features of {len(train)} examples", done / total)
            features[mix], done = fit_features([e.text for e in train]), done + 1
        report(f"fit {name}", done / total)
        fitted = fit_candidate(CANDIDATES[name], *features[mix], train, weights, seed)
        report(f"score {name} on {len(sets)} sets", (done + 1) / total)
        cuts, runs = calibrate(fitted, sets)
        results.append((fitted, cuts, {r.eval_set.name: r.scores for r in runs}))
        done += 2
    fitted, cuts, scores = results[best_candidate([r[2] for r in results])]
    metrics = score(fitted.model(cuts), labelled(test_part))
    metrics["candidates_cv_macro_f1"] = {f.candidate.name: f.cv_macro_f1 for f, _, _ in results}
    data = {"corpus_files": files_digest(data_dir), "real_files": real_files_digest(real_data),
            "train_count": len(train_part), "test_count": len(test_part), "real_count": len(real),
            "extra_count": len(extra)}
    candidates = {f.candidate.name: {"score": selection(s)["score"], "worst_set": selection(s)["worst_set"],
                                     "macro_f1": {n: v["macro_f1"] for n, v in s.items()}} for f, _, s in results}
    metadata = metadata_for(fitted, cuts, seed, metrics, data, sets=scores, selection=selection(scores),
                            candidates=candidates)
    report("save", done / total)
    path = save_model(models_dir, fitted.pipeline, metadata)
    report("saved", 1.0)
    promoted, reason = _maybe_promote(models_dir, data_dir, metadata["version"], real_data, promote, force)
    return Trained(metadata["version"], path, metadata, promoted, reason)


def _maybe_promote(models_dir: Path, data_dir: Path, version: str, real_data: Path, promote: bool,
                   force: bool) -> tuple[bool, str]:
    if not promote:
        return False, "not promoted (--no-promote)"
    try:
        promote_version(models_dir, version, data_dir, force=force, real_data=real_data)
    except ModelError as exc:
        return False, f"not promoted: {exc}"
    return True, "promoted to current"


def promote_version(models_dir: Path, version: str, data_dir: Path, *, force: bool = False,
                    real_data: Path = SHARED_DATA, progress: Progress | None = None) -> None:
    """Make ``version`` current unless it scores worse than the current one on any eval set.

    Both models are scored now, on the same sets; a current model that no longer loads (tampered, incompatible)
    does not block the promotion. The new one must load.
    """
    new = load_model(models_dir, version)
    try:
        old: CategoryModel | None = load_model(models_dir)
    except ModelError:
        old = None
    if old is not None and old.version != version and not force:
        sets = eval_sets(data_dir, load_real(real_data))
        halves = [None if progress is None else (lambda step, done, i=i: progress(step, (i + done) / 2))
                  for i in range(2)]
        worse = worse_sets(*({r.eval_set.name: r.scores for r in run_sets(m, sets, half)}
                             for m, half in zip((new, old), halves)))
        if worse:
            raise ModelError(f"{version} is worse than current {old.version} on {len(worse)} eval set(s): "
                             f"{'; '.join(worse)} (macro-F1); use --force to promote anyway")
    set_current(models_dir, version)


def evaluate(models_dir: Path, data_dir: Path, version: str | None = None, *, real_data: Path = SHARED_DATA,
             progress: Progress | None = None) -> tuple[CategoryModel, dict[str, Any], list[SetRun]]:
    """Score a stored model: (model, per-class metrics on the frozen test part, every eval set's run)."""
    model = load_model(models_dir, version)
    metrics = score(model, labelled(split(load_corpus(data_dir))[1]))
    return model, metrics, run_sets(model, eval_sets(data_dir, load_real(real_data)), progress)


def versions_table(models_dir: Path) -> list[dict[str, Any]]:
    """One row per stored version: version, created, candidate, macro-F1, coverage, per-set scores, current?"""
    try:
        current = current_version(models_dir)
    except ModelError:
        current = None
    rows = []
    for version in list_versions(models_dir):
        meta = read_metadata(models_dir, version)
        rows.append({"version": version, "created": meta["created"], "candidate": meta["candidate"],
                     "macro_f1": meta["metrics"]["macro_f1"], "coverage": meta["metrics"]["coverage"],
                     "sets": meta.get("sets", {}), "selection": meta.get("selection"),
                     "current": version == current})
    return rows
