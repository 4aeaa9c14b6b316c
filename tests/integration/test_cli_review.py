"""An operator's review of the ``threshold`` command, judged by the README's table and
``docs/operations.md``.

Covered: ``--help`` and every subcommand (invite, recover, users and its subcommands, groups,
policy show/set/check, audit, report, bootstrap, cleanup, inspect, apps, keys) and the Django
commands it passes through; exit statuses (0 done, 1 refused, 2 usage); errors as words on
standard error, never a traceback, for bad input (unknown people, wrong types, out-of-range
values, odd Unicode, empty strings, duplicates, missing files, CSV files with a BOM, CRLF or a
wrong header); output that scripts can parse; the audit trail (``via=cli``) of every change;
refusals that match the admin portal's; where secrets are printed; and what re-running a
command does. Each defect it found has its test here, fixed since.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.integration.conftest import enrolled_person
from tests.support.processes import (
    DATABASE_FILE,
    REPO,
    free_port,
    newcomer_environment,
    threshold_command,
)
from tests.support.smtp import Mailbox, SMTPServer
from threshold.accounts.models import Role, User
from threshold.audit.models import AuditEvent
from threshold.cli.main import main

pytestmark = pytest.mark.django_db


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``threshold ARGV``: its exit status, standard output and standard error."""
    try:
        status = main(list(argv))
    except SystemExit as exited:
        status = exited.code if isinstance(exited.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def administrator(username: str = "ada@example.com", name: str = "Ada Lovelace") -> User:
    person = enrolled_person(username, name)
    person.user.role = Role.ADMINISTRATOR
    person.user.save(update_fields=["role"])
    return person.user


def without_start_up_warnings(err: str) -> str:
    """Standard error without the test server's own ``WARNING`` (the conformance API is on)."""
    return "".join(
        line for line in err.splitlines(keepends=True) if not line.startswith("threshold: WARNING")
    )


# --- What works, pinned: bad input is a usage error in words, everywhere ------------------------


BAD_INPUT = [
    ("users", "lock", "nobody@example.com"),
    ("users", "lock", ""),
    ("users", "lock", "ada@example.com", "--reason", "x" * 201),
    ("users", "lock", "ada@example.com", "--reason", "left\u202e"),
    ("users", "role", "ada@example.com", "superuser"),
    ("recover", "nobody@example.com"),
    ("invite", "", "--no-email"),
    ("invite", "b\u00f8b@example.com", "--no-email"),
    ("invite", "bob@example.com", "--name", "\u202eevil", "--no-email"),
    ("invite", "bob@example.com", "--name", "x" * 101, "--no-email"),
    ("groups", "add", "   "),
    ("groups", "add", "x" * 101),
    ("groups", "remove", "nope"),
    ("groups", "add-member", "nope", "ada@example.com"),
    ("policy", "set", "passkey_limit=0"),
    ("policy", "set", "passkey_limit=1.5"),
    ("policy", "set", "passkey_limit"),
    ("policy", "set", "no_such_setting=1"),
    ("policy", "set", "allowed_algorithms="),
    ("policy", "set", "aaguid_deny_list=zzz"),
    ("policy", "check", "allow_password_fallback=maybe"),
    ("audit", "--limit", "0"),
    ("audit", "--limit", "ten"),
    ("apps", "add", "", "--redirect-uri", "https://wiki.example.com/cb"),
    ("apps", "add", "Wiki", "--redirect-uri", "http://wiki.example.com/cb"),
    ("apps", "remove", "nope"),
    ("apps", "rotate-secret", "nope"),
    ("apps", "assign", "nope", "--everyone"),
    ("users", "import", "/nonexistent/people.csv"),
    ("users", "import", "people.csv", "--no-email"),
]


@pytest.mark.parametrize("argv", BAD_INPUT, ids=lambda argv: " ".join(argv)[:40])
def test_bad_input_is_a_usage_error_in_words_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    administrator()
    before = AuditEvent.objects.count()
    status, out, err = run(capsys, *argv)
    assert status == 2, (status, out, err)
    err = without_start_up_warnings(err)
    assert "Traceback" not in err
    assert err.strip()
    assert not out
    assert AuditEvent.objects.count() == before


def test_a_csv_with_a_bom_and_crlf_lines_imports_and_a_wrong_header_invites_nobody(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = tmp_path / "excel.csv"
    good.write_bytes(b"\xef\xbb\xbfEmail,Name\r\ngrace@example.com,Grace Hopper\r\n")
    links = tmp_path / "links.csv"
    status, out, _ = run(
        capsys, "users", "import", str(good), "--no-email", "--links-out", str(links)
    )
    assert status == 0, out
    assert User.objects.get(username="grace@example.com").full_name == "Grace Hopper"
    assert "/enroll/" not in out  # the links are secrets: written to the file, never printed

    for content in (b"mail;name\r\nalan@example.com;Alan\r\n", "email\n".encode("utf-16")):
        bad = tmp_path / "bad.csv"
        bad.write_bytes(content)
        status, out, err = run(capsys, "users", "import", str(bad))
        assert status == 2
        assert "Nobody was invited." in err
    assert not User.objects.filter(username="alan@example.com").exists()


# --- Defects ------------------------------------------------------------------------------------


def test_invite_admin_for_an_existing_account_is_applied_or_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, "invite", "carol@example.com", "--no-email")[0] == 0
    status, out, err = run(capsys, "invite", "carol@example.com", "--admin", "--no-email")
    carol = User.objects.get(username="carol@example.com")
    made_administrator = carol.role == Role.ADMINISTRATOR
    said_not = status != 0 and "--admin" in err + out
    assert made_administrator or said_not, (status, out, err)


def test_the_administrator_role_given_at_creation_is_in_the_audit_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, "invite", "root@example.com", "--admin", "--no-email")[0] == 0
    root = User.objects.get(username="root@example.com")
    assert root.role == Role.ADMINISTRATOR
    events = AuditEvent.objects.filter(subject=root)
    assert all(event.via == "cli" for event in events)
    assert any(Role.ADMINISTRATOR.value in json.dumps(event.detail) for event in events), [
        (event.action, event.detail) for event in events
    ]


