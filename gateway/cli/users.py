"""``gateway users add | list | remove``: the accounts of the web console."""
from __future__ import annotations

import getpass
import sys
from enum import StrEnum
from typing import Annotated

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, fail, load_or_exit, open_database
from gateway.errors import GatewayError

users_app = typer.Typer(help="Accounts of the web console: add, list, remove.", no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument(help="The login name (lower-case letters, digits, . _ @ -).")]


class Role(StrEnum):
    OPERATOR = "operator"
    ADMIN = "admin"


def _password() -> str:
    """From standard input if it is not a terminal (one line), else asked twice without echo."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        fail("the two passwords differ")
    return first


@users_app.command("add")
def add(name: NameArgument, role: Annotated[Role, typer.Option(help="operator, or admin (may edit the config).")],
        config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    """Add an account; the password comes from standard input or a prompt and is stored as an argon2 hash."""
    from gateway.console.accounts import add_user

    database = open_database(load_or_exit(config, check_secrets=False), db)
    database.upgrade()
    try:
        add_user(database, name, role.value, _password())
    except GatewayError as exc:
        fail(str(exc))
    typer.echo(f"user {name} added ({role.value})")


@users_app.command("list")
def list_command(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    """Every account: name, role, when it was made."""
    from gateway.console.accounts import list_users

    database = open_database(load_or_exit(config, check_secrets=False), db)
    database.upgrade()
    for name, role, created in list_users(database):
        typer.echo(f"{name:<24} {role:<9} {created}")


@users_app.command("remove")
def remove(name: NameArgument, config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    """Remove an account; its sessions end at once."""
    from gateway.console.accounts import remove_user

    database = open_database(load_or_exit(config, check_secrets=False), db)
    try:
        remove_user(database, name)
    except GatewayError as exc:
        fail(str(exc))
    typer.echo(f"user {name} removed")
