"""``threshold users import FILE``: the portal's CSV import from the command line, any size."""

from __future__ import annotations

import csv
import io
import os
import stat
import sys
import tracemalloc
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import Browser, last_event
from tests.integration.portal_support import post, staff
from tests.support.faults import database_fails
from tests.support.smtp import SMTPServer
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.enrollment.bulk import check_file, invite_rows, read_rows
from threshold.enrollment.models import EnrollmentInvite
from threshold.groups.actions import do_add_group
from threshold.groups.models import Membership
from threshold.portal import imports

pytestmark = pytest.mark.django_db

MIXED = (
    "email,name,groups\n"
    "grace@example.com,Grace Hopper,Engineering\n"
    "not-an-email,Nobody,\n"
    "ada@example.com,Ada,\n"
    "GRACE@example.com,Grace again,\n"
    "alan@example.com,Alan Turing,Engineering; research\n"
    "x@example.com,<script>,\n"
)


def _file(tmp_path: Path, content: str | bytes, name: str = "people.csv") -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def _state() -> tuple:
    return (
        list(User.objects.order_by("pk").values_list("pk", "username", "full_name")),
        list(EnrollmentInvite.objects.order_by("pk").values_list("pk", "revoked_at")),
        list(Membership.objects.order_by("pk").values_list("group_id", "user_id")),
        AuditEvent.objects.count(),
    )


def test_import_invites_good_rows_and_names_the_refused_lines(
    ada, tmp_path, capsys, mailoutbox, django_capture_on_commit_callbacks
):
    do_add_group("Engineering", Origin.cli())
    with django_capture_on_commit_callbacks(execute=True):
        status = main(["users", "import", _file(tmp_path, MIXED)])
    out = capsys.readouterr().out
    assert status == 1
    assert "line 3: refused: not-an-email: 'not-an-email' is not an email address." in out
    assert "line 4: skipped: ada@example.com: They can already sign in" in out
    assert "line 5: refused: GRACE@example.com: Listed earlier in the file." in out
    assert (
        "line 6: invited: alan@example.com: Invited. In Engineering. "
        "No group called 'research': not added." in out
    )
    assert "line 7: refused: x@example.com: The name is not allowed" in out
    assert "Invited 2, skipped 1 (they can sign in already), refused 3: lines 3, 5, 7." in out
    assert "Their links were emailed to them." in out
    assert "/enroll/" not in out  # the links are secrets
    # Emailed as `threshold invite` emails them, one each, after each row committed.
    assert sorted(message.to[0] for message in mailoutbox) == [
        "alan@example.com",
        "grace@example.com",
    ]
    grace = User.objects.get(username="grace@example.com")
    assert grace.full_name == "Grace Hopper"
    assert set(grace.memberships.values_list("group__name", flat=True)) == {"Engineering"}
    assert not User.objects.filter(username__in=["not-an-email", "x@example.com"]).exists()
    # The portal's audit rows, from the command line (no actor).
    member_added = last_event("group.member_added")
    assert (member_added.via, member_added.actor) == ("cli", None)
    assert last_event("invite.created").subject.username == "alan@example.com"


