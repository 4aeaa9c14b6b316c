"""Django's management commands (``threshold migrate``, ``check``, ``shell``, ...).

Not registered in the parser: ``threshold.cli.main`` passes any first word that is
no ``threshold`` subcommand to Django, which has its own parsers and help.
"""

from __future__ import annotations

# The ones ``threshold --help`` names; every other management command works too.
DJANGO_COMMANDS = (
    "migrate",
    "showmigrations",
    "check",
    "shell",
    "dbshell",
    "sendtestemail",
    "diffsettings",
    "makemigrations",
)


def run(argv: list[str]) -> int:
    """Run ``argv`` (``["migrate", "--noinput"]``) as ``django-admin`` would."""
    from django.core.management import execute_from_command_line

    execute_from_command_line(["threshold", *argv])
    return 0
