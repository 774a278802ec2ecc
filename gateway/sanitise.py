"""Make values taken from a message safe for file names, paths and log lines.

Header values have their own cleaner (:func:`gateway.replies.reply.clean_header_value`); these cover the
rest: an attachment name must never climb out of a directory or hide its real extension, and a log line
must stay one line, free of terminal escapes, whatever a sender put into a message.
"""
from __future__ import annotations

import unicodedata

MAX_FILENAME = 180
_RESERVED = set('<>:"/\\|?*')
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _invisible(char: str) -> bool:
    """Control and format characters: C0/C1, DEL, bidi overrides, zero-width joiners and the like."""
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def safe_filename(name: str, fallback: str = "attachment") -> str:
    """A plain file name: no directories, no control or bidi characters, no leading dot, bounded length."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join("_" if char in _RESERVED else char for char in name if not _invisible(char))
    name = " ".join(name.split()).strip(" .")
    if name.split(".")[0].lower() in _WINDOWS_DEVICES:
        name = f"_{name}"
    name = name or fallback
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        extension = extension if dot and stem and len(extension) <= 16 else ""
        name = name[: MAX_FILENAME - len(extension) - 1].rstrip(" .") + (f".{extension}" if extension else "")
    return name


def _escaped(char: str) -> str:
    if char == " " or not (_invisible(char) or char.isspace()):
        return char
    return f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"


def log_value(value: object, limit: int = 300) -> str:
    """One printable line for a log field: control characters shown as escapes, long values cut."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + f"…(+{len(text) - limit})"
    return "".join(map(_escaped, text))
