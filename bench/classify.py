"""Classifier speed and size: model load, single-message latency, batch throughput, artifact size.

Uses the shipped model (``models/CURRENT``) on the corpus' messages. Targets: single message p50 ≤ 2 ms,
batch ≥ 1,000 messages/s, model file ≤ 30 MB, load ≤ 1 s. CPU times are printed too, for shared machines. Run: ``.venv/bin/python -m bench.classify``.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from classifier.corpus import load_corpus
from classifier.language import detect_language
from classifier.registry import ARTIFACT, current_version, load_model
from classifier.textprep import customer_text

MODELS = Path(__file__).resolve().parent.parent / "models"


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[int(share * (len(values) - 1))]


def main() -> None:
    version = current_version(MODELS)
    size = (MODELS / version / ARTIFACT).stat().st_size
    loads, load_cpu = [], []
    for _ in range(5):
        started, cpu = time.perf_counter(), time.process_time()
        model = load_model(MODELS)
        loads.append(time.perf_counter() - started)
        load_cpu.append(time.process_time() - cpu)
    print(f"model {version}: {size / 2**20:.1f} MB, load median {statistics.median(loads):.2f} s "
          f"(min {min(loads):.2f} s, CPU median {statistics.median(load_cpu):.2f} s)")

    corpus = load_corpus()
    texts = [e.text for e in corpus]
    model.predict(texts[:10])  # warm up
    single, single_cpu, stage = [], [], []
    for example in corpus:
        started, cpu = time.perf_counter(), time.process_time()
        model.predict([example.text])
        single.append(time.perf_counter() - started)
        single_cpu.append(time.process_time() - cpu)
        started = time.perf_counter()
        text = customer_text(example.subject, example.body)
        model.predict([text])
        detect_language(text)
        stage.append(time.perf_counter() - started)
    print(f"single message predict: p50 {1000 * percentile(single, 0.5):.2f} ms, "
          f"p95 {1000 * percentile(single, 0.95):.2f} ms (CPU p50 {1000 * percentile(single_cpu, 0.5):.2f} ms)")
    print(f"whole classify stage (text prep + predict + language): p50 {1000 * percentile(stage, 0.5):.2f} ms, "
          f"p95 {1000 * percentile(stage, 0.95):.2f} ms")

    batch = texts * 4
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(batch), 256):
        model.predict(batch[start:start + 256])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"batch predict (256 per call): {len(batch) / elapsed:,.0f} messages/s over {len(batch)} messages "
          f"({len(batch) / cpu:,.0f} per CPU second)")


if __name__ == "__main__":
    main()
