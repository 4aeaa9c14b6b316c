"""``threshold serve`` (gunicorn) and ``threshold bootstrap`` (the first administrator)."""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import shlex
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import framed, refused_locked

if TYPE_CHECKING:
    from threshold.core.metadata import MetadataStore

T = TypeVar("T")

# How the server runs, whatever it serves (bench/floor.py serves its floor with these too).
GUNICORN_SETTINGS: dict[str, Any] = {
    # gthread with one thread: a request at a time per worker, as sync, but connections are
    # kept alive between requests (a proxy's, or a browser's options then result), which
    # saved 0.2 ms of CPU per sign-in (docs/operations.md, "Serving"); answered in the
    # worker's main thread, without gthread's hand-over to its one pool thread.
    "worker_class": "threshold.cli.worker.InlineThreadWorker",
    "threads": 1,
    "timeout": 30,
    "graceful_timeout": 10,
    "keepalive": 5,
    "max_requests": 10000,
    "max_requests_jitter": 1000,
    "accesslog": "-",
    "errorlog": "-",
    # Enrollment and recovery links carry their token in the path; successful passkey
    # sign-in requests are not logged (the audit log has them).
    "logger_class": "threshold.cli.accesslog.RedactingLogger",
    "limit_request_line": 4094,
    "limit_request_fields": 50,
    # No control socket (gunicornc): nothing here uses it, and its default
    # path, one per user, is one that two servers would fight over.
    "control_socket_disable": True,
}


def register(commands: Subcommands) -> list[Command]:
    bootstrap_parser = commands.add_parser(
        "bootstrap", help="create the first administrator and print their link"
    )
    serve_parser = commands.add_parser("serve", help="serve Threshold with gunicorn")
    serve_parser.add_argument(
        "--bootstrap",
        action="store_true",
        help="also do what `threshold bootstrap` does, and print its link last, once the "
        "server is ready (what `make run` uses)",
    )
    return [Command(bootstrap_parser, bootstrap), Command(serve_parser, serve)]


def bootstrap(args: argparse.Namespace) -> int:
    lines = _bootstrap()
    if lines is None:
        return 1
    print(framed(lines), flush=True)
    return 0


def _bootstrap() -> list[str] | None:
    """The first administrator's new enrollment link, or where to sign in once one has a passkey.

    The lines to print; None when refused (the reason is printed to stderr).
    """
    from django.conf import settings
    from django.db import transaction

    from threshold.accounts.access import (
        first_administrator,
        get_user,
        has_enrolled_administrator,
    )
    from threshold.accounts.actions import do_set_role
    from threshold.accounts.models import Role
    from threshold.audit.actions import Origin
    from threshold.core import errors
    from threshold.enrollment.actions import do_invite

    if has_enrolled_administrator():
        return [f"An administrator is enrolled. Sign in at {settings.THRESHOLD.public_url}/sign-in"]
    admin = first_administrator()
    email = admin.username if admin else settings.THRESHOLD.admin_email
    try:
        with transaction.atomic():
            existing = get_user(email) if admin is None else None
            promoted = False
            if existing is not None and existing.is_active:
                # THRESHOLD_ADMIN_EMAIL names someone invited before (without --admin, or
                # from a CSV file) while there is no administrator: they are the one.
                promoted = do_set_role(existing, Role.ADMINISTRATOR, Origin.cli())
            try:
                created = do_invite(
                    email,
                    Origin.cli(),
                    full_name="Administrator",
                    is_administrator=True,
                    send_email=False,
                )
            except errors.AlreadyEnrolled:
                if not promoted:
                    raise
                # They can sign in already: the role was all they lacked.
                return [
                    f"Administrator: {email}, made an administrator now.",
                    f"Sign in at {settings.THRESHOLD.public_url}/sign-in",
                ]
    except errors.AccountLocked:
        refused_locked(email)
        return None
    except errors.AccountDisabled:
        print(
            f"threshold: {email} is deactivated: reactivate them (`threshold users reactivate "
            f"{email}`), or set THRESHOLD_ADMIN_EMAIL to another address.",
            file=sys.stderr,
        )
        return None
    except errors.AlreadyEnrolled:
        print(
            f"threshold: {email} can sign in without a passkey (their password and "
            "authenticator app): they add one under Settings, Security Methods. If they cannot "
            f"sign in: `threshold recover {email}`.",
            file=sys.stderr,
        )
        return None
    return [
        f"Administrator: {created.user.username}",
        "Open this one-time link in your browser to create the administrator's passkey:",
        "",
        f"    {created.link}",
        "",
        f"It expires {created.invite.expires_at:%Y-%m-%d %H:%M} UTC. For a new link, run:",
        f"    {_command_line('bootstrap')}",
        *(
            ["with this server's DATABASE_URL in the environment."]
            if os.environ.get("DATABASE_URL")
            else []
        ),
    ]


# What shapes a link's address (the origin, the port) and which database a command opens. A
# command run without them prints links to http://localhost:8000 or opens another database.
# None holds a secret; DATABASE_URL may, so it is named, not printed.
_LINK_SETTINGS = (
    "THRESHOLD_VAR_DIR",
    "THRESHOLD_RP_ID",
    "THRESHOLD_ORIGINS",
    "THRESHOLD_PUBLIC_URL",
    "THRESHOLD_PORT",
)


