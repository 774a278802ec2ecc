"""The models page: per-set metrics and confusion matrices, promotion (worse on any eval set needs a
confirmation), rollback, and a retrain with corrections in a background process with its progress shown."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from sqlalchemy import select
from starlette.testclient import TestClient

from gateway.storage.models import AuditEntry
from tests.conftest import ROOT
from tests.console_helpers import console_app, log_in

SHIPPED = "20261126-005732-svm"
CURRENT, CANDIDATE, BETTER = "20261201-000000-svm", "20261202-000000-svm", "20261203-000000-svm"


def _version(models: Path, name: str, sets: dict[str, float]) -> None:
    """A version with the shipped model's artifact and per-set metrics of our choosing."""
    (models / name).mkdir()
    (models / name / "model.skops").symlink_to(ROOT / "models" / SHIPPED / "model.skops")
    metadata = json.loads((ROOT / "models" / SHIPPED / "metadata.json").read_text(encoding="utf-8"))
    metadata["version"] = name
    metadata["sets"] = {set_name: {"macro_f1": f1, "routed_precision": 0.9, "coverage": 0.8, "examples": 310,
                                   "confusion": {"labels": ["billing", "other"], "matrix": [[30, 2], [1, 12]]}}
                        for set_name, f1 in sets.items()}
    (models / name / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")


@pytest.fixture
def models(tmp_path: Path) -> Iterator[dict[str, Any]]:
    models = tmp_path / "models"
    models.mkdir()
    (models / SHIPPED).symlink_to(ROOT / "models" / SHIPPED)  # an older one with frozen-test "metrics" only
    (models / "steps").symlink_to(ROOT / "models" / "steps")
    _version(models, CURRENT, {"frozen_test": 0.90, "tickets": 0.70})
    _version(models, CANDIDATE, {"frozen_test": 0.91, "tickets": 0.65})
    _version(models, BETTER, {"frozen_test": 0.92, "tickets": 0.75})
    (models / "CURRENT").write_text(CURRENT + "\n")
    (models / "HISTORY").write_text(SHIPPED + "\n")
    app, db, path = console_app(tmp_path)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    document["classifier"]["models_dir"] = str(models)
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    client = TestClient(app)
    yield {"client": client, "csrf": log_in(client, "olga"), "dir": models, "db": db}
    db.dispose()


def test_versions_with_per_set_metrics_and_confusion_matrix(models: dict[str, Any]) -> None:
    page = re.sub(r">\s+<", "><", models["client"].get("/models").text)
    assert f"<h2>{CURRENT} (current)</h2>" in page and f"<h2>{SHIPPED}</h2>" in page
    assert "<td>tickets</td><td>0.700</td><td>0.900</td><td>0.800</td>" in page
    assert "<td>frozen test</td><td>0.907</td>" in page  # the older version: what it has (0.9068)
    assert page.count("<svg") == 6 and "true billing, predicted other: 2" in page  # 3 versions × 2 sets


def test_a_promotion_worse_on_an_eval_set_needs_a_confirmation(models: dict[str, Any]) -> None:
    client, csrf = models["client"], models["csrf"]
    asked = client.post(f"/models/{CANDIDATE}/promote", data={"csrf": csrf})
    assert asked.status_code == 200 and "scores <strong>worse</strong>" in asked.text
    assert "<td>tickets</td><td>0.6500</td><td>0.7000</td>" in re.sub(r">\s+<", "><", asked.text)
    assert (models["dir"] / "CURRENT").read_text().strip() == CURRENT  # not yet
    done = client.post(f"/models/{CANDIDATE}/promote", data={"csrf": csrf, "confirm": "yes"})
    assert f"{CANDIDATE} is the current model." in done.text
    assert (models["dir"] / "CURRENT").read_text().strip() == CANDIDATE
    with models["db"].reading() as session:
        entry = session.scalar(select(AuditEntry))
    assert entry.area == "model" and "confirmed although worse" in entry.summary and entry.by == "olga"


def test_a_promotion_not_worse_anywhere_goes_through_and_rollback_returns(models: dict[str, Any]) -> None:
    client, csrf = models["client"], models["csrf"]
    (models["dir"] / "HISTORY").write_text("")
    assert f"{BETTER} is the current model." in client.post(f"/models/{BETTER}/promote", data={"csrf": csrf}).text
    assert f"{CURRENT} is the current model again." in client.post("/models/rollback", data={"csrf": csrf}).text
    assert (models["dir"] / "CURRENT").read_text().strip() == CURRENT
    nothing = client.post("/models/rollback", data={"csrf": csrf})
    assert nothing.status_code == 409 and "nothing to roll back to" in nothing.text
    assert client.post("/models/20990101-000000-svm/promote", data={"csrf": csrf}).status_code == 404


def test_retrain_with_corrections_runs_in_the_background_with_progress(models: dict[str, Any]) -> None:
    client, csrf = models["client"], models["csrf"]
    before = set(p.name for p in models["dir"].iterdir())
    assert "Training started." in client.post("/models/train", data={"csrf": csrf}).text
    assert client.post("/models/train", data={"csrf": csrf}).status_code == 409  # one at a time
    stages, deadline = set(), time.monotonic() + 900
    while True:
        page = client.get("/models/training").text
        stages.add(page.split('<span id="stage">')[1].split("</span>")[0])
        if 'http-equiv="refresh"' not in page:
            break
        assert time.monotonic() < deadline, "training did not end within 15 minutes"
        time.sleep(1)
    assert "is stored, not promoted" in page, page
    new, = set(p.name for p in models["dir"].iterdir()) - before
    assert f"New version <strong>{new}</strong>" in page
    assert len(stages - {"starting", "done"}) >= 2, stages  # progress was seen on the way
    assert (models["dir"] / "CURRENT").read_text().strip() == CURRENT
    assert f"<h2>{new}</h2>" in client.get("/models").text
