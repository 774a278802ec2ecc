"""The console's plumbing: what it serves from (:class:`Console`), who is asking (session → account), role and
CSRF checks, rendering."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from jinja2 import Environment, FileSystemLoader
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.config.schema import GatewayConfig
from gateway.console.accounts import Account, account
from gateway.console.security import LoginThrottle, csrf_ok, csrf_token
from gateway.console.training import TrainingJobs
from gateway.storage.db import Database
from gateway.storage.models import ConsoleRole

log = structlog.get_logger("gateway.console")
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                        trim_blocks=True, lstrip_blocks=True)
MAX_FORM_FIELDS = 2000
Handler = Callable[..., Response]


@dataclass
class Console:
    """One console instance. ``apply`` puts the config file as written into force and says what it did."""

    db: Database
    config_path: Path
    config: Callable[[], GatewayConfig]
    apply: Callable[[], str]
    model_version: Callable[[], str]
    wake: Callable[[], None] = lambda: None   # new work for the gateway's workers (a retry, a redelivery)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    jobs: TrainingJobs = field(default_factory=TrainingJobs)

    @property
    def models_dir(self) -> Path:
        return self.config().classifier.models_dir


def console(request: Request) -> Console:
    return request.app.state.console


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page from ``templates/``: every value escaped by Jinja2 (autoescape), the user and CSRF token at hand."""
    values.setdefault("user", request.scope.get("account"))
    values.setdefault("flash", request.session.pop("flash", None))
    page = TEMPLATES.get_template(template).render(request=request, csrf=csrf_token(request.session),
                                                   path=request.url.path, **values)
    return HTMLResponse(page, status_code=status)


def refuse(request: Request, status: int, why: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, why=why)


def signed_in(request: Request) -> Account | None:
    """The account of the session, if it still exists and the session was not ended (logout, user removed)."""
    name, version = request.session.get("user"), request.session.get("version")
    if not isinstance(name, str):
        return None
    found = account(console(request).db, name)
    if found is None or found.session_version != version:
        request.session.clear()
        return None
    return found


def page(*, admin: bool = False) -> Callable[[Handler], Callable[[Request], Any]]:
    """Make a handler ``(request, user, form) -> Response`` an endpoint: a session is required (else to the login),
    an admin page refuses operators (403), and a POST without the session's CSRF token is refused (403).

    The handler runs in a worker thread (database work); ``form`` is None for GET.
    """
    def wrap(handler: Handler) -> Callable[[Request], Any]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            user = await run_in_threadpool(signed_in, request)
            if user is None:
                if request.method != "GET":
                    return refuse(request, 401, "Your session has ended. Please log in again.")
                return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
            request.scope["account"] = user
            if admin and user.role != ConsoleRole.ADMIN:
                return refuse(request, 403, "This page is for admins.")
            form: FormData | None = None
            if request.method == "POST":
                form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
                if not csrf_ok(request.session, form):
                    return refuse(request, 403, "The form's security token is missing or outdated. "
                                                "Reload the page and try again.")
            return await run_in_threadpool(_answer, handler, request, user, form)
        return endpoint
    return wrap


def _answer(handler: Handler, request: Request, user: Account, form: FormData | None) -> Response:
    """The handler's page; a fault (the database away, a bug) is logged and answered with a plain 500 page."""
    try:
        return handler(request, user, form)
    except Exception:  # noqa: BLE001 - every page answers, and the log says why it failed
        log.exception("console page failed", path=request.url.path, user=user.name)
        return refuse(request, 500, "This page failed; the gateway's log says why. Try again later.")


def back(request: Request, path: str, said: str | None = None) -> RedirectResponse:
    """Redirect after a POST (303) to one of our own paths, with a line to show there once."""
    if said:
        request.session["flash"] = said
    return RedirectResponse(path, status_code=303)


def text(form: FormData | None, name: str, default: str = "") -> str:
    """A form field as text (a file upload or a missing field gives ``default``)."""
    value = form.get(name) if form is not None else None
    return value.strip() if isinstance(value, str) else default
