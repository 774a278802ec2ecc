"""Operator corrections end to end: a mail through the real SMTP ingress, `gateway label`, then
`gateway train --include-corrections` learning from it."""
from __future__ import annotations

import json
import smtplib
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy import select
from typer.testing import CliRunner

from classifier.registry import METADATA, current_version
from gateway.cli import app
from gateway.config import parse_config
from gateway.corrections import corrections_as_examples
from gateway.storage.db import Database
from gateway.storage.models import Correction
from tests.delivery_helpers import headers_of, mail, wait_for_delivered

BODY = ("Hallo,\n\nwir möchten für unsere zwölf neuen Teamleiter eine Schulung zum Bewerbermanagement buchen, "
        "am liebsten Ende März vor Ort in Kassel.\n\nViele Grüße\nJana Roth")


def test_a_label_is_stored_with_who_and_when_and_the_next_training_uses_it(
        config_data: dict[str, Any], start_gateway: Any, tmp_path: Path) -> None:
    config = parse_config(config_data)
    gateway = start_gateway(config)  # with the shipped models; new versions are trained into tmp_path/models
    config_data["classifier"]["models_dir"] = str(tmp_path / "models")
    config_path = tmp_path / "gateway.toml"
    config_path.write_bytes(tomli_w.dumps(config_data).encode())
    with smtplib.SMTP("127.0.0.1", gateway.smtp.bound_port, timeout=10) as client:
        client.sendmail("jana.roth@example.org", ["support@tessaro.example"],
                        mail("jana.roth@example.org", "Schulung für neue Teamleiter", BODY, "<label-1@example.org>"))
    (delivered,) = wait_for_delivered(tmp_path, 1, timeout=60)  # the parse worker loads the model first
    public_id = headers_of(delivered)["X-Gateway-Message-Id"]

    cli = CliRunner()
    labelled = cli.invoke(app, ["label", public_id, "training", "--by", "olga", "--config", str(config_path)])
    assert labelled.exit_code == 0, labelled.stderr
    again = cli.invoke(app, ["label", public_id, "training", "--by", "olga", "--config", str(config_path)])
    assert again.exit_code == 0 and "(already so labelled)" in again.stdout  # and no second row (below)
    assert cli.invoke(app, ["label", "0" * 32, "training", "--config", str(config_path)]).exit_code == 2
    assert cli.invoke(app, ["label", public_id, "trainings", "--config", str(config_path)]).exit_code == 2

    db = Database(config.gateway.database)
    try:
        with db.session() as session:
            (correction,) = session.scalars(select(Correction)).all()
            assert (correction.category, correction.labelled_by, correction.source) == ("training", "olga", "cli")
            assert correction.created_at is not None
        (example,) = corrections_as_examples(db)
    finally:
        db.dispose()
    assert example.category == "training" and example.lang == "de"
    assert example.text.startswith("Schulung für neue Teamleiter\n") and "Jana Roth" not in example.text

    trained = cli.invoke(app, ["train", "--candidate", "svm", "--include-corrections", "--config", str(config_path)])
    assert trained.exit_code == 0, trained.stderr
    assert "(1 corrections used)" in trained.stdout
    models_dir = tmp_path / "models"
    metadata = json.loads((models_dir / current_version(models_dir) / METADATA).read_text())
    assert metadata["data"]["extra_count"] == 1