def _command_line(*arguments: str) -> str:
    """A ``threshold`` command to copy and paste, with the settings this process was given
    (the var directory as resolved: pasted elsewhere, a relative one would be another)."""
    from django.conf import settings as django_settings

    given = {name: value for name in _LINK_SETTINGS if (value := os.environ.get(name))}
    if "THRESHOLD_VAR_DIR" in given:
        given["THRESHOLD_VAR_DIR"] = str(django_settings.THRESHOLD.var_dir)
    settings = [f"{name}={shlex.quote(value)}" for name, value in given.items()]
    return " ".join([*settings, _command_path(), *map(shlex.quote, arguments)])


def _command_path() -> str:
    """This command's full path, to copy and paste: a virtualenv's bin/ is rarely on PATH."""
    candidates = [Path(sys.argv[0]).absolute(), Path(sys.executable).parent / "threshold"]
    for path in candidates:
        if path.name == "threshold" and path.is_file() and os.access(path, os.X_OK):
            return shlex.quote(str(path))
    return "threshold"


def _collect_static_files() -> None:
    """The static files, content-hashed and compressed, into STATIC_ROOT (what WhiteNoise serves).

    Under a lock: servers that share a var directory may start together.
    """
    import fcntl

    from django.conf import settings
    from django.core.management import call_command

    root = Path(settings.STATIC_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    with (root.parent / "static.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        call_command("collectstatic", interactive=False, verbosity=0)


def _return_free_memory() -> None:
    """Give the C heap's free pages back to the system before the workers fork.

    Parsing the FIDO metadata (a 9 MB JSON file) leaves about 3 MB of freed memory in the
    heap that glibc keeps; without this, every worker counts it in its resident memory.
    Only glibc has ``malloc_trim``: elsewhere this does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim(0)


def _in_a_child(work: Callable[[], T]) -> T:
    """``work()`` (a module-level function) run in a child process forked for it; its result,
    or its exception, sent back pickled.

    For start-up's one-off work, which makes tens of MB of short-lived objects and keeps
    little of them. Freed in the master, they would leave its heap fragmented (Python's
    allocator keeps an arena while one object in it lives), and every worker, forked from
    the master, would start with those pages: 4-7 MB more per worker, measured
    (bench/README.md, "Workers' memory"). Where processes cannot be forked, it runs here.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        return work()
    from django.db import connections

    # Nothing the child would share: a database connection (its close would end the master's
    # PostgreSQL session), output buffered but not yet written (written twice).
    connections.close_all()
    sys.stdout.flush()
    sys.stderr.flush()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        return pool.submit(work).result()


@dataclass(frozen=True)
class _Prepared:
    needs_migrating: bool
    metadata: MetadataStore | None = None


def _prepare() -> _Prepared:
    """Start-up's one-off work, in a child (``_in_a_child``): the migration check, the static
    files collected, expired ceremonies deleted, and the FIDO metadata parsed (a 9 MB JSON
    file), which the master keeps for its workers."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from threshold.core.metadata import read_default_store
    from threshold.passkeys.pending import delete_expired

    try:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            return _Prepared(needs_migrating=True)
        _collect_static_files()
        delete_expired()
        return _Prepared(needs_migrating=False, metadata=read_default_store())
    finally:
        connection.close()


def serve(args: argparse.Namespace) -> int:
    from django.conf import settings
    from django.db import connection
    from gunicorn.app.base import BaseApplication

    from threshold.cli.checkpoints import leave_to_a_thread
    from threshold.core.metadata import use_default_store
    from threshold.sso.keys import KeysError, all_keys
    from threshold.sso.logout import retry_logouts

    prepared = _in_a_child(_prepare)
    if prepared.needs_migrating or prepared.metadata is None:
        print("threshold: the database needs migrating: run `threshold migrate`", file=sys.stderr)
        return 2
    # Parsed once for the master: the workers inherit it when they fork.
    use_default_store(prepared.metadata)
    try:
        # In the master: made once (var/oidc-keys.json) and checked before any worker signs.
        all_keys()
    except KeysError as exc:
        print(f"threshold: {exc}", file=sys.stderr)
        return 2
    # After collecting: WhiteNoise lists the collected files when the application loads.
    from threshold.wsgi import application

    bootstrap = _bootstrap() if args.bootstrap else None
    connection.close()  # each worker opens its own after the fork
    # Everything loaded so far (Django, the application, the metadata) lives as long as the
    # server: the garbage collector need not walk it again in every worker, nor write to
    # the pages the workers share with the master.
    gc.freeze()
    _return_free_memory()
    config = settings.THRESHOLD
    # Workers that have loaded the application, counted across the fork. The last
    # of the first ones prints the bootstrap link, below every start-up line, so
    # that it is what someone who just ran `make run` sees when the server is ready.
    ready = multiprocessing.Value("i", 0)

    def post_worker_init(worker: Any) -> None:
        leave_to_a_thread(settings.DATABASES["default"])
        # Back-channel logouts that failed are retried from here, not only by `threshold cleanup`.
        retry_logouts()
        with ready.get_lock():
            ready.value += 1
            last = ready.value == config.workers
        if last and bootstrap:
            ready_line = f"Threshold is ready at {config.public_url}"
            print(framed([ready_line, "", *bootstrap]), flush=True)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                **GUNICORN_SETTINGS,
                "bind": f"{config.listen_host}:{config.listen_port}",
                "workers": config.workers,
                "proc_name": "threshold",
                "post_worker_init": post_worker_init,
                # gunicorn believes X-Forwarded-Proto from the proxies Threshold trusts.
                "forwarded_allow_ips": (
                    ",".join(map(str, config.trusted_proxies)) if config.proxy_ssl_header else ""
                ),
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
