"""What every admin page shares: read the file for display, turn a form into an edit, report the outcome."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import tomlkit
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from gateway.console.accounts import Account
from gateway.console.config_edit import Edit, change, read
from gateway.console.web import back, console, render, text

_SEPARATORS = re.compile(r"[\s,;]+")


class FormProblem(ValueError):
    """A form value that cannot even be written into the file (e.g. TOML that does not parse)."""


def current(request: Request) -> tuple[dict[str, Any], str]:
    """The configuration file as plain values (what the forms show), and its version fingerprint."""
    document, version = read(console(request).config_path)
    return document.unwrap(), version


def words(form: FormData | None, name: str) -> list[str]:
    """A field holding a list (separated by spaces, commas or new lines)."""
    return [word for word in _SEPARATORS.split(text(form, name)) if word]


def inline_table(value: str, where: str) -> Any:
    """``{ key = value, … }`` as written in a form, for a TOML inline table (empty: an empty one)."""
    value = value.strip() or "{}"
    try:
        return tomlkit.parse(f"value = {value}\n")["value"]
    except tomlkit.exceptions.TOMLKitError as exc:
        raise FormProblem(f"{where}: not a TOML inline table like {{ maildir = \"var/mail/x\" }} ({exc})") from None


def inline(value: dict[str, Any]) -> str:
    """A table as one TOML line, ``{key = value, …}`` (what the forms show and take back)."""
    table = tomlkit.inline_table()
    table.update(value)
    return table.as_string()


def set_or_drop(table: Any, key: str, value: Any) -> None:
    """Set ``key`` (keeping its comment), or remove it when the value is empty."""
    if value in (None, "", [], {}):
        if key in table:
            del table[key]
    else:
        table[key] = value


def submit(request: Request, user: Account, form: FormData | None, *, area: str, summary: str,
           edit: Edit, page: str, again: Callable[[list[str]], Response]) -> Response:
    """Make the edit; on success back to ``page`` saying what happened, else ``again(problems)`` (status 422)."""
    here = console(request)
    try:
        outcome = change(here.config_path, edit, seen=text(form, "version"), by=user.name, area=area,
                         summary=summary, db=here.db, apply=here.apply)
    except FormProblem as exc:
        return again([str(exc)])
    if outcome.problems:
        return again(outcome.problems)
    said = f"Saved ({summary}). {outcome.applied}" if outcome.audit_id else "Nothing changed."
    return back(request, page, said)


def problems_page(request: Request, template: str, **values: Any) -> Callable[[list[str]], Response]:
    """A function rendering ``template`` again with the problems found (nothing was changed)."""
    def again(problems: list[str]) -> Response:
        config, version = current(request)
        return render(request, template, 422, config=config, version=version, problems=problems, **values)
    return again
