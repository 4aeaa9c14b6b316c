"""The ``threshold`` command: operate a Threshold server.

    threshold invite EMAIL --name "Full Name" [--admin] [--no-email]
    threshold recover EMAIL [--email-link]   a one-time link for someone who lost every passkey
    threshold users [list] [--json]
    threshold users lock EMAIL [--reason TEXT] | unlock EMAIL
    threshold users import FILE|- [--dry-run] [--no-email --links-out LINKS.csv]   invite from CSV
    threshold groups [list [--json] | add NAME | remove NAME]
    threshold groups add-member NAME EMAIL | remove-member NAME EMAIL
    threshold policy [show | set NAME=VALUE ... | check [NAME=VALUE ...]]
    threshold audit [--limit N]
    threshold bootstrap          first administrator + enrollment link, when needed
    threshold serve              the production server (gunicorn)
    threshold cleanup            drop expired sessions and used challenges
    threshold inspect registration|authentication RESPONSE.json ...   explain a ceremony
    threshold apps [list [--json] | add NAME --redirect-uri URI ... [--json] | remove CLIENT_ID |
                    change CLIENT_ID [--name N] [--redirect-uri URI ...] ... |
                    rotate-secret CLIENT_ID | assign CLIENT_ID (--everyone | --group NAME ...)]
    threshold keys [list | rotate]   the keys that sign ID tokens
    threshold migrate | check | shell | dbshell | ...   Django's management commands (some)

Every command that changes something goes through the same audited actions as
the web pages.

This module assembles the parser from the command groups in ``threshold/cli/commands/``
(their package docstring says how a group registers), sets Django up for the commands
that need it, and runs the Command the parsed arguments select.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import dataclass

from threshold.cli.commands import (
    Command,
    Registration,
    apps,
    audit,
    cleanup,
    enrollment,
    groups,
    inspect,
    management,
    policy,
    report,
    serve,
    users,
)
from threshold.cli.output import printable

# In the order `threshold --help` lists them.
GROUPS: tuple[Registration, ...] = (
    enrollment.register,
    users.register,
    groups.register,
    policy.register,
    audit.register,
    report.register,
    serve.register,
    cleanup.register,
    inspect.register,
    apps.register,
)
# Where the parsed arguments carry the Command to run (no parser has an option of that name).
COMMAND = "threshold_command"


@dataclass(frozen=True)
class Cli:
    parser: argparse.ArgumentParser
    # The first words of threshold's own subcommands; any other goes to Django.
    names: frozenset[str]
    commands: tuple[Command, ...]


def build(groups: tuple[Registration, ...] = GROUPS) -> Cli:
    """The ``threshold`` parser, each Command set as its own parser's default."""
    parser = argparse.ArgumentParser(
        prog="threshold",
        description="Operate a Threshold passwordless identity provider.",
        epilog=f"These Django management commands also work: "
        f"{', '.join(management.DJANGO_COMMANDS)}.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True)
    commands = tuple(command for register in groups for command in register(subcommands))
    for command in commands:
        command.parser.set_defaults(**{COMMAND: command})
    return Cli(parser, frozenset(subcommands.choices), commands)


@functools.cache
def default_cli() -> Cli:
    """``build()``'s parser of every command, made once per process: a process that runs
    several commands (tests/support/commands.py forks one for each) builds it once, not 16 ms
    each time."""
    return build()


def setup_django() -> None:
    """Load the settings (exit 2 on a configuration error) and print the start-up warnings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "threshold.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        print(f"threshold: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    from django.conf import settings

    from threshold.config import start_up_warnings

    for warning in start_up_warnings(settings.THRESHOLD):
        print(f"threshold: WARNING: {warning}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    # What Threshold writes is its own: the database (live sessions, authenticator-app
    # secrets), emailed links in var/mail/, keys. Nobody else on the machine reads them.
    os.umask(os.umask(0o077) | 0o077)
    argv = list(sys.argv[1:] if argv is None else argv)
    for position, argument in enumerate(argv, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            # Bytes that are not UTF-8 arrive as lone surrogates, which no database stores.
            print(
                f"threshold: argument {position} is not UTF-8 text: {printable(argument)}",
                file=sys.stderr,
            )
            return 2
    try:
        return _run(argv)
    except Exception as exc:
        from django.db import DatabaseError

        if not isinstance(exc, DatabaseError):
            raise
        # A database that cannot be read (a truncated or foreign file, a disk error, a server
        # that refused): what it said, not a traceback.
        print(f"threshold: the database failed: {printable(str(exc))}", file=sys.stderr)
        if _needs_migrating():
            print(
                "threshold: the database needs migrating: run `threshold migrate`", file=sys.stderr
            )
        return 1


def _needs_migrating() -> bool:
    """Whether the database lacks migrations this version has (a table it has not made yet
    is the likeliest reason a command's query failed); False when that cannot be read."""
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        return bool(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    except DatabaseError:
        return False


def _run(argv: list[str]) -> int:
    cli = default_cli()
    if argv[:1] == ["help"]:
        argv = [*argv[1:], "--help"]  # `threshold help users` is `threshold users --help`
    if argv and argv[0] not in cli.names and management.passes_on(argv[0]):
        # Django's management commands (migrate, check, ...); any other word is a usage error.
        setup_django()
        from threshold.sso.logout import from_command_line

        # A command's back-channel logouts (a lock ends sessions) are sent before it exits.
        with from_command_line():
            return management.run(argv)
    args = cli.parser.parse_args(argv)
    command: Command = getattr(args, COMMAND)
    if not command.needs_django:
        return command.handle(args)
    setup_django()
    from threshold.sso.logout import from_command_line

    # A command's back-channel logouts (a lock ends sessions) are sent before it exits; the
    # server's workers (serve) send theirs from a thread.
    if args.command == "serve":
        return command.handle(args)
    with from_command_line():
        return command.handle(args)


if __name__ == "__main__":
    sys.exit(main())
