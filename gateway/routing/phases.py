"""Which project phase a message belongs to: the customer's, else the mailbox's."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.config.schema import Customer, GatewayConfig, Mailbox, Phase


@dataclass(frozen=True)
class PhaseDecision:
    phase: Phase
    reason: str
    customer: Customer | None


def customer_for(config: GatewayConfig, sender: str) -> Customer | None:
    """The customer a sender belongs to; an exact address beats a domain, a longer domain a shorter one."""
    sender = sender.strip().lower()
    domain = sender.rpartition("@")[2]
    for customer in config.customers:
        if sender in customer.addresses:
            return customer
    best: tuple[int, Customer] | None = None
    for customer in config.customers:
        for candidate in customer.domains:
            if domain == candidate or domain.endswith("." + candidate):
                if best is None or len(candidate) > best[0]:
                    best = (len(candidate), customer)
    return best[1] if best else None


def phase_for(config: GatewayConfig, mailbox: Mailbox, sender: str, on: dt.date) -> PhaseDecision:
    """The phase on a given (local) date, with the reason an admin would want to read."""
    customer = customer_for(config, sender)
    if customer is not None and customer.phase is not None:
        return PhaseDecision(customer.phase, f"customer {customer.name!r} is configured {customer.phase.value}", customer)
    if customer is not None and customer.go_live is not None:
        if on >= customer.go_live:
            return PhaseDecision(Phase.LIVE, f"customer {customer.name!r} went live on {customer.go_live}", customer)
        return PhaseDecision(
            Phase.IMPLEMENTATION, f"customer {customer.name!r} goes live on {customer.go_live}", customer
        )
    return PhaseDecision(mailbox.phase, f"mailbox {mailbox.address} serves {mailbox.phase.value}", customer)
