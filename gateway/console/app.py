"""The console's ASGI application: routes of every area, sessions signed with the shared secret, strict headers."""
from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.console import login
from gateway.console.pages import (
    admin,
    admin_routing,
    audit,
    corrections,
    dashboard,
    messages,
    models,
    quarantine,
    report,
)
from gateway.console.security import SecurityHeaders, session_secret
from gateway.console.web import Console, refuse

STATIC = Path(__file__).parent / "static"
COOKIE = "gateway_console"


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return refuse(request, status, {404: "There is no such page.", 405: "Not like this."}.get(status, "Error."))


def create_app(here: Console, *, secure_cookies: bool, session_hours: float) -> Starlette:
    """The console for ``here``; cookies are ``Secure`` when it is reached over HTTPS (``secure_cookies``)."""
    routes = [Route("/login", login.login, methods=["GET", "POST"]),
              Route("/logout", login.logout, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    for area in (dashboard, messages, corrections, quarantine, models, report, admin, admin_routing, audit):
        routes.extend(area.ROUTES)
    middleware = [Middleware(SecurityHeaders),
                  Middleware(SessionMiddleware, secret_key=session_secret(here.db), session_cookie=COOKIE,
                             max_age=int(session_hours * 3600), same_site="strict", https_only=secure_cookies)]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: _http_error})
    app.state.console = here
    return app
