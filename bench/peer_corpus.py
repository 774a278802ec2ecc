"""The side-by-side bench's corpus (``../shared/bench/dovecot/append.py``), for the repository's own benchmarks.

``append.py`` makes DE/EN/NL support mails of 2–60 KB (about 17 KB on average; 20 % with a PNG, 15 % with a
quoted reply), the same bytes for the same seed. The peer bench (``../shared/bench/peer-bench/``) appends them
to a fresh Dovecot for each peer; :func:`append` does exactly that (it runs the script itself), and
:func:`messages` builds the same bytes in this process for benchmarks without a server. Both stop with a clear
message when ``../shared`` is not beside the checkout.
"""
from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

SHARED_BENCH = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
APPEND = SHARED_BENCH / "dovecot" / "append.py"
SEED = 1  # the peer bench's corpus
TO = "Support <support@example.test>"  # what append.py puts in To: for user support


def append_script() -> Path:
    """The generator, or SystemExit saying where it was looked for."""
    if not APPEND.is_file():
        raise SystemExit(f"the peer bench's corpus generator is missing: {APPEND} (the benchmarks need "
                         "../shared/bench beside this checkout, as in /work)")
    return APPEND


def append(port: int, count: int, *, user: str, password: str, seed: int = SEED) -> dict[str, Any]:
    """APPEND ``count`` messages to ``user``'s INBOX on 127.0.0.1:``port`` as the peer bench does (MULTIAPPEND
    batches of 50); returns append.py's record: ``{"meta": {...}, "appended": {message_id: epoch_seconds}}``."""
    with tempfile.TemporaryDirectory(prefix="bench-append-") as work:
        out = Path(work) / "stamps.json"
        subprocess.run([sys.executable, str(append_script()), "--port", str(port), "-n", str(count), "--user", user,
                        "--password", password, "--seed", str(seed), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_bench_append", append_script())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def messages(count: int, *, seed: int = SEED, tag: str = "bench") -> list[bytes]:
    """The bytes ``append.py --seed`` appends (CRLF, as stored), Message-IDs ``<tag.NNNNNN@bench.invalid>``."""
    generator = _generator()
    rng = random.Random(seed)
    return [generator.make_message(rng, n, tag, TO).as_bytes(policy=generator.CRLF) for n in range(count)]
