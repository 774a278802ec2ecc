"""How commands print: values as words a person reads (``yes``/``no``, comma lists), records as JSON on request.

Shared by the command modules like :mod:`gateway.cli.options`; light, so ``--help`` stays fast.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import typer


def human(value: Any) -> str:
    """One value as text: ``yes``/``no``, ``-`` for nothing, comma lists, two decimals, ``key value`` pairs."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {human(item)}" for key, item in value.items()) or "none"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(human(item) for item in value) or "none"
    return str(value)


def complete_text(complete: bool | None, missing: Iterable[str]) -> str:
    """``yes``, ``no (missing steps, screenshot)`` or ``not checked`` (the category needs nothing)."""
    if complete is None:
        return "not checked (the category needs nothing)"
    return "yes" if complete else f"no (missing {human(list(missing))})"


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def field_lines(record: Mapping[str, Any], width: int = 17) -> str:
    """``key: value`` lines, keys right-aligned, values as :func:`human` text."""
    return "\n".join(f"{key:>{width}}: {human(value)}" for key, value in record.items())


def explain_lines(decision: Mapping[str, Any]) -> list[str]:
    """The explain trace of a decision record (:func:`gateway.records.decision_record` or a file's decision)."""
    top = ", ".join(f"{category} {probability:.2f}" for category, probability in decision["top"]) or "-"
    threshold = decision.get("threshold")
    reply = f"yes ({decision['reply_kind']})" if decision.get("auto_reply") else "no"
    lines = [
        f"language    {decision['language']}",
        f"category    {decision['category']} ({decision['confidence']:.2f}); top 3: {top}",
        f"abstained   {human(decision['abstained'])} (threshold {human(threshold)}, model {decision['model']})",
        f"phase       {decision['phase']}: {decision['phase_reason']}",
    ]
    if decision["checks"]:
        lines.append("rules       checked in order ([x] hit, [ ] missed):")
        lines += [f"  [{'x' if c['fired'] else ' '}] {c['name']:<34} {c['detail']}" for c in decision["checks"]]
    else:
        lines.append(f"rules       {human(decision['rules'])} (no trace stored for this decision: misses unknown)")
    lines += [f"role        {decision['role']}", f"target      {decision['target']}",
              f"complete    {complete_text(decision['complete'], decision['missing'])}"]
    lines += [f"  evidence  {reason}" for reason in decision.get("evidence", [])]
    lines.append(f"auto-reply  {reply}: {decision['reply_reason'] or '-'}")
    return lines
