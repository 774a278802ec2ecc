"""The operator pages against a real SQLite database: hostile mail shown safely, filters, keyset pages,
corrections stored as ``gateway label`` stores them (with role and redelivery), review queue, quarantine, report."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from sqlalchemy import func, select
from starlette.testclient import TestClient

from classifier.model import CategoryModel
from gateway import quarantine
from gateway.config import load_config
from gateway.console.queries import PAGE
from gateway.console.redelivery import redelivery_key
from gateway.quarantine import Failure, record_failure
from gateway.storage.models import Correction, Message, MessageState, OutboxItem
from tests.console_helpers import console_app, decided, log_in, mail, write_config

INVOICE = mail("Invoice 2026-0412 has the wrong billing address",
               "Please send a corrected invoice to our new billing address in Hamburg.")
HOSTILE = mail("<script>alert(1)</script> Invoice",
               'Click <a href="javascript:alert(2)">here</a> <img src=x onerror=alert(3)> to pay the invoice.',
               sender="evil@example.org",
               extra='Reply-To: "<script>alert(4)</script>" <x@example.org>\r\n'
                     "X-Note: =?utf-8?q?line=0D=0ASet-Cookie:_stolen=3D1?=\r\n")
HTML_ONLY = (b"From: html@example.org\r\nTo: support@tessaro.example\r\nSubject: html only\r\n"
             b"Message-ID: <html-only@example.org>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
             b"<html><body><script>alert(5)</script><p>Our invoice total is wrong.</p>"
             b'<a href="javascript:alert(6)">pay</a><iframe src="https://evil.example/"></iframe></body></html>\r\n')


@pytest.fixture
def console(tmp_path: Path, shipped_model: CategoryModel) -> Iterator[dict[str, Any]]:
    app, db, path = console_app(tmp_path)
    yield {"client": TestClient(app), "db": db, "config": load_config(path), "model": shipped_model}
    db.dispose()


def _decide(console: dict[str, Any], *raws: bytes) -> list[str]:
    return decided(console["db"], console["config"], console["model"], *raws)


def _no_live_markup(page: str) -> None:
    lowered = page.lower()
    assert "<script>alert" not in lowered and "<img src=x" not in lowered and "<iframe" not in lowered
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", lowered)
    assert "onerror=alert" not in lowered.replace("&#39;", "'").split("<pre")[0]  # only escaped, in the text


def test_hostile_subject_and_body_are_escaped_everywhere(console: dict[str, Any]) -> None:
    client = console["client"]
    log_in(client, "olga")
    public_id, = _decide(console, HOSTILE)
    for url in ("/messages", f"/messages/{public_id}", "/review", "/corrections"):
        answer = client.get(url)
        assert answer.status_code == 200
        _no_live_markup(answer.text)
    page = client.get(f"/messages/{public_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Invoice" in page
    assert "&lt;a href=&#34;javascript:alert(2)&#34;&gt;" in page  # shown as text, not a link
    assert "set-cookie" not in {name.lower() for name in client.get(f"/messages/{public_id}").headers}


def test_encoded_line_breaks_in_a_header_stay_one_line(console: dict[str, Any]) -> None:
    client = console["client"]
    log_in(client, "olga")
    public_id, = _decide(console, HOSTILE)
    answer = client.get(f"/messages/{public_id}")
    assert "stolen" not in answer.headers.get("set-cookie", "")
    assert re.search(r"<th>x-note</th><td>line\s+Set-Cookie: stolen=1</td>", answer.text)


def test_an_html_body_is_shown_as_text_only(console: dict[str, Any]) -> None:
    client = console["client"]
    log_in(client, "olga")
    public_id, = _decide(console, HTML_ONLY)
    page = client.get(f"/messages/{public_id}").text
    _no_live_markup(page)
    text = page.split('<pre class="mailtext">')[1].split("</pre>")[0]
    assert "Our invoice total is wrong." in text and "alert(5)" not in text


def test_message_page_shows_headers_trace_and_delivery_history(console: dict[str, Any]) -> None:
    client = console["client"]
    log_in(client, "olga")
    public_id, = _decide(console, INVOICE)
    page = client.get(f"/messages/{public_id}").text
    assert "<strong>billing</strong>" in page
    assert "table.live.billing" in page and "outage-outside-business-hours" in page  # a rule checked, not fired
    assert "Top 3:" in page and "<th>subject</th>" in page
    assert f"<code>{public_id}.delivery</code>" in page and "role:backoffice" in page


def test_message_list_filters_and_pages_by_id(console: dict[str, Any]) -> None:
    client = console["client"]
    log_in(client, "olga")
    invoices = [mail(f"Invoice {n} has the wrong address", f"Please correct invoice {n} for us.",
                     sender=f"buyer{n}@example.org") for n in range(PAGE + 3)]
    _decide(console, *invoices, mail("Outage: nothing loads", "Since 9:00 nobody can log in, all users.",
                                     sender="ops@example.org"))
    first = client.get("/messages?category=billing").text
    assert first.count('href="/messages/') == PAGE
    older = re.search(r'href="/messages\?([^"]*before=\d+[^"]*)" rel="next"', first)
    assert older, "no link to older messages"
    second = client.get("/messages?" + older.group(1).replace("&amp;", "&")).text
    assert second.count('href="/messages/') == 3
    assert "Invoice 0 has" in second and "Invoice 0 has" not in first  # oldest last
    assert "Outage" not in first + second
    only = client.get("/messages?sender=buyer7@example.org").text
    assert only.count('href="/messages/') == 1 and "Invoice 7 " in only
    every = client.get("/messages?sender=@example.org&role=backoffice&min_confidence=0&max_confidence=1"
                       "&state=decided&phase=live&mailbox=support@tessaro.example").text
    assert every.count('href="/messages/') == PAGE
    assert "No messages match." in client.get("/messages?since=2099-01-01").text
    assert client.get("/messages?min_confidence=nonsense&before=x").status_code == 200


def test_a_correction_is_stored_like_gateway_label_with_who_and_role(console: dict[str, Any]) -> None:
    client, db = console["client"], console["db"]
    token = log_in(client, "olga")
    public_id, = _decide(console, INVOICE)
    answer = client.post(f"/messages/{public_id}/correct", data={"csrf": token, "category": "complaint",
                                                                  "role": "account_manager"})
    assert "Corrected to complaint, role account_manager." in answer.text
    with db.reading() as session:
        row = session.scalar(select(Correction))
    assert (row.category, row.role, row.labelled_by, row.source) == ("complaint", "account_manager", "olga", "console")
    listed = client.get("/corrections").text
    assert "<strong>complaint</strong>" in listed and "olga" in listed and "Invoice 2026-0412" in listed
    again = client.post(f"/messages/{public_id}/correct", data={"csrf": token, "category": "complaint",
                                                                 "role": "account_manager"})
    assert "Already so corrected." in again.text


def test_a_correction_can_deliver_again_to_the_new_role_once(console: dict[str, Any]) -> None:
    client, db = console["client"], console["db"]
    token = log_in(client, "olga")
    public_id, = _decide(console, INVOICE)
    form = {"csrf": token, "category": "complaint", "role": "account_manager", "redeliver": "yes"}
    assert "delivered again to account_manager" in client.post(f"/messages/{public_id}/correct", data=form).text
    assert "was planned already" in client.post(f"/messages/{public_id}/correct", data=form).text
    with db.reading() as session:
        items = list(session.scalars(select(OutboxItem).where(OutboxItem.key == redelivery_key(public_id,
                                                                                                "account_manager"))))
    assert len(items) == 1 and items[0].target == "role:account_manager"
    assert b"X-Gateway-Role: account_manager" in items[0].payload
    assert b"X-Gateway-Redelivered: corrected by olga (was backoffice)" in items[0].payload
    assert f"<code>{public_id}.to.account_manager</code>" in client.get(f"/messages/{public_id}").text


def test_no_second_delivery_to_the_role_it_went_to(console: dict[str, Any]) -> None:
    client, db = console["client"], console["db"]
    token = log_in(client, "olga")
    public_id, = _decide(console, INVOICE)
    form = {"csrf": token, "category": "billing", "role": "backoffice", "redeliver": "yes"}
    assert "delivery to backoffice was planned already" in client.post(f"/messages/{public_id}/correct",
                                                                       data=form).text
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(OutboxItem)) == 1


def test_shadow_mode_stores_the_correction_but_delivers_nothing(tmp_path: Path, shipped_model: CategoryModel) -> None:
    path = write_config(tmp_path)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    document["gateway"]["mode"] = "shadow"
    document["gateway"]["shadow_target"] = {"maildir": str(tmp_path / "shadow")}
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    app, db, _ = console_app(tmp_path, path)
    client = TestClient(app)
    token = log_in(client, "olga")
    public_id, = decided(db, load_config(path), shipped_model, INVOICE)
    form = {"csrf": token, "category": "complaint", "role": "account_manager", "redeliver": "yes"}
    answer = client.post(f"/messages/{public_id}/correct", data=form)
    assert answer.status_code == 409 and "in shadow mode nothing is delivered" in answer.text
    with db.reading() as session:
        assert session.scalar(select(Correction.category)) == "complaint"
        assert session.scalar(select(func.count()).select_from(OutboxItem)) == 1
    db.dispose()


def test_a_correction_is_refused_for_an_unknown_category_or_role(console: dict[str, Any]) -> None:
    client = console["client"]
    token = log_in(client, "olga")
    public_id, = _decide(console, INVOICE)
    assert client.post(f"/messages/{public_id}/correct", data={"csrf": token, "category": "spam"}).status_code == 400
    assert client.post(f"/messages/{public_id}/correct", data={"csrf": token, "category": "billing",
                                                               "role": "nobody"}).status_code == 400
    assert client.post("/messages/ffffffffffffffffffffffffffffffff/correct",
                       data={"csrf": token, "category": "billing"}).status_code == 409


def test_review_queue_lists_the_least_sure_first_and_drops_corrected_ones(console: dict[str, Any]) -> None:
    client, db = console["client"], console["db"]
    token = log_in(client, "olga")
    ids = _decide(console, INVOICE, mail("Hi", "Hello, question."), mail("Outage", "Everything is down since 9."))
    with db.reading() as session:
        confidences = dict(session.execute(select(Message.public_id, Message.decision.property.mapper.class_.confidence)
                                           .join(Message.decision)).all())
    page = client.get("/review").text
    shown = re.findall(r'data-href="/messages/([0-9a-f]{32})"', page)
    assert shown == sorted(ids, key=lambda i: confidences[i])
    assert 'data-key="1"' in page and "/static/console.js" in page
    client.post(f"/messages/{shown[0]}/correct", data={"csrf": token, "category": "other", "next": "/review"})
    assert shown[0] not in client.get("/review").text


def _quarantined(console: dict[str, Any]) -> str:
    public_id, = _decide(console, INVOICE)
    with console["db"].session() as session:
        message = session.scalar(select(Message).where(Message.public_id == public_id))
        message.state = MessageState.RECEIVED
        message_id = message.id
    failure = Failure("parse", "ValueError: <b>bad</b>", "Traceback …", "abc123def456")
    assert record_failure(console["db"], message_id, failure, max_attempts=1) == "quarantined"
    return public_id


def test_quarantine_list_show_retry(console: dict[str, Any]) -> None:
    client, db = console["client"], console["db"]
    token = log_in(client, "olga")
    public_id = _quarantined(console)
    listed = client.get("/quarantine").text
    assert "abc123def456" in listed and "ValueError: &lt;b&gt;bad&lt;/b&gt;" in listed
    shown = client.get(f"/quarantine/{public_id}").text
    assert "Invoice 2026-0412" in shown and "Traceback …" in shown
    assert "back in the queue" in client.post(f"/quarantine/{public_id}/retry", data={"csrf": token}).text
    with db.reading() as session:
        assert session.scalar(select(Message.state).where(Message.public_id == public_id)) == MessageState.RECEIVED
    assert client.post(f"/quarantine/{public_id}/retry", data={"csrf": token}).status_code == 409


def test_quarantine_release_delivers_to_triage(console: dict[str, Any]) -> None:
    client, db = console["client"], console["db"]
    token = log_in(client, "olga")
    public_id = _quarantined(console)
    with db.session() as session:  # the decision of the first attempt goes, as a message that failed has none
        session.execute(OutboxItem.__table__.delete())
    assert "released to triage" in client.post(f"/quarantine/{public_id}/release", data={"csrf": token}).text
    with db.reading() as session:
        assert quarantine.open_entries(session) == []
        assert session.scalar(select(OutboxItem.target)) == "role:triage"
    assert client.get("/quarantine/nothere").status_code == 404


def test_dashboard_shows_counts_and_charts(console: dict[str, Any]) -> None:
    client = console["client"]
    log_in(client, "olga")
    _decide(console, INVOICE, mail("Outage", "Everything is down since 9, nobody can work."))
    page = client.get("/").text
    assert page.count("<svg") == 2 and "billing: 1" in page and "backoffice: 1" in page
    assert "20261125-221800-svm" in page or "-svm" in page
    assert re.search(r"Decisions \(24 h\)</dt><dd>2</dd>", page)


def test_report_counts_by_role_and_category_over_the_period(console: dict[str, Any]) -> None:
    client = console["client"]
    log_in(client, "olga")
    _decide(console, INVOICE)
    page = client.get("/report").text
    assert "1 decisions" in page and "<th>backoffice</th>" in page
    assert "0 decisions" in client.get("/report?since=2000-01-01&until=2000-01-02").text
    assert client.get("/report?since=nonsense").status_code == 200


def test_the_pages_work_on_postgresql(tmp_path: Path, postgres_url: str, shipped_model: CategoryModel) -> None:
    path = write_config(tmp_path)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    document["gateway"]["database"] = postgres_url
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    app, db, _ = console_app(tmp_path, path)
    client = TestClient(app)
    token = log_in(client, "olga")
    public_id, = decided(db, load_config(path), shipped_model, HOSTILE)
    for url in ("/", "/messages?category=billing&min_confidence=0.1&since=2000-01-01", "/messages?sender=@example.org",
                f"/messages/{public_id}", "/review", "/report"):
        answer = client.get(url)
        assert answer.status_code == 200, url
        _no_live_markup(answer.text)
    form = {"csrf": token, "category": "complaint", "role": "account_manager", "redeliver": "yes"}
    assert "delivered again" in client.post(f"/messages/{public_id}/correct", data=form).text
    assert "complaint" in client.get("/corrections").text
    db.dispose()
