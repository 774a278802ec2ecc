"""The project's labelled corpus (``classifier/data/corpus/*.jsonl``) and its frozen train/test split."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from classifier.paths import CORPUS_DIR
from classifier.textprep import customer_text

#: one message in TEST_SHARE_PERCENT goes to the frozen test part, decided by a hash of its id
TEST_SHARE_PERCENT = 20


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    category: str
    subject: str
    body: str

    @property
    def text(self) -> str:
        return customer_text(self.subject, self.body)

    @property
    def is_test(self) -> bool:
        return in_test_split(self.id)


def in_test_split(example_id: str) -> bool:
    """Frozen split: the same id always lands on the same side, whatever else is added."""
    return int(hashlib.sha256(example_id.encode()).hexdigest(), 16) % 100 < TEST_SHARE_PERCENT


def read_jsonl(paths: Iterable[Path]) -> Iterator[Example]:
    for path in sorted(paths):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    yield Example(row["id"], row["lang"], row["category"], row.get("subject", ""), row["body"])


def load_corpus(directory: Path = CORPUS_DIR) -> list[Example]:
    """Every labelled example of the corpus directory."""
    return list(read_jsonl(directory.glob("*.jsonl")))


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """(train, frozen test)."""
    return [e for e in examples if not e.is_test], [e for e in examples if e.is_test]


def files_digest(directory: Path = CORPUS_DIR) -> dict[str, str]:
    """sha256 of each corpus file, recorded in model metadata."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.jsonl"))}
