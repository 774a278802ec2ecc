"""Property tests: whatever bytes arrive, parse → classify → route → completeness ends in a decision or a
parse limit, never an unhandled exception; the limit scan agrees with the email package; sanitised values
stay safe."""
from __future__ import annotations

import email
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.model import CategoryModel
from gateway.config import GatewayConfig, parse_config
from gateway.config.schema import Limits
from gateway.errors import ParseLimitExceeded
from gateway.isolation import WorkerPool
from gateway.limits import check_limits
from gateway.pipeline import Analysis, Decision, decide
from gateway.sanitise import MAX_FILENAME, log_value, safe_filename
from tests.conftest import shipped_config_data

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "utf-7", "utf-16", "gb2312", "koi8-r", "x-unknown", "", "utf-8\0"]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", "bogus"]
HEADER_NAMES = ["Subject", "From", "To", "Cc", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
                "Content-Disposition", "Precedence", "X-Mailer"]
LINE_ENDS = [b"\r\n", b"\n", b"\r"]


@pytest.fixture(scope="module")
def fuzz_config(tmp_path_factory: pytest.TempPathFactory) -> GatewayConfig:
    data = shipped_config_data(tmp_path_factory.mktemp("fuzz"))
    data["limits"] = {"max_mime_depth": 6, "max_parts": 40, "max_header_bytes": 8192, "max_line_bytes": 4000,
                      "max_attachment_bytes": 20_000}  # small, so that the limits are reached too
    return parse_config(data)


def decided_or_limited(config: GatewayConfig, model: CategoryModel, raw: bytes) -> Decision | ParseLimitExceeded:
    try:
        return decide(config, model, raw, config.mailboxes[0], envelope_from="fuzz@example.org")
    except ParseLimitExceeded as exc:
        return exc


header_text = st.one_of(
    st.text(max_size=80),
    st.builds(lambda cs, enc, word: f"=?{cs}?{enc}?{word}?=", st.sampled_from(CHARSETS), st.sampled_from("QBqbX"),
              st.text(alphabet="=?_ABCabc0123+/\0é", max_size=20)),
    st.builds(lambda name, addr: f'"{name}" <{addr}>', st.text(max_size=20), st.emails()),
)


@st.composite
def headers(draw: st.DrawFn) -> list[bytes]:
    fields = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_text), max_size=6))
    return [f"{name}: {value}".encode("utf-8", "surrogateescape") for name, value in fields]


@st.composite
def mime_part(draw: st.DrawFn, depth: int = 0) -> list[bytes]:
    """The lines of one entity: headers, blank line, body (a leaf, an enclosed message or a multipart)."""
    lines = draw(headers())
    kind = draw(st.sampled_from(["leaf", "leaf", "multipart", "message"] if depth < 8 else ["leaf"]))
    if kind == "multipart":
        boundary = draw(st.sampled_from(["b", "=_b", "b b", "", "--"])) + str(depth)
        lines.append(f'Content-Type: multipart/{draw(st.sampled_from(["mixed", "alternative", "related", "report"]))};'
                     f' boundary="{boundary}"'.encode())
        children = draw(st.lists(mime_part(depth + 1), max_size=4))
        body = [line for child in children for line in (b"--" + boundary.encode(), *child)]
        closing = [b"--" + boundary.encode() + b"--"] if draw(st.booleans()) else []  # sometimes cut off
        return [*lines, b"", *draw(st.lists(st.binary(max_size=20), max_size=2)), *body, *closing]
    if kind == "message":
        return [*lines, b"Content-Type: message/rfc822", b"", *draw(mime_part(depth + 1))]
    content_type = draw(st.sampled_from(["text/plain", "text/html", "image/png", "application/pdf", "text/x-junk",
                                         "multipart/mixed", "message/delivery-status"]))
    lines += [f"Content-Type: {content_type}; charset={draw(st.sampled_from(CHARSETS))}; "
              f"name={draw(st.text(max_size=30))!r}".encode("utf-8", "surrogateescape"),
              f"Content-Transfer-Encoding: {draw(st.sampled_from(ENCODINGS))}".encode()]
    return [*lines, b"", *draw(st.lists(st.binary(max_size=120), max_size=5))]


