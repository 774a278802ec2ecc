"""Console access: every page needs a session, admin pages refuse operators, every form needs its CSRF token,
cookies and headers are strict, logins are rate limited."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.console.app import create_app
from tests.console_helpers import PASSWORDS, console_app, csrf_of, log_in

OPERATOR_PAGES = ["/", "/messages", "/messages/0123456789abcdef0123456789abcdef", "/review", "/corrections",
                  "/quarantine", "/quarantine/0123456789abcdef", "/models", "/models/training", "/report"]
ADMIN_PAGES = ["/admin/mailboxes", "/admin/customers", "/admin/customers/0", "/admin/routing", "/admin/hours",
               "/admin/audit", "/admin/audit/1"]
OPERATOR_FORMS = ["/logout", "/messages/0123456789abcdef0123456789abcdef/correct", "/quarantine/0123456789ab/retry",
                  "/quarantine/0123456789ab/release", "/models/train", "/models/rollback", "/models/x/promote"]
ADMIN_FORMS = ["/admin/mailboxes/0", "/admin/customers/0", "/admin/routing/table", "/admin/routing/rules",
               "/admin/hours"]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[object]:
    app, db, _ = console_app(tmp_path)
    yield app
    db.dispose()


@pytest.fixture
def client(app: object) -> TestClient:
    return TestClient(app)


@pytest.mark.parametrize("url", OPERATOR_PAGES + ADMIN_PAGES)
def test_every_page_sends_a_stranger_to_the_login(client: TestClient, url: str) -> None:
    answer = client.get(url, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("url", OPERATOR_FORMS + ADMIN_FORMS)
def test_every_form_refuses_a_stranger(client: TestClient, url: str) -> None:
    token = csrf_of(client.get("/login").text)  # a session with a token, but nobody logged in
    assert client.post(url, data={"csrf": token}, follow_redirects=False).status_code == 401


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_an_operator_cannot_open_admin_pages(client: TestClient, url: str) -> None:
    log_in(client, "olga")
    assert client.get(url).status_code == 403
    assert "for admins" in client.get(url).text


@pytest.mark.parametrize("url", ADMIN_FORMS)
def test_an_operator_cannot_post_admin_forms(client: TestClient, url: str, tmp_path: Path) -> None:
    token = log_in(client, "olga")
    before = (tmp_path / "gateway.toml").read_bytes()
    assert client.post(url, data={"csrf": token, "name": "x", "address": "x@y.example"}).status_code == 403
    assert (tmp_path / "gateway.toml").read_bytes() == before


@pytest.mark.parametrize("url", OPERATOR_FORMS + ADMIN_FORMS)
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_every_form_refuses_a_missing_or_wrong_csrf_token(client: TestClient, url: str, token: str | None) -> None:
    log_in(client, "adam")
    data = {"csrf": token} if token else {}
    answer = client.post(url, data=data)
    assert answer.status_code == 403
    assert "security token" in answer.text


@pytest.mark.parametrize("url", OPERATOR_PAGES[:2] + ADMIN_PAGES[:1])
def test_an_admin_opens_every_kind_of_page(client: TestClient, url: str) -> None:
    log_in(client, "adam")
    assert client.get(url).status_code == 200


def test_login_form_needs_its_csrf_token(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"name": "olga", "password": PASSWORDS["olga"]}, follow_redirects=False)
    assert answer.status_code == 403
    assert "user" not in str(client.cookies)


def test_session_cookie_is_http_only_and_same_site_strict(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "name": "olga", "password": PASSWORDS["olga"]},
                         follow_redirects=False)
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain HTTP here; see the next test


def test_cookie_is_secure_when_served_over_tls(app: object) -> None:
    here = app.state.console  # type: ignore[attr-defined]
    secure = TestClient(create_app(here, secure_cookies=True, session_hours=1), base_url="https://console.test")
    assert "; secure" in secure.get("/login").headers["set-cookie"].lower()


@pytest.mark.parametrize("url", ["/login", "/static/console.css", "/no-such-page"])
def test_every_response_has_a_strict_content_security_policy(client: TestClient, url: str) -> None:
    headers = client.get(url).headers
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_wrong_password_is_refused_and_logins_are_rate_limited(client: TestClient) -> None:
    for _ in range(5):
        token = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"csrf": token, "name": "olga", "password": "wrong-password"})
        assert answer.status_code == 401
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "name": "olga", "password": PASSWORDS["olga"]})
    assert answer.status_code == 429  # even the right password, until the window has passed
    assert int(answer.headers["retry-after"]) > 0
    log_in(client, "adam")  # another name is not held up by olga's failures


def test_unknown_user_is_refused_like_a_wrong_password(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "name": "nobody", "password": "whatever-it-is"})
    assert answer.status_code == 401
    assert "Wrong name or password." in answer.text


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\r\nSet-Cookie: x=1",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_login_redirects_only_to_own_paths(client: TestClient, target: str) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "name": "olga", "password": PASSWORDS["olga"],
                                         "next": target}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    assert "x=1" not in answer.headers.get("set-cookie", "")


def test_logout_ends_the_session_everywhere(app: object) -> None:
    first, second = TestClient(app), TestClient(app)
    token = log_in(first, "olga")
    log_in(second, "olga")
    assert first.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert first.get("/", follow_redirects=False).status_code == 303
    assert second.get("/", follow_redirects=False).status_code == 303  # the other browser's cookie too


def test_a_removed_user_is_logged_out(app: object, client: TestClient) -> None:
    from gateway.console.accounts import remove_user

    log_in(client, "olga")
    remove_user(app.state.console.db, "olga")  # type: ignore[attr-defined]
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_session_secret_survives_a_restart(app: object) -> None:
    client = TestClient(app)
    log_in(client, "olga")
    here = app.state.console  # type: ignore[attr-defined]
    restarted = TestClient(create_app(here, secure_cookies=False, session_hours=1), cookies=client.cookies)
    assert restarted.get("/", follow_redirects=False).status_code == 200


def test_a_forged_cookie_is_not_a_session(client: TestClient) -> None:
    client.cookies.set("gateway_console", "eyJ1c2VyIjogImFkYW0iLCAidmVyc2lvbiI6IDB9.forged.signature")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_pages_are_not_cached(client: TestClient) -> None:
    log_in(client, "olga")
    assert client.get("/").headers["cache-control"] == "no-store"
    assert re.search(r"<form[^>]*action=\"/logout\"", client.get("/").text)
