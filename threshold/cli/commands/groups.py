"""``threshold groups``: groups of people (who may use which app)."""

from __future__ import annotations

import argparse
import json
import sys

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import (
    forced_no_administrator_left,
    no_account,
    printable,
    refused_no_administrator_left,
    table,
)


def register(commands: Subcommands) -> list[Command]:
    groups = commands.add_parser(
        "groups", help="groups of people: list, add, add or remove members"
    )
    sub = groups.add_subparsers(dest="groups_command")
    list_parser = sub.add_parser("list", help="every group with its members")
    list_parser.add_argument("--json", action="store_true", help="print the list as JSON")
    add = sub.add_parser("add", help="add a group")
    add.add_argument("name", help="the group's name (unique, whatever the case)")
    remove = sub.add_parser("remove", help="remove a group (its members stay)")
    remove.add_argument("name")
    add_member = sub.add_parser("add-member", help="put a person in a group")
    add_member.add_argument("name", help="the group")
    add_member.add_argument("email", help="the person's username")
    add_member.add_argument(
        "--force",
        action="store_true",
        help="add them even if the group's rules leave no administrator a way to sign in",
    )
    remove_member = sub.add_parser("remove-member", help="take a person out of a group")
    remove_member.add_argument("name", help="the group")
    remove_member.add_argument("email", help="the person's username")
    return [
        Command(groups, list_groups),
        Command(list_parser, list_groups),
        Command(add, add_group),
        Command(remove, remove_group),
        Command(add_member, add_member_to_group),
        Command(remove_member, remove_member_from_group),
    ]


def _refused(message: str) -> int:
    print(f"threshold: {printable(message)}", file=sys.stderr)
    return 2


def list_groups(args: argparse.Namespace) -> int:
    from threshold.groups.access import list_groups as all_groups
    from threshold.groups.access import members_of

    groups = [(group, [user.username for user in members_of(group)]) for group in all_groups()]
    if getattr(args, "json", False):
        print(json.dumps([{"name": group.name, "members": members} for group, members in groups]))
        return 0
    if not groups:
        print("No groups yet. Add one with `threshold groups add NAME`.")
        return 0
    rows = [("GROUP", "MEMBERS", "WHO")]
    rows += [(group.name, str(len(members)), ", ".join(members)) for group, members in groups]
    table(rows)
    return 0


def add_group(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.groups.actions import GroupError, do_add_group

    try:
        group = do_add_group(args.name, Origin.cli())
    except GroupError as exc:
        return _refused(str(exc))
    print(f"Added the group {printable(group.name)}.")
    return 0


def remove_group(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.groups.actions import GroupError, do_remove_group, find_group

    try:
        group = find_group(args.name)
    except GroupError as exc:
        return _refused(str(exc))
    from django.db.models import Count

    from threshold.sso.access import list_group_apps
    from threshold.sso.models import Application

    # The apps it gave its members, and which of them nobody may use once it is gone (counted
    # over all their groups, not the join that found them).
    apps = list(
        Application.objects.filter(pk__in=list_group_apps(group).values("pk"))
        .annotate(assigned=Count("groups"))
        .order_by("name")
    )
    members = do_remove_group(group, Origin.cli())
    print(f"Removed the group {printable(group.name)} ({members} members; they stay).")
    for app in apps:
        if app.assigned == 1:
            print(
                f"Nobody may use {printable(app.name)} now: it was assigned only to this group "
                f"(`threshold apps assign {app.client_id} --everyone | --group NAME ...`)."
            )
        else:
            print(f"{printable(app.name)} stays assigned to its other groups.")
    return 0


def add_member_to_group(args: argparse.Namespace) -> int:
    """Put a person in a group, unless its rules would leave no administrator who can sign in
    today a way to (refused, exit 1, as the admin portal refuses it: ``portal.policies``);
    ``--force`` adds them anyway."""
    from threshold.accounts.access import get_user
    from threshold.audit.actions import Origin
    from threshold.groups.actions import GroupError, find_group
    from threshold.groups.models import Group
    from threshold.portal.policies import NoAdministratorLeft, add_member

    try:
        group = find_group(args.name)
    except GroupError as exc:
        return _refused(str(exc))
    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    try:
        added, lockout = add_member(group, user, Origin.cli(), force=args.force)
    except NoAdministratorLeft as refused:
        return refused_no_administrator_left(refused)
    except Group.DoesNotExist:
        return _refused(f"There is no group called {args.name.strip()!r}.")
    if not added:
        print(f"{user.username} is in {printable(group.name)} already.")
        return 0
    print(f"Added {user.username} to {printable(group.name)}.")
    forced_no_administrator_left(
        lockout,
        f"`threshold groups remove-member {group.name!r} {user.username}` takes them out again.",
    )
    return 0


def remove_member_from_group(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.audit.actions import Origin
    from threshold.groups.actions import GroupError, do_remove_member, find_group

    try:
        group = find_group(args.name)
    except GroupError as exc:
        return _refused(str(exc))
    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    if do_remove_member(group, user, Origin.cli()):
        print(f"Took {user.username} out of {printable(group.name)}.")
    else:
        print(f"{user.username} is not in {printable(group.name)}.")
    return 0
