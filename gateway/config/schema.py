"""Typed, frozen configuration objects validated from ``gateway.toml``."""
from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from classifier.taxonomy import CATEGORIES, Category


class Strict(BaseModel):
    """Base for every config section: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Phase(StrEnum):
    IMPLEMENTATION = "implementation"
    LIVE = "live"


class Secret(Strict):
    """A secret given only by reference: an environment variable, a file or a command."""

    password_env: str | None = None
    password_file: Path | None = None
    password_command: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Secret:
        given = [s for s in (self.password_env, self.password_file, self.password_command) if s]
        if len(given) > 1:
            raise ValueError("give only one of password_env, password_file, password_command")
        return self


class ImapAccount(Secret):
    host: str
    port: int = Field(993, ge=1, le=65535)
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    verify_certificate: bool = True
    #: PEM file of the CA(s) to trust instead of the system's (an internal CA)
    ca_file: Path | None = None
    user: str
    auth: Literal["login", "xoauth2"] = "login"
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _ca_file_verifies(self) -> ImapAccount:
        if self.ca_file is not None and (self.tls == "none" or not self.verify_certificate):
            raise ValueError("ca_file needs tls = \"implicit\" or \"starttls\" and verify_certificate = true")
        return self


class ImapSource(ImapAccount):
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    after_fetch: Literal["move", "keep"] = "move"
    idle: bool = True
    poll_interval: float = Field(30.0, gt=0)
    #: operators move delivered copies into ``<corrections_folder>/<category>`` to correct the category
    corrections_folder: str | None = None

    @field_validator("corrections_folder")
    @classmethod
    def _folder_path(cls, value: str | None) -> str | None:
        if value is not None and (any(not part.strip() for part in value.split("/")) or set(value) & set("*%")
                                  or not value.isprintable()):
            raise ValueError(f"not a folder path like 'corrections' or 'Support/corrections': {value!r} "
                             "(no empty parts, no * or %, no control characters)")
        return value

    @model_validator(mode="after")
    def _corrections_apart(self) -> ImapSource:
        prefix = self.corrections_folder
        for key in ("folder", "processed_folder"):
            if prefix and (getattr(self, key) == prefix or getattr(self, key).startswith(prefix + "/")):
                raise ValueError(f"{key} {getattr(self, key)!r} lies in corrections_folder {prefix!r}")
        return self


class Mailbox(Strict):
    address: str
    source: Literal["smtp", "imap"] = "smtp"
    phase: Phase
    imap: ImapSource | None = None

    @field_validator("address")
    @classmethod
    def _lower(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError(f"not an e-mail address: {value!r}")
        return value.strip().lower()

    @model_validator(mode="after")
    def _imap_needs_account(self) -> Mailbox:
        if self.source == "imap" and self.imap is None:
            raise ValueError("source 'imap' needs an [mailboxes.imap] section")
        return self


class MaildirTarget(Strict):
    maildir: Path


class SmtpTarget(Strict):
    smtp: str


class ImapTarget(Strict):
    imap: ImapAccount
    folder: str


def _target_kind(value: object) -> str | None:
    keys = value.keys() if isinstance(value, dict) else vars(value).keys() if hasattr(value, "__dict__") else ()
    kinds = {"maildir": "MaildirTarget", "smtp": "SmtpTarget", "imap": "ImapTarget"}
    return next((tag for key, tag in kinds.items() if key in keys), None)


Target = Annotated[
    Annotated[MaildirTarget, Tag("MaildirTarget")] | Annotated[SmtpTarget, Tag("SmtpTarget")] | Annotated[ImapTarget, Tag("ImapTarget")],
    Discriminator(
        _target_kind,
        custom_error_type="target_kind",
        custom_error_message="a target needs one of the keys maildir, smtp or imap",
    ),
]


def describe_target(target: Target) -> str:
    """A short, stable text naming a delivery target (for headers, logs and the outbox)."""
    if isinstance(target, MaildirTarget):
        return f"maildir:{target.maildir}"
    if isinstance(target, SmtpTarget):
        return f"smtp:{target.smtp}"
    return f"imap:{target.imap.user}@{target.imap.host}/{target.folder}"


class Customer(Strict):
    name: str
    domains: list[str] = []
    addresses: list[str] = []
    phase: Phase | None = None
    go_live: dt.date | None = None
    #: when set, only these senders open requests; mail from others is still delivered, flagged key-user-policy
    key_users: list[str] = []
    #: answer a sender who is not a key user once, politely, naming the key users (needs key_users)
    key_user_reply: bool = False
    overrides: dict[str, Target] = {}

    @field_validator("domains", "addresses", "key_users")
    @classmethod
    def _lower_all(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() for v in values]

    @model_validator(mode="after")
    def _matches_someone(self) -> Customer:
        if not self.domains and not self.addresses:
            raise ValueError("a customer needs at least one of domains, addresses")
        if self.phase is not None and self.go_live is not None:
            raise ValueError("give either phase or go_live, not both")
        return self


HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
TimeWindow = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")]


class BusinessHours(Strict):
    timezone: str = "Europe/Berlin"
    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    start: HHMM = "08:00"
    end: HHMM = "17:00"
    holidays_country: str | None = "DE"
    holidays_subdivision: str | None = None
    closed_days: list[dt.date] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class RuleCondition(Strict):
    phase: list[Phase] | None = None
    category: list[Category] | None = None
    customer: list[str] | None = None
    mailbox: list[str] | None = None
    sender: list[str] | None = None
    business_hours: bool | None = None
    #: local weekdays and a time window "HH:MM-HH:MM" (in the business-hours time zone)
    days: list[Weekday] | None = None
    hours: TimeWindow | None = None
    min_confidence: float | None = Field(None, ge=0, le=1)
    max_confidence: float | None = Field(None, ge=0, le=1)


class Rule(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    when: RuleCondition = RuleCondition()
    role: str


class Routing(Strict):
    table: dict[Phase, dict[Category, str]]
    rules: list[Rule] = []
    #: the same request from the same sender within this many hours is a linked duplicate (0: off)
    duplicate_window_hours: float = Field(72.0, ge=0)
    #: where mail a machine wrote goes (bounces, DSNs, feedback reports, auto-replies; the loop guard's verdict)
    automated_role: str = "triage"

    @field_validator("table")
    @classmethod
    def _complete_table(cls, table: dict[Phase, dict[Category, str]]) -> dict[Phase, dict[Category, str]]:
        for phase in Phase:
            missing = [c for c in CATEGORIES if c not in table.get(phase, {})]
            if missing:
                raise ValueError(f"phase {phase.value!r} has no role for: {', '.join(missing)}")
        return table


class SmtpIngress(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=0, le=65535)
    max_message_size: int = Field(25 * 1024 * 1024, gt=0)
    max_recipients: int = Field(50, gt=0)
    timeout: float = Field(60.0, gt=0)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: SO_REUSEPORT: several instances on one host share the port and the kernel spreads connections
    reuse_port: bool = False


class Relay(Secret):
    host: str
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    user: str | None = None
    #: "xoauth2": the password_* source gives an OAuth2 access token (Microsoft 365, Gmail)
    auth: Literal["login", "xoauth2"] = "login"
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _xoauth2_needs_user(self) -> Relay:
        if self.auth == "xoauth2" and not self.user:
            raise ValueError("auth \"xoauth2\" needs user (the mailbox the token is for)")
        return self


class Outbound(Strict):
    """How mail leaves the gateway (SMTP targets, auto-replies): a relay, or a local Maildir."""

    relay: Relay | None = None
    maildir: Path | None = Path("var/mail/outgoing")
    max_attempts: int = Field(8, gt=0)
    retry_base_seconds: float = Field(30.0, gt=0)
    #: how long a claimed item is reserved for its sender; a crashed instance's items come back after it
    claim_lease_seconds: float = Field(300.0, gt=0)


class AutoReply(Strict):
    enabled: bool = True
    templates_dir: Path = Path("config/templates")
    max_per_sender_per_day: int = Field(3, ge=0)
    authserv_id: str | None = None
    loop_id: str = "tessaro-mail-gateway"


class Completeness(Strict):
    require: dict[Category, list[Literal["steps", "screenshot"]]] = {Category.INCIDENT: ["steps", "screenshot"]}


class Classifier(Strict):
    models_dir: Path = Path("models")
    abstain_threshold: float | None = Field(None, ge=0, le=1)


class MetricsEndpoint(Strict):
    """``/metrics`` and ``/healthz``; loopback only unless the host says otherwise (``port = 0``: any free port)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9525, ge=0, le=65535)


