"""What Home and Settings say: the same words for the same things, headings in order, and a
removal that asks first."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

import pytest

from tests.integration.conftest import (
    Browser,
    Person,
    assert_ok,
    enroll,
    invite,
    last_event,
    sign_in,
)
from tests.integration.test_fallback import (
    PASSWORD,
    SECRET,
    code_at,
    fallback_sign_in,
    post,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.fallback.actions import do_set_up_fallback
from threshold.fallback.models import TotpDevice
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)


@pytest.fixture
def ada_with_fallback(ada: Person, clock) -> Person:
    do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    return ada


def signed_in(person: Person, **defaults) -> Browser:
    browser = Browser(**defaults)
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def text_of(html: str) -> str:
    """The page's words, without tags, with runs of white space as one space."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


# --- How the person signed in (issue 13, item 1) -------------------------------------------------


@pytest.mark.parametrize(
    ("use_recovery_code", "words"),
    [(False, "a password and authenticator app"), (True, "a password and recovery code")],
)
def test_home_says_how_the_person_signed_in_as_settings_does(ada, clock, use_recovery_code, words):
    codes = do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    browser = Browser()
    code = codes[0] if use_recovery_code else code_at(clock.now)
    assert fallback_sign_in(browser, code).status_code == 303

    home = text_of(browser.get("/").content.decode())
    assert f"You are signed in to Threshold with {words}." in home
    assert "with a passkey" not in home
    sessions = text_of(browser.get("/settings").content.decode())
    assert f"with {words}" in sessions


def test_home_says_passkey_after_a_passkey_sign_in(ada, clock):
    home = text_of(signed_in(ada).get("/").content.decode())
    assert "You are signed in to Threshold with a passkey." in home


# --- One description of a passkey (issue 13, item 7) ---------------------------------------------


def description_on(html: str, passkey: Passkey) -> str:
    """The words describing ``passkey`` in a page's list of passkeys."""
    items = re.findall(r'<li[^>]*class="method"[^>]*>(.*?)</li>', html, re.S)
    [item] = [text_of(item) for item in items if unescape(passkey.name) in text_of(item)]
    return item[: item.index(" Rename")] if " Rename" in item else item


@pytest.mark.parametrize(
    ("transports", "attachment", "backup_eligible"),
    [
        (("internal",), "platform", False),
        (("internal", "hybrid"), "platform", True),
        (("usb",), "cross-platform", False),
    ],
)
def test_home_and_settings_describe_a_passkey_in_the_same_words(
    clock, transports, attachment, backup_eligible
):
    created, token = invite("grace@example.com", "Grace Hopper")
    authenticator = SoftAuthenticator(backup_eligible=backup_eligible)
    enrolling = Browser(HTTP_USER_AGENT=MAC_SAFARI)
    assert_ok(enroll(enrolling, token, authenticator, transports=transports, attachment=attachment))
    person = Person(created.user, authenticator, created.invite)
    passkey = person.passkey
    browser = signed_in(person, HTTP_USER_AGENT=MAC_SAFARI)

    home = description_on(browser.get("/").content.decode(), passkey)
    settings = description_on(browser.get("/settings").content.decode(), passkey)
    assert home == settings
    assert home.startswith(f"{passkey.name} {passkey.kind} · {passkey.storage} Added ")


# --- Headings (issue 13, item 4) -----------------------------------------------------------------


def outline(html: str) -> list[tuple[int, str]]:
    return [
        (int(level), text_of(text))
        for level, text in re.findall(r"<h([1-6])[^>]*>(.*?)</h\1>", html, re.S)
    ]


VOID_ELEMENTS = {"br", "img", "input", "link", "meta", "hr", "source", "wbr"}


class _Groups(HTMLParser):
    """The text inside each ``role="group"`` element, by the ID of the element naming it."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, str | None]] = []  # (tag, aria-labelledby of a group)
        self.texts: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_ELEMENTS:
            return
        found = dict(attrs)
        label = found.get("aria-labelledby") if found.get("role") == "group" else None
        self.open.append((tag, label))
        if label:
            self.texts[label] = []

    def handle_endtag(self, tag: str) -> None:
        assert self.open, f"</{tag}> closes {self.open[-1:]}"
        assert self.open[-1][0] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        for _, label in self.open:
            if label:
                self.texts[label].append(data)


def labelled_groups(html: str) -> dict[str, str]:
    """Each group's name (the text of its aria-labelledby element) and its text, in page order."""
    main = html[html.index("<main") : html.index("</main>") + len("</main>")]
    parser = _Groups()
    parser.feed(main)
    assert parser.open == [], f"unclosed: {parser.open}"
    groups = {}
    for label, parts in parser.texts.items():
        name = re.search(rf'id="{label}">(.*?)</', main, re.S)
        assert name, f"nothing names group {label}"
        groups[text_of(name.group(1))] = " ".join(" ".join(parts).split())
    return groups


