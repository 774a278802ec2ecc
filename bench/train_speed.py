"""Training speed at scale: the shipped training procedure on 50,000 real IT tickets (Endava, 8 topic groups).

The set has 47,837 tickets; a reproducible sample of 2,163 repeats tops it up to 50,000. Training is exactly
what ``gateway train --candidate svm`` does per candidate (features once, calibrated LinearSVCs on three folds,
as for any set of 10,000 or more, out-of-fold threshold), with the tickets as its only examples.
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

import numpy as np

from classifier.realdata import SHARED_DATA
from classifier.train import CANDIDATES, Fitted, Labelled, fit_candidate, fit_features

SIZE = 50_000


def tickets() -> list[Labelled]:
    with gzip.open(SHARED_DATA / "it-tickets-endava" / "tickets.csv.gz", "rt", encoding="utf-8") as handle:
        rows = [Labelled(r["Document"], r["Topic_group"], "en") for r in csv.DictReader(handle)]
    return rows + random.Random(0).sample(rows, SIZE - len(rows))


def fit_svm(data: list[Labelled], progress: list[str] | None = None, started: float = 0.0) -> Fitted:
    """What ``gateway train --candidate svm`` does with these examples as our own mail (no real sources)."""
    features = fit_features([e.text for e in data])
    if progress is not None:
        progress.append(f"features {time.perf_counter() - started:.1f} s")
    fitted = fit_candidate(CANDIDATES["svm"], *features, data, np.ones(len(data)))
    if progress is not None:
        progress.append(f"svm {time.perf_counter() - started:.1f} s")
    return fitted


def main() -> None:
    data = tickets()
    print(f"{len(data)} tickets, {sum(len(e.text) for e in data) / len(data):.0f} characters on average, "
          f"{os.cpu_count()} CPUs")
    started, cpu = time.perf_counter(), time.process_time()
    stages: list[str] = []
    fitted = fit_svm(data, stages, started)
    print(f"training on {len(data)}: {time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
          f"({', '.join(stages)}); out-of-fold macro-F1 {fitted.cv_macro_f1}", flush=True)
    train, test = train_test_split(data[: SIZE - 2163], test_size=0.2, random_state=0,
                                   stratify=[e.category for e in data[: SIZE - 2163]])
    started = time.perf_counter()
    fitted = fit_svm(train)
    elapsed = time.perf_counter() - started
    predicted = [p.category for p in fitted.model().predict([e.text for e in test])]
    print(f"training on {len(train)}: {elapsed:.1f} s; held-out macro-F1 "
          f"{f1_score([e.category for e in test], predicted, average='macro'):.4f}")


if __name__ == "__main__":
    main()
