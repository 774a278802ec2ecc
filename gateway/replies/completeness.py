"""Completeness stage: does a problem report carry reproduction steps and a screenshot?

A mail has steps when a rule chosen at training time fires OR the steps model says so (``models/steps/``, see
:mod:`classifier.steps`). ``has_screenshot`` looks at the images' own header bytes, their size and whether
the same image came in earlier mails of the sender (then it is a signature logo, not a screenshot); inline
images count like attached ones (see :mod:`gateway.parsing` for inline photos without a file name).
A reply in a thread is judged together with what the thread's earlier mails already provided.
"""
from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from classifier.steps import MAX_CHARS as STEPS_MAX_CHARS
from classifier.steps import StepsModel, load_steps_model
from gateway.config.schema import GatewayConfig
from gateway.parsing import Attachment, ParsedMail

STEPS_MODEL_DIR = "steps"  # below [classifier].models_dir
#: screenshot rules: a real PNG/JPEG/GIF/WebP/BMP, at least 300 × 150 px (either orientation), not a strip
#: thinner than 1:4, at least 1 KiB, and not an image the sender sent before (a signature logo)
MIN_LONG_SIDE, MIN_SHORT_SIDE, MAX_ASPECT = 300, 150, 4.0
MIN_SCREENSHOT_BYTES = 1024
SCREENSHOT_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP", "BMP"})
_MAYBE_IMAGE_TYPES = ("application/octet-stream", "application/x-octet-stream")

_STEP_LINE = re.compile(r"^\s*(\d{1,2}[.)]|[-*•]|step\s*\d+|schritt\s*\d+|stap\s*\d+)\s+\S", re.IGNORECASE | re.MULTILINE)
_SEQUENCE = re.compile(
    r"\b(first|then|after that|afterwards|zuerst|dann|danach|anschließend|eerst|daarna|vervolgens|toen)\b",
    re.IGNORECASE,
)
_STEPS_HEADING = re.compile(
    r"\b(steps to reproduce|reproduction steps|how to reproduce|schritte zum (reproduzieren|nachstellen)|"
    r"schritte|stappen om (te reproduceren|na te bootsen)|stappen)\b",
    re.IGNORECASE,
)
_CLICK_PATH = re.compile(r"\b\w+\s*(>|→|->)\s*\w+\s*(>|→|->)\s*\w+")  # \b keeps it linear on long words


def _step_list(text: str) -> bool:
    return len(_STEP_LINE.findall(text)) >= 2


def _click_path(text: str) -> bool:
    return _CLICK_PATH.search(text) is not None


def _steps_heading(text: str) -> bool:
    return _STEPS_HEADING.search(text) is not None and _STEP_LINE.search(text) is not None


def _sequence_words(text: str) -> bool:
    return len({m.lower() for m in _SEQUENCE.findall(text)}) >= 2


#: candidate rules; training measures each and keeps those that improve precision/recall (metadata "rules")
STEP_RULES: dict[str, Callable[[str], bool]] = {
    "step-list": _step_list, "click-path": _click_path, "steps-heading": _steps_heading,
    "sequence-words": _sequence_words,
}


@dataclass(frozen=True)
class ThreadState:
    """What the earlier mails of a thread provided, and whether we already answered in it."""

    category: str  # the thread's first category ("" when it was unsure)
    has_steps: bool
    has_screenshot: bool
    answered: bool


@dataclass(frozen=True)
class Evidence:
    """What a mail itself shows, found with its content in the isolated worker: steps, screenshot-sized images."""

    has_steps: bool
    image_digests: tuple[str, ...]  # of screenshot-sized images, to tell screenshots from recurring logos


def gather_evidence(mails: Sequence[tuple[ParsedMail, str]], model: StepsModel) -> list[Evidence]:
    """The :class:`Evidence` of each (mail, customer text) pair."""
    steps = steps_in([text for _, text in mails], model)
    return [Evidence(found, screenshot_digests(mail)) for (mail, _), found in zip(mails, steps)]