def test_a_mistyped_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "user", "lock", "ada@example.com")
    assert status == 2, (status, err)
    assert "threshold help" not in err


def test_django_account_commands_fail_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status, _, err = run(capsys, "createsuperuser", "--noinput", "--username", "r@example.com")
    except Exception as exc:  # noqa: BLE001 - the defect: a traceback instead of words
        pytest.fail(f"traceback: {exc!r}")
    assert status in (1, 2)
    assert "threshold" in err


def test_diffsettings_does_not_print_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    secret_key = django_settings.SECRET_KEY
    status, out, _ = run(capsys, "diffsettings")
    assert status == 0
    assert secret_key not in out


def test_users_can_be_listed_for_a_script(capsys: pytest.CaptureFixture[str]) -> None:
    administrator()
    run(capsys, "invite", "bob@example.com", "--no-email")  # no name: a blank cell
    run(capsys, "users", "role", "bob@example.com", "helpdesk")  # "help desk": two words
    status, out, err = run(capsys, "users", "--json")
    assert status == 0, err
    people = {row["username"]: row for row in json.loads(out)}
    assert people["bob@example.com"]["role"] in ("helpdesk", "help desk")


def test_users_list_works_as_its_siblings_do(capsys: pytest.CaptureFixture[str]) -> None:
    administrator()
    status, out, err = run(capsys, "users", "list")
    assert status == 0, err
    assert "ada@example.com" in out


