"""TF-IDF features whose vocabulary is saved as one array, so a model file loads in well under a second.

skops writes a ``dict`` entry by entry (a node per term, each audited on load); a 50,000-term vocabulary took
seconds to load. :class:`CompactTfidfVectorizer` is a plain ``TfidfVectorizer`` that stores its vocabulary
as a numpy array of terms ordered by column instead, and rebuilds the dict on load.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer


class CompactTfidfVectorizer(TfidfVectorizer):
    """``TfidfVectorizer`` with a compact saved state (same parameters, same output)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        vocabulary = state.pop("vocabulary_", None)
        if vocabulary is not None:
            terms = sorted(vocabulary, key=vocabulary.__getitem__)
            state["vocabulary_terms_"] = np.array(terms, dtype=str)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        terms = state.pop("vocabulary_terms_", None)
        if terms is not None:
            state["vocabulary_"] = {term: column for column, term in enumerate(terms.tolist())}
        super().__setstate__(state)
