"""Model lifecycle through the real CLI: train (progress bar, metadata), eval (--json, --plot), list, promote
(refused when worse on any eval set unless --force), rollback, and refusal of tampered, untrusted or unreadable
artifacts and of models trained under another scikit-learn version; the fast scorer is checked at load."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner, Result

from classifier.corpus import load_corpus, split
from classifier.registry import (
    ARTIFACT,
    METADATA,
    current_version,
    list_versions,
    load_model,
    save_model,
    sha256_of,
    stored_model,
)
import numpy as np
import sklearn

from classifier.registry import check_scorer
from classifier.steps import load_steps_model
from classifier.train import CANDIDATES, fit_candidate, fit_features, metadata_for, score
from classifier.workflow import labelled
from gateway.cli import app
from gateway.config import parse_config
from gateway.errors import GatewayError, ModelError
from gateway.isolation import WorkerPool
from gateway.pipeline import Analysis, analyse
from gateway.runner import Gateway
from gateway.storage.db import Database
from tests.conftest import ROOT, shipped_config_data

def write_config(tmp: Path, models_dir: Path) -> Path:
    data = shipped_config_data(tmp)
    data["classifier"]["models_dir"] = str(models_dir)
    path = tmp / "gateway.toml"
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


def gateway(*args: str, config: Path) -> Result:
    """Run a ``gateway`` command in-process, as the console script would."""
    return CliRunner().invoke(app, [*args, "--config", str(config)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A models directory holding one version trained by ``gateway train`` (svm, seed 0)."""
    tmp = tmp_path_factory.mktemp("trained")
    result = gateway("train", "--candidate", "svm", "--seed", "0", config=write_config(tmp, tmp / "models"))
    assert result.exit_code == 0, result.stderr
    return tmp / "models", result


