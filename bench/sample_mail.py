"""Realistic support mails for benchmarks: the classifier corpus (de/en/nl) as MIME messages."""
from __future__ import annotations

import datetime as dt
import json
import random
from email.message import EmailMessage
from email.utils import format_datetime

from classifier.corpus import CORPUS_DIR

ADDRESS = "support@tessaro.example"
NAMES = ["Anna Becker", "Jan de Vries", "Sophie Martin", "Lukas Wagner", "Emma Jansen", "Noah Smith", "Mia Bakker"]
DOMAINS = ["mueller-logistik.example", "vandijkzorg.example", "brightline.example", "example.org",
           "kanzlei-roth.example"]


def corpus() -> list[dict[str, str]]:
    return [json.loads(line) for path in sorted(CORPUS_DIR.glob("*.jsonl")) for line in path.open(encoding="utf-8")]


def build_mail(rows: list[dict[str, str]], n: int, tag: str) -> bytes:
    """One realistic message; every 5th has an HTML alternative, every 10th a ~30 KB PNG screenshot."""
    rng = random.Random(n)
    row = rows[n % len(rows)]
    name = rng.choice(NAMES)
    mail = EmailMessage()
    mail["From"] = f"{name} <{name.split()[0].lower()}.{n % 50}@{rng.choice(DOMAINS)}>"
    mail["To"] = ADDRESS
    mail["Subject"] = row["subject"]
    mail["Date"] = format_datetime(dt.datetime.now().astimezone())
    mail["Message-ID"] = f"<{tag}-{n}@bench.example>"
    mail.set_content(row["body"])
    if n % 5 == 0:
        paragraphs = "".join(f"<p>{p}</p>" for p in row["body"].split("\n\n"))
        mail.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html")
    if n % 10 == 0:
        mail.add_attachment(b"\x89PNG\r\n\x1a\n" + rng.randbytes(30_000), maintype="image", subtype="png",
                            filename="screenshot.png")
    return bytes(mail)
