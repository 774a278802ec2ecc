"""Language detection with py3langid (chosen by measured accuracy, see ``bench/language.py``).

Only the first ``MAX_CHARS`` characters are read: py3langid's cost grows with the text, and its answer on a
support mail is settled long before (``python -m bench.prefix`` measures accuracy against prefix size).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from classifier.taxonomy import LANGUAGES

#: below this many letters, a language of ours among the top candidates wins over a stranger
SHORT_TEXT = 60
#: py3langid's "no linguistic content" (links, hashes, logs): then, too, a language of ours among the top wins
NO_LANGUAGE = "zxx"
MAX_CHARS = 500


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def letters_up_to(text: str, enough: int) -> int:
    """The number of letters in ``text``, counted only until ``enough`` are found."""
    found = 0
    for character in text:
        if character.isalpha():
            found += 1
            if found >= enough:
                break
    return found


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language, or ``"und"`` for text without letters."""
    text = text[:MAX_CHARS]
    letters = letters_up_to(text, SHORT_TEXT)
    if not letters:
        return "und"
    ranked = _identifier().rank(text)
    best = ranked[0][0]
    if best in LANGUAGES or (letters >= SHORT_TEXT and best != NO_LANGUAGE):
        return best
    return next((lang for lang, _ in ranked[:3] if lang in LANGUAGES), best)
