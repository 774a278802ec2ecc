"""The parse stage: parts sorted into text and attachments as mail-parser sorts them (checked against mail-parser
itself on the real corpora), the rules one by one on hand-made mail, and the bounds on the text."""
from __future__ import annotations

import datetime as dt
import re
import tarfile
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import mailparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.schema import Limits
from gateway.errors import ParseLimitExceeded
from gateway.limits import check_limits
from gateway.parsing import MAX_TEXT_CHARS, MAX_TOKEN_CHARS, _bounded, _head, _lenient_base64, parse
from gateway.sanitise import safe_filename
from tests.test_mail_corpora import MAIL_DIR

#: mail-parser names a nameless RTF or ``attachment`` part with ten random letters; we leave such names empty
_RANDOM_NAME = re.compile(r"^[a-z]{10}\.(rtf|txt)$")
SPAMASSASSIN_SHARE = 5  # every 5th of its 6,046 messages: the other sources are checked whole


def corpus_sample() -> Iterator[tuple[str, bytes]]:
    for archive in sorted(MAIL_DIR.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            members = [m for m in tar if m.isfile()]
            if archive.name.startswith("spamassassin"):
                members = members[::SPAMASSASSIN_SHARE]
            for member in members:
                yield member.name, tar.extractfile(member).read()


def mail_parsers_view(raw: bytes) -> tuple[str, str, list[tuple[str, str, int, str | None, bytes]]] | None:
    """(body text, subject, attachments) as mail-parser itself gives them; None where mail-parser raises. The heads
    are cut as ours are (a JPEG's frame header is kept after long metadata)."""
    try:
        mail = mailparser.parse_from_bytes(raw)
    except Exception:  # noqa: BLE001 - mail-parser fails on some real mail: there it has no view to compare with
        return None
    attachments = []
    for part in mail.attachments:
        payload = part["payload"] or ""
        data = _lenient_base64(payload) if part["binary"] else payload.encode("utf-8", "surrogateescape")
        name = "" if _RANDOM_NAME.match(part["filename"] or "") else safe_filename(part["filename"] or "", "")
        attachments.append((name, part["mail_content_type"].lower(), len(data),
                            (part["content-id"] or "").strip("<> ") or None, _head(data)))
    subject = mail.subject if isinstance(mail.subject, str) else mail.subject[0]
    return "\n".join(mail.text_plain).strip(), subject, attachments


def _unnamed_image(attachment: tuple[str, str, int, str | None, bytes]) -> bool:
    name, content_type, _, content_id, _ = attachment
    return not name and content_id is None and content_type.startswith("image/")


def test_parts_are_sorted_as_mail_parser_sorts_them() -> None:
    compared = 0
    for name, raw in corpus_sample():
        try:
            check_limits(raw, Limits())
        except ParseLimitExceeded:
            continue  # never parsed: delivered to triage as it came
        ours, theirs = parse(raw), mail_parsers_view(raw)
        if theirs is None:
            continue
        text, subject, attachments = theirs
        if text:
            assert ours.text == _bounded(text, MAX_TEXT_CHARS), name
        assert ours.subject == " ".join(_bounded(subject, 1000).split()), name
        found = [(a.filename, a.content_type, a.size, a.content_id, a.head) for a in ours.attachments]
        # ours also keeps images with neither a file name nor a Content-ID, which mail-parser drops
        assert [a for a in found if not _unnamed_image(a)] == [a for a in attachments if not _unnamed_image(a)], name
        assert all(found.count(a) >= attachments.count(a) for a in attachments), name
        compared += 1
    assert compared > 2000


def forwarded(inner_disposition: str = "attachment") -> bytes:
    inner = EmailMessage()
    inner["Subject"] = "Old question"
    inner.set_content("The earlier mail's text.")
    outer = EmailMessage()
    outer["Subject"] = "Fwd: old question"
    outer.set_content("See the mail below.")
    outer.add_attachment(inner, disposition=inner_disposition)
    return outer.as_bytes(policy=SMTP)


def test_a_forwarded_message_is_an_attachment_and_its_text_is_read_too() -> None:
    mail = parse(forwarded())
    assert [a.content_type for a in mail.attachments] == ["message/rfc822"]
    assert mail.attachments[0].head.startswith(b"Subject: Old question")
    assert mail.text.splitlines() == ["See the mail below.", "", "The earlier mail's text."]


def test_a_named_inline_text_part_is_text_and_attachment() -> None:
    message = EmailMessage()
    message.set_content("Hello.")
    message.add_attachment("Log line 1\nLog line 2\n", filename="log.txt", disposition="inline")
    mail = parse(message.as_bytes(policy=SMTP))
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("log.txt", "text/plain")]
    assert mail.text.splitlines() == ["Hello.", "", "Log line 1", "Log line 2"]


