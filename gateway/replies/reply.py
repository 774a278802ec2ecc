"""Build the automatic replies (asking for missing details, naming the key users): rendered per language,
threaded, RFC 3834 headers."""
from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from classifier.taxonomy import FALLBACK_LANGUAGE, LANGUAGES
from gateway.parsing import ParsedMail
from gateway.replies.screenshots import ImageCheck
from gateway.storage.models import utcnow

if TYPE_CHECKING:
    from gateway.pipeline import Decision

#: a Message-ID we copy into In-Reply-To/References: printable ASCII in angle brackets, nothing to decode
MAX_NAMED_IMAGES = 3  # images a reply names when it explains why none of them is a screenshot
_SAFE_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")
_TEAM_NAMES = {
    "en": {"support": "support", "consultant": "consulting", "on_call": "on-call", "triage": "service"},
    "de": {"support": "Support", "consultant": "Beratung", "on_call": "Bereitschaft", "triage": "Service"},
    "nl": {"support": "support", "consultant": "consultancy", "on_call": "storingsdienst", "triage": "service"},
}


def clean_header_value(value: str, limit: int = 200) -> str:
    """A value safe to put in a header: printable characters only (no CR/LF, no Unicode line separators),
    no ``=?`` that could start an encoded word (the email package would decode it into new lines), bounded."""
    text = "".join(char if char.isprintable() else " " for char in value)
    while "=?" in text:  # repeated: removing one may join the pieces of another
        text = text.replace("=?", " ")
    return " ".join(text.split())[:limit]


def safe_message_ids(*ids: str | None) -> tuple[str, ...]:
    """The Message-IDs that may be copied into our headers as they are (others are dropped)."""
    return tuple(i for i in ids if i and _SAFE_MESSAGE_ID.fullmatch(i) and "=?" not in i)


@lru_cache(maxsize=8)
def _environment(templates_dir: str) -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",)),
        keep_trailing_newline=True,
    )


def reply_language(language: str) -> str:
    return language if language in LANGUAGES else FALLBACK_LANGUAGE


def _render(templates_dir: Path, kind: str, language: str, *, name: str, subject: str, role: str, reference: str,
            **details: object) -> str:
    """Template ``<kind>.<language>.txt.j2`` (English when we have none for the language), filled in."""
    lang = reply_language(language)
    template = _environment(str(templates_dir)).get_template(f"{kind}.{lang}.txt.j2")
    team = _TEAM_NAMES[lang].get(role, role.replace("_", " "))
    return template.render(name=clean_header_value(name, 80), subject=clean_header_value(subject), team=team,
                           reference=reference, **details)


def render_missing_info(templates_dir: Path, language: str, *, name: str, subject: str, role: str,
                        missing: tuple[str, ...], reference: str, images: tuple[ImageCheck, ...] = ()) -> str:
    """The reply asking for what is missing, in the customer's language; when a screenshot is missing, it names
    the images that were sent and says why none of them counts (``rejected_images`` in the template)."""
    rejected = [image for image in images if not image.is_screenshot] if "screenshot" in missing else []
    return _render(templates_dir, "missing_info", language, name=name, subject=subject, role=role,
                   reference=reference, missing=list(missing), rejected_images=rejected[:MAX_NAMED_IMAGES])


def render_key_user(templates_dir: Path, language: str, *, name: str, subject: str, role: str, customer: str,
                    key_users: list[str], reference: str) -> str:
    """The reply to a sender who is not a key user: delivered all the same, and who the key users are."""
    return _render(templates_dir, "key_user", language, name=name, subject=subject, role=role,
                   reference=reference, customer=customer, key_users=key_users)


def render_reply(templates_dir: Path, decision: Decision, reference: str) -> str:
    """The text of the reply the reply stage chose for ``decision``."""
    mail, role = decision.mail, decision.route.role
    if decision.reply_kind == "key_user":
        customer = decision.phase.customer
        assert customer is not None, "a key-user reply is only planned for a customer's sender"
        return render_key_user(templates_dir, decision.language, name=mail.from_name, subject=mail.subject,
                               role=role, customer=customer.name, key_users=customer.key_users, reference=reference)
    return render_missing_info(templates_dir, decision.language, name=mail.from_name, subject=mail.subject,
                               role=role, missing=decision.completeness.missing, reference=reference,
                               images=decision.completeness.images)


def build_reply(mail: ParsedMail, *, mailbox: str, to: str, body: str, loop_id: str) -> EmailMessage:
    """A threaded reply from ``mailbox`` to ``to`` marked as automatic (Auto-Submitted, X-Loop)."""
    reply = EmailMessage()
    subject = clean_header_value(mail.subject) or "(no subject)"
    reply["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    reply["From"] = Address(addr_spec=mailbox)
    reply["To"] = Address(addr_spec=to)
    reply["Date"] = format_datetime(utcnow())
    reply["Message-ID"] = make_msgid(domain=mailbox.rpartition("@")[2] or None)
    if safe_message_ids(mail.message_id):
        reply["In-Reply-To"] = mail.message_id
        reply["References"] = " ".join(safe_message_ids(*mail.references[-10:], mail.message_id))
    reply["Auto-Submitted"] = "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    reply["X-Loop"] = loop_id
    reply["Precedence"] = "auto_reply"
    reply.set_content(body)
    return reply