def test_removing_a_group_names_the_apps_nobody_may_use_now(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(capsys, "groups", "add", "Eng")
    status, out, _ = run(
        capsys, "apps", "add", "Wiki", "--redirect-uri", "https://wiki.example.com/cb", "--json"
    )
    client_id = json.loads(out)["client_id"]
    assert run(capsys, "apps", "assign", client_id, "--group", "Eng")[0] == 0
    status, removed, _ = run(capsys, "groups", "remove", "Eng")
    assert status == 0
    _, listed, _ = run(capsys, "apps", "list")
    assert "Wiki" in removed
    assert listed.splitlines()[1].split()[-1].lower() == "nobody"


def test_assigning_an_app_as_it_is_changes_and_records_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(capsys, "groups", "add", "Eng")
    _, out, _ = run(
        capsys, "apps", "add", "Wiki", "--redirect-uri", "https://wiki.example.com/cb", "--json"
    )
    client_id = json.loads(out)["client_id"]
    assert run(capsys, "apps", "assign", client_id, "--group", "Eng")[0] == 0
    before = AuditEvent.objects.count()
    status, again, _ = run(capsys, "apps", "assign", client_id, "--group", "eng")
    assert status == 0
    assert AuditEvent.objects.count() == before
    assert "already" in again


def test_cleanup_writes_nothing_to_standard_error_when_all_is_well(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "cleanup")
    assert status == 0
    assert "Removed" in out
    assert without_start_up_warnings(err) == ""


@pytest.fixture
def smtp(settings: Any) -> Iterator[Mailbox]:  # pytest-django's SettingsWrapper
    server = SMTPServer()
    for name, value in server.settings().items():
        setattr(settings, name, value)
    yield server.mailbox
    server.close()


@pytest.mark.django_db(transaction=True)
def test_recover_does_not_claim_a_notice_the_mail_server_refused(
    capsys: pytest.CaptureFixture[str], smtp: Mailbox
) -> None:
    administrator()
    enrolled_person("bob@example.com", "Bob Example")
    smtp.unknown.add("bob@example.com")
    sent = len(smtp.messages)
    status, out, err = run(capsys, "recover", "bob@example.com")
    assert status in (0, 1)
    assert smtp.messages[sent:] == []  # refused at RCPT: 550 No such user
    assert "One-time recovery link" in out
    assert "A notice was emailed" not in out, (out, err)


def test_bootstrap_for_an_enrolled_person_it_names_says_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    email = django_settings.THRESHOLD.admin_email
    enrolled_person(email, "IT Desk")  # a passkey, no role: there is no administrator yet
    status, out, err = run(capsys, "bootstrap")
    made_administrator = User.objects.get(username=email).role == Role.ADMINISTRATOR
    assert "without a passkey" not in err
    assert made_administrator or f"threshold users role {email} admin" in err, (status, out, err)


@pytest.mark.django_db(transaction=True)
def test_a_refused_recipient_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], smtp: Mailbox
) -> None:
    smtp.unknown.add("grcae@example.com")
    status, out, err = run(capsys, "invite", "grcae@example.com", "--name", "Grace Hopper")
    assert status == 1
    assert "/enroll/" in out  # the operator still has the link to hand over
    assert "Traceback" not in err
    assert "grcae@example.com" in err


def test_group_names_are_unique_whatever_the_case_beyond_ascii(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's lower() and LIKE fold ASCII letters only")
    assert run(capsys, "groups", "add", "\u00c9quipe")[0] == 0
    status, out, err = run(capsys, "groups", "add", "\u00e9quipe")
    assert status != 0, out
    assert "already" in err


def _threshold(var: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The `threshold` command run as a newcomer runs it, on SQLite in ``var``."""
    env = newcomer_environment(THRESHOLD_VAR_DIR=str(var), THRESHOLD_PORT=str(free_port()))
    return subprocess.run(
        [*threshold_command(), *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    done = _threshold(tmp_path / "var", "users")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "threshold migrate" in done.stderr, done.stderr


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_serve_on_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    # The check runs in serve's start-up child: its answer still reaches the operator.
    done = _threshold(tmp_path / "var", "serve")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "the database needs migrating: run `threshold migrate`" in done.stderr, done.stderr


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_serve_on_a_database_that_cannot_be_read_says_what_failed(tmp_path: Path) -> None:
    # A failure in serve's start-up child comes back to the master, which says what it was.
    var = tmp_path / "var"
    var.mkdir(mode=0o700)
    (var / DATABASE_FILE).write_bytes(b"not a database, " * 512)
    done = _threshold(var, "serve")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "threshold: the database failed: file is not a database" in done.stderr, done.stderr


def test_policy_check_and_set_name_who_a_switch_leaves_with_no_way_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Found after the review: turning the password and app off refuses no passkey, and
    # `policy check` said "The policy allows every registered passkey." (exit 0) while it left
    # someone with no way to sign in; the admin portal's preview names them.
    from threshold.accounts.models import User as Person  # noqa: PLC0415
    from threshold.audit.actions import Origin  # noqa: PLC0415
    from threshold.core import totp  # noqa: PLC0415
    from threshold.fallback.actions import do_set_up_fallback  # noqa: PLC0415

    administrator()
    assert run(capsys, "policy", "set", "allow_password_fallback=true")[0] == 0
    bob = Person.objects.create_user("bob@example.com", full_name="Bob Fallback")
    do_set_up_fallback(bob, "correct horse battery staple 42", totp.new_secret(), 1, Origin.cli())
    status, out, _ = run(capsys, "policy", "check", "allow_password_fallback=false")
    assert status == 1, out
    assert "No way left to sign in for 1: bob@example.com" in out
    status, _, err = run(capsys, "policy", "set", "allow_password_fallback=false")
    assert status == 0
    assert "bob@example.com" in err
