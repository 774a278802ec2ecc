"""Logging in to the SMTP relay: ``AUTH LOGIN/PLAIN`` with a password, or ``AUTH XOAUTH2`` with an access token
(Microsoft 365, Gmail; ``[outbound.relay] auth = "xoauth2"``, the token from the relay's password_* source)."""
from __future__ import annotations

import smtplib

from gateway.config.loader import resolve_secret
from gateway.config.schema import Relay
from gateway.oauth import xoauth2


def relay_login(smtp: smtplib.SMTP, relay: Relay) -> None:
    """Authenticate as ``relay.user``; raises smtplib's errors (a refused login is an SMTPResponseException)."""
    secret = resolve_secret(relay) or ""
    if relay.auth != "xoauth2":
        smtp.login(relay.user or "", secret)
        return
    smtp.ehlo_or_helo_if_needed()
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if "XOAUTH2" not in offered:
        raise smtplib.SMTPNotSupportedError(f"the relay offers AUTH {' '.join(offered) or '(none)'}, not XOAUTH2")
    # the initial response carries the token; a refusal comes as a 334 challenge, answered with an empty line
    smtp.auth("XOAUTH2", lambda challenge=None: xoauth2(relay.user or "", secret) if challenge is None else "",
              initial_response_ok=True)
