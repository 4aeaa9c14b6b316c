"""``threshold policy [show]``, ``policy set NAME=VALUE ...`` and ``policy check [NAME=VALUE ...]``:
the organisation policy, every setting as ``threshold.core.policy.SETTINGS`` declares it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import printable, table

if TYPE_CHECKING:
    from threshold.accounts.models import User
    from threshold.core.policy import Policy
    from threshold.portal.policies import Lockout


def register(commands: Subcommands) -> list[Command]:
    policy = commands.add_parser("policy", help="show or change the organisation policy")
    policy_sub = policy.add_subparsers(dest="policy_command")
    shower = policy_sub.add_parser("show", help="print every setting with its value (the default)")
    setter = policy_sub.add_parser("set", help="change settings, e.g. passkey_limit=5")
    setter.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    setter.add_argument(
        "--force",
        action="store_true",
        help="save the change even if it leaves no administrator a way to sign in",
    )
    checker = policy_sub.add_parser(
        "check",
        help="list the passkeys the policy refuses, as it is or with these changes (not saved)",
    )
    checker.add_argument("assignments", nargs="*", metavar="NAME=VALUE")
    return [
        Command(policy, show),
        Command(shower, show),
        Command(setter, change),
        Command(checker, check),
    ]


def show(args: argparse.Namespace) -> int:
    from threshold.policy.access import get_policy

    _print(get_policy())
    return 0


def _with_changes(assignments: list[str], current: Policy | None = None) -> Policy | None:
    """``current`` (today's policy by default) with ``NAME=VALUE`` changes applied (not
    saved); None after a usage error."""
    from threshold.core.policy import PolicyError
    from threshold.policy.access import get_policy

    changes: dict[str, str] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            print(f"threshold: expected NAME=VALUE, got {assignment!r}", file=sys.stderr)
            return None
        changes[name.strip()] = value.strip()
    try:
        return (current or get_policy()).with_text_changes(changes)
    except PolicyError as exc:
        print(f"threshold: {exc}", file=sys.stderr)
        return None


def change(args: argparse.Namespace) -> int:
    """Save the changes, unless they would leave no administrator who can sign in today a
    way to (the admin portal's check and save, ``portal.policies.save_policy``): refused,
    exit 1, unless ``--force``."""
    from threshold.audit.actions import Origin
    from threshold.policy.access import get_policy
    from threshold.portal.policies import (
        NO_ADMINISTRATOR_LEFT,
        ChangedMeanwhile,
        NoAdministratorLeft,
        cut_off_by,
        save_policy,
    )

    current = get_policy()
    policy = _with_changes(args.assignments, current)
    if policy is None:
        return 2
    # Who it leaves with no way in, as the admin portal's preview says before it saves.
    stranded = sorted(user.username for user in cut_off_by(current, policy))
    try:
        lockout = save_policy(policy, Origin.cli(), force=args.force, based_on=current)
    except ChangedMeanwhile:
        print(
            "threshold: someone else changed the policy while this command ran, so nothing "
            "was saved. Run it again.",
            file=sys.stderr,
        )
        return 1
    except NoAdministratorLeft as refused:
        print(
            f"threshold: {NO_ADMINISTRATOR_LEFT}\n"
            f"Administrators who could no longer sign in: {_names(refused.lockout)}.\n"
            "To save it anyway, run the command again with --force.",
            file=sys.stderr,
        )
        return 1
    _print(policy)
    if stranded:
        print(
            f"threshold: saved; {len(stranded)} person(s) now have no way to sign in: "
            f"{printable(', '.join(stranded))} (each needs `threshold recover EMAIL`).",
            file=sys.stderr,
        )
    if lockout.no_administrator_left:
        print(
            "threshold: saved with --force: no administrator can sign in now "
            f"({_names(lockout)} could). `threshold recover EMAIL` lets one set up a "
            "passkey the policy allows.",
            file=sys.stderr,
        )
    return 0


def _names(lockout: Lockout) -> str:
    return printable(", ".join(user.username for user in lockout.administrators_cut_off))


def check(args: argparse.Namespace) -> int:
    """Who ``policy`` would stop signing in with which passkey, and who it would leave with no
    way in at all (the admin portal's preview): 0 if nobody, else 1."""
    from threshold.passkeys.access import list_passkeys_not_allowed
    from threshold.policy.access import get_policy
    from threshold.portal.policies import cut_off_by, policy_lockout

    current = get_policy()
    policy = _with_changes(args.assignments, current)
    if policy is None:
        return 2
    refused = list_passkeys_not_allowed(policy)
    # What `threshold policy set` and the admin portal would refuse (unless --force): also
    # a change that refuses no passkey (the password and app, or Threshold Verify, turned off).
    lockout = policy_lockout(current, policy)
    stranded = sorted(user.username for user in cut_off_by(current, policy))
    if not refused:
        print("The policy allows every registered passkey.")
        _say_stranded(stranded)
        _say_lockout(lockout)
        return 1 if stranded or lockout.no_administrator_left else 0
    rows = [("PERSON", "PASSKEY", "REFUSED BY")]
    people: dict[int, User] = {}
    for passkey, decision in refused:
        people[passkey.user.pk] = passkey.user
        settings = ",".join(decision.refused_by)
        rows.append((passkey.user.username, passkey.name, settings))
    table(rows)
    print(
        f"\n{len(refused)} passkey(s) of {len(people)} person(s) cannot sign in under this policy."
    )
    _say_stranded(stranded)
    _say_lockout(lockout)
    return 1


def _say_stranded(stranded: list[str]) -> None:
    """Who would have no way left to sign in (``portal.policies.cut_off_by``: people who can
    sign in today, the password and app or Threshold Verify turned off included)."""
    if stranded:
        print(
            f"No way left to sign in for {len(stranded)}: {printable(', '.join(stranded))} "
            "(each needs a recovery link: `threshold recover EMAIL`)."
        )


def _say_lockout(lockout: Lockout) -> None:
    if lockout.no_administrator_left:
        print(
            f"No administrator could sign in: {_names(lockout)} can today. "
            "`threshold policy set` refuses this change without --force."
        )


def _print(policy: Policy) -> None:
    from threshold.core.policy import SETTINGS

    rows = [("SETTING", "VALUE")]
    for setting in SETTINGS:
        rows.append((setting.name, setting.text(getattr(policy, setting.name))))
    table(rows)
