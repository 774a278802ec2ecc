"""Completeness stage: does a problem report carry reproduction steps and a screenshot?"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from gateway.config.schema import GatewayConfig
from gateway.parsing import Attachment, ParsedMail

#: an image smaller than this (either side, in pixels) is a logo, icon or tracking pixel
MIN_SCREENSHOT_SIDE = 200
MIN_SCREENSHOT_BYTES = 8 * 1024
SCREENSHOT_FORMATS = {"PNG", "JPEG", "GIF", "WEBP", "BMP"}

_STEP_LINE = re.compile(r"^\s*(\d{1,2}[.)]|[-*•]|step\s*\d+|schritt\s*\d+|stap\s*\d+)\s+\S", re.IGNORECASE | re.MULTILINE)
_SEQUENCE = re.compile(
    r"\b(first|then|after that|afterwards|zuerst|dann|danach|anschließend|eerst|daarna|vervolgens|toen)\b",
    re.IGNORECASE,
)
_STEPS_HEADING = re.compile(
    r"\b(steps to reproduce|reproduction steps|schritte zum reproduzieren|schritte|stappen om te reproduceren|stappen)\b",
    re.IGNORECASE,
)
_CLICK_PATH = re.compile(r"\w+\s*(>|→|->)\s*\w+\s*(>|→|->)\s*\w+")


@dataclass(frozen=True)
class Completeness:
    complete: bool | None  # None: this category needs nothing, so it was not checked
    missing: tuple[str, ...]
    has_steps: bool
    has_screenshot: bool


def has_steps(text: str) -> bool:
    """Rules for reproduction steps: a list of two or more steps, a heading, a click path, or a sequence."""
    if len(_STEP_LINE.findall(text)) >= 2 or _CLICK_PATH.search(text):
        return True
    if _STEPS_HEADING.search(text) and len(_STEP_LINE.findall(text)) >= 1:
        return True
    return len({m.lower() for m in _SEQUENCE.findall(text)}) >= 2


def image_size(head: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from the image's own header bytes, or None if it is no image."""
    try:
        with Image.open(io.BytesIO(head)) as image:
            return image.format or "", image.width, image.height
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def is_screenshot(attachment: Attachment) -> bool:
    """A real image, big enough to show a screen (not a signature logo or tracking pixel)."""
    if attachment.size < MIN_SCREENSHOT_BYTES:
        return False
    found = image_size(attachment.head)
    if found is None:
        return False
    kind, width, height = found
    return kind in SCREENSHOT_FORMATS and min(width, height) >= MIN_SCREENSHOT_SIDE


def has_screenshot(mail: ParsedMail) -> bool:
    return any(is_screenshot(a) for a in mail.attachments)


def check_completeness(config: GatewayConfig, mail: ParsedMail, text: str, category: str) -> Completeness:
    """What the category requires (config ``[completeness.require]``) and which of it is missing."""
    steps, screenshot = has_steps(text), has_screenshot(mail)
    required = config.completeness.require.get(category, [])
    if not required:
        return Completeness(None, (), steps, screenshot)
    present = {"steps": steps, "screenshot": screenshot}
    missing = tuple(item for item in required if not present[item])
    return Completeness(not missing, missing, steps, screenshot)
