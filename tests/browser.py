"""A real browser for the console's end-to-end test: Debian's ``chromium`` driven by Playwright (never a browser
downloaded by ``playwright install``)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium_page(base_url: str) -> Iterator[Page]:
    """A page of a fresh headless Chromium whose relative URLs go to ``base_url``; fails if chromium is missing."""
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: `apt-get install chromium` (make test-deps does it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def log_in(page: Page, name: str, password: str) -> None:
    page.goto("/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def log_out(page: Page) -> None:
    page.click("form.logout button")
    page.wait_for_url("**/login")
