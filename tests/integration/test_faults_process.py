"""Faults from outside the code: a mail server that refuses or never answers, a database that
is down while a signed-in person opens a page, a var/ directory left broken by a full disk.

Each test is a defect found by fault injection against a live server (`threshold serve`),
reduced to the smallest reproduction, and fixed since; nothing here mocks the database, fido2
or cryptography (the database fails through ``connection.execute_wrapper``, the mail server is
a real socket).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Browser, assert_ok, enrolled_person, sign_in
from tests.integration.portal_support import post, staff
from tests.support.faults import database_fails, is_work
from tests.support.processes import newcomer_environment, threshold_command
from tests.support.smtp import SMTPServer
from tests.support.wsgi import wsgi
from threshold.accounts.models import Role, User
from threshold.core.catalog import CATALOG
from threshold.enrollment.models import EnrollmentInvite

REPO = Path(__file__).resolve().parents[2]

# --- Mail servers that fail -----------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_smtp() -> Iterator[int]:
    """A mail server that accepts the connection and never says a word (a firewall that
    swallows packets, a hung relay): its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def _smtp_settings(settings, port: int, timeout: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, timeout
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""


@pytest.mark.django_db(transaction=True)
def test_the_portal_does_not_say_an_invite_was_emailed_when_the_mail_server_refused_it(
    settings, caplog
):
    """SMTP configured, the server refuses the connection (or answers 5xx, or TLS fails: the
    same path). Observed: the person's page says "An enrollment link was emailed to them.",
    the link is never shown, the invite is stored with ``sent_to`` empty; nobody will ever
    receive it and the member of staff has no reason to send it again."""
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    _smtp_settings(settings, _closed_port(), 2)
    response = post(
        browser, "/admin/people/invite", {"email": "ada@example.com", "name": "Ada"}, follow=True
    )
    assert response.status_code == 200
    assert "could not send enrollment/invite_email.txt" in caplog.text
    invite = EnrollmentInvite.objects.get(user__username="ada@example.com")
    assert invite.sent_to == ""  # not delivered, and the server knows it
    assert b"An enrollment link was emailed to them." not in response.content


@pytest.mark.django_db(transaction=True)
def test_a_portal_import_pays_one_mail_timeout_not_one_per_row(settings, silent_smtp):
    """A mail server that never answers: each row's email waits EMAIL_TIMEOUT (10 s in
    production) inside the request, so a 50-row upload holds a worker for 500 s and two
    uploads stop every sign-in of a two-worker server (measured live: a sign-in unanswered
    after 120 s; gunicorn's timeout never fires, the worker's heartbeat thread keeps it
    alive)."""
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    _smtp_settings(settings, silent_smtp, 1)
    rows = "email,name\n" + "".join(f"p{n}@example.com,P {n}\n" for n in range(5))
    started = time.monotonic()
    response = post(browser, "/admin/people/import", {"csv_text": rows})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert User.objects.filter(username__startswith="p").count() == 5
    assert elapsed < 2.5, f"5 rows took {elapsed:.1f} s against a silent mail server"


@pytest.mark.django_db(transaction=True)
def test_an_import_whose_mail_server_fails_shows_the_links_it_could_not_email(settings):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    _smtp_settings(settings, _closed_port(), 1)
    rows = "email,name\n" + "".join(f"p{n}@example.com,P {n}\n" for n in range(3))
    page = post(browser, "/admin/people/import", {"csv_text": rows}).content.decode()
    assert "The mail server did not take 3 of the emails" in page
    assert page.count("/enroll/") == 3  # each link, once, to hand over
    assert not EnrollmentInvite.objects.exclude(sent_to="").exists()


@pytest.mark.django_db(transaction=True)
def test_one_recipient_the_mail_server_refuses_is_no_reason_to_stop_emailing_the_others(settings):
    server = SMTPServer()
    try:
        server.mailbox.unknown = {"typo@example.com"}
        _, browser = staff("root@example.com", Role.ADMINISTRATOR)
        for name, value in server.settings().items():
            setattr(settings, name, value)
        rows = "email,name\ntypo@example.com,T\n" + "".join(
            f"p{n}@example.com,P {n}\n" for n in range(3)
        )
        page = post(browser, "/admin/people/import", {"csv_text": rows}).content.decode()
        assert "The mail server did not take 1 of the emails" in page
        assert sorted(r for [r] in server.mailbox.messages) == [
            f"p{n}@example.com" for n in range(3)
        ]
    finally:
        server.close()


@pytest.mark.django_db(transaction=True)
def test_a_recovery_link_the_mail_server_refused_is_said_not_emailed(settings):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    _smtp_settings(settings, _closed_port(), 1)
    page = post(browser, f"/admin/people/{ada.user.pk}/recovery", {"email_link": "1"})
    html = page.content.decode()
    assert "The mail server did not take the email" in html
    assert "The link was emailed to" not in html
    assert "/enroll/" in html


@pytest.mark.django_db(transaction=True)
def test_a_recovery_notice_the_mail_server_refused_is_not_said_emailed(settings):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    _smtp_settings(settings, _closed_port(), 1)
    page = post(browser, f"/admin/people/{ada.user.pk}/recovery", {})
    html = page.content.decode()
    assert "the notice that a link was issued was not emailed to ada@example.com" in html
    assert "A notice was emailed" not in html
    assert "/enroll/" in html


@pytest.mark.django_db(transaction=True)
def test_the_command_line_import_says_which_emails_could_not_be_sent(settings, tmp_path, capsys):
    from threshold.cli.main import main  # noqa: PLC0415 - the command, as an operator runs it

    _smtp_settings(settings, _closed_port(), 1)
    source = tmp_path / "people.csv"
    source.write_text("email,name\np0@example.com,P\np1@example.com,Q\n")
    assert main(["users", "import", str(source)]) == 0
    out = capsys.readouterr().out
    assert "But 2 of the emails could not be sent" in out


# --- The database down under a signed-in page -----------------------------------------------------


def _cookies_of(browser: Browser) -> dict[str, str]:
    return {name: morsel.value for name, morsel in browser.client.cookies.items()}


@pytest.mark.django_db
def test_a_signed_in_page_answers_503_while_the_database_is_down():
    """PostgreSQL stopped (or unreachable): anonymous pages get the catalog's 503, but a
    signed-in person's pages got gunicorn's bare "Internal Server Error" (500, no
    Retry-After): the 500 handler's page reads ``request.user``, whose session load fails
    again inside the handler."""
    person = enrolled_person("ada@example.com", "Ada Lovelace")
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    cookies = _cookies_of(browser)
    with database_fails():
        try:
            status, headers, content = wsgi(
                "GET", "/", b"", cookies, CONTENT_TYPE=None, HTTP_ACCEPT="text/html"
            )
        except Exception as exc:  # noqa: BLE001 - what reaches gunicorn: its bare 500
            pytest.fail(f"the error handler itself raised {type(exc).__name__}: {exc}")
    assert status == 503
    assert headers.get("Retry-After")
    assert CATALOG["passkey_unavailable"].message.encode() in content


@pytest.mark.django_db
def test_a_signed_in_page_whose_idle_clock_is_due_answers_503_while_the_database_is_locked(
    clock,
):
    """SQLite held by another writer (or PostgreSQL failing) when the session's idle clock is
    refreshed (once a minute): Django turns the failed UPDATE into ``SessionInterrupted``, and
    the person read 400 "Your session has expired; restart to continue." (nothing
    logged) instead of 503 "try again"; the session was fine all along."""
    person = enrolled_person("ada@example.com", "Ada Lovelace")
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    cookies = _cookies_of(browser)
    clock.advance(61)  # the idle clock is refreshed at most once a minute

    def updates(sql: str) -> bool:
        return is_work(sql) and sql.lstrip().upper().startswith("UPDATE")

    with database_fails(where=updates):
        status, headers, _ = wsgi(
            "GET", "/", b"", cookies, CONTENT_TYPE=None, HTTP_ACCEPT="text/html"
        )
    assert status == 503
    assert headers.get("Retry-After")
    status, _, _ = wsgi("GET", "/", b"", cookies, CONTENT_TYPE=None, HTTP_ACCEPT="text/html")
    assert status == 200


# --- var/ left broken -----------------------------------------------------------------------------


def _command(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*threshold_command(), *args],
        cwd=REPO,
        env=newcomer_environment(THRESHOLD_VAR_DIR=str(var)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_an_empty_secret_key_file_stops_the_command_with_a_message(tmp_path):
    """The first `threshold` command on a full disk creates var/secret_key and fails to write
    it; once space is freed, `threshold migrate` and `threshold check` succeed with the empty
    key, and `threshold serve` starts and answers every page 500 ("The SECRET_KEY setting must
    not be empty"). THRESHOLD_SECRET_KEY itself must be at least 32 characters."""
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret_key").write_text("")
    done = _command(var, "check")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "secret_key" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_a_database_file_that_is_not_one_is_a_message_not_a_traceback(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "threshold.sqlite3").write_bytes(b"not a database, truncated by a full disk\n" * 40)
    done = _command(var, "users")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "threshold: the database failed: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_a_secret_key_path_that_is_a_directory_is_a_message_not_a_traceback(tmp_path):
    var = tmp_path / "var"
    (var / "secret_key").mkdir(parents=True)
    done = _command(var, "check")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "secret_key" in done.stderr
    assert "Traceback" not in done.stderr
