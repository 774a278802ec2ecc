"""Versioned model artifacts in ``models/``: skops files with metadata and checksum, promotion, rollback.

Layout::

    models/<version>/model.skops     the pipeline (skops, never pickle)
    models/<version>/metadata.json   version, created, classes, threshold, metrics, sha256 of model.skops
    models/CURRENT                   the version the gateway loads
    models/HISTORY                   earlier CURRENT versions, newest last (for rollback)

Loading verifies the checksum, refuses a model trained under another scikit-learn minor version (the pickled
estimators' internals may differ; ``pyproject.toml`` pins the tested range) and any type outside an explicit
list, and checks the fast scorer against scikit-learn's ``predict_proba`` on a few texts.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
import sklearn
import structlog
from sklearn.pipeline import Pipeline

from classifier.model import CategoryModel
from gateway.errors import ModelError

ARTIFACT = "model.skops"
METADATA = "metadata.json"
#: a version directory's name: ``<UTC timestamp>-<candidate>``; anything else in ``models/`` (``steps/``) is not one
VERSION_NAME = re.compile(r"^\d{8}-\d{6}-[a-z]+$")
#: directories in models/ that hold other models (``steps``: the has_steps model), never category versions
AUXILIARY_MODELS = frozenset({"steps"})

log = structlog.get_logger("classifier.registry")
#: texts the fast scorer must score as scikit-learn does before a loaded model uses it
SCORER_CHECK_TEXTS = ("", "12345 !!", "Rechnung 2026-0412 ging an die alte Adresse, bitte neu senden.",
                      "Since 8:00 nobody can log in, every page shows error 503.",
                      "Hoe kan ik een nieuwe gebruiker toevoegen aan ons team?")
SCORER_TOLERANCE = 1e-5

#: Types a model file may contain beyond skops' defaults; anything else is refused on load.
TRUSTED_TYPES = frozenset(
    {
        "classifier.features.CompactTfidfVectorizer",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.isotonic.IsotonicRegression",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.pipeline.FeatureUnion",
        "sklearn.pipeline.Pipeline",
        "sklearn.svm._classes.LinearSVC",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.linear_model._sgd_fast.Hinge",
        "sklearn.linear_model._sgd_fast.Log",
        "sklearn.linear_model._stochastic_gradient.SGDClassifier",
        "sklearn.utils._metadata_requests.MetadataRequest",
        "sklearn.model_selection._split.StratifiedKFold",
        "builtins.builtin_function_or_method",
        "numpy.float64",
        "numpy.int64",
        "numpy.dtype",
        "scipy.sparse._csr.csr_matrix",
        "re.Pattern",
        "builtins.frozenset",
        "sklearn.feature_extraction.text.CountVectorizer",
    }
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(models_dir: Path, pipeline: Pipeline, metadata: dict[str, Any]) -> Path:
    """Write a new version directory atomically (temp dir, then rename); returns its path."""
    version = str(metadata["version"])
    final = models_dir / version
    if final.exists():
        raise ModelError(f"model version {version} already exists in {models_dir}")
    staging = models_dir / f"tmp-{version}"
    staging.mkdir(parents=True)
    sio.dump(pipeline, staging / ARTIFACT, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    metadata = {**metadata, "sha256": sha256_of(staging / ARTIFACT)}
    (staging / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staging, final)
    return final


def read_metadata(models_dir: Path, version: str) -> dict[str, Any]:
    path = models_dir / version / METADATA
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {version}: cannot read {path}: {exc}") from None


def load_model(models_dir: Path, version: str | None = None) -> CategoryModel:
    """Load a version (default: CURRENT), verifying checksum and the types the file contains."""
    version = version or current_version(models_dir)
    metadata = read_metadata(models_dir, version)
    artifact = models_dir / version / ARTIFACT
    if not artifact.is_file():
        raise ModelError(f"model {version}: {artifact} is missing")
    actual = sha256_of(artifact)
    if actual != metadata.get("sha256"):
        raise ModelError(f"model {version}: checksum mismatch ({actual[:12]}… ≠ {str(metadata.get('sha256'))[:12]}…); refusing a tampered file")
    try:
        untrusted = set(sio.get_untrusted_types(file=artifact))
    except Exception as exc:  # noqa: BLE001 - an incompatible artifact may fail in many ways
        raise ModelError(f"model {version}: not a readable skops file ({type(exc).__name__}: {exc})") from None
    strangers = sorted(untrusted - TRUSTED_TYPES)
    if strangers:
        raise ModelError(f"model {version}: refusing untrusted types {', '.join(strangers)}")
    check_sklearn_version(f"model {version}", metadata)
    try:
        pipeline = sio.load(artifact, trusted=sorted(untrusted))
    except Exception as exc:  # noqa: BLE001 - an incompatible artifact may fail in many ways
        raise ModelError(f"model {version}: cannot load ({type(exc).__name__}: {exc})") from None
    return check_scorer(CategoryModel(pipeline, metadata))


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_sklearn_version(what: str, metadata: dict[str, Any]) -> None:
    """Refuse a model trained under another scikit-learn minor version than the one running."""
    trained = str(metadata.get("sklearn_version") or "")
    if _minor(trained) != _minor(sklearn.__version__):
        raise ModelError(f"{what} was trained under scikit-learn {trained or '(unknown)'} but this gateway runs "
                         f"{sklearn.__version__}; refusing it, as its estimators may behave differently. Retrain it "
                         "under this version (`make model`, `make steps-model` or `gateway train`) or install the "
                         "scikit-learn it was trained with")


def check_scorer(model: CategoryModel) -> CategoryModel:
    """Keep the fast scorer only if it gives scikit-learn's probabilities on :data:`SCORER_CHECK_TEXTS`."""
    if model.scorer is None:
        return model
    texts = model.prefixes(SCORER_CHECK_TEXTS)
    gap = float(np.abs(model.scorer.predict_proba(texts) - model.pipeline.predict_proba(texts)).max())
    if gap > SCORER_TOLERANCE:
        log.error("fast scorer disagrees with scikit-learn; predicting the scikit-learn way (slower)",
                  model=model.version, largest_difference=gap)
        model.scorer = None
    return model


