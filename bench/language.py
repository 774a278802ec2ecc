"""Language detection on short support mails: py3langid vs lingua-language-detector.

Texts: every message of our corpus (de/en/nl, not used to train either detector) cut four ways — the subject,
the first line of the customer's text, subject + first line, and the whole prepared text — plus a few short
mails in other languages, which must *not* be reported as de/en/nl. Prints accuracy per text kind and
language, time per call and load time. Run: ``.venv/bin/python -m bench.language``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from classifier.corpus import load_corpus
from classifier.textprep import clean_subject, strip_quoted, strip_signature

Detector = Callable[[str], str]

#: Short mails in other languages (written for this bench): a detector must not claim them as de/en/nl.
STRANGERS = [
    ("fr", "Impossible de se connecter depuis ce matin, merci de nous aider rapidement."),
    ("fr", "Facture erronée pour le mois de mars"),
    ("es", "No podemos acceder a la plataforma desde esta mañana."),
    ("es", "Solicitud de presupuesto para diez licencias adicionales"),
    ("it", "Non riusciamo ad accedere al sistema, è urgente."),
    ("it", "Richiesta di fattura corretta per il nostro nuovo indirizzo"),
    ("pl", "Nie możemy się zalogować do systemu od rana."),
    ("sv", "Vi kan inte logga in sedan i morse, snälla hjälp oss."),
    ("da", "Vi kan ikke logge ind i systemet i dag, hvad er der galt?"),
    ("pt", "Não conseguimos entrar no sistema desde ontem à noite."),
]


def first_line(body: str) -> str:
    """The customer's first line of substance (greetings like "Hallo Support," are skipped)."""
    lines = [line.strip() for line in strip_signature(strip_quoted(body)).splitlines() if line.strip()]
    substantial = [line for line in lines if len(line.split()) > 3]
    return (substantial or lines or [""])[0]


def samples() -> dict[str, list[tuple[str, str]]]:
    """Text kind → [(true language, text)]."""
    corpus = load_corpus()
    return {
        "subject": [(e.lang, clean_subject(e.subject)) for e in corpus if clean_subject(e.subject)],
        "first line": [(e.lang, first_line(e.body)) for e in corpus],
        "subject+first line": [(e.lang, f"{clean_subject(e.subject)}\n{first_line(e.body)}") for e in corpus],
        "whole text": [(e.lang, e.text) for e in corpus],
    }


def py3langid_detector() -> Detector:
    from classifier.language import detect_language

    detect_language("warm up")  # loads the model
    return detect_language


def py3langid_plain() -> Detector:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return lambda text: str(identifier.classify(text)[0])


def lingua_detector(low_accuracy: bool = False) -> Callable[[], Detector]:
    def build() -> Detector:
        from lingua import LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_all_languages()
        if low_accuracy:
            builder = builder.with_low_accuracy_mode()
        detector = builder.build()

        def detect(text: str) -> str:
            found = detector.detect_language_of(text)
            return found.iso_code_639_1.name.lower() if found else "und"

        detect("warm up")  # lingua loads its language models lazily, on first use
        return detect

    return build


CANDIDATES: dict[str, Callable[[], Detector]] = {
    "py3langid (ours: short-text preference)": py3langid_detector,
    "py3langid (plain)": py3langid_plain,
    "lingua (low accuracy)": lingua_detector(low_accuracy=True),  # loads lingua's models; high accuracy reuses them
    "lingua (high accuracy)": lingua_detector(),
}


def measure(build: Callable[[], Detector], texts: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    started = time.perf_counter()
    detect = build()
    load = time.perf_counter() - started
    out: dict[str, Any] = {"load_s": load}
    calls, spent = 0, 0.0
    for kind, rows in [*texts.items(), ("strangers", STRANGERS)]:
        started = time.perf_counter()
        predicted = [detect(text) for _, text in rows]
        spent += time.perf_counter() - started
        calls += len(rows)
        out[kind] = {lang: sum(p == t for p, (t, _) in zip(predicted, rows) if t == lang)
                     / sum(t == lang for t, _ in rows) for lang in sorted({t for t, _ in rows})}
        out[kind]["all"] = sum(p == t for p, (t, _) in zip(predicted, rows)) / len(rows)
        if kind == "strangers":
            out["strangers claimed as de/en/nl"] = sum(p in ("de", "en", "nl") for p in predicted)
    out["ms_per_call"] = 1000 * spent / calls
    return out


def main() -> None:
    texts = samples()
    print(f"{sum(len(v) for v in texts.values())} texts from the corpus, {len(STRANGERS)} strangers")
    for name, build in CANDIDATES.items():
        result = measure(build, texts)
        print(f"\n{name}: load {result['load_s']:.2f} s, {result['ms_per_call']:.3f} ms per text, "
              f"strangers claimed as de/en/nl: {result['strangers claimed as de/en/nl']}/{len(STRANGERS)}")
        for kind in [*texts, "strangers"]:
            scores = ", ".join(f"{lang} {value:.3f}" for lang, value in result[kind].items())
            print(f"  {kind:<20} {scores}")


if __name__ == "__main__":
    main()
