"""An outside review of every email Threshold sends, as the person reading it and as a mail system.

Each email was triggered through the product's own paths: an invite from the admin portal, from
`threshold invite` and from a CSV import; a recovery link (notice only, and with the link); a
recovery link used; a passkey added and removed (by the person, and by the help desk); the password
and authenticator app set up, removed and reset by staff; the code step shut after 100 wrong codes;
Threshold Verify set up and removed; a push approved, refused for a wrong number and denied ("I
didn't do this"). The messages were read whole (headers and body) from Django's locmem outbox, with
the after-commit callbacks run, and through the SMTP test server (tests/support/smtp.py) that hangs
up or refuses a recipient.

What was judged: the subject and the words (the seeds' "Security Methods"); every link absolute,
from THRESHOLD_PUBLIC_URL and not from the request's Host or X-Forwarded-Host, and working; expiry
times with their time zone; what to do if it was not you; secrets (no setup code, recovery code,
password, credential ID or session key in any email); headers (From, Date, Message-ID, no header
built from a person's text); names with quotes, ampersands and template syntax shown literally; one
email per event (double submits, retries); a failing mail server leaving the change made and
logged without the link.

Each test marked xfail(strict=True) is a defect on the current code; the two others pin properties
that matter and that no other test shows.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pyotp
import pytest
from django.core import mail
from django.test import Client

import threshold.clock
from tests.integration.conftest import (
    Browser,
    Person,
    assert_ok,
    enroll,
    enrolled_person,
    sign_in,
    token_of,
)
from tests.integration.portal_support import post, staff
from tests.support.authenticator import SoftAuthenticator
from tests.support.device import SoftDevice
from tests.support.smtp import SMTPServer
from threshold.accounts.models import Role, User
from threshold.cli.main import main as threshold_cli
from threshold.config import ConfigError, load, start_up_warnings
from threshold.passkeys.models import Passkey
from threshold_verify.client import USER_AGENT

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple 9"
# What the desktop Threshold Verify (verify/threshold_verify/client.py) sends: urllib's default.
DESKTOP_APP_USER_AGENT = USER_AGENT  # the desktop app's own (verify/threshold_verify/client.py)


# --- Helpers --------------------------------------------------------------------------------------


def signed_in(person: Person, **defaults: Any) -> Browser:
    browser = Browser(**defaults)
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def links_in(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>]+", text)


def form(browser: Browser, path: str, **data: str):
    return browser.client.post(path, {"csrfmiddlewaretoken": browser.csrf_token(), **data})


def api(device: SoftDevice, path: str, body: dict[str, Any] | None = None, **sign: Any):
    """A signed device API request, sent as the desktop app sends it."""
    client = Client(HTTP_USER_AGENT=DESKTOP_APP_USER_AGENT, REMOTE_ADDR="203.0.113.9")
    return client.post(path, device.sign(path, body, **sign), content_type="application/jose")


def set_up_device(browser: Browser, name: str) -> SoftDevice:
    """Settings → Threshold Verify → Set up, redeemed by a new device named ``name``."""
    page = form(browser, "/settings/device-app/set-up").content.decode()
    code = re.search(r'<code id="setup-code">([A-Z0-9-]+)</code>', page)
    action = re.search(r'action="(/settings/device-app/set-up/[^"]+)"', page)
    assert code is not None, page
    assert action is not None, page
    device = SoftDevice(now=threshold.clock.now)
    answer = assert_ok(
        api(
            device,
            "/api/device/v1/enroll",
            {
                "setup_code": code.group(1),
                "name": name,
                "platform": "linux",
                "app_version": "0.1.0",
                "key_protection": "software",
            },
            with_jwk=True,
        )
    )
    device.device_id = answer["device_id"]
    confirmed = form(browser, action.group(1), returned_code=answer["returned_code"])
    assert confirmed.status_code == 303, confirmed.content[:300]
    return device


def set_up_fallback(browser: Browser, now: float) -> None:
    """Settings → Password and authenticator app → Set up, with the app's current code."""
    page = browser.get("/settings/fallback/set-up").content.decode()
    secret = re.search(r'<code id="totp-secret">([^<]+)</code>', page)
    assert secret is not None, page
    code = pyotp.TOTP(secret.group(1).replace(" ", "")).at(now)
    response = form(
        browser,
        "/settings/fallback/set-up",
        password=PASSWORD,
        confirm_password=PASSWORD,
        code=code,
    )
    assert response.status_code == 200, response.content[:300]


