"""The set-up guide: a page per platform, the visitor's own preselected from the User-Agent."""

from __future__ import annotations

import dataclasses
import re

import pytest
from django.utils.html import escape

from tests.integration.conftest import Browser, assert_ok, sign_in
from threshold.audit.actions import Origin
from threshold.help import guides
from threshold.policy.actions import do_update_policy, get_policy

pytestmark = pytest.mark.django_db

# Real browsers' User-Agent strings, and the guide each should open on.
USER_AGENTS = {
    "macos": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "ios": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "chromeos": "Mozilla/5.0 (X11; CrOS x86_64 15633.69.0) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "linux": "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
}
INDEX_HEADING = "<h1>Set up a passkey on your devices</h1>"


@pytest.fixture
def signed_in(ada) -> Browser:
    """Ada's browser, signed in with her passkey."""
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    return browser


def current_links(html: str) -> list[str]:
    """The addresses of the navigation links marked as the current page."""
    return re.findall(r'<a href="([^"]*)" aria-current="page">', html)


# --- Who may read it ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/help/guide", "/help/guide/chromeos"])
def test_anyone_may_read_the_guide_without_signing_in(db, path):
    """A new laptop or a loaner has no passkey yet: its guide must open before any sign-in."""
    response = Browser().get(path, HTTP_USER_AGENT=USER_AGENTS["chromeos"])
    assert response.status_code == 200
    html = response.content.decode()
    assert f"<h1>{escape(guides.CHROMEOS.title)}</h1>" in html
    # What only a signed-in person has: the account menu and the way to Settings.
    assert "account-menu" not in html
    assert "/settings#security-methods" not in html
    assert '<a class="button secondary" href="/sign-in?next=/settings">' in html
    # A cache must not hand one visitor's page to another: it depends on being signed in.
    assert "Cookie" in response["Vary"]


@pytest.mark.parametrize("path", ["/help/guide", "/help/guide/macos"])
def test_signed_in_the_guide_leads_to_security_methods(signed_in, path):
    html = signed_in.get(path).content.decode()
    assert "account-menu" in html
    assert 'href="/settings#security-methods">Go to Security Methods</a>' in html
    assert "/sign-in?next=" not in html


@pytest.mark.parametrize(
    ("old", "new"),
    [("/settings/guide", "/help/guide"), ("/settings/guide/macos", "/help/guide/macos")],
)
def test_the_guides_first_addresses_lead_to_it(db, old, new):
    response = Browser().get(old)
    assert response.status_code == 301
    assert response["Location"] == new


@pytest.mark.parametrize("path", ["/sign-in", "/help/errors", "/settings"])
def test_the_sign_in_page_help_and_settings_link_to_the_guide(signed_in, path):
    page = (Browser() if path != "/settings" else signed_in).get(path)
    link = (
        '<a href="/help/guide#first-sign-in">' if path == "/sign-in" else '<a href="/help/guide">'
    )
    assert link in page.content.decode()


# --- Signing in on a device with no passkey yet -------------------------------------------------

FIRST_SIGN_IN = '<h2 id="first-sign-in">Sign in on a new or borrowed device</h2>'
PUSH = "Send a push to Threshold Verify"
PASSWORD = "Sign in with a password instead"


def first_sign_in(html: str) -> str:
    """The page's first-sign-in section, its whitespace as a browser shows it."""
    start = html.index(FIRST_SIGN_IN)
    return " ".join(html[start : html.index("</section>", start)].split())


@pytest.mark.parametrize("user_agent", [USER_AGENTS["windows"], ""])
def test_the_sign_in_pages_link_explains_signing_in_without_a_passkey_there(db, user_agent):
    """The sign-in page's "On a new or borrowed device?" once led to guides that began with
    "sign in to Threshold and open Settings"."""
    browser = Browser()
    sign_in_page = browser.get("/sign-in").content.decode()
    [address] = re.findall(
        r'<a href="([^"]*)">How to sign in and set up a passkey there', sign_in_page
    )
    path, anchor = address.split("#")

    html = browser.get(path, HTTP_USER_AGENT=user_agent).content.decode()

    assert f'<h2 id="{anchor}">' in html
    section = first_sign_in(html)
    assert "Use a different device" in section  # the sign-in page's words
    assert "Use a different phone, tablet or security key" in section
    assert "Scan the QR code with your phone" in section
    assert "insert the key, enter its PIN and touch it" in section
    assert "Ask your IT team for a recovery link" in section
    # The other ways the sign-in page offers by default, as it words them.
    assert 'id="push-button"' in sign_in_page
    assert 'id="password-link"' in sign_in_page
    assert PUSH in section
    assert PASSWORD in section


def test_the_first_sign_in_names_only_the_ways_the_policy_offers(db):
    do_update_policy(
        dataclasses.replace(
            get_policy(), allow_password_fallback=False, allow_device_app_sign_in=False
        ),
        Origin.cli(),
    )
    sign_in_page = Browser().get("/sign-in").content.decode()
    section = first_sign_in(Browser().get("/help/guide/macos").content.decode())
    assert 'id="push-button"' not in sign_in_page
    assert 'id="password-link"' not in sign_in_page
    for way in (PUSH, PASSWORD):
        assert way not in section


