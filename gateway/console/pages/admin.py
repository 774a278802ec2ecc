"""Admin pages for mailboxes (address, phase) and customers (domains, phase or go-live date, key users, overrides)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import tomlkit
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
from gateway.console.web import page, refuse, render, text

PHASES = [p.value for p in Phase]


@page(admin=True)
def mailboxes(request: Request, user: Account, form: FormData | None) -> Response:
    config, version = current(request)
    return render(request, "admin_mailboxes.html", config=config, version=version, problems=[], phases=PHASES)


def _index(request: Request) -> int:
    return int(request.path_params["index"])


@page(admin=True)
def save_mailbox(request: Request, user: Account, form: FormData | None) -> Response:
    index, remove = _index(request), text(form, "remove") == "yes"
    address, phase = text(form, "address").lower(), text(form, "phase")

    def edit(document: Any) -> None:
        boxes = document["mailboxes"]
        if index == len(boxes):  # the "add" row: a new SMTP mailbox
            boxes.append({"address": address, "source": "smtp", "phase": phase})
        elif remove:
            del boxes[index]
        else:
            boxes[index]["address"], boxes[index]["phase"] = address, phase

    summary = f"mailbox {address}: " + ("removed" if remove else f"phase {phase}")
    return submit(request, user, form, area="mailboxes", summary=summary, edit=edit, page="/admin/mailboxes",
                  again=problems_page(request, "admin_mailboxes.html", phases=PHASES))


@page(admin=True)
def customers(request: Request, user: Account, form: FormData | None) -> Response:
    config, version = current(request)
    return render(request, "admin_customers.html", config=config, version=version)


def _customer_form(request: Request, index: int, problems: list[str], status: int = 200) -> Response:
    config, version = current(request)
    listed = config.get("customers", [])
    if index > len(listed):
        return refuse(request, 404, "No customer with this number.")
    customer = listed[index] if index < len(listed) else {"name": "", "domains": []}
    overrides = "\n".join(f"{role} = {inline(target)}"
                          for role, target in customer.get("overrides", {}).items())
    return render(request, "admin_customer.html", status, customer=customer, index=index, version=version,
                  overrides=overrides, problems=problems, phases=PHASES, new=index == len(listed))


@page(admin=True)
def customer(request: Request, user: Account, form: FormData | None) -> Response:
    return _customer_form(request, _index(request), [])


def _overrides(value: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for number, line in enumerate(value.splitlines(), 1):
        if line.strip():
            role, equals, target = line.partition("=")
            if not equals or not role.strip():
                raise FormProblem(f"overrides line {number}: write role = {{ maildir = \"…\" }}")
            table[role.strip()] = inline_table(target, f"overrides line {number}")
    return table


def _go_live(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        raise FormProblem(f"go_live: invalid date {value!r} (write YYYY-MM-DD)") from None


@page(admin=True)
def save_customer(request: Request, user: Account, form: FormData | None) -> Response:
    index, name = _index(request), text(form, "name")
    remove = text(form, "remove") == "yes"

    def edit(document: Any) -> None:
        listed = document.setdefault("customers", tomlkit.aot())
        if remove:
            del listed[index]
            return
        if index == len(listed):
            listed.append(tomlkit.table())
        entry = listed[index]
        entry["name"] = name
        for key in ("domains", "addresses", "key_users"):
            set_or_drop(entry, key, words(form, key))
        set_or_drop(entry, "phase", text(form, "phase") if text(form, "schedule") == "phase" else None)
        set_or_drop(entry, "go_live", _go_live(text(form, "go_live")) if text(form, "schedule") == "go_live" else None)
        set_or_drop(entry, "key_user_reply", True if text(form, "key_user_reply") == "yes" else None)
        overrides = _overrides(text(form, "overrides"))
        if overrides:
            table = tomlkit.table()
            table.update(overrides)
            entry["overrides"] = table
        elif "overrides" in entry:
            del entry["overrides"]

    def again(problems: list[str]) -> Response:
        return _customer_form(request, index, problems, 422)

    summary = f"customer {name or index}: " + ("removed" if remove else "edited")
    return submit(request, user, form, area="customers", summary=summary, edit=edit, page="/admin/customers",
                  again=again)


ROUTES = [Route("/admin/mailboxes", mailboxes), Route("/admin/mailboxes/{index:int}", save_mailbox, methods=["POST"]),
          Route("/admin/customers", customers), Route("/admin/customers/{index:int}", customer),
          Route("/admin/customers/{index:int}", save_customer, methods=["POST"])]
