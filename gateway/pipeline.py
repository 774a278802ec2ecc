"""The decision pipeline: parse → classify → route → check completeness → plan reply.

Each stage is a plain function of the previous results; the only outside knowledge comes through
:class:`History` (what was decided and replied before), so the whole pipeline runs in tests without I/O.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from classifier.language import detect_language
from classifier.model import CategoryModel, Prediction
from classifier.textprep import customer_text
from gateway.config.schema import Customer, GatewayConfig, Mailbox, describe_target
from gateway.limits import check_limits
from gateway.parsing import ParsedMail, parse
from gateway.replies.completeness import (Completeness, Evidence, ThreadState, check_completeness, gather_evidence,
                                         steps_model)
from gateway.replies.loopguard import automated_reasons, reasons_not_to_reply
from gateway.routing.calendar import local_time
from gateway.routing.phases import PhaseDecision, phase_for
from gateway.routing.router import KEY_USER_RULE, Route, RouteFacts, ThreadOrigin, route

#: the category of mail a machine wrote (bounces, auto-replies): no customer request, whatever the model says
AUTOMATED_CATEGORY = "other"
#: the automatic replies: asking for missing details, or naming the key users to a sender who is not one
ReplyKind = Literal["missing_info", "key_user"]


class History(Protocol):
    """What the pipeline may ask about earlier traffic."""

    def auto_replies_since(self, sender: str, since: dt.datetime) -> int: ...

    def thread_state(self, origin: ThreadOrigin) -> ThreadState: ...

    def recurring_images(self, sender: str, digests: tuple[str, ...]) -> frozenset[str]: ...

    def thread_origin(self, message_ids: tuple[str, ...], ticket: str | None) -> ThreadOrigin | None: ...

    def recent_duplicate(self, sender: str, fingerprint: str, since: dt.datetime) -> str | None: ...


class NoHistory:
    """History of a gateway that has seen nothing yet (``gateway classify`` on files)."""

    def auto_replies_since(self, sender: str, since: dt.datetime) -> int:
        return 0

    def thread_state(self, origin: ThreadOrigin) -> ThreadState:
        return ThreadState("", has_steps=False, has_screenshot=False, answered=False)

    def recurring_images(self, sender: str, digests: tuple[str, ...]) -> frozenset[str]:
        return frozenset()

    def thread_origin(self, message_ids: tuple[str, ...], ticket: str | None) -> ThreadOrigin | None:
        return None

    def recent_duplicate(self, sender: str, fingerprint: str, since: dt.datetime) -> str | None:
        return None


@dataclass(frozen=True)
class Decision:
    mail: ParsedMail
    language: str
    prediction: Prediction
    phase: PhaseDecision
    route: Route
    completeness: Completeness
    reply_kind: ReplyKind | None  # None: no automatic reply
    auto_reply_reason: str
    model_version: str
    sender: str
    at: dt.datetime
    fingerprint: str
    duplicate_of: str | None
    mailbox: str
    threshold: float  # the abstain threshold in force for the predicted category
    automated: str = ""  # why a machine wrote the mail (then it went to [routing] automated_role), "" if a person

    @property
    def target(self) -> str:
        return describe_target(self.route.target)

    @property
    def auto_reply(self) -> bool:
        return self.reply_kind is not None


def trace_of(decision: Decision) -> dict[str, Any]:
    """The explain trace of a decision as plain data, stored with it: why it went where it went, rule misses too."""
    prediction = decision.prediction
    return {
        "top": [[category, round(probability, 4)] for category, probability in prediction.top],
        "threshold": round(decision.threshold, 4),
        "phase": {"phase": decision.phase.phase.value, "reason": decision.phase.reason},
        "checks": [{"name": c.name, "fired": c.fired, "detail": c.detail} for c in decision.route.checks],
        "reply": {"kind": decision.reply_kind, "reason": decision.auto_reply_reason},
        "completeness": {"complete": decision.completeness.complete, "missing": list(decision.completeness.missing),
                         "evidence": list(decision.completeness.reasons)},
    }


_NOT_WORDS = re.compile(r"[\W_]+")


def request_fingerprint(text: str) -> str:
    """A hash of the request's words (case, spacing and punctuation ignored) to spot the same mail sent again."""
    return hashlib.sha256(_NOT_WORDS.sub(" ", text.casefold()).strip().encode()).hexdigest()


_TICKET = re.compile(r"\[#([0-9a-f]{12})\]")


def ticket_token(public_id: str) -> str:
    """The token our replies put in the subject, so an answer finds its thread even without References."""
    return f"[#{public_id[:12]}]"


def ticket_in(subject: str) -> str | None:
    found = _TICKET.search(subject or "")
    return found.group(1) if found else None


def thread_ids(mail: ParsedMail) -> tuple[str, ...]:
    """Message-IDs this mail answers (In-Reply-To first, then References newest first)."""
    ids = (mail.in_reply_to, *reversed(mail.references))
    return tuple(dict.fromkeys(i for i in ids if i))


@dataclass(frozen=True)
class Analysis:
    """What the untrusted content yields (parse, classify and evidence); the processor computes it isolated."""

    mail: ParsedMail
    text: str
    language: str
    prediction: Prediction
    evidence: Evidence
    fingerprint: str  # of the request's words (see request_fingerprint)


def prepare(config: GatewayConfig, raw: bytes, enter: Callable[[str], None] = lambda stage: None
            ) -> tuple[ParsedMail, str]:
    """Limits and parse stages: (mail, the customer's own text); raises :class:`ParseLimitExceeded`."""
    enter("limits")
    check_limits(raw, config.limits)
    enter("parse")
    mail = parse(raw)
    return mail, customer_text(mail.subject, mail.text)


