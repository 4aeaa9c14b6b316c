"""``threshold policy [show]`` and ``policy set NAME=VALUE ...``: the organisation policy."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import table

if TYPE_CHECKING:
    from threshold.core.policy import Policy


def register(commands: Subcommands) -> list[Command]:
    policy = commands.add_parser("policy", help="show or change the organisation policy")
    policy_sub = policy.add_subparsers(dest="policy_command")
    shower = policy_sub.add_parser("show", help="print every setting with its value (the default)")
    setter = policy_sub.add_parser("set", help="change settings, e.g. passkey_limit=5")
    setter.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    return [Command(policy, show), Command(shower, show), Command(setter, change)]


def show(args: argparse.Namespace) -> int:
    from threshold.policy.actions import get_policy

    _print(get_policy())
    return 0


def change(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.core.policy import PolicyError
    from threshold.policy.actions import do_update_policy, get_policy

    policy = get_policy()
    changes: dict[str, str] = {}
    for assignment in args.assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            print(f"threshold: expected NAME=VALUE, got {assignment!r}", file=sys.stderr)
            return 2
        changes[name.strip()] = value.strip()
    try:
        policy = do_update_policy(policy.with_text_changes(changes), Origin.cli())
    except PolicyError as exc:
        print(f"threshold: {exc}", file=sys.stderr)
        return 2
    _print(policy)
    return 0


def _print(policy: Policy) -> None:
    rows = [("SETTING", "VALUE")]
    for name, value in policy.as_json().items():
        rows.append((name, ",".join(map(str, value)) if isinstance(value, list) else str(value)))
    table(rows)
