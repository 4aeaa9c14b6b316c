"""``threshold users``: list people; ``users lock``, ``unlock``, ``deactivate``, ``reactivate``
one, ``users role`` gives one an admin portal role, and ``users import`` invites everyone a
CSV file lists.

A lock, a deactivation or the administrator role taken away that would leave no administrator
who can sign in today a way to is refused (exit 1, nothing stored), as the admin portal
refuses it (``portal.policies``); ``--force`` makes it anyway."""

from __future__ import annotations

import argparse
import json
import sys

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import (
    forced_no_administrator_left,
    no_account,
    refused_no_administrator_left,
    table,
)


def register(commands: Subcommands) -> list[Command]:
    users = commands.add_parser("users", help="list people and their passkeys; lock or unlock one")
    users.add_argument("--json", action="store_true", help="print the list as JSON")
    users_sub = users.add_subparsers(dest="users_command")
    list_parser = users_sub.add_parser("list", help="everyone, with role, status and passkeys")
    list_parser.add_argument("--json", action="store_true", help="print the list as JSON")
    lock_parser = users_sub.add_parser(
        "lock", help="stop a person signing in by any path; ends their sessions and links"
    )
    lock_parser.add_argument("email", help="the person's username")
    lock_parser.add_argument(
        "--reason", default="", help="why, for the audit log (at most 200 characters)"
    )
    lock_parser.add_argument(
        "--force",
        action="store_true",
        help="lock them even if it leaves no administrator a way to sign in",
    )
    unlock_parser = users_sub.add_parser("unlock", help="let a locked person sign in again")
    unlock_parser.add_argument("email", help="the person's username")
    role_parser = users_sub.add_parser(
        "role",
        help="give a person an admin portal role (admin, helpdesk, auditor) or none",
        description="admin: everything; helpdesk: people, their sign-in methods, recovery links, "
        "locks and sessions; auditor: reads everything, changes nothing; none: no admin portal.",
    )
    role_parser.add_argument("email", help="the person's username")
    role_parser.add_argument("role", choices=ROLE_WORDS, help="the role")
    role_parser.add_argument(
        "--force",
        action="store_true",
        help="take the administrator role away even if it leaves no administrator a way to sign in",
    )
    deactivate_parser = users_sub.add_parser(
        "deactivate", help="deactivate a person: no sign-in; ends their sessions and links"
    )
    deactivate_parser.add_argument("email", help="the person's username")
    deactivate_parser.add_argument(
        "--force",
        action="store_true",
        help="deactivate them even if it leaves no administrator a way to sign in",
    )
    reactivate_parser = users_sub.add_parser(
        "reactivate", help="let a deactivated person sign in again"
    )
    reactivate_parser.add_argument("email", help="the person's username")
    import_parser = users_sub.add_parser(
        "import",
        help="invite everyone a CSV file lists (email, name, groups), as the admin portal does",
        description="Invites each row of a CSV file whose first line names its columns: email, "
        "and optionally name and groups (names separated by ';'), with the admin portal's rules "
        "and words, but no limit on its size. Each row is its own transaction: a failure "
        "leaves the rows before it invited, and running the file again is safe (someone with "
        "an unused link gets a new one; someone who can sign in already is skipped). Exit "
        "status: 0 when no row was refused, 1 when one was, 2 when the file cannot be read.",
    )
    import_parser.add_argument("file", help="the CSV file (UTF-8); - for standard input")
    import_parser.add_argument(
        "--no-email",
        action="store_true",
        help="email nobody; write the links to --links-out instead",
    )
    import_parser.add_argument(
        "--links-out",
        metavar="FILE",
        default="",
        help="also write each invited person's link to FILE, a new CSV (email,link) that only "
        "you can read: the links are secrets",
    )
    import_parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check every row and say what would happen; store nothing, email nobody",
    )
    import_parser.add_argument(
        "--progress",
        metavar="N",
        type=int,
        default=1000,
        help="report progress on standard error every N rows (default 1000; 0: never)",
    )
    return [
        Command(users, list_people),
        Command(list_parser, list_people),
        Command(lock_parser, lock),
        Command(unlock_parser, unlock),
        Command(role_parser, set_role),
        Command(deactivate_parser, deactivate),
        Command(reactivate_parser, reactivate),
        Command(import_parser, import_people),
    ]


# The words ``users role`` takes; "none" is Role.NONE (stored blank).
ROLE_WORDS = ("admin", "helpdesk", "auditor", "none")