def classify_prepared(config: GatewayConfig, model: CategoryModel,
                      prepared: Sequence[tuple[ParsedMail, str]]) -> list[Analysis]:
    """Classify stage for many prepared mails at once (one model call each for category and steps)."""
    if not prepared:
        return []
    texts = [text for _, text in prepared]
    languages = [detect_language(text) for text in texts]
    predictions = model.predict(texts, threshold=config.classifier.abstain_threshold, languages=languages)
    evidence = gather_evidence(prepared, steps_model(config.classifier.models_dir))
    return [Analysis(mail, text, language, prediction, found, request_fingerprint(text))
            for (mail, text), language, prediction, found in zip(prepared, languages, predictions, evidence)]


def analyse(config: GatewayConfig, model: CategoryModel, raw: bytes,
            enter: Callable[[str], None] = lambda stage: None) -> Analysis:
    """Check the limits, parse and classify one message, telling ``enter`` each stage as it starts.

    Raises :class:`ParseLimitExceeded` for a message over a limit.
    """
    prepared = prepare(config, raw, enter)
    enter("classify")
    return classify_prepared(config, model, [prepared])[0]


def plan_auto_reply(config: GatewayConfig, mail: ParsedMail, completeness: Completeness, sender: str,
                    envelope_from: str | None, at: dt.datetime, history: History,
                    duplicate_of: str | None = None, thread: ThreadState | None = None,
                    not_key_user_of: Customer | None = None) -> tuple[ReplyKind | None, str]:
    """Reply stage: (which reply, why) — to people only, once per thread, within rate limits.

    ``not_key_user_of``: the customer whose key-user reply is due, because the sender is not one of its key users.
    """
    kind, why = _wanted_reply(completeness, thread, not_key_user_of)
    if kind is None:
        return None, why
    if duplicate_of:
        return None, f"duplicate of {duplicate_of}"
    if not config.auto_reply.enabled:
        return None, "auto-replies disabled"
    reasons = reasons_not_to_reply(mail, envelope_from, config.own_addresses, config.auto_reply.loop_id,
                                   config.auto_reply.authserv_id)
    if reasons:
        return None, "; ".join(reasons)
    if thread is not None and thread.answered:
        return None, "thread already got an automatic reply"
    sent = history.auto_replies_since(sender, at - dt.timedelta(days=1))
    if sent >= config.auto_reply.max_per_sender_per_day:
        return None, f"rate limit: {sent} automatic replies to {sender} in 24 h"
    return kind, why


def _wanted_reply(completeness: Completeness, thread: ThreadState | None,
                  not_key_user_of: Customer | None) -> tuple[ReplyKind | None, str]:
    """The reply the content calls for, before the safety checks. A new request from someone who is not a key user
    gets the key-user reply only: what is missing is left to the key user, whom the sender should go through."""
    missing = ", ".join(completeness.missing)
    if not_key_user_of is not None and thread is None:
        also = f" (also missing {missing})" if missing else ""
        return "key_user", f"not a key user of {not_key_user_of.name!r}{also}"
    if not missing:
        return None, "nothing missing"
    return "missing_info", f"missing {missing}"


def _key_user_reply_due(customer: Customer | None, routed: Route) -> Customer | None:
    """The sender's customer, if it wants a key-user reply and routing flagged the sender as no key user."""
    return customer if customer and customer.key_user_reply and KEY_USER_RULE in routed.rules else None


def decide(config: GatewayConfig, model: CategoryModel, raw: bytes, mailbox: Mailbox, *,
           envelope_from: str | None = None, at: dt.datetime | None = None, history: History | None = None,
           phase_override: str | None = None, analysis: Analysis | None = None) -> Decision:
    """Run every stage on one message (parse and classify only if no ``analysis`` is given); the full decision."""
    history = history or NoHistory()
    analysis = analysis or analyse(config, model, raw)
    mail, language, prediction = analysis.mail, analysis.language, analysis.prediction
    automated = "; ".join(automated_reasons(mail, envelope_from, config.auto_reply.loop_id))
    if automated:  # a bounce or an auto-reply is no customer request, and never an outage
        prediction = replace(prediction, category=AUTOMATED_CATEGORY, abstained=False, abstain_reason="")
    sender = (mail.from_addr or (envelope_from or "")).lower()
    when = at or mail.date or dt.datetime.now(dt.UTC)
    phase = phase_for(config, mailbox, sender, local_time(config.business_hours, when).date())
    if phase_override:
        phase = PhaseDecision(type(phase.phase)(phase_override), "phase given on the command line", phase.customer)
    thread, ticket = thread_ids(mail), ticket_in(mail.subject)
    origin = history.thread_origin(thread, ticket) if thread or ticket else None
    facts = RouteFacts(phase.phase, prediction.category, prediction.confidence, prediction.abstained,
                       mailbox.address, sender, phase.customer, when, origin, prediction.abstain_reason, automated)
    routed = route(config, facts)
    # an unsure category asks the customer for nothing: a human decides first
    thread_state = history.thread_state(origin) if origin else None
    completeness = check_completeness(config, analysis.evidence, "" if prediction.abstained else prediction.category,
                                      thread_state, lambda digests: history.recurring_images(sender, digests))
    fingerprint = analysis.fingerprint
    window = dt.timedelta(hours=config.routing.duplicate_window_hours)
    duplicate_of = history.recent_duplicate(sender, fingerprint, when - window) if window and sender else None
    reply, why = plan_auto_reply(config, mail, completeness, sender, envelope_from, when, history, duplicate_of,
                                 thread_state, _key_user_reply_due(phase.customer, routed))
    return Decision(mail, language, prediction, phase, routed, completeness, reply, why, model.version, sender, when,
                    fingerprint, duplicate_of, mailbox.address, prediction.threshold, automated)
