"""Django's management commands (``threshold migrate``, ``check``, ``shell``, ...).

Not registered in the parser: ``threshold.cli.main`` passes a first word that is one of
these to Django, which has its own parsers and help. Any other first word is no command
(a usage error, exit 2), and the commands that would change accounts around Threshold's
audited actions are refused with what to use instead.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

# The ones ``threshold --help`` names.
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
# Passed on too, not named: what Threshold's own start-up and its developers run.
OTHER_DJANGO_COMMANDS = ("collectstatic", "sqlmigrate", "squashmigrations", "optimizemigration")

# Django's commands that would bypass Threshold's actions (no audit row, no policy, no
# email): refused, with what does the job.
INSTEAD = {
    "createsuperuser": "an administrator is invited: `threshold invite EMAIL --admin`",
    "changepassword": (
        "a fallback password is set by its owner in Settings; "
        "for someone locked out, `threshold recover EMAIL`"
    ),
    "clearsessions": "`threshold cleanup` ends expired sessions and what apps were given in them",
    "flush": "it would delete every account; start again with a new THRESHOLD_VAR_DIR instead",
    "remove_stale_contenttypes": "`threshold migrate` keeps the content types",
    "loaddata": "people come in through `threshold users import FILE`",
    "dumpdata": (
        "it would print every secret the database holds; back up the database as "
        "docs/operations.md says"
    ),
    "runserver": "`threshold serve` is the server",
    "testserver": "`threshold serve` is the server",
}


def passes_on(command: str) -> bool:
    """Whether ``threshold COMMAND`` is Django's (or refused in Django's place)."""
    return command in DJANGO_COMMANDS or command in OTHER_DJANGO_COMMANDS or command in INSTEAD


def run(argv: list[str]) -> int:
    """Run ``argv`` (``["migrate", "--noinput"]``) as ``django-admin`` would."""
    from django.core.management import execute_from_command_line

    instead = INSTEAD.get(argv[0])
    if instead is not None:
        print(f"threshold: `{argv[0]}` is not used with Threshold: {instead}.", file=sys.stderr)
        return 2
    if argv[0] == "diffsettings":
        _diffsettings().run_from_argv(["threshold", *argv])
        return 0
    execute_from_command_line(["threshold", *argv])
    return 0


def _diffsettings() -> Any:
    """Django's ``diffsettings``, with the values of secret settings (the secret key, the
    SMTP and database passwords, keys) replaced as Django's error pages replace them."""
    from django.conf import Settings, global_settings, settings
    from django.core.management.commands import diffsettings
    from django.views.debug import SafeExceptionReporterFilter

    cleanse = SafeExceptionReporterFilter().cleanse_setting

    def shown(module: Any) -> dict[str, str]:
        values = {}
        for name in dir(module):
            if name.startswith("_") or not name.isupper():
                continue
            value = getattr(module, name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            values[name] = repr(cleanse(name, value))
        return values

    class Command(diffsettings.Command):
        def handle(self, **options: Any) -> str:
            default = options["default"]
            output = {"hash": self.output_hash, "unified": self.output_unified}[options["output"]]
            defaults = Settings(default) if default else global_settings
            loaded = settings._wrapped  # type: ignore[misc]  # noqa: SLF001 - as Django's does
            return "\n".join(output(shown(loaded), shown(defaults), **options))

    return Command()