def list_people(args: argparse.Namespace) -> int:
    from threshold.accounts.models import User
    from threshold.policy.access import get_policy
    from threshold.portal.readiness import has_enrolled
    from threshold.portal.usable import with_methods

    rows = [("USERNAME", "NAME", "ROLE", "STATUS", "PASSKEYS")]
    listed = []
    # Counted as the readiness figures and the admin portal count them: a way to sign in the
    # policy in force refuses is none; someone with none is not active, but invited (nothing
    # set up yet) or, having enrolled once, without a way in now.
    people = with_methods(User.objects.all(), get_policy()).annotate(enrolled=has_enrolled())
    for user in people.order_by("username"):
        if not user.is_active:
            status = "deactivated"
        elif user.is_locked:
            status = "locked"
        elif user.usable_methods:
            status = "active"
        else:
            status = "no way to sign in" if user.enrolled or user.methods else "invited"
        role = user.portal_role.label.lower() if user.role else "member"
        rows.append((user.username, user.full_name, role, status, str(user.passkey_count)))
        listed.append(
            {
                "username": user.username,
                "name": user.full_name,
                "role": user.role or "none",  # the words `users role` takes
                "status": status,
                "passkeys": user.passkey_count,
            }
        )
    if args.json:
        print(json.dumps(listed))
    else:
        table(rows)
    return 0


def lock(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.accounts.actions import clean_lock_reason
    from threshold.audit.actions import Origin
    from threshold.portal.policies import NoAdministratorLeft, lock_person

    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    try:
        clean_lock_reason(args.reason)
        locked, lockout = lock_person(user, Origin.cli(), args.reason, force=args.force)
    except NoAdministratorLeft as refused:
        return refused_no_administrator_left(refused)
    except ValueError as exc:
        print(f"threshold: {exc}", file=sys.stderr)
        return 2
    if not locked:
        assert user.locked_at is not None  # noqa: S101 - do_lock_user read it
        print(f"{user.username} is locked already (since {user.locked_at:%Y-%m-%d %H:%M} UTC).")
        return 0
    print(
        f"Locked {user.username}: no way of signing in works until `threshold users unlock`. "
        "Their sessions have ended and their unused links no longer work."
    )
    forced_no_administrator_left(
        lockout, f"`threshold users unlock {user.username}` lets them sign in again."
    )
    return 0


def unlock(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.accounts.actions import do_unlock_user
    from threshold.audit.actions import Origin

    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    if not do_unlock_user(user, Origin.cli()):
        print(f"{user.username} is not locked.")
        return 0
    print(f"Unlocked {user.username}: they can sign in with their passkeys again.")
    return 0


def set_role(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.accounts.models import Role
    from threshold.audit.actions import Origin
    from threshold.portal.policies import NoAdministratorLeft
    from threshold.portal.policies import set_role as save_role

    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    role = Role.NONE if args.role == "none" else Role(args.role)
    try:
        changed, lockout = save_role(user, role, Origin.cli(), force=args.force)
    except NoAdministratorLeft as refused:
        return refused_no_administrator_left(refused)
    if not changed:
        print(f"{user.username} has that role already ({role.label}).")
        return 0
    print(f"{user.username}: {role.label}.")
    forced_no_administrator_left(
        lockout, f"`threshold users role {user.username} admin` gives it back."
    )
    return 0


def deactivate(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.audit.actions import Origin
    from threshold.portal.policies import NoAdministratorLeft, deactivate_person

    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    try:
        changed, lockout = deactivate_person(user, Origin.cli(), force=args.force)
    except NoAdministratorLeft as refused:
        return refused_no_administrator_left(refused)
    if not changed:
        print(f"{user.username} is deactivated already.")
        return 0
    print(
        f"Deactivated {user.username}: no way of signing in works until `threshold users "
        "reactivate`. Their sessions have ended and their unused links no longer work."
    )
    forced_no_administrator_left(
        lockout, f"`threshold users reactivate {user.username}` lets them sign in again."
    )
    return 0


def reactivate(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.accounts.actions import do_reactivate_user
    from threshold.audit.actions import Origin

    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    if not do_reactivate_user(user, Origin.cli()):
        print(f"{user.username} is active.")
        return 0
    print(f"Reactivated {user.username}.")
    return 0


def import_people(args: argparse.Namespace) -> int:
    from threshold.cli.bulkimport import run

    return run(args)
