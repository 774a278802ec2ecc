"""Training speed at scale: the shipped training procedure on 50,000 real IT tickets (Endava, 8 topic groups).

The set has 47,837 tickets; a reproducible sample of 2,163 repeats tops it up to 50,000. Training is exactly
what ``gateway train --candidate svm`` does (features once, calibrated LinearSVCs on three folds, as for any
set of 10,000 or more, out-of-fold threshold).
Also reports held-out macro-F1 on a stratified 20 % split, as a check that the model learned. Target: ≤ 60 s
on 2 cores. CPU time is printed too: on a shared machine, wall time says more about the neighbours. Run: ``.venv/bin/python -m bench.train_speed``.
"""
from __future__ import annotations

import csv
import gzip
import os
import random
import time

from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from classifier.external import SHARED_DATA
from classifier.train import Labelled, fit_candidates

SIZE = 50_000


def tickets() -> list[Labelled]:
    with gzip.open(SHARED_DATA / "it-tickets-endava" / "tickets.csv.gz", "rt", encoding="utf-8") as handle:
        rows = [Labelled(r["Document"], r["Topic_group"], "en") for r in csv.DictReader(handle)]
    return rows + random.Random(0).sample(rows, SIZE - len(rows))


def main() -> None:
    data = tickets()
    print(f"{len(data)} tickets, {sum(len(e.text) for e in data) / len(data):.0f} characters on average, "
          f"{os.cpu_count()} CPUs")
    started, cpu = time.perf_counter(), time.process_time()
    stages: list[str] = []
    fitted = fit_candidates(data, ["svm"], progress=lambda done: stages.append(
        f"{done} {time.perf_counter() - started:.1f} s"))[0]
    print(f"training on {len(data)}: {time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
          f"({', '.join(stages)}); out-of-fold macro-F1 {fitted.cv_macro_f1}", flush=True)
    train, test = train_test_split(data[: SIZE - 2163], test_size=0.2, random_state=0,
                                   stratify=[e.category for e in data[: SIZE - 2163]])
    started = time.perf_counter()
    fitted = fit_candidates(train, ["svm"])[0]
    elapsed = time.perf_counter() - started
    predicted = fitted.pipeline.predict([e.text for e in test])
    print(f"training on {len(train)}: {elapsed:.1f} s; held-out macro-F1 "
          f"{f1_score([e.category for e in test], predicted, average='macro'):.4f}")


if __name__ == "__main__":
    main()
