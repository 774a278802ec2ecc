"""``gateway run``, ``check-config`` and ``db upgrade``: running the gateway and keeping its config and schema right."""
from __future__ import annotations

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, load_or_exit, open_database

app = typer.Typer()
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    """Run the gateway: SMTP ingress, IMAP sources, decisions and deliveries, until SIGTERM/SIGINT."""
    from gateway.errors import GatewayError
    from gateway.logs import configure_logging
    from gateway.runner import Gateway

    settings = load_or_exit(config)
    configure_logging(settings.gateway.log_level, settings.gateway.log_format)
    try:
        Gateway(settings, open_database(settings, db)).serve(config)
    except GatewayError as exc:
        typer.echo(f"gateway: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Validate the configuration (types, keys, references, secrets); exit 2 listing every problem."""
    settings = load_or_exit(config)
    typer.echo(f"{config}: OK ({len(settings.mailboxes)} mailboxes, {len(settings.customers)} customers, "
               f"{len(settings.roles)} roles, {len(settings.routing.rules)} extra rules)")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    """Apply database migrations (also done automatically at start)."""
    settings = load_or_exit(config, check_secrets=False)
    database = open_database(settings, db)
    database.upgrade()
    typer.echo(f"database {database.engine.url.render_as_string()} is at the newest schema")
