"""Routing as a table: every (phase, category) cell, rules, business hours across DST and holidays, go-live."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.config.schema import Phase
from gateway.errors import ConfigError
from gateway.routing.calendar import is_business_hours
from gateway.routing.phases import phase_for
from gateway.routing.router import RouteFacts, ThreadOrigin, route

UTC = dt.UTC
WEDNESDAY_NOON = dt.datetime(2026, 11, 25, 11, 0, tzinfo=UTC)   # 12:00 in Berlin
WEDNESDAY_NIGHT = dt.datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # 23:00 in Berlin

# The default table (phase x category -> role), as a user reads it.
EXPECTED = {
    "outage": ("support", "support"), "incident": ("consultant", "support"), "how_to": ("consultant", "support"),
    "configuration": ("consultant", "support"), "feature_request": ("project_manager", "customer_success"),
    "licence": ("account_manager", "account_manager"), "billing": ("backoffice", "backoffice"),
    "training": ("project_manager", "customer_success"), "complaint": ("account_manager", "account_manager"),
    "other": ("triage", "triage"),
}
CELLS = [(phase, category, roles[i]) for category, roles in EXPECTED.items()
         for i, phase in enumerate((Phase.IMPLEMENTATION, Phase.LIVE))]


def facts(phase: Phase, category: str, at: dt.datetime = WEDNESDAY_NOON, **changes: Any) -> RouteFacts:
    values = dict(phase=phase, category=category, confidence=0.95, abstained=False, mailbox="support@tessaro.example",
                  sender="someone@example.org", customer=None, at=at)
    return RouteFacts(**{**values, **changes})


@pytest.mark.parametrize(("phase", "category", "role"), CELLS)
def test_default_table_in_business_hours(config, phase: Phase, category: str, role: str) -> None:
    decided = route(config, facts(phase, category))
    assert decided.role == role
    assert decided.rules == (f"table.{phase.value}.{category}",)


@pytest.mark.parametrize(("phase", "category", "role"), CELLS)
def test_outside_business_hours_only_outages_go_to_on_call(config, phase: Phase, category: str, role: str) -> None:
    decided = route(config, facts(phase, category, at=WEDNESDAY_NIGHT))
    if category == "outage":
        assert (decided.role, decided.rules) == ("on_call", ("outage-outside-business-hours",))
    else:
        assert decided.role == role


def test_abstention_goes_to_triage_and_category_rules_do_not_fire(config) -> None:
    decided = route(config, facts(Phase.LIVE, "outage", at=WEDNESDAY_NIGHT, abstained=True, confidence=0.3))
    assert decided.role == "triage"
    assert decided.rules == ("abstain-below-threshold",)
    assert [c.name for c in decided.checks if not c.fired] == ["outage-outside-business-hours"]


def test_automated_mail_goes_to_the_automated_role_first_and_never_pages_on_call(config_data) -> None:
    config_data["roles"]["bounces"] = {"maildir": "var/mail/bounces"}
    config_data["routing"]["automated_role"] = "bounces"
    config = parse_config(config_data)
    bounce = facts(Phase.LIVE, "outage", at=WEDNESDAY_NIGHT, automated="system sender mailer-daemon@example.org",
                   thread=ThreadOrigin("abc123", "support"))
    decided = route(config, bounce)
    assert decided.role == "bounces" and decided.rules == ("automated-sender",)
    assert route(config, replace(bounce, automated="")).role == "on_call"  # the same facts from a person


@pytest.mark.parametrize("reason", ["out-of-domain", "unsupported-language"])
def test_mail_the_model_does_not_know_goes_to_triage_saying_why(config, reason: str) -> None:
    decided = route(config, facts(Phase.LIVE, "billing", abstained=True, confidence=0.9, abstain_reason=reason))
    assert decided.role == "triage" and decided.rules == (f"abstain-{reason}",)


def test_a_reply_follows_its_thread_unless_a_rule_fires(config) -> None:
    thread = ThreadOrigin("abc123", "consultant")
    assert route(config, facts(Phase.LIVE, "how_to", thread=thread)).rules == ("thread.abc123",)
    assert route(config, facts(Phase.LIVE, "how_to", thread=thread)).role == "consultant"
    night_outage = route(config, facts(Phase.LIVE, "outage", at=WEDNESDAY_NIGHT, thread=thread))
    assert night_outage.role == "on_call"


def test_customer_override_replaces_the_target_and_says_so(config) -> None:
    van_dijk = config.customers[1]
    decided = route(config, facts(Phase.IMPLEMENTATION, "how_to", customer=van_dijk, sender="x@vandijkzorg.example"))
    assert decided.role == "consultant"
    assert decided.target_name == "customer:1:consultant"
    assert decided.rules[-1] == "override.consultant"


def test_key_user_policy_flags_other_senders(config_data) -> None:
    config_data["customers"][1]["key_users"] = ["Key.User@vandijkzorg.example"]
    config = parse_config(config_data)
    other = route(config, facts(Phase.LIVE, "billing", customer=config.customers[1], sender="nurse@vandijkzorg.example"))
    key = route(config, facts(Phase.LIVE, "billing", customer=config.customers[1], sender="key.user@vandijkzorg.example"))
    assert "key-user-policy" in other.rules and other.role == "backoffice"
    assert "key-user-policy" not in key.rules


def test_a_rule_with_a_night_window_on_weekdays(config_data) -> None:
    config_data["routing"]["rules"].insert(0, {"name": "night-billing", "role": "on_call", "when": {
        "category": ["billing"], "days": ["mon", "tue", "wed", "thu", "fri"], "hours": "22:00-06:00"}})
    config = parse_config(config_data)
    assert route(config, facts(Phase.LIVE, "billing", at=WEDNESDAY_NIGHT)).rules == ("night-billing",)
    assert route(config, facts(Phase.LIVE, "billing", at=WEDNESDAY_NOON)).role == "backoffice"
    saturday_night = dt.datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
    assert route(config, facts(Phase.LIVE, "billing", at=saturday_night)).role == "backoffice"


@pytest.mark.parametrize(("utc", "open_"), [
    ("2026-10-23T06:30", True),    # Friday 08:30 CEST (summer time)
    ("2026-10-23T05:30", False),   # Friday 07:30 CEST
    ("2026-10-26T07:30", True),    # Monday after the change: 08:30 CET
    ("2026-10-26T06:30", False),   # 07:30 CET
    ("2026-10-26T15:59", True),    # 16:59 CET
    ("2026-10-26T16:00", False),   # 17:00 CET: closed
    ("2026-03-27T06:30", False),   # Friday 07:30 CET before spring forward
    ("2026-03-30T06:30", True),    # Monday 08:30 CEST after it
    ("2026-10-03T09:00", False),   # Saturday
    ("2025-10-03T09:00", False),   # Friday, Tag der Deutschen Einheit
    ("2026-12-24T09:00", False),   # Thursday, configured closed day
    ("2026-12-25T09:00", False),   # Friday, Christmas
])
def test_business_hours_in_berlin(config, utc: str, open_: bool) -> None:
    assert is_business_hours(config.business_hours, dt.datetime.fromisoformat(utc).replace(tzinfo=UTC)) is open_


def test_dutch_calendar_knows_kingsday(config_data) -> None:
    config_data["business_hours"].update(timezone="Europe/Amsterdam", holidays_country="NL", closed_days=[])
    hours = parse_config(config_data).business_hours
    assert not is_business_hours(hours, dt.datetime(2026, 4, 27, 9, 0, tzinfo=UTC))  # Monday, Koningsdag
    assert is_business_hours(hours, dt.datetime(2026, 4, 28, 9, 0, tzinfo=UTC))


def test_go_live_switches_at_local_midnight(config) -> None:
    mailbox = config.mailbox("projects@tessaro.example")
    sender = "k.becker@mueller-logistik.example"
    before = phase_for(config, mailbox, sender, dt.date(2027, 1, 31))
    on = phase_for(config, mailbox, sender, dt.date(2027, 2, 1))
    assert (before.phase, on.phase) == (Phase.IMPLEMENTATION, Phase.LIVE)
    assert "2027-02-01" in on.reason


def test_customer_phase_beats_the_mailbox_and_unknown_senders_get_the_mailbox_phase(config) -> None:
    projects = config.mailbox("projects@tessaro.example")
    assert phase_for(config, projects, "a@vandijkzorg.example", dt.date(2026, 11, 25)).phase == Phase.LIVE
    assert phase_for(config, projects, "a@unknown.example", dt.date(2026, 11, 25)).phase == Phase.IMPLEMENTATION


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["customers"][1]["domains"].append("mueller-logistik.example"),
     "customers[1].domains[1]: 'mueller-logistik.example' also belongs to customers[0]"),
    (lambda d: d["business_hours"].update(holidays_country="XX"),
     "business_hours.holidays_country: unknown country code 'XX'"),
    (lambda d: d["routing"]["rules"].append({"name": "late-outage", "role": "support",
                                             "when": {"category": ["outage"], "business_hours": False,
                                                      "phase": ["live"]}}),
     "routing.rules[1]: rule 'late-outage' can never fire"),
    (lambda d: d["roles"].pop("backoffice"), "roles used in routing but not defined under [roles]: backoffice"),
])
def test_check_config_catches_semantic_mistakes(config_data, change, message: str) -> None:
    change(config_data)
    with pytest.raises(ConfigError) as caught:
        parse_config(config_data)
    assert any(message in p for p in caught.value.problems), caught.value.problems
