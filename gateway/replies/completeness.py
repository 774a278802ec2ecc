"""Completeness stage: does a problem report carry reproduction steps and a screenshot?

A mail has steps when a rule chosen at training time fires OR the steps model says so (``models/steps/``, see
:mod:`classifier.steps`). ``has_screenshot`` looks at the images' own header bytes and size
(:mod:`gateway.replies.screenshots`) and whether the same image came in earlier mails of the sender (then it is
a signature logo, not a screenshot); inline images count like attached ones (:mod:`gateway.parsing` keeps inline
photos without a file name). A reply in a thread is judged together with what the thread's earlier
mails already provided. Each finding carries its reason, worded where it was found, for ``gateway show``.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from classifier.steps import MAX_CHARS as STEPS_MAX_CHARS
from classifier.steps import StepsModel, load_steps_model
from gateway.config.schema import GatewayConfig
from gateway.parsing import ParsedMail
from gateway.replies.screenshots import ImageCheck, check_images

STEPS_MODEL_DIR = "steps"  # below [classifier].models_dir

_STEP_LINE = re.compile(r"^\s*(\d{1,2}[.)]|[-*•]|step\s*\d+|schritt\s*\d+|stap\s*\d+)\s+\S", re.IGNORECASE | re.MULTILINE)
_SEQUENCE = re.compile(
    r"\b(first|then|after that|afterwards|zuerst|dann|danach|anschließend|eerst|daarna|vervolgens|toen)\b",
    re.IGNORECASE,
)
_STEPS_HEADING = re.compile(
    r"\b(steps to reproduce|reproduction steps|how to reproduce|schritte zum (reproduzieren|nachstellen)|"
    r"schritte|stappen om (te reproduceren|na te bootsen)|stappen)\b",
    re.IGNORECASE,
)
_CLICK_PATH = re.compile(r"\b\w+\s*(>|→|->)\s*\w+\s*(>|→|->)\s*\w+")  # \b keeps it linear on long words


def _step_list(text: str) -> bool:
    return len(_STEP_LINE.findall(text)) >= 2


def _click_path(text: str) -> bool:
    return _CLICK_PATH.search(text) is not None


def _steps_heading(text: str) -> bool:
    return _STEPS_HEADING.search(text) is not None and _STEP_LINE.search(text) is not None


def _sequence_words(text: str) -> bool:
    return len({m.lower() for m in _SEQUENCE.findall(text)}) >= 2


#: candidate rules; training measures each and keeps those that improve precision/recall (metadata "rules")
STEP_RULES: dict[str, Callable[[str], bool]] = {
    "step-list": _step_list, "click-path": _click_path, "steps-heading": _steps_heading,
    "sequence-words": _sequence_words,
}


@dataclass(frozen=True)
class ThreadState:
    """What the earlier mails of a thread provided, and whether we already answered in it."""

    category: str  # the thread's first category ("" when it was unsure)
    has_steps: bool
    has_screenshot: bool
    answered: bool


@dataclass(frozen=True)
class Evidence:
    """What a mail itself shows, found with its content in the isolated worker: steps, images, and why."""

    has_steps: bool
    image_digests: tuple[str, ...]  # of screenshot-sized images, to tell screenshots from recurring logos
    steps_reason: str = ""  # e.g. "steps: rule step-list fired"
    images: tuple[ImageCheck, ...] = ()  # every image with its verdict and reason


def gather_evidence(mails: Sequence[tuple[ParsedMail, str]], model: StepsModel) -> list[Evidence]:
    """The :class:`Evidence` of each (mail, customer text) pair, each finding with its reason."""
    steps = steps_found([text for _, text in mails], model)
    evidence = []
    for (mail, _), (found, why) in zip(mails, steps):
        images = check_images(mail)
        evidence.append(Evidence(found, tuple(i.digest for i in images if i.is_screenshot), why, images))
    return evidence


@dataclass(frozen=True)
class Completeness:
    complete: bool | None  # None: this category needs nothing, so it was not checked
    missing: tuple[str, ...]
    has_steps: bool  # found in this mail itself
    has_screenshot: bool
    image_digests: tuple[str, ...] = ()  # screenshot-sized images of this mail, to spot recurring logos later
    images: tuple[ImageCheck, ...] = ()  # this mail's images, a recurring one judged "recurring"
    steps_reason: str = ""

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why steps and screenshot were found or not, one line each (stored with the decision)."""
        return tuple(r for r in (self.steps_reason, *(i.reason for i in self.images)) if r)


@lru_cache(maxsize=4)
def steps_model(models_dir: Path) -> StepsModel:
    """The shipped steps model, loaded once per models directory."""
    return load_steps_model(models_dir / STEPS_MODEL_DIR)


def steps_in(texts: Sequence[str], model: StepsModel) -> list[bool]:
    """Whether each text has steps: a chosen rule fires, or the model's probability reaches its threshold."""
    return [found for found, _ in steps_found(texts, model)]


def steps_found(texts: Sequence[str], model: StepsModel) -> list[tuple[bool, str]]:
    """(has steps, why) for each text; one model call for all the texts no rule settles. Rules and model read
    the first ``MAX_CHARS`` of each text."""
    texts = [text[:STEPS_MAX_CHARS] for text in texts]
    found: list[tuple[bool, str]] = []
    for text in texts:
        rule = next((name for name in model.rules if STEP_RULES[name](text)), None)
        found.append((True, f"steps: rule {rule} fired") if rule else (False, ""))
    unsettled = [i for i, (hit, _) in enumerate(found) if not hit]
    if unsettled:
        for i, probability in zip(unsettled, model.probabilities([texts[i] for i in unsettled])):
            hit = probability >= model.threshold
            verb = "reaches" if hit else "below"
            found[i] = (hit, f"steps: model probability {probability:.2f} {verb} its threshold {model.threshold:.2f}")
    return found


def _nothing_recurs(digests: tuple[str, ...]) -> frozenset[str]:
    return frozenset()


def check_completeness(config: GatewayConfig, evidence: Evidence, category: str, thread: ThreadState | None = None,
                       recurring: Callable[[tuple[str, ...]], frozenset[str]] = _nothing_recurs) -> Completeness:
    """What the category (and the thread's first category) requires, and which of it the thread still lacks.

    ``recurring`` tells which of the given image digests the sender sent before: logos, not screenshots.
    """
    steps, digests = evidence.has_steps, evidence.image_digests
    seen = recurring(digests) if digests else frozenset()
    screenshot = any(d not in seen for d in digests)
    images = tuple(_as_recurring(i) if i.digest in seen else i for i in evidence.images)
    found = dict(image_digests=digests, images=images, steps_reason=evidence.steps_reason)
    require = config.completeness.require
    required = dict.fromkeys([*require.get(category, []), *(require.get(thread.category, []) if thread else [])])
    if not required:
        return Completeness(None, (), steps, screenshot, **found)
    present = {"steps": steps or bool(thread and thread.has_steps),
               "screenshot": screenshot or bool(thread and thread.has_screenshot)}
    missing = tuple(item for item in required if not present[item])
    return Completeness(not missing, missing, steps, screenshot, **found)


def _as_recurring(image: ImageCheck) -> ImageCheck:
    return dataclasses.replace(image, verdict="recurring", reason=f"{image.reason.removesuffix(': a screenshot')}: "
                                                                  "the sender sent it before (a signature logo)")