# --- What holds -----------------------------------------------------------------------------------


def test_links_come_from_the_public_url_whatever_host_the_request_names(
    clock, django_capture_on_commit_callbacks, settings
):
    """A Host the server answers to (127.0.0.1) and an X-Forwarded-Host an attacker chose must not
    reach the links in an invite, a recovery email or a "method changed" email (the classic
    poisoned reset link)."""
    public = settings.THRESHOLD.public_url
    forged = {"HTTP_HOST": "127.0.0.1:8000", "HTTP_X_FORWARDED_HOST": "evil.example"}
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        post(admin, "/admin/people/invite", {"email": "bob@example.com", "name": "Bob"}, **forged)
        post(admin, f"/admin/people/{ada.user.pk}/recovery", {"email_link": "1"}, **forged)
        passkey = Passkey.objects.get(user=ada.user)
        post(admin, f"/admin/people/{ada.user.pk}/passkeys/{passkey.pk}/remove", **forged)
    bodies = [message.body for message in mail.outbox]
    assert len(bodies) == 3, [message.subject for message in mail.outbox]
    links = [link for body in bodies for link in links_in(body)]
    assert len(links) >= 2, bodies
    assert all(link.startswith(public + "/") for link in links), links


def test_names_are_shown_literally_and_no_header_carries_them(
    clock, django_capture_on_commit_callbacks, settings
):
    """The emails are plain text: a name with quotes, an ampersand or template syntax reads as it
    was typed (no "&amp;", no "&#x27;", nothing rendered), and no header is built from it."""
    name = "Zoë O'Brien & \"Co\" {{ product }} {% now 'Y' %}"
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    with django_capture_on_commit_callbacks(execute=True):
        post(admin, "/admin/people/invite", {"email": "zoe@example.com", "name": name})
    [message] = mail.outbox
    assert f"Hello {name}," in message.body
    raw = message.message().as_bytes()
    head = raw.split(b"\n\n", 1)[0].decode("ascii")
    assert "Brien" not in head
    assert "From: " + settings.DEFAULT_FROM_EMAIL in head
    assert re.search(r"^Date: .+$", head, re.M)
    assert re.search(r"^Message-ID: <.+>$", head, re.M)
    assert "expires on " in message.body
    assert re.search(r"expires on \d{1,2} \w+ \d{4}, \d\d:\d\d UTC", message.body)


# --- Defects --------------------------------------------------------------------------------------