def test_a_file_with_no_refused_row_exits_zero_and_a_rerun_is_safe(
    ada, tmp_path, capsys, mailoutbox, django_capture_on_commit_callbacks
):
    path = _file(tmp_path, "email,name\ngrace@example.com,Grace\nada@example.com,Ada\n")
    with django_capture_on_commit_callbacks(execute=True):
        assert main(["users", "import", path]) == 0
    first = EnrollmentInvite.objects.get(user__username="grace@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        assert main(["users", "import", path]) == 0
    out = capsys.readouterr().out
    assert "Invited 1, skipped 1 (they can sign in already), refused 0." in out
    # Grace's pending link was replaced, as `threshold invite` does; nobody was created twice.
    first.refresh_from_db()
    assert first.revoked_at is not None
    assert User.objects.filter(username="grace@example.com").count() == 1
    assert len(mailoutbox) == 2
    assert [m.to for m in mailoutbox] == [["grace@example.com"], ["grace@example.com"]]


def test_a_dry_run_reports_and_writes_nothing(
    ada, tmp_path, capsys, mailoutbox, django_capture_on_commit_callbacks
):
    do_add_group("Engineering", Origin.cli())
    links = tmp_path / "links.csv"
    before = _state()
    with django_capture_on_commit_callbacks(execute=True):
        status = main(
            ["users", "import", _file(tmp_path, MIXED), "--dry-run", "--links-out", str(links)]
        )
    out = capsys.readouterr().out
    assert status == 1
    assert "Would invite 2, would skip 1 (they can sign in already), would refuse 3: " in out
    assert "line 4: skipped: ada@example.com: They can already sign in" in out
    assert _state() == before
    assert mailoutbox == []
    assert not links.exists()


def test_links_out_is_a_new_file_only_its_owner_reads(tmp_path, capsys, mailoutbox):
    links = tmp_path / "links.csv"
    path = _file(tmp_path, "email\nGrace@example.com\nalan@example.com\n")
    assert main(["users", "import", path, "--no-email", "--links-out", str(links)]) == 0
    assert stat.S_IMODE(links.stat().st_mode) == 0o600
    rows = list(csv.reader(io.StringIO(links.read_text())))
    assert rows[0] == ["email", "link"]
    assert [row[0] for row in rows[1:]] == ["grace@example.com", "alan@example.com"]
    assert Browser().get(urlsplit(rows[1][1]).path).status_code == 200
    assert "/enroll/" not in capsys.readouterr().out
    assert mailoutbox == []
    # Never overwritten: the next run needs a new name, and invites nobody until given one.
    before = _state()
    assert main(["users", "import", path, "--no-email", "--links-out", str(links)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert _state() == before


def test_no_email_without_links_out_is_refused(tmp_path, capsys):
    assert main(["users", "import", _file(tmp_path, "email\ngrace@example.com\n"), "--no-email"])
    assert "--no-email needs --links-out" in capsys.readouterr().err
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"name,groups\nGrace,\n", "The first line must name the columns"),
        (b"email,name\n", "no one to invite"),
        # The bad bytes are on the last line: nobody above them is invited either.
        (b"email,name\ngrace@example.com,Grace\nalan@example.com,Alan \xe9\n", "not UTF-8"),
        (b"email,name\ngrace@example.com,Grace\nalan@example.com," + b"a" * 200_000, "not CSV"),
    ],
)
def test_a_file_that_cannot_be_read_invites_nobody(tmp_path, capsys, content, words):
    assert main(["users", "import", _file(tmp_path, content)]) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "Nobody was invited." in err
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["users", "import", str(tmp_path / "nowhere.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_standard_input(tmp_path, capsys, monkeypatch):
    content = "\ufeffEmail,Name\ngrace@example.com,Grace Hopper\n".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(content)))
    links = tmp_path / "links.csv"
    assert main(["users", "import", "-", "--no-email", "--links-out", str(links)]) == 0
    assert User.objects.get(username="grace@example.com").full_name == "Grace Hopper"
    assert len(links.read_text().splitlines()) == 2


def test_standard_input_from_a_pipe(tmp_path, capsys, monkeypatch):
    read, write = os.pipe()
    os.write(write, b"email\ngrace@example.com\nalan@example.com\n")
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(pipe))
        assert main(["users", "import", "-", "--dry-run"]) == 0
    assert "Would invite 2," in capsys.readouterr().out
    assert not User.objects.exists()


def test_a_failing_database_leaves_the_rows_before_it_invited(tmp_path, capsys):
    path = _file(tmp_path, "email\na@example.com\nb@example.com\nc@example.com\nd@example.com\n")

    def invite_insert(sql: str) -> bool:
        return sql.startswith('INSERT INTO "enrollment_')

    with database_fails(at=2, where=invite_insert):
        assert main(["users", "import", path]) == 1
    err = capsys.readouterr().err
    assert "the database failed after line 3" in err
    assert "run the same file again" in err
    assert sorted(User.objects.values_list("username", flat=True)) == [
        "a@example.com",
        "b@example.com",
    ]
    # Running it again finishes the file.
    assert main(["users", "import", path]) == 0
    assert User.objects.count() == 4


def test_progress_goes_to_standard_error(tmp_path, capsys):
    rows = "".join(f"p{n}@example.com\n" for n in range(5))
    path = _file(tmp_path, "email\n" + rows)
    assert main(["users", "import", path, "--dry-run", "--progress", "2"]) == 0
    captured = capsys.readouterr()
    assert "2 of 5 rows: 2 invited, 0 skipped, 0 refused" in captured.err
    assert "4 of 5 rows" in captured.err
    assert "rows:" not in captured.out


def test_rows_are_invited_as_they_are_read():
    """invite_rows never reads the file ahead: a row is invited before the next is read."""
    read = 0

    def lines():
        nonlocal read
        yield "email\n"
        for n in range(1_000_000):
            read += 1
            yield f"p{n}@example.com\n"

    results = invite_rows(read_rows(lines()), Origin.cli(), None, send_email=False)
    first = next(results)
    assert first.ok
    assert read <= 2
    assert User.objects.count() == 1


