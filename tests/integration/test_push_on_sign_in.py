"""The push sign-in on /sign-in itself (issue 12): after the username, "Send a push to Threshold
Verify" answers the number on the same page (POST /sign-in/push/start, webauthn.js), and the
answers look the same for an unknown username, a person without a device and a person with one.
The form at /sign-in/push stays for browsers without JavaScript (the same button posts there)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.integration.conftest import (
    SESSION_EXPIRED,
    Browser,
    assert_failed,
    assert_ok,
    enrolled_person,
    last_event,
    without_csrf,
)
from tests.integration.test_device_app import (
    NOT_APPROVED,
    PUSH_PENDING,
    TOO_MANY,
    answer,
    pending,
    set_up_device,
)
from threshold.audit.actions import Origin
from threshold.core.catalog import CATALOG
from threshold.core.policy import Policy
from threshold.devices.models import SignInApproval
from threshold.devices.views import PUSH_COOKIE
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db

START = "/sign-in/push/start"


def start(browser: Browser, username: object):
    return browser.post_json(START, {"username": username})


def test_the_username_step_offers_the_push_with_and_without_javascript(ada, clock):
    html = Browser().get("/sign-in?next=/settings").content.decode()
    form = re.search(r'<form id="username-form".*?</form>', html, re.S)
    assert form
    button = re.search(r'<button type="submit" id="push-button"[^>]*>([^<]*)</button>', form[0])
    assert button
    assert button[1] == "Send a push to Threshold Verify"
    # Without JavaScript the same button posts the username to /sign-in/push, with its token.
    assert 'formmethod="post" formaction="/sign-in/push?next=%2Fsettings"' in button[0]
    assert 'name="csrfmiddlewaretoken"' in form[0]
    # With it, webauthn.js posts to these instead and stays on the page.
    assert 'data-push-url="/sign-in/push/start"' in html
    assert 'data-push-state-url="/sign-in/push/state"' in html
    assert 'data-push-finish-url="/sign-in/push/finish?next=/settings"' in html
    assert "<script>" not in html  # no inline script (CSP)


def test_sign_in_with_a_push_from_the_sign_in_page(ada, clock):
    device = set_up_device(ada)
    browser = Browser()
    number = assert_ok(start(browser, "Ada@Example.com"))["number"]
    assert 10 <= number <= 99
    [push] = pending(device)
    assert browser.get("/sign-in/push/state").json() == {"state": "pending"}
    assert_ok(
        answer(device, push["id"], decision="approve", number=str(number), user_verified=True)
    )
    assert browser.get("/sign-in/push/state").json() == {"state": "approved"}
    response = browser.post_form("/sign-in/push/finish?next=/settings")
    assert response.status_code == 303
    assert response["Location"] == "/settings"
    assert browser.is_signed_in()
    assert last_event("sign_in.succeeded").detail["method"] == "device_app"


def test_cancel_on_the_sign_in_page_ends_the_push_and_stays_there(ada, clock):
    """The number shown in place has a Cancel too (webauthn.js posts JSON to the no-JavaScript
    page's Cancel): the push ends at once, and another may be sent from the same page."""
    device = set_up_device(ada)
    browser = Browser()
    page = browser.get("/sign-in").content.decode()
    assert 'data-push-cancel-url="/sign-in/push/cancel"' in page
    assert_ok(start(browser, "ada@example.com"))
    assert len(pending(device)) == 1
    response = browser.post_json("/sign-in/push/cancel", {})
    assert_ok(response)
    assert response.cookies[PUSH_COOKIE].value == ""
    assert pending(device) == []
    assert SignInApproval.objects.get().state == "canceled"
    assert browser.get("/sign-in/push/state").json() == {"state": "expired"}
    # No longer waiting: another push, at once, from the same page.
    assert_ok(start(browser, "ada@example.com"))
    assert len(pending(device)) == 1
    # Without a push of its own (no cookie, another browser's), nothing ends.
    assert_ok(Browser().post_json("/sign-in/push/cancel", {}))
    assert len(pending(device)) == 1


def test_a_refused_push_ends_on_the_finish_forms_answer(ada, clock):
    device = set_up_device(ada)
    browser = Browser()
    number = assert_ok(start(browser, "ada@example.com"))["number"]
    [push] = pending(device)
    wrong = str(number % 90 + 10)
    answer(device, push["id"], decision="approve", number=wrong, user_verified=True)
    assert browser.get("/sign-in/push/state").json() == {"state": "refused"}
    response = browser.post_form("/sign-in/push/finish")
    assert response.status_code == 400
    assert NOT_APPROVED in response.content.decode()


def journey(username: str) -> tuple[int, list[str], dict[str, str], str, str]:
    """Everything a browser learns from sending a push for ``username`` from the sign-in page."""
    browser = Browser()
    page = without_csrf(browser.get("/sign-in").content)
    page = re.sub(r'data-flow="[^"]*"', "", page)
    response = start(browser, username)
    body = response.json()
    cookie = response.cookies[PUSH_COOKIE]
    attributes = {name: str(cookie[name]) for name in ("max-age", "httponly", "samesite", "path")}
    state = browser.get("/sign-in/push/state").json()["state"]
    assert re.fullmatch(r"\d\d", str(body.pop("number")))
    return response.status_code, sorted(body), attributes, state, page


def test_the_answers_are_the_same_for_unknown_no_device_and_a_device(ada, clock):
    bob = enrolled_person("bob@example.com", "Bob")
    set_up_device(bob)
    with_device = journey("bob@example.com")
    without_device = journey("ada@example.com")
    unknown = journey("nobody@example.com")
    assert with_device == without_device == unknown
    assert with_device[0] == 200
    assert SignInApproval.objects.filter(is_delivered=True).count() == 1  # Bob's, only
    # The limits read the same too: one push waits per username, whoever it is.
    for username in ("bob@example.com", "ada@example.com", "nobody@example.com"):
        assert_failed(start(Browser(), username), 409, PUSH_PENDING)


def test_three_pushes_per_ten_minutes_from_the_sign_in_page(ada, clock):
    for _ in range(3):
        assert_ok(start(Browser(), "nobody@example.com"))
        clock.advance(121)  # the previous one expired
    assert_failed(start(Browser(), "nobody@example.com"), 429, TOO_MANY)


@pytest.mark.parametrize(
    "body",
    [{"username": ""}, {"username": "   "}, {"username": 7}, {"username": "a" * 151}, {}, []],
)
def test_bad_input_is_refused_in_the_catalogs_words_and_stores_nothing(ada, clock, body):
    response = Browser().post_json(START, body)
    assert_failed(response, 400, SESSION_EXPIRED)
    assert PUSH_COOKIE not in response.cookies
    assert SignInApproval.objects.count() == 0


@pytest.mark.parametrize("fields", [{"username": ""}, {"username": "  "}, {}])
def test_without_javascript_an_empty_username_is_username_required(ada, clock, fields):
    """The sign-in page's push button posts its form (novalidate) without JavaScript: an empty
    field is the catalog's "Username Required" beside the field, as webauthn.js shows it, on
    the push's form, ready to type one; not "Session Expired"."""
    browser = Browser()
    browser.get("/sign-in?next=/settings")
    response = browser.client.post(
        "/sign-in/push?next=%2Fsettings",
        {"csrfmiddlewaretoken": browser.csrf_token(), **fields},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert SESSION_EXPIRED not in html
    entry = CATALOG["username_required"]
    note = re.search(r'<p id="username-error" class="notice error" role="alert">([^<]*)</p>', html)
    assert note, html
    assert note[1] == f"{entry.title}: {entry.message}"
    field = re.search(r'<input id="push-username"[^>]*>', html)
    assert field
    assert 'aria-invalid="true"' in field[0]
    assert 'aria-describedby="username-error"' in field[0]
    # The rest of the page as it always is: its form (sent again to the same address, with
    # ?next=), its button and the way back to a passkey.
    assert "<h1>Sign in with Threshold Verify</h1>" in html
    assert '<form method="post" class="stack">' in html
    assert "Send a push to Threshold Verify</button>" in html
    assert "Sign in with a passkey instead" in html
    assert PUSH_COOKIE not in response.cookies
    assert SignInApproval.objects.count() == 0


def test_a_form_body_is_refused_too(ada, clock):
    browser = Browser()
    response = browser.client.post(
        START,
        {"username": "ada@example.com"},
        HTTP_X_CSRFTOKEN=browser.csrf_token(),
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    assert SignInApproval.objects.count() == 0


def test_without_the_csrf_token_nothing_is_sent(ada, clock):
    response = Browser().client.post(
        START, '{"username": "ada@example.com"}', content_type="application/json"
    )
    assert response.status_code == 403
    assert SignInApproval.objects.count() == 0


def test_the_policy_can_turn_it_off(ada, clock):
    do_update_policy(Policy(allow_device_app_sign_in=False), Origin.cli())
    browser = Browser()
    html = browser.get("/sign-in").content.decode()
    assert 'id="push-button"' not in html
    assert "data-push-url" not in html
    assert_failed(start(browser, "ada@example.com"), 403, "Device App Sign-in Not Available")
    assert SignInApproval.objects.count() == 0


def passkey_link(html: str) -> str:
    found = re.search(r'<a href="([^"]*)">Sign in with a passkey instead</a>', html)
    assert found, html
    return found[1]


def start_again_link(html: str) -> str:
    found = re.search(r'<a class="button" href="([^"]*)">Start again</a>', html)
    assert found, html
    return found[1]


@pytest.mark.parametrize(
    ("next_path", "query"),
    [
        ("/settings", "?next=%2Fsettings"),
        # Another site's address is carried as any other (the sign-in page's safe_next
        # ignores it), never written as the link itself.
        ("https://evil.example/", "?next=https%3A%2F%2Fevil.example%2F"),
        ('"><b>x', "?next=%22%3E%3Cb%3Ex"),
    ],
)
def test_the_push_pages_keep_next_on_their_way_back_to_a_passkey(ada, clock, next_path, query):
    """/sign-in/push (no JavaScript): "Sign in with a passkey instead" and "Start again" keep
    ?next=, as the number's page does, on its form, by the empty username and on its errors."""
    browser = Browser()
    address = f"/sign-in/push?{urlencode({'next': next_path})}"
    page = browser.get(address)
    assert page.status_code == 200
    assert passkey_link(page.content.decode()) == f"/sign-in{query}"
    empty = browser.client.post(address, {"csrfmiddlewaretoken": browser.csrf_token()})
    assert empty.status_code == 400
    assert passkey_link(empty.content.decode()) == f"/sign-in{query}"
    # An error: one push waits already.
    assert send_push_to(browser, address).status_code == 303
    again = send_push_to(Browser(), address)
    assert again.status_code == 409
    html = again.content.decode()
    assert passkey_link(html) == f"/sign-in{query}"
    assert start_again_link(html) == f"/sign-in/push{query}"
    # The number's page's way back, as it was.
    wait = browser.get(f"/sign-in/push/wait{query}").content.decode()
    assert passkey_link(wait) == f"/sign-in{query}"


def test_without_next_the_push_pages_link_to_the_plain_sign_in_page(ada, clock):
    html = Browser().get("/sign-in/push").content.decode()
    assert passkey_link(html) == "/sign-in"
    # An empty ?next= is none.
    assert passkey_link(Browser().get("/sign-in/push?next=").content.decode()) == "/sign-in"


def send_push_to(browser: Browser, address: str):
    browser.get(address)
    return browser.client.post(
        address, {"csrfmiddlewaretoken": browser.csrf_token(), "username": "ada@example.com"}
    )
