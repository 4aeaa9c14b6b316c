"""`make bench`: the sign-in benchmark's runs, and one table of what they measured.

1. SQLite: Threshold alternated with the floor (3 rounds), then sign-ins at half the measured
   rate (open loop) for latency, then sign-ins until 10,000 in all for memory.
2. PostgreSQL (a throwaway server, scripts/with-postgres): the same, without the memory run.
3. Scale: 1,000 and then 1,000,000 passkeys seeded in bulk (SQLite), each alternated with the
   floor: the ratio to the floor should not grow by more than 10 %.

About 8-10 minutes on a 2-core machine. Each run's JSON goes to bench/results/ as usual.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SIGNIN = [sys.executable, str(REPO / "bench" / "signin.py")]
COMMON = ["--floor", "--clients", "8", "--users", "50", "--warmup", "2"]


def run(name: str, args: list[str], *, postgres: bool = False) -> dict[str, Any] | None:
    output = Path(tempfile.mkdtemp(prefix="threshold-bench-")) / f"{name}.json"
    command = [*SIGNIN, *COMMON, *args, "--output", str(output)]
    if postgres:
        quoted = " ".join(f"'{part}'" for part in command)
        command = [
            "bash",
            str(REPO / "scripts" / "with-postgres"),
            "sh",
            "-c",
            f'{quoted} --database-url "$DATABASE_URL"',
        ]
    print(f"\n=== {name}: {' '.join(args)}", flush=True)
    finished = subprocess.run(command, cwd=REPO, check=False)
    if not output.exists():
        print(f"bench: {name} wrote no result (exit {finished.returncode})", flush=True)
        return None
    result: dict[str, Any] = json.loads(output.read_text())
    result["exit"] = finished.returncode
    return result


def row(name: str, result: dict[str, Any] | None) -> str:
    if result is None:
        return f"| {name} | (failed) |"
    rounds = result["rounds"]
    ours = [pair["threshold"]["server_cpu_ms_per_signin"] for pair in rounds]
    floor = [pair["floor"]["server_cpu_ms_per_signin"] for pair in rounds]
    ratio = result.get("ratio_to_floor") or {}
    rate = [pair["threshold"]["signins_per_second"] for pair in rounds]
    database = [pair["threshold"]["database_cpu_ms_per_signin"] for pair in rounds]
    half = result.get("half_load") or {}
    latency = half.get("latency_ms") or {}
    memory = result.get("memory") or {}
    warm = rounds[0]["threshold"]["worker_rss_mb"]["after_warmup"]
    failures = sum(pair[k]["failures"] for pair in rounds for k in ("threshold", "floor"))
    failures += half.get("failures", 0)
    cells = [
        name,
        f"{min(ours)}-{max(ours)}",
        f"{min(floor)}-{max(floor)}",
        f"{ratio.get('median')} ({ratio.get('low')}-{ratio.get('high')})",
        f"{min(rate)}-{max(rate)}",
        "-" if None in database else f"{min(database)}-{max(database)}",
        f"{latency.get('p50')} / {latency.get('p99')} at {half.get('rate_per_second')}/s"
        if half
        else "-",
        f"{warm} → {memory.get('worker_rss_mb')} after {memory.get('signins')}"
        if memory
        else f"{warm}",
        str(failures),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    results = {
        "SQLite": run(
            "sqlite",
            ["--rounds", "3", "--duration", "10", "--half-load", "10", "--memory-signins", "10000"],
        ),
        "PostgreSQL": run(
            "postgresql", ["--rounds", "3", "--duration", "10", "--half-load", "10"], postgres=True
        ),
        "SQLite, 1,000 passkeys": run(
            "seed-1k", ["--rounds", "2", "--duration", "8", "--seed", "1000"]
        ),
        "SQLite, 1,000,000 passkeys": run(
            "seed-1m", ["--rounds", "2", "--duration", "8", "--seed", "1000000"]
        ),
    }
    print("\n## Sign-in benchmark: server CPU per complete sign-in, alternated with the floor")
    print(
        "| run | Threshold ms | floor ms | ratio: median (spread) | sign-ins/s | PostgreSQL ms "
        "| p50 / p99 ms at half load | worker RSS MB | failures |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, result in results.items():
        print(row(name, result))
    small, large = results["SQLite, 1,000 passkeys"], results["SQLite, 1,000,000 passkeys"]
    if small and large:
        growth = large["ratio_to_floor"]["median"] / small["ratio_to_floor"]["median"] - 1

        def median_ms(result: dict[str, Any]) -> float:
            return statistics.median(
                pair["threshold"]["server_cpu_ms_per_signin"] for pair in result["rounds"]
            )

        cpu = median_ms(large) / median_ms(small) - 1
        print(
            f"\nScale: 1,000 → 1,000,000 passkeys: Threshold's CPU per sign-in {cpu:+.0%}, "
            f"its ratio to the floor {growth:+.0%} (the issue allows at most +10 %)"
        )
    failed = any(result is None or result["exit"] for result in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
