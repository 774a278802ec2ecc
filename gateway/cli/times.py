"""Times an operator types: ``2h``, ``1d``, ``"1 hour ago"``, ``yesterday``, ``2026-11-24``, ``2026-11-24 08:00``.

A tight parser of its own for these few forms (a general date library would cost the CLI's start time for
forms nobody types here). A date or time without an offset is local to the given zone.
"""
from __future__ import annotations

import datetime as dt
import re

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400, "w": 604800, "week": 604800}
_RELATIVE = re.compile(r"(?P<count>\d{1,6}|an?)\s*(?P<unit>[a-z]+?)s?(\s+ago)?")
EXAMPLES = '2h, 30m, 1d, 1w, "1 hour ago", "3 days ago", today, yesterday, 2026-11-24, "2026-11-24 08:00"'


class TimeError(ValueError):
    """Text that is none of the forms :func:`parse_time` reads."""


def parse_time(text: str, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The moment ``text`` names, relative to ``now`` (aware); naive dates and times are in ``zone``."""
    cleaned = " ".join(text.strip().lower().split())
    if cleaned == "now":
        return now
    if cleaned in ("today", "yesterday"):
        midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - dt.timedelta(days=1 if cleaned == "yesterday" else 0)
    relative = _RELATIVE.fullmatch(cleaned)
    if relative and relative["unit"] in _UNITS:
        count = 1 if relative["count"] in ("a", "an") else int(relative["count"])
        return now - dt.timedelta(seconds=count * _UNITS[relative["unit"]])
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeError(f"cannot read {text!r} as a time; for example {EXAMPLES}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)
