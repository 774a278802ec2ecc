"""Real third-party data (``../shared/data/``, outside the repository) mapped onto our taxonomy, with frozen dev parts.

Sources (origins and licences in ``../shared/data/README.md``):

* NLBSE'24 GitHub issues, train split (1,500; licence unknown, the text belongs to its GitHub authors):
  bug → ``incident``, feature → ``feature_request``, question → ``how_to``. Scored in the source's own three
  labels: a bug counts as right as ``incident`` or ``outage``, a question as ``how_to`` or ``configuration``.
* S2R bug reports (Chaparro et al., 775; licence unknown): every report → ``incident`` (right as ``incident``
  or ``outage``).

The Endava IT tickets (CC0) were measured and are not used: preprocessed text that did not help any real set
(README, "The classifier"). The synthetic tickets (CC BY-NC) are never used for the shipped model.

Each source's dev part (30 %) is chosen by a hash of a *group* key, so near-duplicates stay on one side: NLBSE
issues by repository and title with digits blanked (templated titles such as "[DevTools Bug] Cannot add node
"1" …"), S2R reports by id with the steps model's rule (:func:`in_dev_part`), so neither model trains on
reports the other holds out.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from classifier.paths import SHARED_DATA
from classifier.textprep import customer_text

DEV_SHARE_PERCENT = 30
NLBSE_FILE = Path("issues-nlbse") / "train.jsonl.gz"
S2R_FILE = Path("bug-reports-s2r") / "train.jsonl.gz"
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)  # issue templates' hidden instructions
_DIGITS = re.compile(r"\d+")


def in_dev_part(group: str, salt: str, percent: int = DEV_SHARE_PERCENT) -> bool:
    """Frozen split by a hash of the group key: the same group always lands on the same side."""
    return int(hashlib.sha256(f"{salt}:{group}".encode()).hexdigest(), 16) % 100 < percent


@dataclass(frozen=True)
class RealExample:
    id: str
    text: str  # what the classifier reads: title, then the cleaned description
    label: str  # the source's own label
    group: str  # near-duplicates share it; the dev split is decided per group


@dataclass(frozen=True)
class RealSource:
    """One source: its examples, the category each label trains as, and the categories counted right per label."""

    name: str
    examples: tuple[RealExample, ...]
    trains_as: Mapping[str, str]
    accepts: Mapping[str, frozenset[str]]
    salt: str  # of the dev split

    def part(self, *, dev: bool) -> list[RealExample]:
        return [e for e in self.examples if in_dev_part(e.group, self.salt) == dev]


NLBSE_TRAINS_AS = {"bug": "incident", "feature": "feature_request", "question": "how_to"}
NLBSE_ACCEPTS = {"bug": frozenset({"incident", "outage"}), "feature": frozenset({"feature_request"}),
                 "question": frozenset({"how_to", "configuration"})}
BUG_ACCEPTS = {"bug": frozenset({"incident", "outage"})}


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def nlbse_issues(data: Path = SHARED_DATA) -> RealSource:
    """The NLBSE'24 train split; grouped by repository and title with digits blanked."""
    examples = tuple(
        RealExample(r["id"], customer_text(r["title"], _HTML_COMMENT.sub("", r["body"] or "")), r["label"],
                    f"{r['repo']}:{_DIGITS.sub('0', r['title'].strip().lower())}")
        for r in _jsonl(data / NLBSE_FILE))
    return RealSource("nlbse", examples, NLBSE_TRAINS_AS, NLBSE_ACCEPTS, salt="nlbse")


def s2r_reports(data: Path = SHARED_DATA) -> RealSource:
    """The S2R bug reports (all bugs); the dev part is the steps model's held-out part."""
    examples = tuple(RealExample(r["id"], customer_text(r["title"], r["text"]), "bug", r["id"])
                     for r in _jsonl(data / S2R_FILE))
    return RealSource("s2r", examples, {"bug": "incident"}, BUG_ACCEPTS, salt="steps")


def real_sources(data: Path = SHARED_DATA) -> list[RealSource]:
    """Every source used for training and dev sets; a missing file raises ``FileNotFoundError``."""
    return [nlbse_issues(data), s2r_reports(data)]


def files_digest(data: Path = SHARED_DATA) -> dict[str, str]:
    """sha256 of each real data file used, recorded in model metadata."""
    return {str(p): hashlib.sha256((data / p).read_bytes()).hexdigest() for p in (NLBSE_FILE, S2R_FILE)}
