"""``/login`` and ``/logout``: a session for an account, with CSRF on the form and a rate limit on failures."""
from __future__ import annotations

import re

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.console.accounts import Account, check_password, end_sessions
from gateway.console.security import csrf_ok
from gateway.console.web import console, page, refuse, render
from gateway.sanitise import log_value

log = structlog.get_logger("gateway.console")
#: where a login may send the browser afterwards: one of our own paths, nothing else (no //host, no CR/LF)
_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.\-]*$")


def local_path(value: object) -> str:
    return value if isinstance(value, str) and _LOCAL_PATH.match(value) else "/"


async def login(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "login.html", user=None, next=local_path(request.query_params.get("next")), error=None)
    form = await request.form(max_fields=10, max_files=0)
    target = local_path(form.get("next"))
    if not csrf_ok(request.session, form):
        return refuse(request, 403, "The login form's security token is missing or outdated. Reload the page.")
    name, password = str(form.get("name", "")).strip().lower()[:64], str(form.get("password", ""))[:1024]
    client = request.client.host if request.client else "?"
    throttle = console(request).throttle
    wait = throttle.retry_after(name, client)
    if wait:
        response = render(request, "login.html", 429, user=None, next=target,
                          error=f"Too many failed logins. Try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response
    found = await run_in_threadpool(check_password, console(request).db, name, password)
    if found is None:
        throttle.failed(name, client)
        log.warning("console login failed", user=log_value(name, 64), client=client)
        return render(request, "login.html", 401, user=None, next=target, error="Wrong name or password.")
    throttle.succeeded(name)
    request.session.clear()  # a fresh session (and CSRF token) for the account
    request.session.update(user=found.name, version=found.session_version)
    log.info("console login", user=found.name, role=found.role.value, client=client)
    return RedirectResponse(target, status_code=303)


@page()
def logout(request: Request, user: Account, form: FormData | None) -> Response:
    """End every session of the user (this browser's and any other)."""
    end_sessions(console(request).db, user.name)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