def test_checking_a_big_file_keeps_no_rows():
    lines = (
        "email,name,groups\n" if n == 0 else f"person{n}@example.com,Person {n},Engineering\n"
        for n in range(100_001)
    )
    tracemalloc.start()
    try:
        assert check_file(lines) == 100_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 100,000 rows kept would be tens of megabytes.
    assert peak < 256 * 1024


def test_each_row_costs_the_same_statements_however_long_the_file(tmp_path, capsys):
    """A cost that grew with the file's size (a row re-reading what came before it) would show
    as more statements per row in a longer file; time is bench material, not a test's (each
    row is about 2.8 ms of CPU on SQLite: README)."""

    def statements_per_row(first: int, count: int) -> float:
        path = _file(
            tmp_path,
            "email,name\n"
            + "".join(f"person{n}@example.com,Person {n}\n" for n in range(first, first + count)),
        )
        links = tmp_path / f"links-{first}.csv"
        with CaptureQueriesContext(connection) as queries:
            assert main(["users", "import", path, "--no-email", "--links-out", str(links)]) == 0
        assert len(links.read_text().splitlines()) == count + 1
        return len(queries.captured_queries) / count

    short = statements_per_row(0, 20)
    long = statements_per_row(1000, 400)
    assert User.objects.count() == 420
    assert long <= short


def test_line_numbers_count_blank_lines(tmp_path, capsys):
    path = _file(tmp_path, "email\n\ngrace@example.com\n\nnot-an-email\n")
    assert main(["users", "import", path, "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "line 5: refused: not-an-email:" in out
    assert "would refuse 1: lines 5." in out


def test_the_portal_numbers_lines_as_the_file_does(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    upload = io.BytesIO(b"email\n\ngrace@example.com\n\nnot-an-email\n")
    upload.name = "people.csv"
    text = post(browser, "/admin/people/import", {"csv": upload}).content.decode()
    assert "<td>5</td>" in text
    assert "<td>3</td>" in text


def test_the_portals_cap_is_the_web_forms_only(tmp_path, capsys, monkeypatch):
    """One row more than the portal's form takes (2,000; a cap of 20 here, so that the
    command's check of every row stays quick) is too many for the form, not for the command."""
    assert imports.MAX_ROWS == 2000
    monkeypatch.setattr(imports, "MAX_ROWS", 20)
    content = "email\n" + "".join(f"p{n}@example.com\n" for n in range(21))
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    upload = io.BytesIO(content.encode())
    upload.name = "people.csv"
    response = post(browser, "/admin/people/import", {"csv": upload})
    assert response.status_code == 400
    assert b"The file has 21 rows, at most 20: split it." in response.content
    assert not User.objects.filter(username="p0@example.com").exists()
    assert main(["users", "import", _file(tmp_path, content), "--dry-run"]) == 0
    assert "Would invite 21," in capsys.readouterr().out


# --- Over SMTP: one connection for the file -------------------------------------------------------


@pytest.fixture
def smtp(settings):
    server = SMTPServer()
    for name, value in server.settings().items():
        setattr(settings, name, value)
    yield server.mailbox
    server.close()


FOUR = "email,name\n" + "".join(f"p{n}@example.com,Person {n}\n" for n in range(4))


@pytest.mark.django_db(transaction=True)
def test_an_imports_emails_share_one_smtp_connection(tmp_path, capsys, smtp):
    assert main(["users", "import", _file(tmp_path, FOUR)]) == 0
    assert "Invited 4" in capsys.readouterr().out
    # Each row's email left when its row committed, all through one connection.
    assert smtp.messages == [[f"p{n}@example.com"] for n in range(4)]
    assert smtp.connections == 1


@pytest.mark.django_db(transaction=True)
def test_a_dropped_smtp_connection_costs_one_email_not_the_rest(tmp_path, capsys, smtp):
    smtp.hang_up_after = 1  # the server hangs up during the second message
    assert main(["users", "import", _file(tmp_path, FOUR)]) == 0
    out, err = capsys.readouterr()
    assert "Invited 4" in out
    assert EnrollmentInvite.objects.count() == 4  # every row stands
    assert smtp.messages == [["p0@example.com"], ["p2@example.com"], ["p3@example.com"]]
    assert smtp.connections == 2  # a new one after the failure
    failed = User.objects.get(username="p1@example.com").pk
    assert err.count("could not send") == 1
    assert f"could not send enrollment/invite_email.txt to user {failed}" in err


@pytest.mark.django_db(transaction=True)
def test_emails_outside_an_import_keep_a_connection_each(tmp_path, smtp):
    for n in range(2):
        assert main(["invite", f"q{n}@example.com"]) == 0
    assert smtp.messages == [["q0@example.com"], ["q1@example.com"]]
    assert smtp.connections == 2
