"""Side by side: django-helpdesk, the raw IMAP fetch ceiling and this gateway, on one Dovecot corpus (issue 13).

Run from the repository root as root (``make bench-peers``):

    .venv/bin/python -m bench.peers [--messages 2000] [--runs 1]

It runs the shared harness ``../shared/bench/peer-bench/run_all.sh`` (see its README) with
``PEERS="django_helpdesk.sh raw_fetch.py gateway_bench.py"`` and this checkout as ``CHECKOUT``: every peer gets a
fresh Dovecot and the same ``append.py --seed 1`` corpus, one after another. It prints the harness' JSON line of
each peer (also appended to ``/tmp/peer-bench-<checkout>.jsonl``, the peers' progress to the ``.log`` beside it),
then the gateway's ratios to the other two measured in the same run, against the targets. The first
run creates ``/tmp/dhvenv`` (django-helpdesk 2.6.1 unless ``DH_VERSION`` says otherwise) and ``/tmp/benchvenv``.
The figures are wall-clock rates: quote the load average printed with them, and the range of several runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_ALL = ROOT.parent / "shared" / "bench" / "peer-bench" / "run_all.sh"
PEERS = "django_helpdesk.sh raw_fetch.py gateway_bench.py"
OUT = Path(tempfile.gettempdir()) / f"peer-bench-{ROOT.name}.jsonl"  # appended to; the peers' log beside it
NAMES = {"django-helpdesk": "helpdesk", "raw-imapclient-fetch+parse": "raw", "this-gateway": "gateway"}


def run_once(messages: int) -> dict[str, dict[str, Any]]:
    """One pass of the harness: each peer's JSON line, by short name (a peer that failed is missing)."""
    done = OUT.stat().st_size if OUT.exists() else 0
    env = dict(os.environ, PEERS=PEERS, CHECKOUT=str(ROOT), OUT=str(OUT))
    env.setdefault("DH_VERSION", "==2.6.1")  # only used when /tmp/dhvenv is created
    subprocess.run([str(RUN_ALL), str(messages)], cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL)
    with OUT.open("rb") as results_file:
        results_file.seek(done)
        lines = results_file.read().decode().splitlines()
    results = [json.loads(line) for line in lines if line.strip()]
    return {NAMES.get(r.get("peer"), str(r.get("peer"))): r for r in results}


def summary(results: dict[str, dict[str, Any]], load: tuple[float, float]) -> list[str]:
    """The harness' lines, then the gateway against the ceiling and against django-helpdesk."""
    lines = [json.dumps(r) for r in results.values()]
    gateway, raw, helpdesk = (results.get(name) for name in ("gateway", "raw", "helpdesk"))
    if not (gateway and raw and helpdesk):
        return [*lines, f"incomplete run: got {', '.join(results) or 'nothing'} (see {OUT.with_suffix('.log')})"]
    rate = gateway["msgs_per_s_after_ready"]
    of_ceiling, over_helpdesk = rate / raw["msgs_per_s"], rate / helpdesk["msgs_per_s"]

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    return [*lines,
            f"load average {load[0]:.1f} before, {load[1]:.1f} after",
            f"gateway {rate:.1f} msg/s after 'gateway started': {of_ceiling:.3f} of the raw ceiling "
            f"({raw['msgs_per_s']:.1f}; target >= 0.5: {verdict(of_ceiling >= 0.5)}), {over_helpdesk:.1f}x "
            f"django-helpdesk ({helpdesk['msgs_per_s']:.1f}; target >= 8x: {verdict(over_helpdesk >= 8)})",
            f"lost {gateway['lost']}, duplicated {gateway['duplicated']} "
            f"(target 0 and 0: {verdict(gateway['lost'] == gateway['duplicated'] == 0)}); "
            f"started after {gateway['seconds'] - gateway['seconds_after_ready']:.1f} s (target <= 3 s)",
            f"peak RSS of the process tree {gateway['peak_rss_mb']:.0f} MB (target <= 500: "
            f"{verdict(gateway['peak_rss_mb'] <= 500)}); IDLE latency p50 {gateway['latency_p50_s']} s, "
            f"p95 {gateway['latency_p95_s']} s (target < 1 s)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1, help="passes of the harness, one after another")
    args = parser.parse_args()
    if not RUN_ALL.is_file():
        raise SystemExit(f"the side-by-side harness is missing: {RUN_ALL} (it needs ../shared/bench beside this "
                         "checkout, as in /work)")
    if not (ROOT / ".venv" / "bin" / "gateway").is_file():
        raise SystemExit(f"no .venv in {ROOT}: run `make .venv/bin/gateway` first")
    for number in range(1, args.runs + 1):
        before = os.getloadavg()[0]
        results = run_once(args.messages)
        print(f"run {number} of {args.runs}, {args.messages} messages:")
        print("\n".join(summary(results, (before, os.getloadavg()[0]))), flush=True)


if __name__ == "__main__":
    main()
