"""Fresh OAuth2 access tokens for IMAP and SMTP XOAUTH2, printed by ``gateway oauth token`` for a mailbox's or the
relay's ``password_command`` (which runs at every connect, so a token is never used after it expires).

Microsoft 365: an app registration's client credentials, through msal (the app needs the IMAP.AccessAsApp or
SMTP.SendAsApp permission and an Exchange service principal with access to the mailbox). Google: a service
account with domain-wide delegation acting as the mailbox, or an authorized user's refresh token, through
google-auth. Both libraries are the optional ``oauth`` extra. With a cache file, a token is reused until five
minutes before it expires. See docs/providers.md.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"  # IMAP and SMTP of Exchange Online
GOOGLE_SCOPE = "https://mail.google.com/"  # IMAP and SMTP of Gmail
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
MICROSOFT_HOSTS = ("login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn")
REUSE_MARGIN = 300.0  # seconds before its expiry a cached token is fetched anew


class OAuthError(GatewayError):
    """No token: the provider refused (with its reason), or the library or a credential file is missing."""


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: float  # Unix time


def _library(name: str) -> None:
    raise OAuthError(f"{name} is not installed: pip install 'mail-gateway[oauth]'")


def microsoft_token(tenant: str, client_id: str, client_secret: str, *, authority: str | None = None,
                    scope: str = MICROSOFT_SCOPE, ca_file: Path | None = None) -> Token:
    """A client-credentials token from Microsoft Entra ID (or the given authority, e.g. a national cloud)."""
    try:
        import msal
    except ImportError:
        _library("msal")
    url = (authority or f"https://{MICROSOFT_HOSTS[0]}/{tenant}").rstrip("/")
    known = any(f"//{host}/" in url + "/" for host in MICROSOFT_HOSTS)
    try:
        app = msal.ConfidentialClientApplication(client_id, client_credential=client_secret, authority=url,
                                                 instance_discovery=known, http_client=_http_client(ca_file))
        result = app.acquire_token_for_client(scopes=[scope])
    except (ValueError, OSError) as exc:  # msal says ValueError when the authority cannot be reached or read
        raise OAuthError(f"authority {url}: {' '.join(str(exc).split())[:300]}") from None
    if "access_token" not in result:
        reason = result.get("error_description") or result.get("error") or "no access token in the answer"
        raise OAuthError(f"{url} refused: {' '.join(str(reason).split())[:300]}")
    return Token(result["access_token"], time.time() + float(result.get("expires_in", 3600)))


def _http_client(ca_file: Path | None) -> Any:
    """A requests session with a timeout; with ``ca_file``, trusting only that CA (per request, so that a
    REQUESTS_CA_BUNDLE in the environment does not override it)."""
    import requests

    session = requests.Session()
    session.request = partial(session.request, timeout=30, **({"verify": str(ca_file)} if ca_file else {}))
    return session


def google_token(key_file: Path, *, user: str | None = None, scope: str = GOOGLE_SCOPE) -> Token:
    """A token from Google for a service account acting as ``user`` (domain-wide delegation), or for the
    authorized user whose refresh token ``key_file`` holds."""
    try:
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.oauth2 import credentials, service_account
    except ImportError:
        _library("google-auth")
    try:
        info = json.loads(key_file.read_text(encoding="utf-8"))
        kind = info.get("type")
    except (OSError, ValueError, AttributeError) as exc:
        raise OAuthError(f"{key_file}: cannot read it as a JSON key file ({exc})") from None
    if kind == "service_account":
        if not user:
            raise OAuthError("a service account needs --user, the mailbox it acts as")
        creds = service_account.Credentials.from_service_account_info(info, scopes=[scope], subject=user)
    elif kind == "authorized_user":  # built here: from_authorized_user_info ignores the file's token_uri
        missing = {"refresh_token", "client_id", "client_secret"} - set(info)
        if missing:
            raise OAuthError(f"{key_file}: an authorized_user key lacks {', '.join(sorted(missing))}")
        creds = credentials.Credentials(None, refresh_token=info["refresh_token"], client_id=info["client_id"],
                                        client_secret=info["client_secret"], scopes=[scope],
                                        token_uri=info.get("token_uri", GOOGLE_TOKEN_URI))
    else:
        raise OAuthError(f"{key_file}: type {kind!r}; expected a service_account or authorized_user key file")
    try:
        creds.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        raise OAuthError(f"Google refused: {' '.join(str(exc).split())[:300]}") from None
    expiry = creds.expiry.replace(tzinfo=dt.UTC).timestamp() if creds.expiry else time.time() + 3600
    return Token(creds.token, expiry)


def cached_token(cache: Path | None, fetch: Callable[[], Token]) -> str:
    """The cached token while it has more than REUSE_MARGIN seconds left, else a fresh one (then cached)."""
    if cache is not None:
        try:
            stored = json.loads(cache.read_text(encoding="utf-8"))
            if float(stored["expires_at"]) - REUSE_MARGIN > time.time():
                return str(stored["access_token"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or unreadable: fetch
    token = fetch()
    if cache is not None:
        staging = cache.with_name(f".{cache.name}.{os.getpid()}")
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a secret: owner only
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump({"access_token": token.access_token, "expires_at": token.expires_at}, out)
        os.replace(staging, cache)
    return token.access_token


def xoauth2(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"