@given(raw=st.binary(max_size=4096))
@FUZZ
def test_any_bytes_give_a_decision_or_a_limit(raw: bytes, fuzz_config: GatewayConfig,
                                              shipped_model: CategoryModel) -> None:
    assert isinstance(decided_or_limited(fuzz_config, shipped_model, raw), (Decision, ParseLimitExceeded))


@given(lines=mime_part(), line_end=st.sampled_from(LINE_ENDS))
@FUZZ
def test_any_mime_structure_gives_a_decision_or_a_limit(lines: list[bytes], line_end: bytes,
                                                        fuzz_config: GatewayConfig,
                                                        shipped_model: CategoryModel) -> None:
    outcome = decided_or_limited(fuzz_config, shipped_model, line_end.join(lines))
    assert isinstance(outcome, (Decision, ParseLimitExceeded))
    if isinstance(outcome, Decision):
        mail = outcome.mail
        assert "\0" not in mail.subject + mail.text + "".join(a.filename for a in mail.attachments)
        assert outcome.route.role in fuzz_config.roles


def email_structure(message: email.message.Message, depth: int = 0) -> tuple[int, int]:
    """(depth, parts) as the email package sees them: multipart children count as parts, message/* nests."""
    if not message.is_multipart() or message.get_content_type() == "message/delivery-status":
        return depth, 0
    children = [email_structure(child, depth + 1) for child in message.get_payload()]
    own = len(children) if message.get_content_maintype() == "multipart" else 0
    return max([depth, *(d for d, _ in children)]), own + sum(p for _, p in children)


@st.composite
def well_formed(draw: st.DrawFn, depth: int = 0) -> bytes:
    if depth < 5 and draw(st.booleans()):
        boundary = f"=_{depth}_{draw(st.integers(0, 10**6))}"
        parts = draw(st.lists(well_formed(depth + 1), min_size=1, max_size=4))
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
        return f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\npreamble\r\n".encode() + body + \
            b"--" + boundary.encode() + b"--\r\nepilogue\r\n"
    if depth < 5 and draw(st.booleans()):
        return b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" + draw(well_formed(depth + 1))
    return b"Content-Type: text/plain\r\n\r\n" + draw(st.text(alphabet="ab -\r\n", max_size=40)).encode()


@given(raw=well_formed())
@settings(max_examples=300, deadline=None, database=None)
def test_the_scan_measures_what_the_email_package_parses(raw: bytes) -> None:
    found = check_limits(raw, Limits(max_mime_depth=100, max_parts=10_000))
    assert (found.depth, found.parts) == email_structure(email.message_from_bytes(raw))


@given(name=st.text())
@settings(max_examples=500, database=None)
def test_attachment_names_are_plain_file_names(name: str) -> None:
    safe = safe_filename(name)
    assert safe and len(safe) <= MAX_FILENAME and safe == safe_filename(safe)
    assert not set(safe) & set('/\\<>:"|?*') and not safe.startswith((".", " "))
    assert all(unicodedata.category(char)[0] not in "CZ" or char == " " for char in safe)


@given(value=st.text())
@settings(max_examples=500, database=None)
def test_log_values_are_one_printable_line(value: str) -> None:
    line = log_value(value, 100)
    assert line.isprintable() and len(line) <= 100 * 7 + 20


@given(raw=st.one_of(st.binary(max_size=2048), st.builds(lambda lines: b"\r\n".join(lines), mime_part())))
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_isolated_workers_answer_every_message(raw: bytes, fuzz_config: GatewayConfig, shipped_model: CategoryModel,
                                               worker_pool: Any) -> None:
    assert isinstance(worker_pool.analyse(fuzz_config, shipped_model, raw), (Analysis, ParseLimitExceeded))


@pytest.fixture(scope="module")
def worker_pool() -> Any:
    pool = WorkerPool(2, 512)
    yield pool
    pool.close()
