"""The ``threshold`` command: operate a Threshold server.

    threshold invite EMAIL --name "Full Name" [--admin] [--no-email]
    threshold recover EMAIL [--email-link]   a one-time link for someone who lost every passkey
    threshold users
    threshold users lock EMAIL [--reason TEXT] | unlock EMAIL
    threshold policy [show | set NAME=VALUE ...]
    threshold audit [--limit N]
    threshold bootstrap          first administrator + enrollment link, when needed
    threshold serve              the production server (gunicorn)
    threshold cleanup            drop expired sessions and abandoned ceremonies
    threshold inspect registration|authentication RESPONSE.json ...   explain a ceremony
    threshold migrate | check | shell | dbshell | ...   Django's management commands

Every command that changes something goes through the same audited actions as
the web pages.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shlex
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMANDS = (
    "invite",
    "recover",
    "users",
    "policy",
    "audit",
    "bootstrap",
    "serve",
    "cleanup",
    "inspect",
)
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


def _setup() -> None:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threshold",
        description="Operate a Threshold passwordless identity provider.",
        epilog=f"Django management commands also work: {', '.join(DJANGO_COMMANDS)}, ...",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    invite = sub.add_parser("invite", help="invite a person: prints a one-time enrollment link")
    invite.add_argument("email", help="the person's work email; it is also their username")
    invite.add_argument("--name", default="", help="full name, as shown to them")
    invite.add_argument("--admin", action="store_true", help="make them an administrator")
    invite.add_argument("--no-email", action="store_true", help="only print the link")

    recover = sub.add_parser(
        "recover",
        help="a one-time link for someone who lost every passkey: prints it",
        description="Prints a short-lived, one-time link with which the person creates a new "
        "passkey; using it signs them out everywhere else. They are emailed that a link was "
        "issued, but not the link: hand it over through a channel you trust.",
    )
    recover.add_argument("email", help="the person's username")
    recover.add_argument(
        "--email-link", action="store_true", help="email the link itself to the person"
    )

    users = sub.add_parser("users", help="list people and their passkeys; lock or unlock one")
    users_sub = users.add_subparsers(dest="users_command")
    lock = users_sub.add_parser(
        "lock", help="stop a person signing in by any path; ends their sessions and links"
    )
    lock.add_argument("email", help="the person's username")
    lock.add_argument(
        "--reason", default="", help="why, for the audit log (at most 200 characters)"
    )
    unlock = users_sub.add_parser("unlock", help="let a locked person sign in again")
    unlock.add_argument("email", help="the person's username")

    policy = sub.add_parser("policy", help="show or change the organisation policy")
    policy_sub = policy.add_subparsers(dest="policy_command")
    policy_sub.add_parser("show", help="print every setting with its value (the default)")
    setter = policy_sub.add_parser("set", help="change settings, e.g. passkey_limit=5")
    setter.add_argument("assignments", nargs="+", metavar="NAME=VALUE")

    audit = sub.add_parser("audit", help="show the latest audit events")
    audit.add_argument("--limit", type=int, default=30)

    sub.add_parser("bootstrap", help="create the first administrator and print their link")
    serve = sub.add_parser("serve", help="serve Threshold with gunicorn")
    serve.add_argument(
        "--bootstrap",
        action="store_true",
        help="also do what `threshold bootstrap` does, and print its link last, once the "
        "server is ready (what `make run` uses)",
    )
    sub.add_parser("cleanup", help="remove expired sessions and ceremonies")
    _add_inspect(sub)
    return parser


# base64url values start with "-" once in 64: argparse would read such a value
# as an option, so ``--challenge -AbC`` is joined into ``--challenge=-AbC``.
INSPECT_BASE64URL_OPTIONS = ("--challenge", "--public-key")
# A credential.toJSON() is a few kilobytes and a PEM file a few certificates.
INSPECT_MAX_FILE_BYTES = 1024 * 1024


def _add_inspect(sub: Any) -> None:
    inspect = sub.add_parser(
        "inspect",
        help="verify a credential.toJSON() as the server would, and explain the verdict",
        description="Prints one JSON object. Exit status: 0 accept, 1 reject, 2 usage error.",
    )
    kinds = inspect.add_subparsers(dest="kind", required=True)
    for kind in ("registration", "authentication"):
        parser = kinds.add_parser(kind)
        parser.add_argument("response", metavar="RESPONSE.json", help="at most 1 MiB")
        parser.add_argument("--rp-id", required=True)
        parser.add_argument(
            "--origin",
            action="append",
            required=True,
            dest="origins",
            help="https://host on the RP ID, or an Android app's android:apk-key-hash:...",
        )
        parser.add_argument(
            "--related-origin",
            action="append",
            default=[],
            dest="related_origins",
            help="a web origin the RP ID's /.well-known/webauthn lists",
        )
        parser.add_argument(
            "--challenge",
            required=True,
            help="base64url, as sent in the options (one starting with - works too, "
            "or write --challenge=-AbC...)",
        )
        parser.add_argument("--require-user-verification", action="store_true")
        parser.add_argument("--allow-cross-origin", action="store_true")
        parser.add_argument("--top-origin", action="append", default=[], dest="top_origins")
        parser.add_argument("--at", help="ISO 8601 instant for certificate validity")
        parser.add_argument(
            "--alg",
            type=int,
            action="append",
            dest="algorithms",
            metavar="COSE_ALG",
            help="an algorithm the server allows (repeat for more; default: all supported)",
        )
        if kind == "registration":
            parser.add_argument(
                "--trust-anchor",
                action="append",
                default=[],
                metavar="FILE.pem",
                help="at most 1 MiB",
            )
            parser.add_argument("--require-trusted-attestation", action="store_true")
        else:
            parser.add_argument("--public-key", required=True, help="COSE_Key, base64url")
            parser.add_argument("--sign-count", type=int, required=True)
            parser.add_argument("--backup-eligible", action="store_true")


def _join_base64url_values(argv: list[str]) -> list[str]:
    """``inspect`` arguments with ``--challenge VALUE`` written ``--challenge=VALUE``."""
    joined: list[str] = []
    values = iter(argv)
    for arg in values:
        if arg == "--":
            joined.append(arg)
            joined.extend(values)
            break
        if arg in INSPECT_BASE64URL_OPTIONS:
            value = next(values, None)
            joined.append(arg if value is None else f"{arg}={value}")
        else:
            joined.append(arg)
    return joined


def _read_file(path: str) -> bytes:
    """The file's bytes, reading at most one byte past the limit (``/dev/zero`` is endless)."""
    with open(path, "rb") as handle:
        data = handle.read(INSPECT_MAX_FILE_BYTES + 1)
    if len(data) > INSPECT_MAX_FILE_BYTES:
        raise ValueError("larger than 1 MiB")
    return data


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        # Anything else is a Django management command (migrate, check, ...).
        _setup()
        from django.core.management import execute_from_command_line

        execute_from_command_line(["threshold", *argv])
        return 0
    if argv and argv[0] == "inspect":
        argv = _join_base64url_values(argv)
    args = _parser().parse_args(argv)
    if args.command == "inspect":
        return cmd_inspect(args)  # plain core: no settings, no database
    _setup()
    handler = globals()[f"cmd_{args.command}"]
    return int(handler(args) or 0)


