"""What a wait costs the work after it: the same CPU work after no wait, a sleep, or a spin.

A sign-in on PostgreSQL waits for the database twice in the result request, and costs the
worker more CPU than the statements explain (bench/README.md, "Why a sign-in costs the worker
more on PostgreSQL"). This measures the CPU time of a fixed piece of work (JSON, SHA-256 and
an ES256 verify, about 0.4 ms) in three ways, the order rotated each round:

- ``none``: one piece after another;
- ``sleep``: each after ``time.sleep`` (the process gives up the core, as a worker does while
  it waits for PostgreSQL's answer);
- ``spin``: each after a busy wait of the same length (time passes, the core is kept).

Only the work is timed (``time.thread_time``), never the wait. Run it pinned to one core:

    taskset -c 1 .venv/bin/python bench/waiting.py [--wait-us 500] [--rounds 4] [--pieces 3000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

MODES = ("none", "sleep", "spin")


def _piece() -> Callable[[], None]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    message = os.urandom(200)
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    document = json.dumps({f"k{i}": ["v" * 20, i, {"x": i}] for i in range(60)})

    def work() -> None:
        for _ in range(3):
            json.dumps(json.loads(document))
            hashlib.sha256(document.encode()).digest()
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))

    return work


def run(mode: str, work: Callable[[], None], wait: float, pieces: int) -> float:
    """Mean CPU time of one piece of work, in µs."""
    total = 0.0
    for _ in range(pieces):
        if mode == "sleep":
            time.sleep(wait)
        elif mode == "spin":
            end = time.perf_counter() + wait
            while time.perf_counter() < end:
                pass
        started = time.thread_time()
        work()
        total += time.thread_time() - started
    return total / pieces * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wait-us", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pieces", type=int, default=3000)
    args = parser.parse_args()
    work = _piece()
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        shift = round_ % len(MODES)
        for mode in MODES[shift:] + MODES[:shift]:
            results[mode].append(run(mode, work, args.wait_us / 1e6, args.pieces))
    for mode, figures in results.items():
        rounded = ", ".join(f"{figure:.0f}" for figure in figures)
        print(f"{mode:>5}: {rounded} µs per piece (median {statistics.median(figures):.0f})")


if __name__ == "__main__":
    main()
