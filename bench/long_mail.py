"""CPU per message of the classify stage's parts on long, realistic mail (issue 13: 2–60 KB, ~15,000 characters).

Each message is a support mail of our corpus (the customer's request, at the top), followed by what customers
paste below it: real bug-report and GitHub-issue text from ``../shared/data/`` (descriptions, logs, stack
traces), a signature, and in every third message a quoted earlier mail. Sizes are spread log-uniformly over
2–60 KB, as in ``../shared/bench/dovecot/append.py``. Prints the mean CPU milliseconds per message of the
customer-text extraction, language detection, category model and steps detection one message at a time, and
the throughput of the category and steps models on the whole batch (as a worker calls them, per chunk). Run: ``.venv/bin/python -m bench.long_mail [--messages 300]``.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.sample_mail import corpus
from classifier.language import detect_language
from classifier.realdata import SHARED_DATA, nlbse_issues, s2r_reports
from classifier.registry import load_model
from classifier.steps import load_steps_model
from classifier.textprep import customer_text
from gateway.replies.completeness import steps_in

MODELS = Path(__file__).resolve().parent.parent / "models"
SIGNATURE = "\n\nKind regards,\nAnna Becker\nHead of HR Operations\nMüller Logistik GmbH\nTel. +49 40 555 0192\n"


def long_bodies(count: int, seed: int = 1) -> list[tuple[str, str]]:
    """(subject, body) of ``count`` long mails, deterministic for a seed."""
    rng = random.Random(seed)
    mails = corpus()
    pasted = [e.text for e in nlbse_issues(SHARED_DATA).examples + s2r_reports(SHARED_DATA).examples]
    out = []
    for n in range(count):
        row = mails[rng.randrange(len(mails))]
        target = int(math.exp(rng.uniform(math.log(2048), math.log(60 * 1024))))
        parts = [row["body"], "\n\nDetails below:\n"]
        while sum(map(len, parts)) < target:
            parts.append(pasted[rng.randrange(len(pasted))] + "\n\n")
        body = "".join(parts)[:target] + SIGNATURE
        if n % 3 == 0:
            earlier = mails[rng.randrange(len(mails))]["body"]
            body += "\nOn 3 March 2026, Support wrote:\n" + "\n".join(f"> {line}" for line in earlier.splitlines())
        out.append((row["subject"], body))
    return out


def cpu_ms(function: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], float]:
    """Results and the mean CPU milliseconds per item."""
    started = time.process_time()
    results = [function(item) for item in items]
    return results, 1000 * (time.process_time() - started) / max(len(items), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    mails = long_bodies(args.messages)
    model, steps = load_model(MODELS), load_steps_model(MODELS / "steps")
    model.predict(["warm up"]), detect_language("warm up")
    texts, prep = cpu_ms(lambda mail: customer_text(*mail), mails)
    _, language = cpu_ms(detect_language, texts)
    _, category = cpu_ms(lambda text: model.predict([text]), texts)
    _, has_steps = cpu_ms(lambda text: steps_in([text], steps), texts)
    started = time.process_time()
    model.predict(texts)
    batch = len(texts) / (time.process_time() - started)
    started = time.process_time()
    steps_in(texts, steps)
    steps_batch = len(texts) / (time.process_time() - started)
    print(f"{len(mails)} messages, body {statistics.mean(len(b) for _, b in mails):,.0f} characters on average, "
          f"customer text {statistics.mean(map(len, texts)):,.0f}")
    print(f"CPU ms per message: customer text {prep:.2f}, language {language:.2f}, category {category:.2f}, "
          f"steps {has_steps:.2f}, together {prep + language + category + has_steps:.2f}")
    print(f"one batch of all: category model {batch:,.0f}, steps {steps_batch:,.0f} messages per CPU second")


if __name__ == "__main__":
    main()