def cmd_invite(args: argparse.Namespace) -> int:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    from threshold.audit.actions import Origin
    from threshold.core import errors
    from threshold.enrollment.actions import do_invite

    try:
        validate_email(args.email)
    except ValidationError:
        print(f"threshold: {args.email!r} is not an email address", file=sys.stderr)
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
        return _refused_locked(args.email)
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
        return 1
    what = "Created" if created.user_created else "Invited existing account"
    print(
        f"{what} {created.user.username}. One-time enrollment link "
        f"(expires {created.invite.expires_at:%Y-%m-%d %H:%M} UTC):"
    )
    print(created.link)
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from threshold.accounts.access import get_user
    from threshold.audit.actions import Origin
    from threshold.core import errors
    from threshold.enrollment.actions import do_issue_recovery

    user = get_user(args.email)
    if user is None:
        return _no_account(args.email)
    try:
        issued = do_issue_recovery(user, Origin.cli(), email_link=args.email_link)
    except errors.AccountLocked:
        return _refused_locked(user.username)
    except errors.AccountDisabled:
        print(
            f"threshold: {user.username} is deactivated: no recovery link was issued",
            file=sys.stderr,
        )
        return 1
    if not user.email:
        print(f"{user.username} has no email address: nobody was notified.")
    elif args.email_link:
        print(f"The link was emailed to {user.email}.")
    else:
        print(
            f"A notice was emailed to {user.email}, without the link. Check that you are talking "
            "to the person, then give them the link through a channel you trust."
        )
    print(
        f"One-time recovery link for {user.username} "
        f"(expires {issued.invite.expires_at:%Y-%m-%d %H:%M} UTC):"
    )
    print(issued.link)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from cryptography import x509

    from threshold.core import ceremony, inspection
    from threshold.core.encoding import b64url_decode

    def usage(message: str) -> int:
        print(f"threshold inspect: {message}", file=sys.stderr)
        return 2

    try:
        challenge = b64url_decode(args.challenge.strip())
    except ValueError:
        return usage("--challenge must be base64url")
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            return usage("--at must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z")
        if at.tzinfo is None:
            return usage("--at needs a time zone, e.g. 2026-01-31T12:00:00Z")
        try:
            # Certificates are checked in UTC: 0001-01-01T00:00:00+14:00 is before year 1.
            at.astimezone(UTC).timestamp()
        except (OverflowError, ValueError, OSError):
            return usage("--at is out of range: it must fall between the years 1 and 9999 in UTC")
    for origin in args.origins:
        problem = ceremony.origin_problem(args.rp_id, origin)
        if problem:
            return usage(problem)
    for origin in args.related_origins:
        problem = ceremony.related_origin_problem(origin)
        if problem:
            return usage(problem)
    anchors: list[x509.Certificate] = []
    for path in getattr(args, "trust_anchor", []):
        try:
            anchors.extend(x509.load_pem_x509_certificates(_read_file(path)))
        except (OSError, ValueError) as exc:
            return usage(f"trust anchor {path}: {exc}")
    try:
        raw = _read_file(args.response)
    except OSError as exc:
        return usage(f"{args.response}: {exc.strerror}")
    except ValueError as exc:
        return usage(f"{args.response}: {exc}")
    try:
        document: object = json.loads(raw)
    except (ValueError, RecursionError):
        document = None  # a malformed credential: rejected with a reason below
    params = inspection.Ceremony(
        rp_id=args.rp_id,
        origins=args.origins,
        challenge=challenge,
        require_user_verification=args.require_user_verification,
        allow_cross_origin=args.allow_cross_origin,
        top_origins=args.top_origins,
        related_origins=args.related_origins,
        at=at,
        algorithms=tuple(args.algorithms or ceremony.SUPPORTED_ALGORITHMS),
        **(
            {
                "trust_anchors": anchors,
                "require_trusted_attestation": args.require_trusted_attestation,
            }
            if args.kind == "registration"
            else {}
        ),
    )
    if args.kind == "registration":
        report = inspection.inspect_registration(document, params)
    else:
        try:
            public_key = b64url_decode(args.public_key.strip())
            ceremony.public_key_algorithm(public_key)
        except ValueError:
            return usage("--public-key must be a base64url COSE_Key")
        report = inspection.inspect_authentication(
            document,
            params,
            public_key=public_key,
            sign_count=args.sign_count,
            backup_eligible=args.backup_eligible,
        )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["verdict"] == "accept" else 1


