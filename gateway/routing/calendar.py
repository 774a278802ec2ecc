"""Business hours: weekly hours in a time zone, national holidays (``holidays``) and extra closed days."""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from gateway.config.schema import BusinessHours

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=32)
def _holidays(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision, years=year)


def holiday_name(hours: BusinessHours, day: dt.date) -> str | None:
    """The name of the public holiday or closed day on ``day``, or None."""
    if day in hours.closed_days:
        return "closed day"
    if hours.holidays_country:
        return _holidays(hours.holidays_country, hours.holidays_subdivision, day.year).get(day)
    return None


def local_time(hours: BusinessHours, at: dt.datetime) -> dt.datetime:
    """``at`` in the configured zone (naive times are taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(ZoneInfo(hours.timezone))


def weekday_name(local: dt.datetime) -> str:
    return _WEEKDAYS[local.weekday()]


def in_window(window: str, local: dt.datetime) -> bool:
    """``"08:00-17:00"`` contains the local time (end excluded); ``"22:00-06:00"`` spans midnight."""
    start, end = (dt.time.fromisoformat(part) for part in window.split("-"))
    now = local.time().replace(tzinfo=None)
    return start <= now < end if start <= end else (now >= start or now < end)


def is_business_hours(hours: BusinessHours, at: dt.datetime) -> bool:
    """True when ``at`` falls in the weekly hours of a working day that is not a holiday."""
    local = local_time(hours, at)
    if weekday_name(local) not in hours.days or holiday_name(hours, local.date()):
        return False
    return in_window(f"{hours.start}-{hours.end}", local)
