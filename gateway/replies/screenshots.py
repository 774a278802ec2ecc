"""Screenshot rules: which attachments of a mail show a screen, and for every image why it does or does not.

Runs in the isolated worker with the rest of the evidence (:func:`gateway.replies.completeness.gather_evidence`):
the verdict and its reason are computed here, from the image's own header bytes, and stored with the decision,
so ``gateway show`` and the reply can say why an image was not taken for a screenshot.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, UnidentifiedImageError

from gateway.parsing import Attachment, ParsedMail

#: a real PNG/JPEG/GIF/WebP/BMP, at least 300 × 150 px (either orientation), not a strip thinner than 1:4,
#: at least 1 KiB, and not an image the sender sent before (a signature logo: see check_completeness)
MIN_LONG_SIDE, MIN_SHORT_SIDE, MAX_ASPECT = 300, 150, 4.0
MIN_SCREENSHOT_BYTES = 1024
SCREENSHOT_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP", "BMP"})
_MAYBE_IMAGE_TYPES = ("application/octet-stream", "application/x-octet-stream")
NAME_LIMIT = 60  # characters of a (sanitised) file name quoted in reasons and replies

#: screenshot: taken; small / strip / tiny-file / format / unreadable / recurring (a logo, see completeness): why not
Verdict = Literal["screenshot", "small", "strip", "tiny-file", "format", "unreadable", "recurring"]


@dataclass(frozen=True)
class ImageCheck:
    """One image (attachment or inline) as the screenshot rules judged it."""

    name: str
    verdict: Verdict
    reason: str  # for the operator, e.g. "image logo.png 20×20 px: below the screenshot size of 300×150"
    width: int = 0  # 0: not read
    height: int = 0
    digest: str = ""  # set for screenshots, to recognise a sender's recurring logo later

    @property
    def is_screenshot(self) -> bool:
        return self.verdict == "screenshot"


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


def _shown_as_image(attachment: Attachment, inline_cids: tuple[str, ...]) -> bool:
    declared = attachment.content_type
    inline = attachment.content_id is not None and attachment.content_id in inline_cids
    return declared.startswith("image/") or declared in _MAYBE_IMAGE_TYPES or inline


def check_image(attachment: Attachment, inline_cids: tuple[str, ...] = ()) -> ImageCheck | None:
    """The verdict on one attachment, or None when it is not shown as an image at all (a PDF, a document)."""
    if not _shown_as_image(attachment, inline_cids):
        return None
    name = (attachment.filename or "(no name)")[:NAME_LIMIT]
    found = image_size(attachment.head)
    if found is None:
        if not attachment.content_type.startswith("image/"):
            return None  # a vague type whose bytes are no image: just some file
        return ImageCheck(name, "unreadable", f"image {name}: its bytes are not a picture we can read")
    kind, width, height = found
    long_side, short_side = max(width, height), min(width, height)
    size = f"{width}×{height} px"
    if kind not in SCREENSHOT_FORMATS:
        return ImageCheck(name, "format", f"image {name} {size}: {kind or 'unknown'} is not a screenshot format",
                          width, height)
    if long_side < MIN_LONG_SIDE or short_side < MIN_SHORT_SIDE:
        return ImageCheck(name, "small", f"image {name} {size}: below the screenshot size of "
                                         f"{MIN_LONG_SIDE}×{MIN_SHORT_SIDE}", width, height)
    if long_side > MAX_ASPECT * short_side:
        return ImageCheck(name, "strip", f"image {name} {size}: a strip (sides more than {MAX_ASPECT:g}:1), "
                                         "not a screen", width, height)
    if attachment.size < MIN_SCREENSHOT_BYTES:
        return ImageCheck(name, "tiny-file", f"image {name} {size}: {attachment.size} bytes, below the "
                                             f"{MIN_SCREENSHOT_BYTES} of a real screenshot", width, height)
    return ImageCheck(name, "screenshot", f"image {name} {size}: a screenshot", width, height,
                      image_digest(attachment))


def check_images(mail: ParsedMail) -> tuple[ImageCheck, ...]:
    """The verdict on each image of ``mail``, in order; a screenshot sent twice in the mail counts once."""
    checks: list[ImageCheck] = []
    digests: set[str] = set()
    for attachment in mail.attachments:
        check = check_image(attachment, mail.html_cids)
        if check is None or (check.digest and check.digest in digests):
            continue
        digests.add(check.digest)
        checks.append(check)
    return tuple(checks)
