"""Admin pages for routing (the phase × category table, the extra rules in order) and business hours."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import tomlkit
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from classifier.taxonomy import CATEGORIES
from gateway.config.schema import Phase
from gateway.console.accounts import Account
from gateway.console.pages.admin_edit import (
    FormProblem,
    current,
    inline,
    inline_table,
    problems_page,
    set_or_drop,
    submit,
    words,
)
from gateway.console.web import page, render, text

PHASES = [p.value for p in Phase]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _routing_page(request: Request, problems: list[str], status: int = 200) -> Response:
    config, version = current(request)
    rules = [{**rule, "when_text": inline(rule.get("when", {}))} for rule in config.get("routing", {}).get("rules", [])]
    return render(request, "admin_routing.html", status, config=config, version=version, problems=problems,
                  rules=rules, phases=PHASES, categories=CATEGORIES)


@page(admin=True)
def routing(request: Request, user: Account, form: FormData | None) -> Response:
    return _routing_page(request, [])


def _again(request: Request) -> Callable[[list[str]], Response]:
    return lambda problems: _routing_page(request, problems, 422)


@page(admin=True)
def save_table(request: Request, user: Account, form: FormData | None) -> Response:
    def edit(document: Any) -> None:
        table = document["routing"]["table"]
        for phase in PHASES:
            for category in CATEGORIES:
                chosen = text(form, f"{phase}.{category}")
                if chosen:
                    table.setdefault(phase, tomlkit.table())[category] = chosen

    return submit(request, user, form, area="routing", summary="phase × category table", edit=edit,
                  page="/admin/routing", again=_again(request))


def _rules_from(form: FormData | None) -> list[tuple[float, dict[str, Any]]]:
    """(position, rule) of every row not marked for removal; a row without a name is left out."""
    rows = []
    for index in range(int(text(form, "rows") or 0) + 1):
        name = text(form, f"name.{index}")
        if not name or text(form, f"remove.{index}") == "yes":
            continue
        try:
            position = float(text(form, f"position.{index}") or index)
        except ValueError:
            raise FormProblem(f"rule {name}: the position must be a number") from None
        when = inline_table(text(form, f"when.{index}"), f"routing.rules ({name}).when")
        rows.append((position, {"name": name, "role": text(form, f"role.{index}"), "when": when}))
    return sorted(rows, key=lambda row: row[0])


@page(admin=True)
def save_rules(request: Request, user: Account, form: FormData | None) -> Response:
    def edit(document: Any) -> None:
        rules = tomlkit.aot()
        for _, rule in _rules_from(form):
            entry = tomlkit.table()
            entry.update(rule)
            rules.append(entry)
        if rules:
            document["routing"]["rules"] = rules
        elif "rules" in document["routing"]:
            del document["routing"]["rules"]

    return submit(request, user, form, area="routing", summary="extra rules", edit=edit, page="/admin/routing",
                  again=_again(request))


@page(admin=True)
def hours(request: Request, user: Account, form: FormData | None) -> Response:
    config, version = current(request)
    return render(request, "admin_hours.html", config=config, version=version, problems=[], weekdays=WEEKDAYS)


def _dates(form: FormData | None) -> list[dt.date]:
    out = []
    for word in words(form, "closed_days"):
        try:
            out.append(dt.date.fromisoformat(word))
        except ValueError:
            raise FormProblem(f"business_hours.closed_days: invalid date {word!r} (write YYYY-MM-DD)") from None
    return sorted(set(out))


@page(admin=True)
def save_hours(request: Request, user: Account, form: FormData | None) -> Response:
    def edit(document: Any) -> None:
        section = document.setdefault("business_hours", tomlkit.table())
        for key in ("timezone", "start", "end", "holidays_country", "holidays_subdivision"):
            set_or_drop(section, key, text(form, key) or None)
        section["days"] = [day for day in WEEKDAYS if form is not None and day in form.getlist("days")]
        section["closed_days"] = _dates(form)

    return submit(request, user, form, area="business_hours", summary="business hours and closed days", edit=edit,
                  page="/admin/hours", again=problems_page(request, "admin_hours.html", weekdays=WEEKDAYS))


ROUTES = [Route("/admin/routing", routing), Route("/admin/routing/table", save_table, methods=["POST"]),
          Route("/admin/routing/rules", save_rules, methods=["POST"]),
          Route("/admin/hours", hours), Route("/admin/hours", save_hours, methods=["POST"])]
