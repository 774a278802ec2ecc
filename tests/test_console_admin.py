"""Admin pages: each change is validated like check-config, written atomically with comments kept, audited
(who, when, diff), and refused whole with key-path problems when invalid."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from gateway.config import load_config
from gateway.console.config_edit import version_of
from gateway.storage.models import AuditEntry
from tests.console_helpers import console_app, log_in


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[dict[str, Any]]:
    app, db, path = console_app(tmp_path)
    client = TestClient(app)
    yield {"client": client, "db": db, "path": path, "csrf": log_in(client, "adam")}
    db.dispose()


def _post(admin: dict[str, Any], url: str, **fields: Any) -> Any:
    data = {"csrf": admin["csrf"], "version": version_of(admin["path"].read_text(encoding="utf-8")), **fields}
    return admin["client"].post(url, data=data)


def _audit(admin: dict[str, Any]) -> list[AuditEntry]:
    with admin["db"].reading() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_changing_a_customers_go_live_date_keeps_comments_and_is_audited(admin: dict[str, Any]) -> None:
    answer = _post(admin, "/admin/customers/0", name="Müller Logistik GmbH", domains="mueller-logistik.example",
                   schedule="go_live", go_live="2026-03-01")
    assert answer.status_code == 200 and "Saved (customer Müller Logistik GmbH: edited)" in answer.text
    text = admin["path"].read_text(encoding="utf-8")
    assert "go_live = 2026-03-01                    # implementation before this date, live from it" in text
    assert "# Mail gateway configuration (example shipped" in text  # every other comment is still there
    assert str(load_config(admin["path"]).customers[0].go_live) == "2026-03-01"
    entry, = _audit(admin)
    assert entry.by == "adam" and entry.area == "customers"
    assert "-go_live = 2027-02-01" in entry.diff and "+go_live = 2026-03-01" in entry.diff
    listed = admin["client"].get("/admin/audit").text
    assert "customer Müller Logistik GmbH: edited" in listed
    shown = admin["client"].get(f"/admin/audit/{entry.id}").text
    assert '<span class="add">+go_live = 2026-03-01' in shown


def test_a_change_failing_validation_shows_key_paths_and_changes_nothing(admin: dict[str, Any]) -> None:
    before = admin["path"].read_bytes()
    answer = _post(admin, "/admin/customers/0", name="Müller Logistik GmbH", domains="", addresses="",
                   schedule="go_live", go_live="2026-03-01")
    assert answer.status_code == 422
    assert "Nothing was changed." in answer.text
    assert "customers[0]: a customer needs at least one of domains, addresses" in answer.text
    assert admin["path"].read_bytes() == before and _audit(admin) == []
    assert not list(admin["path"].parent.glob(".gateway.toml.*"))  # no temporary file left behind


def test_an_invalid_date_is_refused_before_writing(admin: dict[str, Any]) -> None:
    before = admin["path"].read_bytes()
    answer = _post(admin, "/admin/customers/0", name="X", domains="x.example", schedule="go_live",
                   go_live="2026-13-01")
    assert answer.status_code == 422 and "go_live: invalid date" in answer.text
    assert admin["path"].read_bytes() == before


def test_an_edit_from_an_outdated_page_is_refused(admin: dict[str, Any]) -> None:
    data = {"csrf": admin["csrf"], "version": "0000000000000000", "address": "support@tessaro.example",
            "phase": "implementation"}
    answer = admin["client"].post("/admin/mailboxes/0", data=data)
    assert answer.status_code == 422 and "changed since this page was opened" in answer.text


def test_mailbox_phase_add_and_remove(admin: dict[str, Any]) -> None:
    assert "Saved" in _post(admin, "/admin/mailboxes/0", address="support@tessaro.example", phase="implementation").text
    assert load_config(admin["path"]).mailboxes[0].phase == "implementation"
    assert "Saved" in _post(admin, "/admin/mailboxes/3", address="sales@tessaro.example", phase="live").text
    assert load_config(admin["path"]).mailbox("sales@tessaro.example") is not None
    assert "Saved" in _post(admin, "/admin/mailboxes/3", address="sales@tessaro.example", phase="live",
                            remove="yes").text
    assert load_config(admin["path"]).mailbox("sales@tessaro.example") is None
    bad = _post(admin, "/admin/mailboxes/0", address="not-an-address", phase="live")
    assert bad.status_code == 422 and "mailboxes[0].address: not an e-mail address" in bad.text
    assert [e.area for e in _audit(admin)] == ["mailboxes"] * 3


def test_a_new_customer_with_key_users_and_an_override(admin: dict[str, Any]) -> None:
    index = len(load_config(admin["path"]).customers)
    assert "New customer" in admin["client"].get(f"/admin/customers/{index}").text
    answer = _post(admin, f"/admin/customers/{index}", name="Acme <b>AG</b>", domains="acme.example, acme.test",
                   schedule="phase", phase="live", key_users="it@acme.example", key_user_reply="yes",
                   overrides='support = { maildir = "var/mail/support-acme" }')
    assert "Saved" in answer.text and "Acme &lt;b&gt;AG&lt;/b&gt;" in answer.text
    customer = load_config(admin["path"]).customers[index]
    assert customer.domains == ["acme.example", "acme.test"] and customer.key_user_reply
    assert str(customer.overrides["support"].maildir) == "var/mail/support-acme"
    page = admin["client"].get(f"/admin/customers/{index}").text
    assert 'support = {maildir = &#34;var/mail/support-acme&#34;}' in page
    broken = _post(admin, f"/admin/customers/{index}", name="Acme", domains="acme.example", schedule="phase",
                   phase="live", overrides="support = { maildir = ")
    assert broken.status_code == 422 and "overrides line 1: not a TOML inline table" in broken.text
    assert "Saved" in _post(admin, f"/admin/customers/{index}", name="Acme", domains="acme.example",
                            remove="yes").text
    assert len(load_config(admin["path"]).customers) == index


def test_routing_table_and_rules(admin: dict[str, Any]) -> None:
    page = admin["client"].get("/admin/routing").text
    assert 'name="live.billing"' in page and "outage-outside-business-hours" in page
    assert "Saved" in _post(admin, "/admin/routing/table", **{"live.billing": "account_manager"}).text
    assert load_config(admin["path"]).routing.table["live"]["billing"] == "account_manager"
    rules = {"rows": "1", "name.0": "outage-outside-business-hours", "role.0": "on_call", "position.0": "2",
             "when.0": '{ category = ["outage"], business_hours = false }',
             "name.1": "vip-first", "role.1": "account_manager", "position.1": "1",
             "when.1": '{ sender = ["@vip.example"] }'}
    assert "Saved" in _post(admin, "/admin/routing/rules", **rules).text
    assert [r.name for r in load_config(admin["path"]).routing.rules] == ["vip-first", "outage-outside-business-hours"]
    wrong = _post(admin, "/admin/routing/rules", **{**rules, "when.1": '{ colour = "red" }'})
    assert wrong.status_code == 422 and re.search(r"routing\.rules\[0\]\.when\.colour: unknown key", wrong.text)
    unknown_role = _post(admin, "/admin/routing/rules", **{**rules, "role.1": "nobody"})
    assert unknown_role.status_code == 422 and "roles used in routing but not defined under [roles]: nobody" in \
        unknown_role.text
    removed = _post(admin, "/admin/routing/rules", **{**rules, "remove.1": "yes"})
    assert "Saved" in removed.text and [r.name for r in load_config(admin["path"]).routing.rules] == [
        "outage-outside-business-hours"]


def test_business_hours_and_closed_days(admin: dict[str, Any]) -> None:
    answer = _post(admin, "/admin/hours", timezone="Europe/Amsterdam", days=["mon", "tue", "wed"], start="09:00",
                   end="18:00", holidays_country="NL", closed_days="2026-12-24\n2026-12-27")
    assert "Saved" in answer.text
    hours = load_config(admin["path"]).business_hours
    assert (hours.timezone, hours.days, hours.start, hours.holidays_country) == ("Europe/Amsterdam",
                                                                               ["mon", "tue", "wed"], "09:00", "NL")
    assert [str(d) for d in hours.closed_days] == ["2026-12-24", "2026-12-27"]
    bad = _post(admin, "/admin/hours", timezone="Mars/Olympus", days=["mon"], start="25:00", end="18:00")
    assert bad.status_code == 422
    assert "business_hours.timezone: unknown time zone" in bad.text and "business_hours.start:" in bad.text
    assert "closed_days: invalid date" in _post(admin, "/admin/hours", timezone="UTC", closed_days="tomorrow").text


def test_saving_the_same_values_changes_and_audits_nothing(admin: dict[str, Any]) -> None:
    before = admin["path"].read_bytes()
    answer = _post(admin, "/admin/mailboxes/0", address="support@tessaro.example", phase="live")
    assert "Nothing changed." in answer.text
    assert admin["path"].read_bytes() == before and _audit(admin) == []


def test_the_file_keeps_its_permissions(admin: dict[str, Any]) -> None:
    admin["path"].chmod(0o640)
    _post(admin, "/admin/mailboxes/0", address="support@tessaro.example", phase="implementation")
    assert admin["path"].stat().st_mode & 0o777 == 0o640