def cmd_users(args: argparse.Namespace) -> int:
    if args.users_command == "lock":
        return _lock(args.email, args.reason)
    if args.users_command == "unlock":
        return _unlock(args.email)
    from threshold.accounts.access import list_users

    rows = [("USERNAME", "NAME", "ROLE", "STATUS", "PASSKEYS")]
    for user in list_users():
        rows.append(
            (
                user.username,
                user.full_name,
                "administrator" if user.is_administrator else "member",
                "deactivated" if not user.is_active else "locked" if user.is_locked else "active",
                str(user.passkey_count),  # type: ignore[attr-defined]
            )
        )
    _table(rows)
    return 0


def _lock(username: str, reason: str) -> int:
    from threshold.accounts.access import get_user
    from threshold.accounts.actions import do_lock_user
    from threshold.audit.actions import Origin

    user = get_user(username)
    if user is None:
        return _no_account(username)
    try:
        locked = do_lock_user(user, Origin.cli(), reason)
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
    return 0


def _unlock(username: str) -> int:
    from threshold.accounts.access import get_user
    from threshold.accounts.actions import do_unlock_user
    from threshold.audit.actions import Origin

    user = get_user(username)
    if user is None:
        return _no_account(username)
    if not do_unlock_user(user, Origin.cli()):
        print(f"{user.username} is not locked.")
        return 0
    print(f"Unlocked {user.username}: they can sign in with their passkeys again.")
    return 0


def _no_account(username: str) -> int:
    print(f"threshold: there is no account {username!r}", file=sys.stderr)
    return 2


def _refused_locked(username: str) -> int:
    print(
        f"threshold: {username} is locked: no link was issued. "
        f"`threshold users unlock {username}` first.",
        file=sys.stderr,
    )
    return 1