def test_settings_headings_go_page_sections_groups(ada_with_fallback, clock):
    html = signed_in(ada_with_fallback).get("/settings").content.decode()
    assert outline(html) == [
        (1, "Settings"),
        (2, "Your name"),
        (2, "Security Methods"),
        (3, "Security Key or Biometric Authenticator"),
        (3, "Password and authenticator app"),
        (3, "Threshold Verify"),
        (2, "Active sessions"),
    ]
    # Each group is one element, named by its h3, holding its methods and their actions.
    groups = labelled_groups(html)
    assert list(groups) == [
        "Security Key or Biometric Authenticator",
        "Password and authenticator app",
        "Threshold Verify",
    ]
    passkeys, fallback, devices = groups.values()
    assert devices.startswith("Threshold Verify Set up These are the Threshold Verify apps")
    assert passkeys.startswith("Security Key or Biometric Authenticator Set up another")
    assert ada_with_fallback.passkey.name in passkeys
    assert "Rename" in passkeys
    assert fallback.startswith("Password and authenticator app For when no passkey is at hand")
    assert fallback.endswith("Remove password and authenticator app")


# --- Removing the password and app asks first (issue 13, item 5) ---------------------------------


def test_removing_the_password_and_app_asks_first(ada_with_fallback, clock):
    browser = signed_in(ada_with_fallback)
    settings = browser.get("/settings").content.decode()
    # A link to the question, not a button that acts.
    assert (
        '<a class="remove-link" href="/settings/fallback/remove">'
        "Remove password and authenticator app</a>" in settings
    )
    assert 'action="/settings/fallback/remove"' not in settings

    page = browser.get("/settings/fallback/remove")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Remove your password and authenticator app?</h1>" in html
    assert re.search(
        r'<form method="post">\s*<input type="hidden" name="csrfmiddlewaretoken"[^>]*>\s*'
        r'<button type="submit" class="button danger">Remove</button>',
        html,
    )
    assert '<a href="/settings">Cancel</a>' in html
    assert TotpDevice.objects.exists()  # asking removed nothing

    response = post(browser, "/settings/fallback/remove")
    assert response.status_code == 303
    assert response["Location"] == "/settings?done=fallback-removed"
    assert not TotpDevice.objects.exists()
    assert last_event("fallback.removed").subject == ada_with_fallback.user


def test_the_question_needs_the_same_step_up_as_the_removal(ada_with_fallback, clock):
    browser = signed_in(ada_with_fallback)
    clock.advance(301)
    for response in (
        browser.get("/settings/fallback/remove"),
        post(browser, "/settings/fallback/remove"),
    ):
        assert response.status_code == 303
        assert response["Location"] == "/settings/verify?next=%2Fsettings%2Ffallback%2Fremove"
    assert TotpDevice.objects.exists()

    # A password-and-code sign-in never removes a method.
    by_password = Browser()
    fallback_sign_in(by_password, code_at(clock.now))
    assert by_password.get("/settings/fallback/remove")["Location"].startswith("/settings/verify")


def test_the_only_method_left_is_not_offered_for_removal(ada_with_fallback, clock):
    browser = signed_in(ada_with_fallback)
    ada_with_fallback.passkey.delete()
    page = browser.get("/settings/fallback/remove")
    assert page.status_code == 200
    html = page.content.decode()
    assert "You Can\u2019t Remove Your Only Sign-in Method" in html
    assert "button danger" not in html
    refused = post(browser, "/settings/fallback/remove")
    assert refused.status_code == 409
    assert "You Can\u2019t Remove Your Only Sign-in Method" in refused.content.decode()
    assert TotpDevice.objects.exists()


def test_without_a_password_and_app_there_is_nothing_to_remove(ada, clock):
    response = signed_in(ada).get("/settings/fallback/remove")
    assert response.status_code == 404
    assert "Security Method Not Found" in response.content.decode()


# --- Smaller things (issue 13, item 10) ----------------------------------------------------------


def test_settings_shows_the_device_app_group_not_a_placeholder(ada, clock):
    # Issue 12: the app exists, so its group offers "Set up" rather than saying it does not.
    html = signed_in(ada).get("/settings").content.decode()
    assert 'id="device-app-heading">Threshold Verify<' in html
    assert 'href="/settings/device-app/set-up"' in html
    assert "not available yet" not in html


def test_the_password_set_up_form_names_the_account_for_password_managers(ada, clock):
    browser = signed_in(ada)
    html = browser.get("/settings/fallback/set-up").content.decode()
    main = html[html.index("<main") :]
    form = main[main.index('<form method="post"') : main.index("</form>")]
    username = (
        '<input type="text" name="username" autocomplete="username" value="ada@example.com" hidden>'
    )
    assert username in form
    # Before the new password, as password managers read a form.
    assert form.index(username) < form.index('autocomplete="new-password"')
    # The field changes nothing: the person's username is not theirs to change here.
    response = post(
        browser,
        "/settings/fallback/set-up",
        username="grace@example.com",
        password=PASSWORD,
        confirm_password=PASSWORD,
        code="000000",
    )
    assert response.status_code == 400
    ada.user.refresh_from_db()
    assert ada.user.username == "ada@example.com"
