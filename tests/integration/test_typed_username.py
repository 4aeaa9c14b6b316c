"""The username typed on the sign-in page is filled in on /sign-in/password (WCAG 3.3.7, Redundant
Entry), carried in a short-lived cookie, never in a URL (``sessions.middleware``).

webauthn.js writes the cookie as "Sign in with a password instead" is followed
(tests/browser/test_keyboard_review.py walks it in Chromium); the sign-in page's answer to its
form sent without JavaScript sets it itself.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.integration.conftest import Browser
from threshold.audit.actions import Origin
from threshold.core.policy import Policy
from threshold.fallback.actions import do_set_up_fallback
from threshold.policy.actions import do_update_policy
from threshold.sessions.middleware import TYPED_USERNAME_COOKIE

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _field(page) -> str:
    """The password page's username field's value."""
    html = page.content.decode()
    start = html.index('id="username"')
    tag = html[start : html.index(">", start)]
    return tag.split('value="', 1)[1].split('"', 1)[0]


def test_the_sign_in_page_names_the_cookie_only_when_a_password_is_offered() -> None:
    page = Browser().get("/sign-in").content.decode()
    assert f'data-username-cookie="{TYPED_USERNAME_COOKIE}"' in page
    do_update_policy(Policy(allow_password_fallback=False), Origin.cli())
    assert "data-username-cookie" not in Browser().get("/sign-in").content.decode()


def test_the_password_page_fills_in_what_webauthn_js_wrote() -> None:
    browser = Browser()
    assert _field(browser.get("/sign-in/password")) == ""
    # encodeURIComponent's output for "josé@example.com".
    browser.client.cookies[TYPED_USERNAME_COOKIE] = "jos%C3%A9%40example.com"
    page = browser.get("/sign-in/password")
    assert page.status_code == 200
    assert _field(page) == "josé@example.com"


def test_the_form_sent_without_javascript_hands_the_username_on() -> None:
    browser = Browser()
    sent = browser.client.post(
        "/sign-in", {"csrfmiddlewaretoken": browser.csrf_token(), "username": "ada@example.com"}
    )
    assert sent.status_code == 400  # "no passkey here without JavaScript", as before
    cookie = sent.cookies[TYPED_USERNAME_COOKIE]
    assert cookie.value == quote("ada@example.com", safe="")
    assert cookie["samesite"] == "Strict"
    assert _field(browser.get("/sign-in/password")) == "ada@example.com"


@pytest.mark.parametrize(
    "value",
    ["%FF%FE", "%00ada", "a%0Ab", "x" * 151, "%ED%A0%80"],
    ids=["not-utf-8", "nul", "newline", "too-long", "surrogate"],
)
def test_a_cookie_no_one_could_have_typed_fills_in_nothing(value: str) -> None:
    browser = Browser()
    browser.client.cookies[TYPED_USERNAME_COOKIE] = value
    page = browser.get("/sign-in/password")
    assert page.status_code == 200
    assert _field(page) == ""


def test_the_right_password_forgets_the_username(ada, clock) -> None:
    do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    browser = Browser()
    browser.client.cookies[TYPED_USERNAME_COOKIE] = "ada%40example.com"
    sent = browser.client.post(
        "/sign-in/password",
        {
            "csrfmiddlewaretoken": browser.csrf_token(),
            "username": "ada@example.com",
            "password": PASSWORD,
        },
    )
    assert sent.status_code == 303
    assert sent.cookies[TYPED_USERNAME_COOKIE]["max-age"] == 0
