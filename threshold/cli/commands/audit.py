"""``threshold audit [--limit N]``: the latest audit events."""

from __future__ import annotations

import argparse

from threshold.cli.commands import Command, Subcommands, whole_number
from threshold.cli.output import table


def register(commands: Subcommands) -> list[Command]:
    audit_parser = commands.add_parser("audit", help="show the latest audit events")
    audit_parser.add_argument(
        "--limit", type=whole_number(1, 100_000), default=30, help="how many (default 30)"
    )
    return [Command(audit_parser, audit)]


def audit(args: argparse.Namespace) -> int:
    from threshold.audit.access import list_events

    rows = [("TIME (UTC)", "ACTION", "REASON", "SUBJECT", "BY", "IP", "VIA")]
    for event in list_events(args.limit):
        rows.append(
            (
                f"{event.at:%Y-%m-%d %H:%M:%S}",
                event.action,
                event.reason,
                event.subject_label,
                event.actor.username if event.actor is not None else "",
                event.ip or "",
                event.via,
            )
        )
    table(rows)
    return 0
