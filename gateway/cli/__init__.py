"""The ``gateway`` command: one Typer app gathering the command groups of this package.

Each module here defines its own commands and imports shared options from :mod:`gateway.cli.options`; this
module only puts them together. Heavy modules (scikit-learn, the pipeline) are imported inside the commands that
need them, so ``gateway --help`` and the commands that need no model start fast.
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from gateway import __version__
from gateway.cli import decide, model, quarantine, report, run, status, steps

# plain help (no rich panels): option names are never cut at 80 columns
app = typer.Typer(help="E-mail ingestion gateway for shared support mailboxes.", no_args_is_help=True,
                  rich_markup_mode=None, pretty_exceptions_enable=False)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gateway {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = None) -> None:
    """E-mail ingestion gateway for shared support mailboxes."""


for commands in (run.app, decide.app, report.app, model.app, status.app, steps.app):
    app.add_typer(commands)
app.add_typer(run.db_app, name="db")
app.add_typer(model.model_app, name="model")
app.add_typer(quarantine.quarantine_app, name="quarantine")
