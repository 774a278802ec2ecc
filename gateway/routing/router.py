"""Route stage: (phase, category, confidence, time, customer) → recipient role and target, with the rules that fired."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from gateway.config.schema import Customer, GatewayConfig, Phase, Rule, Target
from gateway.routing.calendar import in_window, is_business_hours, local_time, weekday_name

TRIAGE = "triage"
ABSTAIN_RULE = "abstain-below-threshold"
#: why the classifier abstained → the rule name that sends the mail to triage (``X-Gateway-Rules`` says why)
ABSTAIN_RULES = {"below-threshold": ABSTAIN_RULE, "out-of-domain": "abstain-out-of-domain",
                 "unsupported-language": "abstain-unsupported-language"}
ABSTAIN_DETAILS = {"out-of-domain": "too few words the model knows", "unsupported-language": "a language the "
                   "model was not trained on"}
KEY_USER_RULE = "key-user-policy"
AUTOMATED_RULE = "automated-sender"


@dataclass(frozen=True)
class RouteFacts:
    """Everything routing looks at, already decided by earlier stages."""

    phase: Phase
    category: str
    confidence: float
    abstained: bool
    mailbox: str
    sender: str
    customer: Customer | None
    at: dt.datetime
    thread: ThreadOrigin | None = None
    abstain_reason: str = "below-threshold"  # when abstained: below-threshold, out-of-domain, unsupported-language
    automated: str = ""  # why a machine wrote the mail (the loop guard's signs), "" for a person's mail


@dataclass(frozen=True)
class ThreadOrigin:
    """The first message of the thread a reply belongs to, and the role it went to."""

    public_id: str
    role: str


@dataclass(frozen=True)
class RuleCheck:
    name: str
    fired: bool
    detail: str


@dataclass(frozen=True)
class Route:
    role: str
    target: Target
    target_name: str  # how the outbox finds the target again: role:<role> or customer:<index>:<role>
    rules: tuple[str, ...]
    checks: tuple[RuleCheck, ...]
    thread: ThreadOrigin | None = None  # set when the role was taken from the thread's first message


def rule_matches(rule: Rule, facts: RouteFacts, business_hours: bool, local: dt.datetime) -> bool:
    """True when every condition the rule sets holds (an unset condition always holds)."""
    when = rule.when
    customer = facts.customer.name if facts.customer else None
    return all(
        (
            when.phase is None or facts.phase in when.phase,
            when.category is None or facts.category in when.category,
            when.customer is None or customer in when.customer,
            when.mailbox is None or facts.mailbox in when.mailbox,
            when.sender is None or any(_sender_matches(facts.sender, s) for s in when.sender),
            when.business_hours is None or when.business_hours == business_hours,
            when.days is None or weekday_name(local) in when.days,
            when.hours is None or in_window(when.hours, local),
            when.min_confidence is None or facts.confidence >= when.min_confidence,
            when.max_confidence is None or facts.confidence < when.max_confidence,
        )
    )


def _sender_matches(sender: str, pattern: str) -> bool:
    pattern = pattern.lower()
    return sender == pattern or (pattern.startswith("@") and sender.endswith(pattern))


def route(config: GatewayConfig, facts: RouteFacts) -> Route:
    """Decide the role: mail a machine wrote goes to ``automated_role`` before anything else; then the extra rules
    in order, the thread's role, abstention, and the phase table.

    A rule that looks at the category never fires for an abstained (unsure) category.
    """
    if facts.automated:
        check = RuleCheck(AUTOMATED_RULE, True, f"{facts.automated} → {config.routing.automated_role}")
        return _with_target(config, facts, config.routing.automated_role, [check])
    checks = _key_user_checks(facts)
    open_now = is_business_hours(config.business_hours, facts.at)
    local = local_time(config.business_hours, facts.at)
    for rule in config.routing.rules:
        fired = rule_matches(rule, facts, open_now, local) and not (facts.abstained and rule.when.category is not None)
        checks.append(RuleCheck(rule.name, fired, f"→ {rule.role}" if fired else "conditions not met"))
        if fired:
            return _with_target(config, facts, rule.role, checks)
    if facts.thread is not None and facts.thread.role in config.roles:
        detail = f"reply in the thread of {facts.thread.public_id}, which went to {facts.thread.role}"
        checks.append(RuleCheck(f"thread.{facts.thread.public_id}", True, detail))
        return replace(_with_target(config, facts, facts.thread.role, checks), thread=facts.thread)
    if facts.abstained:
        detail = ABSTAIN_DETAILS.get(facts.abstain_reason, f"confidence {facts.confidence:.2f} below threshold")
        checks.append(RuleCheck(ABSTAIN_RULES.get(facts.abstain_reason, ABSTAIN_RULE), True, detail))
        return _with_target(config, facts, TRIAGE, checks)
    role = config.routing.table[facts.phase][facts.category]
    checks.append(RuleCheck(f"table.{facts.phase.value}.{facts.category}", True, f"→ {role}"))
    return _with_target(config, facts, role, checks)


def _key_user_checks(facts: RouteFacts) -> list[RuleCheck]:
    """The key-user policy flags (never re-routes) a sender who is not one of the customer's key users."""
    customer = facts.customer
    if customer is None or not customer.key_users or facts.sender in customer.key_users:
        return []
    return [RuleCheck(KEY_USER_RULE, True, f"{facts.sender} is not a key user of {customer.name!r} "
                                           f"(key users: {', '.join(customer.key_users)})")]


def _with_target(config: GatewayConfig, facts: RouteFacts, role: str, checks: list[RuleCheck]) -> Route:
    target, name = config.roles[role], f"role:{role}"
    if facts.customer is not None and role in facts.customer.overrides:
        target = facts.customer.overrides[role]
        name = f"customer:{config.customers.index(facts.customer)}:{role}"
        checks.append(RuleCheck(f"override.{role}", True, f"customer {facts.customer.name!r} has its own {role}"))
    fired = tuple(c.name for c in checks if c.fired)
    return Route(role, target, name, fired, tuple(checks))
