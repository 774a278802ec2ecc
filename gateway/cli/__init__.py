"""The ``gateway`` command: one Typer app gathering the command groups of this package.

Each module here defines its own commands and imports shared options from :mod:`gateway.cli.options`; this
module only puts them together, and :func:`entry_point` runs them so that every error ends the command with
one line on standard error and exit code 2, never a traceback. Heavy modules (scikit-learn, the pipeline) are
imported inside the commands that need them, so ``gateway --help`` and the commands that need no model start fast.
"""
from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from gateway import __version__
from gateway.cli import (console, decide, model, oauth, quarantine, report, run, show, site, status, steps,
                         users)

# plain help (no rich panels): option names are never cut at 80 columns
app = typer.Typer(help="E-mail ingestion gateway for shared support mailboxes.", no_args_is_help=True,
                  rich_markup_mode=None, pretty_exceptions_enable=False)
DEBUG_VARIABLE = "GATEWAY_DEBUG"  # set to 1: an unexpected error also prints its traceback


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gateway {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = None) -> None:
    """E-mail ingestion gateway for shared support mailboxes."""


for commands in (run.app, site.app, decide.app, show.app, report.app, model.app, status.app, steps.app,
                 console.app):
    app.add_typer(commands)
app.add_typer(run.db_app, name="db")
app.add_typer(model.model_app, name="model")
app.add_typer(quarantine.quarantine_app, name="quarantine")
app.add_typer(users.users_app, name="users")
app.add_typer(oauth.oauth_app, name="oauth")


def error_line(exc: BaseException) -> str:
    """What went wrong, in one line for an operator."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from gateway.errors import GatewayError

    if isinstance(exc, typer.TyperException):  # a usage error: an unknown option, a missing argument, a bad value
        context = getattr(exc, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        return f"{exc.format_message()}{hint}"
    if isinstance(exc, DBAPIError):
        return (f"cannot read the database ({type(exc.orig).__name__}: {exc.orig}); is it the gateway's, and up to "
                "date? `gateway db upgrade` brings it up to date")
    if isinstance(exc, SQLAlchemyError):
        return f"database: {type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, (GatewayError, LookupError, OSError)):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_VARIABLE}=1 to see the traceback)"


def entry_point() -> None:
    """Run ``gateway``: every error is one line on standard error with exit code 2, never a traceback."""
    try:
        result = app(standalone_mode=False, prog_name="gateway")
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `gateway` or a group alone: its help
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        typer.echo(f"error: {error_line(exc)}", err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into one line
        if os.environ.get(DEBUG_VARIABLE):
            raise
        typer.echo(f"error: {' '.join(error_line(exc).split())}", err=True)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
