"""``threshold invite`` and ``threshold recover``: one-time links to a first or a new passkey."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import no_account, printable, refused_locked

if TYPE_CHECKING:
    from threshold.accounts.models import User


def register(commands: Subcommands) -> list[Command]:
    invite_parser = commands.add_parser(
        "invite",
        help="invite a person: prints a one-time enrollment link",
        description="Invites one person. To invite everyone a CSV file lists: "
        "`threshold users import FILE`.",
    )
    invite_parser.add_argument("email", help="the person's work email; it is also their username")
    invite_parser.add_argument("--name", default="", help="full name, as shown to them")
    invite_parser.add_argument("--admin", action="store_true", help="make them an administrator")
    invite_parser.add_argument("--no-email", action="store_true", help="only print the link")

    recover_parser = commands.add_parser(
        "recover",
        help="a one-time link for someone who lost every passkey: prints it",
        description="Prints a short-lived, one-time link with which the person creates a new "
        "passkey; using it signs them out everywhere else. They are emailed that a link was "
        "issued, but not the link: hand it over through a channel you trust.",
    )
    recover_parser.add_argument("email", help="the person's username")
    recover_parser.add_argument(
        "--email-link", action="store_true", help="email the link itself to the person"
    )
    return [Command(invite_parser, invite), Command(recover_parser, recover)]


def invite(args: argparse.Namespace) -> int:
    from threshold.accounts.notices import delivers
    from threshold.audit.actions import Origin
    from threshold.core import errors
    from threshold.enrollment.actions import do_invite
    from threshold.enrollment.bulk import check_row
    from threshold.enrollment.notices import link_was_emailed

    # The portal's and the CSV import's rules for an address and a name.
    problem = check_row(args.email, args.name or "")
    if problem:
        print(f"threshold: {problem}", file=sys.stderr)
        return 2
    try:
        created = do_invite(
            args.email,
            Origin.cli(),
            full_name=args.name,
            is_administrator=args.admin,
            send_email=not args.no_email,
        )
    except errors.AccountLocked:
        return refused_locked(args.email)
    except errors.AccountDisabled:
        print(f"threshold: {args.email} is deactivated: no link was issued.", file=sys.stderr)
        return 1
    except errors.AlreadyEnrolled:
        print(
            f"threshold: {args.email} can already sign in: they add devices themselves with "
            "Settings, Set up another. If they lost every passkey: "
            f"`threshold recover {args.email}`.",
            file=sys.stderr,
        )
        if args.admin:
            print(
                f"threshold: --admin: to make them an administrator: "
                f"`threshold users role {args.email} admin`.",
                file=sys.stderr,
            )
        return 1
    what = "Created" if created.user_created else "Invited existing account"
    if not created.user_created:
        _existing_account(created.user, args)
    print(
        f"{what} {created.user.username}. One-time enrollment link "
        f"(expires {created.invite.expires_at:%Y-%m-%d %H:%M} UTC):"
    )
    print(created.link)
    if not args.no_email and delivers() and not link_was_emailed(created.invite):
        print(
            f"The link could not be emailed to {created.user.email} (see the error above): give "
            "it to them through a channel you trust.",
            file=sys.stderr,
        )
        return 1
    return 0


def _existing_account(user: User, args: argparse.Namespace) -> None:
    """What ``--admin`` and ``--name`` do for an account that was invited before: the role is
    given (audited, as ``users role`` gives it); the name stays, and the operator is told."""
    from django.db import transaction

    from threshold.accounts.actions import do_set_role
    from threshold.accounts.models import Role
    from threshold.audit.actions import Origin

    if args.admin:
        with transaction.atomic():
            made = do_set_role(user, Role.ADMINISTRATOR, Origin.cli())
        if made:
            print(f"Made {user.username} an administrator.")
    if args.name and args.name != user.full_name:
        print(
            f"threshold: --name: {user.username} already has an account, whose name stays "
            f"{printable(user.full_name or '(none)')}; change it in the admin portal.",
            file=sys.stderr,
        )


def recover(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.accounts.notices import delivers
    from threshold.audit.actions import Origin
    from threshold.core import errors
    from threshold.enrollment.actions import do_issue_recovery

    user = get_user(args.email)
    if user is None:
        return no_account(args.email)
    try:
        issued = do_issue_recovery(user, Origin.cli(), email_link=args.email_link)
    except errors.AccountLocked:
        return refused_locked(user.username)
    except errors.AccountDisabled:
        print(
            f"threshold: {user.username} is deactivated: no recovery link was issued",
            file=sys.stderr,
        )
        return 1
    if not user.email:
        print(f"{user.username} has no email address: nobody was notified.")
    elif args.email_link and (issued.notified or not delivers()):
        # Without SMTP, "emailed" is a file under var/mail (`make run`'s default).
        print(f"The link was emailed to {user.email}.")
    elif args.email_link:
        print(
            f"The link could not be emailed to {user.email} (see the error above): give it to "
            "them through a channel you trust."
        )
    elif issued.notified or not delivers():
        print(
            f"A notice was emailed to {user.email}, without the link. Check that you are talking "
            "to the person, then give them the link through a channel you trust."
        )
    else:
        print(
            f"The notice could not be emailed to {user.email} (see the error above). Check that "
            "you are talking to the person, then give them the link through a channel you trust."
        )
    print(
        f"One-time recovery link for {user.username} "
        f"(expires {issued.invite.expires_at:%Y-%m-%d %H:%M} UTC):"
    )
    print(issued.link)
    return 0