class ConsoleEndpoint(Strict):
    """The web console (``gateway/console/``); loopback only unless the host says otherwise (``port = 0``: any free port).

    With ``tls_cert``/``tls_key`` it serves HTTPS and its cookies are ``Secure``; ``secure_cookies`` marks them so
    when a TLS proxy in front of it terminates HTTPS instead.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    secure_cookies: bool = False
    session_hours: float = Field(12.0, gt=0, le=24 * 30)

    @model_validator(mode="after")
    def _cert_with_key(self) -> ConsoleEndpoint:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self


class Retention(Strict):
    """How long the bytes of delivered mail are kept; decisions stay (reports, threads, duplicates). 0 = forever."""

    raw_days: int = Field(90, ge=0)
    image_days: int = Field(365, ge=0)  # digests that tell a sender's recurring logo from a screenshot


class Limits(Strict):
    """Bounds on untrusted mail (``gateway/limits.py``); a message over one is delivered to triage unparsed."""

    max_message_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_header_bytes: int = Field(256 * 1024, gt=0)
    max_line_bytes: int = Field(1024 * 1024, gt=0)
    max_mime_depth: int = Field(32, ge=1, le=100)
    max_parts: int = Field(1000, ge=1, le=10_000)
    max_attachment_bytes: int = Field(20 * 1024 * 1024, gt=0)
    #: per message, for limits + parse + classify in a worker: wall-clock seconds, and CPU seconds (a CPU timer)
    parse_timeout: float = Field(30.0, gt=0)
    parse_cpu_seconds: int = Field(10, ge=1)
    #: isolated worker processes that parse and classify (default: one per CPU core but one, which the gateway
    #: process itself needs under load); each may grow worker_memory_mb above its start size
    workers: int = Field(default_factory=lambda: max(1, len(os.sched_getaffinity(0)) - 1), ge=1, le=64)
    worker_memory_mb: int = Field(1024, ge=64)


class General(Strict):
    mode: Literal["route", "shadow"] = "route"
    shadow_target: Target | None = None
    database: str = "sqlite:///var/gateway.db"
    #: written by ``gateway run`` (read by ``status`` and the console); one per instance on a host; "" for none
    pid_file: Path | None = Path("var/gateway.pid")
    log_format: Literal["logfmt", "json"] = "logfmt"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("pid_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _shadow_needs_target(self) -> General:
        if self.mode == "shadow" and self.shadow_target is None:
            raise ValueError("mode 'shadow' needs shadow_target")
        return self


class GatewayConfig(Strict):
    gateway: General = General()
    smtp: SmtpIngress = SmtpIngress()
    mailboxes: list[Mailbox] = Field(min_length=1)
    customers: list[Customer] = []
    roles: dict[str, Target]
    routing: Routing
    business_hours: BusinessHours = BusinessHours()
    completeness: Completeness = Completeness()
    auto_reply: AutoReply = AutoReply()
    outbound: Outbound = Outbound()
    classifier: Classifier = Classifier()
    limits: Limits = Limits()
    metrics: MetricsEndpoint = MetricsEndpoint()
    console: ConsoleEndpoint = ConsoleEndpoint()
    retention: Retention = Retention()

    @model_validator(mode="after")
    def _roles_are_known(self) -> GatewayConfig:
        known = set(self.roles)
        used = {role for row in self.routing.table.values() for role in row.values()}
        used |= {rule.role for rule in self.routing.rules} | {"triage", self.routing.automated_role}
        unknown = sorted(used - known)
        if unknown:
            raise ValueError(f"roles used in routing but not defined under [roles]: {', '.join(unknown)}")
        return self

    def mailbox(self, address: str) -> Mailbox | None:
        """The configured mailbox for an address, or None."""
        address = address.strip().lower()
        return next((m for m in self.mailboxes if m.address == address), None)

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(m.address for m in self.mailboxes)


__all__ = ["CATEGORIES", "GatewayConfig", "Phase", "Target", "describe_target"]
