"""``gateway report``: the times an operator types, the default of the last 24 hours, rule hits and misses from
the stored traces, and ``--list`` with the messages behind the counts."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import tomli_w
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli.times import TimeError, parse_time
from tests.delivery_helpers import mail
from tests.test_replies import store_and_decide

BERLIN = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
GATEWAY = str(Path(sys.executable).parent / "gateway")


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", NOW - dt.timedelta(hours=2)),
    ("30m", NOW - dt.timedelta(minutes=30)),
    ("1d", NOW - dt.timedelta(days=1)),
    ("1w", NOW - dt.timedelta(weeks=1)),
    ("1 hour ago", NOW - dt.timedelta(hours=1)),
    ("an hour ago", NOW - dt.timedelta(hours=1)),
    ("3 days ago", NOW - dt.timedelta(days=3)),
    ("  90  Minutes ", NOW - dt.timedelta(minutes=90)),
    ("now", NOW),
    ("today", dt.datetime(2026, 11, 26, tzinfo=BERLIN)),
    ("yesterday", dt.datetime(2026, 11, 25, tzinfo=BERLIN)),
    ("2026-11-24", dt.datetime(2026, 11, 24, tzinfo=BERLIN)),
    ("2026-11-24 08:00", dt.datetime(2026, 11, 24, 8, 0, tzinfo=BERLIN)),
    ("2026-11-24T08:00+00:00", dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)),
])
def test_the_times_an_operator_types(text: str, expected: dt.datetime) -> None:
    assert parse_time(text, NOW, BERLIN) == expected


@pytest.mark.parametrize("text", ["1 hourly", "ago", "2 fortnights ago", "2026-13-01", "last tuesday", "", "-2h"])
def test_anything_else_is_refused_with_examples(text: str) -> None:
    with pytest.raises(TimeError, match=r"cannot read .* as a time; for example 2h, 30m, 1d"):
        parse_time(text, NOW, BERLIN)


@pytest.fixture
def decided(config_data: dict[str, Any], database: Any, config: Any, shipped_model: Any, tmp_path: Path
            ) -> tuple[Path, list[str]]:
    """Three decisions stored a moment ago: the config file and their ids."""
    raws = [mail("anna@example.org", "Rechnung 2026-0412 falsch", "Bitte korrigieren Sie die Rechnungsadresse.",
                 "<r1@example.org>"),
            mail("bert@example.org", "Alles steht still", "Seit 10 Uhr ist das ganze System nicht erreichbar.",
                 "<r2@example.org>"),
            mail("carla@example.org", "Schulung buchen", "Wir möchten eine Schulung für zwölf Teamleiter buchen.",
                 "<r3@example.org>")]
    ids = store_and_decide(database, config, shipped_model, raws)
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(config_data))
    return path, ids


def report(path: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["report", *args, "--json", "--config", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_last_24_hours_by_default_with_every_rule_s_hits_and_misses(decided: tuple[Path, list[str]]) -> None:
    path, _ = decided
    summary = report(path)
    assert summary["decisions"] == 3 and summary["with_trace"] == 3
    assert dt.datetime.fromisoformat(summary["since"]) < dt.datetime.now(dt.UTC) - dt.timedelta(hours=23)
    outside_hours = summary["rules"]["outage-outside-business-hours"]
    assert outside_hours["hit"] + outside_hours["missed"] == 3  # checked for every message, hit or not
    assert sum(v["hit"] for k, v in summary["rules"].items() if k.startswith("table.")) >= 2
    assert report(path, "--since", "1 hour ago")["decisions"] == 3
    assert report(path, "--since", "2099-01-01")["decisions"] == 0


def test_list_shows_the_messages_behind_the_counts(decided: tuple[Path, list[str]]) -> None:
    path, ids = decided
    listed = report(path, "--list")
    assert [item["id"] for item in listed] == ids
    billing = report(path, "--list", "--category", "billing")
    assert [item["category"] for item in billing] == ["billing"] and billing[0]["role"] == "backoffice"
    assert report(path, "--list", "--role", "nobody") == []
    text = CliRunner().invoke(app, ["report", "--list", "--config", str(path)]).output
    assert text.splitlines()[-1].startswith("3 decisions since ") and ids[0] in text and "['" not in text


def test_a_time_it_cannot_read_is_one_line_and_exit_2(decided: tuple[Path, list[str]]) -> None:
    path, _ = decided
    done = subprocess.run([GATEWAY, "report", "--since", "1 hour agoo", "--config", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: --since: cannot read '1 hour agoo' as a time; for example 2h")
