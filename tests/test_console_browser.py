"""End to end in a real browser: the real ``gateway run`` (SMTP ingress + console), Debian's Chromium via Playwright.

An operator finds a mail sent through the SMTP ingress, corrects its category and sees the correction listed; an
admin moves a customer's go-live date and the customer's next mail is routed by it. Screenshots of the main pages
are taken on the way, into ``$CONSOLE_SCREENSHOTS`` (``docs/`` to refresh the README's) or the test's directory.
"""
from __future__ import annotations

import json
import os
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit
from playwright.sync_api import Page, expect

from tests.browser import chromium_page, log_in, log_out
from tests.conftest import ROOT, free_port
from tests.console_helpers import PASSWORDS, write_config
from tests.servers.gateway_process import GATEWAY, GatewayProcess

HOW_TO = ("How do I export the candidate list to Excel?",
          "Hello,\n\ncould you tell me how to export the list of candidates of a vacancy to Excel? I cannot find the "
          "export button in the pipeline view. Which menu is it in?\n\nThanks, Jonas")
HOW_TO_AGAIN = ("How do I add a recruiter to a vacancy?",
                "Hello,\n\ncould you tell me how to add a second recruiter to a vacancy? I cannot find the option in "
                "the vacancy view. Which menu is it in?\n\nThanks, Jonas")
SENDER = "j.weber@mueller-logistik.example"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path, int]]:
    path = write_config(tmp_path)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    document["console"]["port"] = free_port()
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    for name, role in (("olga", "operator"), ("adam", "admin")):
        done = subprocess.run([GATEWAY, "users", "add", name, "--role", role, "--config", str(path)],
                              input=PASSWORDS[name] + "\n", text=True, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
    gateway = GatewayProcess(path, tmp_path / "gateway.log").start(timeout=120)
    yield gateway, tmp_path, int(document["smtp"]["port"])
    assert gateway.terminate() == 0
    gateway.cleanup()


def _send(port: int, subject: str, body: str, sender: str = SENDER, number: int = 0) -> None:
    raw = (f"From: {sender}\r\nTo: support@tessaro.example\r\nSubject: {subject}\r\n"
           f"Message-ID: <e2e-{number}-{time.time_ns()}@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n"
           f"\r\n{body}\r\n").replace("\n", "\r\n").replace("\r\r\n", "\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail(sender, ["support@tessaro.example"], raw) == {}


def _corpus_mails(count: int) -> list[tuple[str, str]]:
    """Mails from the project's own corpus, to give the dashboard and the lists something to show."""
    rows = [json.loads(line) for name in ("en-a.jsonl", "de-a.jsonl", "nl-a.jsonl")
            for line in (ROOT / "classifier" / "data" / "corpus" / name).read_text(encoding="utf-8").splitlines()]
    return [(row["subject"], row["body"]) for row in rows[::max(1, len(rows) // count)][:count]]


def _open_message(page: Page, subject: str) -> None:
    """Wait (reloading) until the message list shows ``subject``, then open it."""
    deadline = time.monotonic() + 60
    while True:
        page.goto("/messages")
        link = page.get_by_role("link", name=subject)
        if link.count():
            link.first.click()
            return
        assert time.monotonic() < deadline, f"{subject!r} not listed within 60 s"
        time.sleep(0.5)


def _shoot(page: Page, name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"console-{name}.png"), full_page=False)


def test_operator_corrects_and_admin_moves_go_live_in_chromium(running: tuple[GatewayProcess, Path, int]) -> None:
    gateway, tmp, smtp_port = running
    shots = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp / "screenshots")
    for number, (subject, body) in enumerate(_corpus_mails(24)):
        _send(smtp_port, subject, body, sender=f"customer{number}@example.org", number=number)
    _send(smtp_port, *HOW_TO)
    with chromium_page(gateway.console_url) as page:
        page.goto("/")
        expect(page).to_have_url(f"{gateway.console_url}/login?next=/")
        log_in(page, "olga", PASSWORDS["olga"])
        _open_message(page, HOW_TO[0])
        facts = page.locator("section.decision dl")
        expect(facts).to_contain_text("how_to")
        expect(facts).to_contain_text("consultant")
        expect(facts).to_contain_text("goes live on 2027-02-01")
        _shoot(page, "message", shots)
        page.click("form.correct button[value=configuration]")
        expect(page.locator(".flash")).to_have_text("Corrected to configuration.")
        page.goto("/review")  # keyboard: the next item, then 0 = "other" (the page's script)
        page.keyboard.press("j")
        second = page.locator(".review-item.active a").first.inner_text()
        page.keyboard.press("0")
        expect(page.locator(".flash")).to_have_text("Corrected to other.")
        expect(page.locator(".review-item").first).not_to_contain_text(second)
        page.click("nav >> text=Corrections")
        row = page.locator("#corrections tbody tr").filter(has_text=HOW_TO[0])
        expect(row).to_contain_text("olga")
        expect(row).to_contain_text("configuration")
        expect(page.locator("#corrections tbody tr").filter(has_text=second)).to_contain_text("other")
        for name, url in (("dashboard", "/"), ("messages", "/messages"), ("review", "/review"),
                          ("models", "/models"), ("report", "/report"), ("quarantine", "/quarantine")):
            page.goto(url)
            _shoot(page, name, shots)
        page.goto("/admin/customers")
        expect(page.locator("h1")).to_have_text("403")
        log_out(page)

        log_in(page, "adam", PASSWORDS["adam"])
        page.goto("/admin/customers")
        page.get_by_role("link", name="Müller Logistik GmbH").click()
        page.check("input[name=schedule][value=go_live]")
        page.fill("input[name=go_live]", "2026-01-01")
        _shoot(page, "admin-customer", shots)
        page.click("form.edit button[type=submit]")
        expect(page.locator(".flash")).to_contain_text("The gateway reloaded it.")
        expect(page.locator("table.list")).to_contain_text("go-live 2026-01-01")
        page.goto("/admin/audit")
        expect(page.locator("#audit tbody tr").first).to_contain_text("adam")
        page.locator("#audit tbody tr a").first.click()
        expect(page.locator("pre.diff")).to_contain_text("+go_live = 2026-01-01")
        _shoot(page, "audit", shots)
        page.goto("/admin/routing")
        _shoot(page, "admin-routing", shots)

        _send(smtp_port, *HOW_TO_AGAIN)
        _open_message(page, HOW_TO_AGAIN[0])
        facts = page.locator("section.decision dl")
        expect(facts).to_contain_text("how_to")
        expect(facts).to_contain_text("support")
        expect(facts).to_contain_text("went live on 2026-01-01")
    assert "configuration reloaded" in gateway.log_text()
    delivered = [p.read_bytes() for p in (tmp / "var" / "mail" / "support").glob("new/*")]
    assert any(HOW_TO_AGAIN[0].encode() in data for data in delivered)
