"""``gateway oauth token``: print a fresh OAuth2 access token, for a mailbox's or the relay's ``password_command``
with ``auth = "xoauth2"`` (Microsoft 365 and Gmail: docs/providers.md)."""
from __future__ import annotations

import os
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer

from gateway.cli.options import fail

oauth_app = typer.Typer(help="OAuth2 access tokens for IMAP and SMTP XOAUTH2 (Microsoft 365, Gmail).",
                        no_args_is_help=True)


class Provider(StrEnum):
    MICROSOFT = "microsoft"
    GOOGLE = "google"


def _client_secret(env: str | None, file: Path | None) -> str:
    if env:
        if env not in os.environ:
            fail(f"--client-secret-env: environment variable {env} is not set")
        return os.environ[env]
    if file:
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"--client-secret-file: cannot read {file}: {exc.strerror}")
    fail("microsoft needs --client-secret-env or --client-secret-file")


@oauth_app.command("token")
def token(
    provider: Annotated[Provider, typer.Argument(help="microsoft (client credentials) or google (a key file).")],
    tenant: Annotated[Optional[str], typer.Option(help="microsoft: the directory (tenant) id or domain.")] = None,
    client_id: Annotated[Optional[str], typer.Option(help="microsoft: the app registration's client id.")] = None,
    client_secret_env: Annotated[Optional[str], typer.Option(help="microsoft: environment variable holding the "
                                                                  "client secret.")] = None,
    client_secret_file: Annotated[Optional[Path], typer.Option(help="microsoft: file holding the client "
                                                                    "secret.")] = None,
    authority: Annotated[Optional[str], typer.Option(help="microsoft: authority URL (default: "
                                                          "https://login.microsoftonline.com/TENANT).")] = None,
    ca_file: Annotated[Optional[Path], typer.Option(help="microsoft: PEM file of the CA(s) to trust for the "
                                                         "authority instead of the system's.")] = None,
    key_file: Annotated[Optional[Path], typer.Option(help="google: a service_account or authorized_user JSON "
                                                          "key file.")] = None,
    user: Annotated[Optional[str], typer.Option(help="google: the mailbox a service account acts as (domain-wide "
                                                     "delegation).")] = None,
    scope: Annotated[Optional[str], typer.Option(help="Scope (default: IMAP and SMTP of the provider).")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="Reuse the token kept in this file (mode 600) until five "
                                                       "minutes before it expires.")] = None,
) -> None:
    """Print a fresh access token on standard output (and nothing else), for password_command."""
    from gateway.oauth import GOOGLE_SCOPE, MICROSOFT_SCOPE, OAuthError, cached_token, google_token, microsoft_token

    if provider is Provider.MICROSOFT:
        if not tenant or not client_id:
            fail("microsoft needs --tenant and --client-id")
        fetch = partial(microsoft_token, tenant, client_id, _client_secret(client_secret_env, client_secret_file),
                        authority=authority, scope=scope or MICROSOFT_SCOPE, ca_file=ca_file)
    else:
        if key_file is None:
            fail("google needs --key-file")
        fetch = partial(google_token, key_file, user=user, scope=scope or GOOGLE_SCOPE)
    try:
        typer.echo(cached_token(cache, fetch))
    except OAuthError as exc:
        fail(str(exc))
