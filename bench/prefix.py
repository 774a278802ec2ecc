"""How much of a mail the classifier must read: accuracy and CPU against the prefix size (issue 13).

* Language: py3langid on prefixes of the corpus mails (de/en/nl), the real English bug reports and issues, and
  the long mails of :mod:`bench.long_mail` (a corpus mail with English text pasted below it, whose language is
  the customer's: the corpus mail's).
* Category (``--category``): the ``svm`` candidate trained and scored on the eval sets once per prefix size.

Run: ``.venv/bin/python -m bench.prefix [--category]``. Both cost seconds to minutes of CPU.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from unittest import mock

from bench.long_mail import long_bodies
from classifier import language
from classifier.corpus import CORPUS_DIR, load_corpus, split
from classifier.realdata import SHARED_DATA
from classifier.textprep import customer_text
from classifier.train import CANDIDATES, fit_candidate, fit_features, training_mix
from classifier.workflow import calibrate, eval_sets, labelled, load_real, real_examples

SIZES = (200, 500, 1000, 2000, 5000, 100_000)


def language_samples() -> dict[str, list[tuple[str, str]]]:
    """Text kind → [(true language, text)]."""
    corpus = load_corpus()
    real = [e.text for s in load_real(SHARED_DATA) for e in s.part(dev=True)]
    by_subject = {e.subject: e.lang for e in corpus}
    long = [(by_subject[subject], customer_text(subject, body)) for subject, body in long_bodies(300)]
    return {"corpus": [(e.lang, e.text) for e in corpus], "real (en)": [("en", t) for t in real], "long mail": long}


def language_by_prefix() -> None:
    samples = language_samples()
    for size in SIZES:
        with mock.patch.object(language, "MAX_CHARS", size):
            cells, started = [], time.process_time()
            for kind, rows in samples.items():
                right = sum(language.detect_language(text) == truth for truth, text in rows)
                cells.append(f"{kind} {right / len(rows):.3f}")
            spent = time.process_time() - started
        calls = sum(map(len, samples.values()))
        print(f"language, first {size:>6} characters: {', '.join(cells)}; {1000 * spent / calls:.2f} ms CPU per text")


def category_by_prefix(sizes: Sequence[int]) -> None:
    """Train the svm candidate with each prefix size and print its per-set macro-F1 and CPU per prediction."""
    sources = load_real(SHARED_DATA)
    sets, train_part = eval_sets(CORPUS_DIR, sources), split(load_corpus())[0]
    train, weights = training_mix(labelled(train_part), real_examples(sources), CANDIDATES["svm"].shares)
    long = [customer_text(*mail) for mail in long_bodies(300)]
    for size in sizes:
        with mock.patch("classifier.train.MAX_CHARS", size):
            fitted = fit_candidate(CANDIDATES["svm"], *fit_features([e.text for e in train]), train, weights)
            _, runs = calibrate(fitted, sets)
            model = fitted.model()
        started = time.process_time()
        for text in long:
            model.predict([text])
        spent = 1000 * (time.process_time() - started) / len(long)
        scores = ", ".join(f"{r.eval_set.name} {r.scores['macro_f1']:.3f}" for r in runs)
        print(f"category, first {size:>6} characters: {scores}; {spent:.2f} ms CPU per long message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--category", action="store_true", help="also train the category model per prefix size")
    args = parser.parse_args()
    language_by_prefix()
    if args.category:
        category_by_prefix((500, 1000, 1500, 2000, 3000))


if __name__ == "__main__":
    main()