def test_a_link_that_never_left_the_server_does_not_verify_the_address(
    clock, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    with django_capture_on_commit_callbacks(execute=True):
        page = post(admin, "/admin/people/invite", {"email": "bob@example.com", "name": "Bob"})
    html = page.content.decode()
    # The portal says so itself: the link was not emailed, hand it over yourself.
    assert "this link was not emailed to bob@example.com" in html
    [link] = {link for link in links_in(html) if "/enroll/" in link}
    assert_ok(enroll(Browser(), token_of(link), SoftAuthenticator()))
    bob = User.objects.get(username="bob@example.com")
    assert not bob.has_verified_email, bob.email_verified_at


def test_smtp_without_a_sender_does_not_send_from_localhost(tmp_path):
    env = {
        "THRESHOLD_VAR_DIR": str(tmp_path),
        "THRESHOLD_RP_ID": "login.example.com",
        "THRESHOLD_ORIGINS": "https://login.example.com",
        "THRESHOLD_BEHIND_TLS_PROXY": "1",
        "THRESHOLD_SMTP_HOST": "smtp.example.com",
        "THRESHOLD_SMTP_USER": "threshold",
        "THRESHOLD_SMTP_PASSWORD": "secret",
    }
    try:
        config = load(env)
    except ConfigError:
        return  # refused until a sender is set: fine
    sender = config.email["DEFAULT_FROM_EMAIL"]
    warned = any("THRESHOLD_EMAIL_FROM" in warning for warning in start_up_warnings(config))
    assert warned or not sender.rstrip(">").endswith("@localhost"), sender


@pytest.mark.xfail(
    strict=True,
    reason="Known, left alone: two invites POSTed for one person a moment apart each make a "
    "link, and the second replaces the first (each new link does, on purpose), so the first "
    "email's link is dead; a double click is sent once (page.js, tests/browser/test_portal.py), "
    "and a server-side guard would also swallow a deliberate resend",
)
def test_a_double_submitted_invite_leaves_no_dead_link_in_the_inbox(
    clock, django_capture_on_commit_callbacks
):
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            post(admin, "/admin/people/invite", {"email": "dan@example.com", "name": "Dan"})
    emailed = [link for message in mail.outbox for link in links_in(message.body)]
    assert emailed
    dead = [link for link in emailed if Browser().get(link).status_code != 200]
    assert not dead, f"{len(mail.outbox)} emails; these links do not work: {dead}"


def test_a_device_is_named_once_in_its_emails(ada, clock, django_capture_on_commit_callbacks):
    browser = signed_in(ada)
    # verify/threshold_verify/cli.py: name or f"Threshold Verify on {platform.node()}".
    with django_capture_on_commit_callbacks(execute=True):
        set_up_device(browser, "Threshold Verify on ada-laptop")
    [message] = [m for m in mail.outbox if "Threshold Verify was set up" in m.subject]
    assert "Threshold Verify on Threshold Verify on" not in message.body, message.body


def test_a_change_made_from_the_desktop_app_names_that_device(
    ada, clock, django_capture_on_commit_callbacks
):
    first = set_up_device(signed_in(ada), "ada-laptop")
    # "Add Account to Another Device", from the laptop's app.
    issued = assert_ok(api(first, "/api/device/v1/setup-codes", {"user_verified": True}))
    second = SoftDevice(now=threshold.clock.now)
    redeemed = assert_ok(
        api(
            second,
            "/api/device/v1/enroll",
            {"setup_code": issued["setup_code"], "name": "ada-desktop", "platform": "linux"},
            with_jwk=True,
        )
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(
            api(
                first,
                "/api/device/v1/setup-codes/confirm",
                {
                    "enrollment_id": issued["enrollment_id"],
                    "returned_code": redeemed["returned_code"],
                },
            )
        )
    [message] = mail.outbox
    assert "ada-desktop" in message.body
    assert "Python-urllib" not in message.body, message.body


def test_a_push_email_does_not_repeat_a_strangers_words(
    ada, clock, django_capture_on_commit_callbacks
):
    device = set_up_device(signed_in(ada), "ada-laptop")
    mail.outbox.clear()
    stranger = Browser(
        HTTP_USER_AGENT="Mozilla/5.0 (Windows NT 10.0; Win64; x64) IT Helpdesk approve now Bot/1.0"
    )
    assert form(stranger, "/sign-in/push", username="ada@example.com").status_code == 303
    [push] = assert_ok(api(device, "/api/device/v1/approvals/pending"))["approvals"]
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(
            api(device, "/api/device/v1/approvals/answer", {"id": push["id"], "decision": "deny"})
        )
    [message] = mail.outbox
    assert "was denied" in message.subject
    assert "Helpdesk" not in message.body, message.body


def test_new_recovery_codes_are_emailed(ada, clock, django_capture_on_commit_callbacks):
    browser = signed_in(ada)
    with django_capture_on_commit_callbacks(execute=True):
        set_up_fallback(browser, clock.now)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = form(browser, "/settings/fallback/recovery-codes")
    assert response.status_code == 200
    assert len(mail.outbox) == 1, "no email about the new recovery codes"
    # And never the codes themselves.
    codes = re.findall(r"\b(?:[a-z2-7]{4}-){3}[a-z2-7]{4}\b", response.content.decode())
    assert codes
    assert not any(code in mail.outbox[0].body for code in codes)


# Transactional, as the command runs: the email goes when the link's transaction commits,
# before the command says whether it went.
@pytest.mark.django_db(transaction=True)
def test_threshold_invite_says_when_its_email_failed(clock, settings, capsys, caplog):
    server = SMTPServer()
    try:
        for name, value in server.settings().items():
            setattr(settings, name, value)
        caplog.set_level(logging.CRITICAL, logger="threshold.accounts.notices")

        def invite(email: str) -> tuple[int, str]:
            status = threshold_cli(["invite", email])
            out = capsys.readouterr()
            out = out.out + out.err
            return status, re.sub(r"\S+@example\.com|http\S+|\(expires [^)]*\)", "", out)

        delivered = invite("carol@example.com")
        assert server.mailbox.messages == [["carol@example.com"]]
        server.mailbox.hang_up_after = 1
        failed = invite("dave@example.com")
    finally:
        server.close()
    assert failed != delivered, failed
