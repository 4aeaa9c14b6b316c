""" "Verify it's you" with the password and a code (threshold/fallback/views.py ``step_up``): for
a signed-in person with no passkey yet, or none at hand, who set the fallback up. As a sign-in
with them it opens "Set up another" for the step-up window and nothing else; it is throttled
as that sign-in is and audited as a step-up. A person without passkeys is never offered a
passkey ceremony (WebAuthn §5.5: an empty allowCredentials asks the browser for anyone's)."""

from __future__ import annotations

import pyotp
import pytest

from tests.integration.conftest import Browser, FrozenClock, Person, last_event
from threshold.audit.actions import Origin
from threshold.core import totp
from threshold.fallback.actions import do_set_up_fallback
from threshold.passkeys.actions import do_remove_passkey
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple 42"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
ADD = "/settings/security-methods/add"
STEP_UP = f"/settings/verify/password?next={ADD}"


def app_code(clock: FrozenClock, steps: int = 0) -> str:
    return pyotp.TOTP(SECRET, digits=totp.DIGITS, interval=totp.STEP_SECONDS).at(
        clock.now + steps * totp.STEP_SECONDS
    )


@pytest.fixture
def fallback_only(ada: Person, clock: FrozenClock) -> Browser:
    """Ada signed in with her password and code long enough ago that adding a passkey asks
    her to verify; her one passkey is gone."""
    do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    do_remove_passkey(ada.user, Passkey.objects.get(user=ada.user).pk, Origin.cli())
    browser = Browser()
    token = browser.csrf_token()
    browser.client.post(
        "/sign-in/password",
        {"username": "ada@example.com", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    browser.client.post(
        "/sign-in/code", {"code": app_code(clock), "csrfmiddlewaretoken": browser.csrf_token()}
    )
    assert browser.is_signed_in()
    clock.advance(301)
    return browser


def step_up(browser: Browser, password: str, code: str):
    return browser.client.post(
        STEP_UP, {"password": password, "code": code, "csrfmiddlewaretoken": browser.csrf_token()}
    )


def test_a_person_without_passkeys_verifies_with_the_password_and_code(fallback_only, clock):
    added = fallback_only.get(ADD)
    assert added.status_code == 303
    page = fallback_only.get(added["Location"]).content.decode()
    assert 'id="passkey-ui"' not in page  # no passkey ceremony to offer
    assert 'action="/settings/verify/password?next=' in page
    answer = step_up(fallback_only, PASSWORD, app_code(clock, 1))
    assert (answer.status_code, answer["Location"]) == (303, ADD)
    assert fallback_only.get(ADD).status_code == 200
    event = last_event("step_up.succeeded")
    assert event.detail["method"] == "password+app"
    # It opens "Set up another" only: removing a method still needs a passkey.
    assert fallback_only.get("/settings/fallback/remove").status_code == 303


def test_a_wrong_password_or_code_is_refused_in_the_catalogs_words(fallback_only, clock):
    wrong = step_up(fallback_only, "not my password", app_code(clock, 1))
    assert wrong.status_code == 400
    assert "aria-invalid" in wrong.content.decode()
    assert last_event("step_up.failed").reason == "password_incorrect"
    wrong = step_up(fallback_only, PASSWORD, "000000")
    assert wrong.status_code == 400
    assert last_event("step_up.failed").reason == "code_incorrect"
    assert fallback_only.get(ADD).status_code == 303  # still not verified


def test_a_code_used_once_is_not_taken_again(fallback_only, clock):
    code = app_code(clock, 1)
    assert step_up(fallback_only, PASSWORD, code).status_code == 303
    assert step_up(fallback_only, PASSWORD, code).status_code == 400


def test_the_form_is_offered_only_where_it_opens_the_page(fallback_only):
    page = fallback_only.get("/settings/verify?next=/settings/fallback/remove").content.decode()
    assert "/settings/verify/password" not in page


def test_signed_out_it_sends_to_sign_in_and_back_to_verify(db):
    answer = Browser().client.post(STEP_UP, {"password": "x", "code": "1"})
    assert answer.status_code in (303, 403)  # 403: no CSRF cookie yet, as every form


def test_the_passkey_step_up_refuses_to_begin_without_passkeys(fallback_only):
    from threshold.sessions import flow  # noqa: PLC0415

    answer = fallback_only.post_json(
        "/settings/verify/options", {}, **{flow.META_KEY: flow.issue_flow_token(flow.Flow.STEP_UP)}
    )
    assert answer.status_code == 400
    assert "publicKey" not in answer.json()


@pytest.mark.parametrize(
    "form",
    [{}, {"password": "a\x00b", "code": "123456"}, {"password": PASSWORD, "code": "9" * 5000},
     {"password": "p" * 100_000, "code": "123456"}],
    ids=["missing", "nul", "huge_code", "huge_password"],
)  # fmt: skip
def test_bad_input_is_a_4xx_in_words_and_verifies_nothing(fallback_only, form):
    answer = fallback_only.client.post(
        STEP_UP, {**form, "csrfmiddlewaretoken": fallback_only.csrf_token()}
    )
    assert 400 <= answer.status_code < 500
    body = answer.content.decode()
    # The form again with the catalog's words, or (a body over every form's cap) the catalog's
    # bad_request page.
    assert 'id="fallback-error"' in body or "<code>bad_request</code>" in body
    assert fallback_only.get(ADD).status_code == 303  # still not verified