@dataclass(frozen=True)
class Completeness:
    complete: bool | None  # None: this category needs nothing, so it was not checked
    missing: tuple[str, ...]
    has_steps: bool  # found in this mail itself
    has_screenshot: bool
    image_digests: tuple[str, ...] = ()  # screenshot-sized images of this mail, to spot recurring logos later


@lru_cache(maxsize=4)
def steps_model(models_dir: Path) -> StepsModel:
    """The shipped steps model, loaded once per models directory."""
    return load_steps_model(models_dir / STEPS_MODEL_DIR)


def steps_in(texts: Sequence[str], model: StepsModel) -> list[bool]:
    """Whether each text has steps: a chosen rule fires, or the model's probability reaches its threshold.

    One model call for all the texts no rule settles; rules and model read the first ``MAX_CHARS`` of each."""
    texts = [text[:STEPS_MAX_CHARS] for text in texts]
    found = [any(STEP_RULES[name](text) for name in model.rules) for text in texts]
    unsettled = [i for i, hit in enumerate(found) if not hit]
    if unsettled:
        for i, probability in zip(unsettled, model.probabilities([texts[i] for i in unsettled])):
            found[i] = probability >= model.threshold
    return found


def image_size(head: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from the image's own header bytes, or None if it is no image."""
    try:
        with Image.open(io.BytesIO(head)) as image:
            return image.format or "", image.width, image.height
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def image_digest(attachment: Attachment) -> str:
    """Identifies the same image in other mails (its size and first bytes)."""
    return hashlib.sha256(attachment.size.to_bytes(8, "big") + attachment.head).hexdigest()


def is_screenshot_sized(attachment: Attachment, inline_cids: tuple[str, ...] = ()) -> bool:
    """An image attachment or inline ``cid:`` image whose real header shows a screen-sized picture."""
    declared = attachment.content_type
    inline = attachment.content_id is not None and attachment.content_id in inline_cids
    if not (declared.startswith("image/") or declared in _MAYBE_IMAGE_TYPES or inline):
        return False
    found = image_size(attachment.head) if attachment.size >= MIN_SCREENSHOT_BYTES else None
    if found is None:
        return False
    kind, width, height = found
    long_side, short_side = max(width, height), min(width, height)
    return (kind in SCREENSHOT_FORMATS and long_side >= MIN_LONG_SIDE and short_side >= MIN_SHORT_SIDE
            and long_side <= MAX_ASPECT * short_side)


def screenshot_digests(mail: ParsedMail) -> tuple[str, ...]:
    """Digests of this mail's screenshot-sized images (in order, without repeats)."""
    found = (image_digest(a) for a in mail.attachments if is_screenshot_sized(a, mail.html_cids))
    return tuple(dict.fromkeys(found))


def _nothing_recurs(digests: tuple[str, ...]) -> frozenset[str]:
    return frozenset()


def check_completeness(config: GatewayConfig, evidence: Evidence, category: str, thread: ThreadState | None = None,
                       recurring: Callable[[tuple[str, ...]], frozenset[str]] = _nothing_recurs) -> Completeness:
    """What the category (and the thread's first category) requires, and which of it the thread still lacks.

    ``recurring`` tells which of the given image digests the sender sent before: logos, not screenshots.
    """
    steps, digests = evidence.has_steps, evidence.image_digests
    seen = recurring(digests) if digests else frozenset()
    screenshot = any(d not in seen for d in digests)
    require = config.completeness.require
    required = dict.fromkeys([*require.get(category, []), *(require.get(thread.category, []) if thread else [])])
    if not required:
        return Completeness(None, (), steps, screenshot, digests)
    present = {"steps": steps or bool(thread and thread.has_steps),
               "screenshot": screenshot or bool(thread and thread.has_screenshot)}
    missing = tuple(item for item in required if not present[item])
    return Completeness(not missing, missing, steps, screenshot, digests)
