"""Cross-field checks of a parsed configuration: overlaps, key-user replies without key users, unknown holiday
calendars, dead rules, missing reply templates."""
from __future__ import annotations

from collections.abc import Iterator

import holidays

from classifier.taxonomy import LANGUAGES
from gateway.config.schema import GatewayConfig, Rule


def semantic_problems(config: GatewayConfig) -> Iterator[str]:
    """Every ``key.path: message`` problem a valid-looking file can still have."""
    yield from _overlapping_customers(config)
    yield from _key_user_replies(config)
    yield from _reply_templates(config)
    yield from _holiday_calendar(config)
    yield from _unreachable_rules(config.routing.rules)
    if config.gateway.mode == "route" and not config.roles:
        yield "roles: no roles defined"


def _overlapping_customers(config: GatewayConfig) -> Iterator[str]:
    owner: dict[str, int] = {}
    for index, customer in enumerate(config.customers):
        for kind in ("domains", "addresses"):
            for position, value in enumerate(getattr(customer, kind)):
                if value in owner and owner[value] != index:
                    yield (f"customers[{index}].{kind}[{position}]: {value!r} also belongs to "
                           f"customers[{owner[value]}] ({config.customers[owner[value]].name!r})")
                owner.setdefault(value, index)


def _key_user_replies(config: GatewayConfig) -> Iterator[str]:
    for index, customer in enumerate(config.customers):
        if customer.key_user_reply and not customer.key_users:
            yield f"customers[{index}].key_user_reply: needs key_users (the reply names them), but there are none"


def _reply_templates(config: GatewayConfig) -> Iterator[str]:
    """Each reply the gateway may send needs its template in every language it answers in."""
    if not config.auto_reply.enabled:
        return
    kinds = ["missing_info"] + (["key_user"] if any(c.key_user_reply for c in config.customers) else [])
    folder = config.auto_reply.templates_dir
    missing = [f"{kind}.{language}.txt.j2" for kind in kinds for language in LANGUAGES
               if not (folder / f"{kind}.{language}.txt.j2").is_file()]
    if missing:
        yield f"auto_reply.templates_dir: {str(folder)!r} lacks {', '.join(missing)}"


def _holiday_calendar(config: GatewayConfig) -> Iterator[str]:
    hours = config.business_hours
    if hours.holidays_country is None:
        return
    supported = holidays.list_supported_countries()
    if hours.holidays_country not in supported:
        yield f"business_hours.holidays_country: unknown country code {hours.holidays_country!r}"
    elif hours.holidays_subdivision and hours.holidays_subdivision not in supported[hours.holidays_country]:
        yield (f"business_hours.holidays_subdivision: {hours.holidays_subdivision!r} is not a subdivision of "
               f"{hours.holidays_country} (known: {', '.join(supported[hours.holidays_country])})")


def _covers(earlier: Rule, later: Rule) -> bool:
    """True when every message that ``later`` matches is already matched by ``earlier``."""
    for name, condition in earlier.when:
        if condition is None:
            continue
        narrower = getattr(later.when, name)
        if narrower is None:
            return False
        if isinstance(condition, list):
            if not set(narrower) <= set(condition):
                return False
        elif name == "min_confidence":
            if narrower < condition:
                return False
        elif name == "max_confidence":
            if narrower > condition:
                return False
        elif narrower != condition:
            return False
    return True


def _unreachable_rules(rules: list[Rule]) -> Iterator[str]:
    names: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule.name in names:
            yield f"routing.rules[{index}].name: {rule.name!r} is used twice (also rules[{names[rule.name]}])"
        names.setdefault(rule.name, index)
        for before, earlier in enumerate(rules[:index]):
            if _covers(earlier, rule):
                yield (f"routing.rules[{index}]: rule {rule.name!r} can never fire, "
                       f"rules[{before}] ({earlier.name!r}) matches everything it matches first")
                break
