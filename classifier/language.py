"""Language detection with py3langid (chosen by measured accuracy, see ``bench/language.py``)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from classifier.taxonomy import LANGUAGES

#: below this many letters, a language of ours among the top candidates wins over a stranger
SHORT_TEXT = 60


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language, or ``"und"`` for text without letters."""
    letters = sum(ch.isalpha() for ch in text)
    if not letters:
        return "und"
    ranked = _identifier().rank(text)
    best = ranked[0][0]
    if best in LANGUAGES or letters >= SHORT_TEXT:
        return best
    return next((lang for lang, _ in ranked[:3] if lang in LANGUAGES), best)