@pytest.mark.parametrize("key", ["security-key", "threshold-verify"])
def test_pages_about_no_device_one_signs_in_on_leave_it_out(db, key):
    assert FIRST_SIGN_IN not in Browser().get(f"/help/guide/{key}").content.decode()


@pytest.mark.parametrize("path", ["/help/guide", "/help/guide/macos"])
def test_signed_in_the_guide_leaves_out_the_first_sign_in(signed_in, path):
    assert FIRST_SIGN_IN not in signed_in.get(path).content.decode()


# --- One page per platform ---------------------------------------------------------------------


@pytest.mark.parametrize("key", list(guides.PLATFORMS))
def test_each_platform_has_its_page_with_steps_and_troubleshooting(signed_in, key):
    platform = guides.localize(guides.PLATFORMS[key])
    response = signed_in.get(f"/help/guide/{key}")
    assert response.status_code == 200
    html = response.content.decode()

    assert html.count("<h1>") == 1
    assert f"<h1>{escape(platform.title)}</h1>" in html
    assert escape(platform.name) in html
    assert escape(platform.intro) in html
    for procedure in platform.steps:
        assert f"<h2>{escape(procedure.title)}</h2>" in html
        assert f"<li>{escape(procedure.items[0])}</li>" in html
    assert "<h2>Troubleshooting</h2>" in html
    assert escape(platform.troubleshooting[0].symptom) in html
    assert current_links(html) == [f"/help/guide/{key}"]


@pytest.mark.parametrize("key", list(guides.PLATFORMS))
def test_guide_speaks_of_this_site_and_nothing_else(signed_in, key, settings):
    html = signed_in.get(f"/help/guide/{key}").content.decode()
    # Not the page's random CSRF tokens (64 letters and digits), which once held "Duo".
    html = re.sub(r"\b[A-Za-z0-9]{64}\b", "", html)
    assert "$site_name" not in html
    assert "$rp_id" not in html
    assert settings.THRESHOLD.rp.name in html
    for foreign in ("Okta", "Netflix", "go.netflix", "#ntech", "Duo"):
        assert foreign not in html, foreign


def test_guide_links_to_other_platforms_by_their_names(signed_in):
    html = signed_in.get("/help/guide/chromeos").content.decode()
    assert '<a href="/help/guide/security-key">Set up a security key</a>' in html
    assert '<a href="/help/guide/android">Set up a passkey on Android</a>' in html


def test_unknown_platform_is_not_found(signed_in):
    response = signed_in.get("/help/guide/windows-phone")
    assert response.status_code == 404
    assert "Page Not Found" in response.content.decode()


# --- The visitor's platform, preselected --------------------------------------------------------


@pytest.mark.parametrize("key", list(USER_AGENTS))
def test_guide_opens_on_the_visitors_platform(signed_in, key):
    response = signed_in.get("/help/guide", HTTP_USER_AGENT=USER_AGENTS[key])
    assert response.status_code == 200
    html = response.content.decode()
    assert f"<h1>{escape(guides.PLATFORMS[key].title)}</h1>" in html
    assert current_links(html) == [f"/help/guide/{key}"]
    assert "This guide is for the device you are using now." in html
    assert "User-Agent" in response["Vary"]


@pytest.mark.parametrize("user_agent", ["curl/8.5.0", "Mozilla/5.0 (threshold integration tests)"])
def test_guide_lists_every_platform_when_the_visitors_is_unknown(signed_in, user_agent):
    response = signed_in.get("/help/guide", HTTP_USER_AGENT=user_agent)
    assert response.status_code == 200
    html = response.content.decode()
    assert INDEX_HEADING in html
    assert current_links(html) == []
    for key, platform in guides.PLATFORMS.items():
        assert f'<a href="/help/guide/{key}">{escape(platform.name)}</a>' in html
    assert "User-Agent" in response["Vary"]


def test_a_platform_page_does_not_depend_on_the_visitors(signed_in):
    response = signed_in.get("/help/guide/windows", HTTP_USER_AGENT=USER_AGENTS["ios"])
    html = response.content.decode()
    assert f"<h1>{escape(guides.WINDOWS.title)}</h1>" in html
    assert current_links(html) == ["/help/guide/windows"]
    assert "This guide is for the device you are using now." not in html


# --- /help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("signed_in_first", [False, True])
def test_help_lists_every_help_article(ada, signed_in_first):
    browser = Browser()
    if signed_in_first:
        assert_ok(sign_in(browser, ada.authenticator))
    page = browser.get("/help")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Help</h1>" in html
    assert '<a href="/help/guide">Set up a passkey on your devices</a>' in html
    assert '<a href="/help/errors">Error messages and what to do</a>' in html
    for key, platform in guides.PLATFORMS.items():
        title = escape(guides.localize(platform).title)
        assert f'<a href="/help/guide/{key}">{title}</a>' in html, key
    assert '<a href="/help/errors#sign-in-errors">Sign-in errors</a>' in html
    # Every link on it works.
    for link in set(re.findall(r'href="(/help[^"#]*)', html)):
        assert browser.get(link).status_code == 200, link
    assert browser.get("/help/")["Location"] == "/help"