def test_an_image_with_only_a_content_id_is_an_attachment() -> None:
    message = EmailMessage()
    message.set_content("<p>Look: <img src='cid:shot@x'></p>", subtype="html")
    message.add_related(b"\x89PNG\r\n\x1a\n" + bytes(2000), "image", "png", cid="<shot@x>")
    mail = parse(message.as_bytes(policy=SMTP))
    [image] = mail.attachments
    assert (image.content_type, image.content_id, image.size) == ("image/png", "shot@x", 2008)
    assert mail.html_cids == ("shot@x",) and mail.text == "Look:"


@pytest.mark.parametrize(("charset", "body", "text"), [
    ("iso-8859-1", "Grüße aus Köln".encode("latin-1"), "Grüße aus Köln"),
    ("x-no-such-charset", "Grüße".encode(), "Grüße"),  # unknown: read as UTF-8
    ("x-no-such-charset", b"Gr\xfc\xdfe", "Gr\ufffd\ufffde"),  # and what is no UTF-8 either is replaced
])
def test_a_body_is_decoded_by_its_charset_then_as_utf8(charset: str, body: bytes, text: str) -> None:
    raw = (f"Subject: x\r\nContent-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           .encode() + body + b"\r\n")
    assert parse(raw).text == text


def test_headers_subject_and_date() -> None:
    raw = (b"From: =?utf-8?q?J=C3=BCrgen_Wei=C3=9F?= <J.Weiss@Example.org>\r\nTo: a@x.example, B <b@x.example>\r\n"
           b"Subject: =?utf-8?b?UmVjaG51bmcgZmFsc2No?=\r\nDate: Fri, 4 Dec 2026 10:15:00 +0100\r\n"
           b"Message-ID: <m1@x>\r\n\r\nText\r\n")
    mail = parse(raw)
    assert (mail.subject, mail.from_addr, mail.to, mail.message_id) == (
        "Rechnung falsch", "j.weiss@example.org", ("a@x.example", "b@x.example"), "<m1@x>")
    assert mail.date == dt.datetime(2026, 12, 4, 9, 15, tzinfo=dt.UTC)
    assert parse(raw.replace(b"Fri, 4 Dec 2026 10:15:00 +0100", b"next tuesday")).date is None


def test_the_text_has_no_control_characters_and_no_endless_words() -> None:
    raw = b"Subject: x\r\n\r\nNUL\x00here " + b"A" * 5000 + b" end\r\n"
    assert parse(raw).text == "NUL here " + "A" * MAX_TOKEN_CHARS + " end"


PIECES = ["a", "ü", " ", "\n", "\t", "\x00", "\x1f", "\x7f", "\u2028", "\ud800", "x" * 60]  # words of 100+ too


@given(st.lists(st.sampled_from(PIECES), max_size=200).map("".join))
@settings(max_examples=300, database=None)
def test_bounding_is_the_plain_substitutions(text: str) -> None:
    plain = re.sub(r"\S{%d,}" % (MAX_TOKEN_CHARS + 1), lambda m: m.group(0)[:MAX_TOKEN_CHARS],
                   re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+", " ", text[:5000]))
    assert _bounded(text, 5000) == plain