def cmd_policy(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.core.policy import PolicyError
    from threshold.policy.actions import do_update_policy, get_policy

    policy = get_policy()
    if args.policy_command == "set":
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
    rows = [("SETTING", "VALUE")]
    for name, value in policy.as_json().items():
        rows.append((name, ",".join(map(str, value)) if isinstance(value, list) else str(value)))
    _table(rows)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from threshold.audit.access import list_events

    rows = [("TIME (UTC)", "ACTION", "REASON", "SUBJECT", "IP", "VIA")]
    for event in list_events(args.limit):
        rows.append(
            (
                f"{event.at:%Y-%m-%d %H:%M:%S}",
                event.action,
                event.reason,
                event.subject_label,
                event.ip or "",
                event.via,
            )
        )
    _table(rows)
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    lines = _bootstrap()
    if lines is None:
        return 1
    print(_framed(lines), flush=True)
    return 0


def _bootstrap() -> list[str] | None:
    """The first administrator's new enrollment link, or where to sign in once one has a passkey.

    The lines to print; None when refused (the reason is printed to stderr).
    """
    from django.conf import settings

    from threshold.accounts.access import first_administrator, has_enrolled_administrator
    from threshold.audit.actions import Origin
    from threshold.core import errors
    from threshold.enrollment.actions import do_invite

    if has_enrolled_administrator():
        return [f"An administrator is enrolled. Sign in at {settings.THRESHOLD.public_url}/sign-in"]
    admin = first_administrator()
    email = admin.username if admin else settings.THRESHOLD.admin_email
    try:
        created = do_invite(
            email, Origin.cli(), full_name="Administrator", is_administrator=True, send_email=False
        )
    except errors.AccountLocked:
        _refused_locked(email)
        return None
    return [
        f"Administrator: {created.user.username}",
        "Open this one-time link in your browser to create the administrator's passkey:",
        "",
        f"    {created.link}",
        "",
        f"It expires {created.invite.expires_at:%Y-%m-%d %H:%M} UTC. For a new link, run:",
        f"    {_command_path()} bootstrap",
    ]


def _framed(lines: list[str]) -> str:
    rule = "=" * 72
    return "\n".join([rule, *lines, rule])


def _command_path() -> str:
    """This command's full path, to copy and paste: a virtualenv's bin/ is rarely on PATH."""
    candidates = [Path(sys.argv[0]).absolute(), Path(sys.executable).parent / "threshold"]
    for path in candidates:
        if path.name == "threshold" and path.is_file() and os.access(path, os.X_OK):
            return shlex.quote(str(path))
    return "threshold"


def cmd_cleanup(args: argparse.Namespace) -> int:
    from threshold.fallback.actions import delete_stale_counters
    from threshold.passkeys.pending import delete_expired
    from threshold.web.sessions import SessionStore

    SessionStore.clear_expired()
    ceremonies = delete_expired()
    counters = delete_stale_counters()
    print(
        f"Removed expired sessions, {ceremonies} abandoned ceremonies and "
        f"{counters} old sign-in failure counters."
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from django.conf import settings
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from gunicorn.app.base import BaseApplication

    from threshold.core.metadata import default_store
    from threshold.passkeys.pending import delete_expired
    from threshold.wsgi import application

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        print("threshold: the database needs migrating: run `threshold migrate`", file=sys.stderr)
        return 2
    bootstrap = _bootstrap() if args.bootstrap else None
    delete_expired()
    connection.close()  # each worker opens its own after the fork
    # Parse FIDO metadata once in the master: the workers inherit it when they fork.
    default_store()
    config = settings.THRESHOLD
    # Workers that have loaded the application, counted across the fork. The last
    # of the first ones prints the bootstrap link, below every start-up line, so
    # that it is what someone who just ran `make run` sees when the server is ready.
    ready = multiprocessing.Value("i", 0)

    def post_worker_init(worker: Any) -> None:
        with ready.get_lock():
            ready.value += 1
            last = ready.value == config.workers
        if last and bootstrap:
            ready_line = f"Threshold is ready at {config.public_url}"
            print(_framed([ready_line, "", *bootstrap]), flush=True)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{config.listen_host}:{config.listen_port}",
                "workers": config.workers,
                "worker_class": "sync",
                "timeout": 30,
                "graceful_timeout": 10,
                "keepalive": 5,
                "max_requests": 10000,
                "max_requests_jitter": 1000,
                "accesslog": "-",
                # Enrollment and recovery links carry their token in the path.
                "logger_class": "threshold.cli.accesslog.RedactingLogger",
                "errorlog": "-",
                "limit_request_line": 4094,
                "limit_request_fields": 50,
                "proc_name": "threshold",
                # No control socket (gunicornc): nothing here uses it, and its
                # default path, one per user, is one that two servers would fight over.
                "control_socket_disable": True,
                "post_worker_init": post_worker_init,
                "forwarded_allow_ips": "127.0.0.1" if config.proxy_ssl_header else "",
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return application

    print(
        f"Threshold serving on http://{config.listen_host}:{config.listen_port} "
        f"(public URL {config.public_url})",
        flush=True,
    )
    Server().run()
    return 0


def _printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\u202e``), for a terminal.

    Names are checked when they come in (``core/names.py``), but rows written
    before those rules, or by other means, must not move the cursor, recolour the
    terminal (U+009B starts an escape sequence) or reverse what follows (U+202E).
    """
    return "".join(
        character.encode("unicode_escape").decode("ascii")
        if unicodedata.category(character)[0] == "C"
        else character
        for character in text
    )


def _table(rows: Sequence[Sequence[str]]) -> None:
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


if __name__ == "__main__":
    sys.exit(main())