class StoredModel(CategoryModel):
    """A verified version that keeps only where it is stored; its pipeline is loaded (and verified) on first use.

    The gateway process holds one: it needs the version and the threshold, while its worker processes classify.
    Pickled to start a worker it is a path and the metadata, not the arrays (about 60 MB in memory, 34 MB pickled).
    """

    def __init__(self, models_dir: Path, metadata: dict[str, Any]) -> None:  # no pipeline: loaded on first use
        self.models_dir = models_dir
        self.metadata = metadata
        self._loaded: CategoryModel | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": None}

    @property
    def pipeline(self) -> Pipeline:  # type: ignore[override]
        return self._model().pipeline

    @property
    def scorer(self) -> Any:  # type: ignore[override]
        return self._model().scorer

    @property
    def known(self) -> frozenset[str] | None:  # type: ignore[override]
        return self._model().known

    def _model(self) -> CategoryModel:
        if self._loaded is None:
            self._loaded = load_model(self.models_dir, self.version)
        return self._loaded


def stored_model(models_dir: Path, version: str | None = None) -> StoredModel:
    """Verify a version by loading it (as :func:`load_model`), then keep only its location and metadata."""
    return StoredModel(models_dir, load_model(models_dir, version).metadata)


def list_versions(models_dir: Path) -> list[str]:
    """All complete versions, oldest first."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / METADATA).is_file()
                  and not p.name.startswith("tmp-") and p.name not in AUXILIARY_MODELS)


def current_version(models_dir: Path) -> str:
    pointer = models_dir / "CURRENT"
    try:
        return pointer.read_text(encoding="utf-8").strip()
    except OSError:
        raise ModelError(f"no current model: {pointer} is missing (run `make model`)") from None


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def set_current(models_dir: Path, version: str) -> None:
    """Make ``version`` current, remembering the previous one for rollback."""
    if version not in list_versions(models_dir):
        raise ModelError(f"unknown model version {version}")
    try:
        previous = current_version(models_dir)
    except ModelError:
        previous = None
    if previous and previous != version:
        history = _history(models_dir) + [previous]
        _write(models_dir / "HISTORY", "\n".join(history) + "\n")
    _write(models_dir / "CURRENT", version + "\n")


def rollback(models_dir: Path) -> str:
    """Return to the previous current version; returns it."""
    history = _history(models_dir)
    if not history:
        raise ModelError("nothing to roll back to: HISTORY is empty")
    version = history.pop()
    _write(models_dir / "HISTORY", "\n".join(history) + ("\n" if history else ""))
    _write(models_dir / "CURRENT", version + "\n")
    return version


def _history(models_dir: Path) -> list[str]:
    path = models_dir / "HISTORY"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