@pytest.fixture
def models(trained: tuple[Path, Any], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the trained models directory and a config pointing at it."""
    models_dir = tmp_path / "models"
    shutil.copytree(trained[0], models_dir)
    return models_dir, write_config(tmp_path, models_dir)


def save_worse_model(models_dir: Path) -> str:
    """A real but weaker model: the same pipeline trained on only 150 messages of our corpus."""
    train_part, test_part = split(load_corpus())
    small = labelled(train_part)[::8][:150]
    fitted = fit_candidate(CANDIDATES["svm"], *fit_features([e.text for e in small]), small, np.ones(len(small)))
    metadata = metadata_for(fitted, {}, 0, score(fitted.model(), labelled(test_part)), {})
    metadata["version"] = "20000101-000000-svm"
    save_model(models_dir, fitted.pipeline, metadata)
    return metadata["version"]


def test_train_writes_a_promoted_version_with_metadata_and_shows_progress(trained: tuple[Path, Any]) -> None:
    models_dir, result = trained
    assert "training" in result.stderr and "100%" in result.stderr and "score svm" in result.stderr  # tqdm
    (version,) = list_versions(models_dir)
    assert current_version(models_dir) == version and "promoted to current" in result.stdout
    meta = json.loads((models_dir / version / METADATA).read_text())
    assert meta["sha256"] == sha256_of(models_dir / version / ARTIFACT)
    assert meta["version"] == version and meta["candidate"] == "svm" and meta["sklearn_version"] == sklearn.__version__
    assert len(meta["classes"]) == 10 and 0 < meta["threshold"] < 1 and set(meta["class_thresholds"]) == set(meta["classes"])
    assert meta["data"]["train_count"] + meta["data"]["test_count"] == len(load_corpus())
    assert len(meta["data"]["corpus_files"]) == 6 and len(meta["data"]["real_files"]) == 2
    assert meta["metrics"]["macro_f1"] >= 0.85 and set(meta["metrics"]["per_language_macro_f1"]) == {"de", "en", "nl"}
    assert set(meta["sets"]) == {"corpus-test", "corpus-test-de", "corpus-test-en", "corpus-test-nl", "nlbse-dev",
                                 "s2r-dev"}
    for scores in meta["sets"].values():
        assert {"macro_f1", "routed_precision", "coverage", "examples", "confusion"} <= set(scores)
        labels, matrix = scores["confusion"]["labels"], scores["confusion"]["matrix"]
        assert len(matrix) == len(labels) and sum(map(sum, matrix)) == scores["examples"]
    assert meta["selection"]["worst_set"] in meta["sets"] and meta["selection"]["rule"].startswith("fewest real sets")
    assert "nlbse-dev" in result.stdout and "routed prec" in result.stdout and "targets missed" in result.stdout
    assert (models_dir / version / ARTIFACT).stat().st_size < 30 * 2**20


def test_eval_prints_json_metrics_and_writes_plots_per_set(models: tuple[Path, Path], tmp_path: Path) -> None:
    models_dir, config = models
    plots = tmp_path / "plots"
    result = gateway("eval", "--json", "--plot", str(plots), config=config)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["version"] == current_version(models_dir)
    assert len(metrics["per_class"]) == 10 and set(metrics["per_language_macro_f1"]) == {"de", "en", "nl"}
    assert 0 < metrics["coverage"] <= 1 and metrics["n"] == len(split(load_corpus())[1])
    stored = json.loads((models_dir / metrics["version"] / METADATA).read_text())["sets"]
    assert metrics["sets"] == stored  # scored again now: the same figures as at training
    for name in stored:
        for kind in ("confusion", "reliability"):
            png = plots / f"{name}-{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = gateway("eval", config=config)
    assert "macro-F1" in table.stdout and "outage" in table.stdout and "coverage" in table.stdout
    assert "nlbse-dev" in table.stdout and "s2r-dev" in table.stdout


def test_promotion_of_a_worse_model_is_refused_unless_forced_and_rollback_returns(models: tuple[Path, Path]) -> None:
    models_dir, config = models
    good = current_version(models_dir)
    worse = save_worse_model(models_dir)
    refused = gateway("model", "promote", worse, config=config)
    assert refused.exit_code == 2 and "worse than current" in refused.stderr and "--force" in refused.stderr
    assert "corpus-test-de" in refused.stderr and "s2r-dev" in refused.stderr  # every worse set is named
    assert current_version(models_dir) == good
    forced = gateway("model", "promote", worse, "--force", config=config)
    assert forced.exit_code == 0, forced.stderr
    assert current_version(models_dir) == worse
    listed = gateway("model", "list", config=config).stdout
    assert f"* {worse}" in listed and f"  {good}" in listed
    assert "nlbse-dev" in listed and "worst set" in listed  # the trained one's per-set scores; the other has none
    assert gateway("model", "rollback", config=config).exit_code == 0
    assert current_version(models_dir) == good
    assert gateway("model", "rollback", config=config).exit_code == 2  # nothing left to roll back to


def tamper(models_dir: Path, version: str) -> str:
    """A copy of ``version`` with one byte of its artifact changed (metadata untouched)."""
    copy = "20000101-000001-svm"
    shutil.copytree(models_dir / version, models_dir / copy)
    flip_a_byte(models_dir / copy / ARTIFACT)
    return copy


def flip_a_byte(artifact: Path) -> None:
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))


def test_a_tampered_artifact_is_refused_everywhere(models: tuple[Path, Path]) -> None:
    models_dir, config = models
    good = current_version(models_dir)
    bad = tamper(models_dir, good)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(models_dir, bad)
    promoted = gateway("model", "promote", bad, "--force", config=config)
    assert promoted.exit_code == 2 and "checksum mismatch" in promoted.stderr
    assert current_version(models_dir) == good
    evaluated = gateway("eval", "--model", bad, config=config)
    assert evaluated.exit_code == 2 and "refusing a tampered file" in evaluated.stderr


def test_untrusted_types_and_unreadable_files_are_refused(models: tuple[Path, Path]) -> None:
    models_dir, _ = models
    stranger = save_model(models_dir, RandomForestClassifier(n_estimators=2).fit([[0], [1]], [0, 1]),
                          {"version": "20000101-000002-svm"})
    with pytest.raises(ModelError, match="refusing untrusted types sklearn.tree._tree.Tree"):
        load_model(models_dir, stranger.name)
    garbage = models_dir / "20000101-000003-svm"
    garbage.mkdir()
    (garbage / ARTIFACT).write_bytes(b"not a zip file at all")
    (garbage / METADATA).write_text(json.dumps({"version": garbage.name, "sha256": sha256_of(garbage / ARTIFACT)}))
    with pytest.raises(ModelError, match="not a readable skops file"):
        load_model(models_dir, garbage.name)


def test_the_running_gateway_keeps_its_model_when_the_promoted_one_is_tampered(models: tuple[Path, Path]) -> None:
    models_dir, config_path = models
    good = current_version(models_dir)
    config_data = shipped_config_data(config_path.parent)
    config_data["classifier"]["models_dir"] = str(models_dir)
    config = parse_config(config_data)
    gateway_ = Gateway(config, Database(config.gateway.database))
    try:
        assert gateway_.model_version == good
        bad = tamper(models_dir, good)
        (models_dir / "CURRENT").write_text(bad + "\n")  # as if someone copied a file in by hand
        assert gateway_.reload(config_path) is True
        assert gateway_.model_version == good
        assert gateway_.processor.model.version == good
    finally:
        gateway_.db.dispose()


def test_versions_ignore_other_directories_such_as_the_steps_model(models: tuple[Path, Path]) -> None:
    models_dir, _ = models
    (models_dir / "steps").mkdir()
    (models_dir / "steps" / METADATA).write_text("{}")
    (models_dir / "tmp-20000101-000000-svm").mkdir()
    assert list_versions(models_dir) == [current_version(models_dir)]


def test_the_gateway_keeps_only_where_its_model_is_and_the_workers_load_and_verify_it(models: tuple[Path, Path],
                                                                                      tmp_path: Path) -> None:
    models_dir, _ = models
    shutil.copytree(ROOT / "models" / "steps", models_dir / "steps")  # analysis also needs the steps model
    config_data = shipped_config_data(tmp_path)
    config_data["classifier"]["models_dir"] = str(models_dir)
    config = parse_config(config_data)
    stored, loaded = stored_model(models_dir), load_model(models_dir)
    assert len(pickle.dumps(stored)) < 10_000  # what a worker gets at its start (multiprocessing pickles it)
    raw = (b"From: anna@example.org\r\nSubject: Rechnung 2026-0412\r\nMessage-ID: <s@example.org>\r\n\r\n"
           b"Die Rechnung ging an die alte Adresse. Bitte schicken Sie sie neu.\r\n")
    pool = WorkerPool(1, 256)
    try:
        analysis = pool.analyse(config, stored, raw)
        assert isinstance(analysis, Analysis)
        assert analysis.prediction == analyse(config, loaded, raw).prediction  # the same model, loaded in the worker
        assert stored._loaded is None  # the gateway process never loaded the arrays
        pool.close()
        flip_a_byte(models_dir / stored.version / ARTIFACT)  # tampered in place while the gateway runs
        with pytest.raises(GatewayError, match="did not start: it exited with code 1"):
            pool.analyse(config, stored, raw)  # a new worker verifies the file and refuses it
        with pytest.raises(ModelError, match="checksum mismatch"):
            stored.predict(["in this process, too"])
    finally:
        pool.close()


def test_a_model_trained_under_another_scikit_learn_version_is_refused(models: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    models_dir, _ = models
    version = current_version(models_dir)
    meta_path = models_dir / version / METADATA
    meta = json.loads(meta_path.read_text())
    major, minor, *_ = sklearn.__version__.split(".")
    meta_path.write_text(json.dumps({**meta, "sklearn_version": f"{major}.{minor}.99"}))
    assert load_model(models_dir, version).version == version  # another patch release of the same minor loads
    meta_path.write_text(json.dumps({**meta, "sklearn_version": f"{major}.{int(minor) - 1}.2"}))
    with pytest.raises(ModelError, match=rf"trained under scikit-learn {major}\.{int(minor) - 1}\.2 but this "
                                         rf"gateway runs {sklearn.__version__}; refusing it"):
        load_model(models_dir, version)
    steps = tmp_path / "steps"
    shutil.copytree(ROOT / "models" / "steps", steps)
    steps_meta = json.loads((steps / METADATA).read_text())
    (steps / METADATA).write_text(json.dumps({**steps_meta, "sklearn_version": "0.24.2"}))
    with pytest.raises(ModelError, match="steps model was trained under scikit-learn 0.24.2"):
        load_steps_model(steps)


def test_a_fast_scorer_that_disagrees_with_scikit_learn_is_dropped_at_load(models: tuple[Path, Path]) -> None:
    models_dir, _ = models
    model = load_model(models_dir)
    assert model.scorer is not None  # it agreed on the check texts
    texts = ["Rechnung falsch\nBitte neu ausstellen.", "Since 8:00 nobody can log in."]
    expected = model.pipeline.predict_proba(model.prefixes(texts))
    model.scorer.blocks[0].weights = model.scorer.blocks[0].weights * 3  # as if its arithmetic had drifted
    assert not np.allclose(model.predict_proba(texts), expected, atol=1e-6)
    check_scorer(model)
    assert model.scorer is None and np.allclose(model.predict_proba(texts), expected, atol=1e-9)
