"""TF-IDF features: a compact saved vocabulary, and char_wb n-grams counted with numpy instead of Python strings.

skops writes a ``dict`` entry by entry (a node per term, each audited on load); a 50,000-term vocabulary took
seconds to load. :class:`CompactTfidfVectorizer` is a plain ``TfidfVectorizer`` that stores its vocabulary
as a numpy array of terms ordered by column instead, and rebuilds the dict on load.

Counting char_wb n-grams is most of the cost of fitting and of predicting (scikit-learn makes a Python string
per n-gram and looks each one up in a dict). For ``analyzer="char_wb"`` this class counts them as numbers: every
character of the documents' padded words becomes a digit ``1..K`` (``K`` distinct characters), an n-gram the
base-``K+1`` numeral of its digits, a vocabulary a sorted array of numerals. No digit is 0, so numerals of
different n-grams differ; the result is exactly scikit-learn's (same vocabulary, columns and counts;
``test_numeric_char_wb_counts_equal_scikit_learns``). Anything else (other analyzers, a fixed vocabulary, custom
preprocessing, bytes input, too many distinct characters for 64 bits) goes the scikit-learn way.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

_SPACE = ord(" ")


def _padded_words(documents: list[str], lowercase: bool) -> tuple[np.ndarray, np.ndarray]:
    """Code points of every document as char_wb sees it (each word between single spaces), and their lengths."""
    parts = []
    for document in documents:
        words = (document.lower() if lowercase else document).split()
        parts.append(" " + "  ".join(words) + " " if words else "")
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    points = np.frombuffer("".join(parts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return points, lengths


def _digit_table(alphabet: np.ndarray) -> np.ndarray:
    """Code point → digit (1 for the alphabet's first character …, 0 for a character outside it)."""
    table = np.zeros(int(alphabet.max(initial=0)) + 2, dtype=np.uint64)
    table[alphabet] = np.arange(1, len(alphabet) + 1, dtype=np.uint64)
    return table


def _numerals(points: np.ndarray, lengths: np.ndarray, table: np.ndarray,
              ngram_range: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(document index, numeral) of every char_wb n-gram of the documents; ``table`` from :func:`_digit_table`.

    Like scikit-learn's ``_char_wb_ngrams``: the n-grams of each space-padded word, and a padded word shorter
    than the smallest n once as a whole. N-grams with a character outside the alphabet are left out."""
    low, high = ngram_range
    base = np.uint64(np.count_nonzero(table) + 1)
    digits = table[np.minimum(points, len(table) - 1)]
    outside = digits == 0
    unknown = np.concatenate([[0], np.cumsum(outside, dtype=np.int32)]) if outside.any() else None
    space = points == _SPACE
    starts = np.zeros(len(points), dtype=bool)
    starts[:-1] = space[:-1] & ~space[1:]
    word = np.cumsum(starts, dtype=np.int32)  # words are numbered from 1; the padding spaces belong to their word
    document = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    short = None
    if low > 3:  # a padded word has at least 3 characters, so only then can one be shorter than every n
        word_length = np.bincount(word, minlength=1)
        short = starts & (word_length[word] < low)
    documents, numerals = [], []
    numeral = np.zeros(len(points), dtype=np.uint64)
    for n in range(1, high + 1):
        count = len(points) - n + 1
        if count <= 0:
            break
        numeral = numeral[:count] * base + digits[n - 1:]
        if n >= low:
            keep = word[:count] == word[n - 1:]
        elif short is not None:
            keep = short[:count] & (word_length[word[:count]] == n)
        else:
            continue
        if unknown is not None:  # characters before the end and before the start differ: one is unknown
            keep &= unknown[n:n + count] == unknown[:count]
        documents.append(document[:count][keep])
        numerals.append(numeral[keep])
    if not numerals:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint64)
    return np.concatenate(documents), np.concatenate(numerals)


def count_matrix(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int], dtype: Any) -> sp.csr_matrix:
    """A count matrix from one (row, column) pair per occurrence; indices sorted, as scikit-learn's are."""
    if len(rows) > 1_000_000:  # scipy's conversion is the faster one for a large corpus
        matrix = sp.csr_matrix((np.ones(len(rows), dtype=dtype), (rows, columns)), shape=shape, dtype=dtype)
        matrix.sum_duplicates()
        return matrix
    keys, counts = np.unique(rows.astype(np.int64) * shape[1] + columns, return_counts=True)
    indptr = np.zeros(shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(keys // shape[1], minlength=shape[0]), out=indptr[1:])
    return sp.csr_matrix((counts.astype(dtype), (keys % shape[1]).astype(np.int32), indptr), shape=shape)


def _terms(numerals: np.ndarray, alphabet: np.ndarray, longest: int) -> list[str]:
    """The strings written by base-(len(alphabet)+1) numerals (inverse of :func:`_numerals`)."""
    base = np.uint64(len(alphabet) + 1)
    places = np.zeros((len(numerals), longest), dtype=np.uint64)  # digits, least significant first
    rest = numerals.copy()
    for place in range(longest):
        places[:, place] = rest % base
        rest //= base
    size = (places > 0).sum(axis=1)
    chars = np.zeros((len(numerals), longest), dtype=np.uint32)
    rows, place = np.nonzero(places)
    chars[rows, size[rows] - 1 - place] = alphabet[places[rows, place].astype(np.intp) - 1]
    return chars.view(f"<U{longest}").ravel().tolist() if len(numerals) else []


def _fits(alphabet: np.ndarray, longest: int) -> bool:
    """Numerals of ``longest`` digits fit into 64 bits, and no character is NUL (numpy strips trailing NULs)."""
    return (len(alphabet) + 1) ** longest < 2**64 and not (len(alphabet) and alphabet[0] == 0)


class CompactTfidfVectorizer(TfidfVectorizer):
    """``TfidfVectorizer`` with a compact saved state and fast char_wb counting (same parameters, same output)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_numeral_index", None)
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

    def _numeric(self, documents: list[Any]) -> bool:
        """Whether these documents can be counted as numerals (see the module docstring)."""
        return (self.analyzer == "char_wb" and self.input == "content" and self.preprocessor is None
                and self.strip_accents is None and self.vocabulary is None
                and all(isinstance(d, str) for d in documents))

    def _count_vocab(self, raw_documents: Iterable[Any], fixed_vocab: bool) -> tuple[dict[str, int], Any]:
        """scikit-learn's hook for counting (``fit_transform`` and ``transform`` call it): numerals when we can."""
        documents = list(raw_documents)
        if not self._numeric(documents):
            return super()._count_vocab(documents, fixed_vocab)
        if fixed_vocab:
            counts = self.term_counts(documents)
            return self.vocabulary_, counts
        self._numeral_index = None
        points, lengths = _padded_words(documents, self.lowercase)
        alphabet = np.flatnonzero(np.bincount(points, minlength=1)).astype(np.uint32)
        longest = max(self.ngram_range)
        if not _fits(alphabet, longest):
            return super()._count_vocab(documents, fixed_vocab)
        rows, numerals = _numerals(points, lengths, _digit_table(alphabet), self.ngram_range)
        if not len(numerals):
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        distinct = np.unique(numerals)
        columns = np.searchsorted(distinct, numerals).astype(np.int32)
        terms = _terms(distinct, alphabet, longest)
        counts = count_matrix(rows, columns, (len(documents), len(terms)), self.dtype)
        return {term: column for column, term in enumerate(terms)}, counts

    def term_counts(self, raw_documents: Iterable[str]) -> sp.csr_matrix:
        """Counts of the fitted vocabulary's terms in each document (``CountVectorizer.transform``, no checks)."""
        documents = list(raw_documents)
        if not self._numeric(documents):
            return self._counted_in_python(documents)
        index = self._numeral_index
        if index is None:
            index = self._numeral_index = self._index_vocabulary()
        if index is False:
            return self._counted_in_python(documents)
        table, numerals, columns = index
        points, lengths = _padded_words(documents, self.lowercase)
        rows, numeral = _numerals(points, lengths, table, self.ngram_range)
        at = np.minimum(np.searchsorted(numerals, numeral), len(numerals) - 1)
        known = numerals[at] == numeral
        return count_matrix(rows[known], columns[at[known]], (len(documents), len(self.vocabulary_)), self.dtype)

    _numeral_index: tuple[np.ndarray, np.ndarray, np.ndarray] | bool | None = None

    def _index_vocabulary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | bool:
        """(digit table, sorted numerals of the vocabulary's terms, their columns), or False if they do not fit."""
        terms = sorted(self.vocabulary_, key=self.vocabulary_.__getitem__)
        if not terms or any("\x00" in term for term in terms):
            return False
        longest = max(max(map(len, terms), default=1), max(self.ngram_range))
        text = np.array(terms, dtype=f"<U{longest}").view(np.uint32).reshape(len(terms), longest)
        alphabet = np.unique(text[text > 0]).astype(np.uint32)
        if not _fits(alphabet, longest):
            return False
        digits = (np.searchsorted(alphabet, text) + 1).astype(np.uint64)
        numerals = np.zeros(len(terms), dtype=np.uint64)
        for place in range(longest):
            used = text[:, place] > 0
            numerals[used] = numerals[used] * np.uint64(len(alphabet) + 1) + digits[used, place]
        order = np.argsort(numerals)
        return _digit_table(alphabet), numerals[order], order.astype(np.int32)

    def _counted_in_python(self, documents: list[str]) -> sp.csr_matrix:
        analyze, vocabulary = self.build_analyzer(), self.vocabulary_
        columns: list[int] = []
        counts: list[int] = []
        indptr = [0]
        for document in documents:
            found = Counter(analyze(document))
            known = found.keys() & vocabulary.keys()
            columns.extend(map(vocabulary.__getitem__, known))
            counts.extend(map(found.__getitem__, known))
            indptr.append(len(columns))
        matrix = sp.csr_matrix((np.array(counts, dtype=self.dtype), np.array(columns, dtype=np.int32),
                                np.array(indptr, dtype=np.int32)), shape=(len(documents), len(vocabulary)))
        matrix.sort_indices()
        return matrix
