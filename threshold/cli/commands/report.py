"""``threshold report readiness [--json]``: the admin portal's readiness figures."""

from __future__ import annotations

import argparse
import json

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import table


def register(commands: Subcommands) -> list[Command]:
    report = commands.add_parser("report", help="reports on the passkey rollout")
    report_sub = report.add_subparsers(dest="report_command")
    readiness = report_sub.add_parser(
        "readiness",
        help="who has a passkey, of which kind, sign-ins and failures of the last 30 days",
    )
    readiness.add_argument("--json", action="store_true", help="print one JSON object")
    # `threshold report` alone prints the readiness figures too.
    return [Command(report, readiness_report), Command(readiness, readiness_report)]


def readiness_report(args: argparse.Namespace) -> int:
    from threshold.portal.readiness import compute

    figures = compute().as_json()
    if getattr(args, "json", False):
        print(json.dumps(figures, indent=2, sort_keys=False))
        return 0
    rows = [("FIGURE", "VALUE")]
    for name, value in figures.items():
        if isinstance(value, dict):
            rows += [(f"{name}.{key}", str(count)) for key, count in value.items()]
            if not value:
                rows.append((name, "none"))
        else:
            rows.append((name, str(value)))
    table(rows)
    return 0
