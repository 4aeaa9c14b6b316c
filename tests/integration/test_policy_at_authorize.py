"""/authorize and the policy in force: a session signs in to an app only while the way it signed
in still stands (``threshold/sso/sessions.py`` ``sign_in_stands``, the registry's
``still_signs_in``). The session records the passkey or device that signed it in
(``SIGN_IN_CREDENTIAL``); a policy, a group's rules or a removal that came to refuse it sends
the person to sign in again (``login_required`` with ``prompt=none``), as Okta evaluates an
app's sign-on policy at each sign-in to the app.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest

from tests.integration.conftest import Browser, assert_ok, enrolled_person, last_event, sign_in
from tests.integration.test_policy_enforcement_review import (
    PASSWORD,
    approved_push,
    device_for,
    group_with_rules,
    password_sign_in,
    set_policy,
    set_up_fallback,
)
from tests.integration.test_security_methods import add_passkey
from tests.integration.test_sso import (
    REDIRECT_URI,
    add_app,
    authorize,
    exchange,
    full_flow,
    refresh,
    sign_in_again,
    signed_in,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.core import totp
from threshold.groups.actions import do_add_member
from threshold.passkeys.actions import do_remove_passkey
from threshold.passkeys.models import Passkey
from threshold.sessions.models import Session
from threshold.sessions.store import SIGN_IN_CREDENTIAL

pytestmark = pytest.mark.django_db

SIGN_IN_AGAIN = "/authorize/sign-in?"


def answer_of(location: str) -> dict[str, list[str]]:
    assert location.startswith(REDIRECT_URI), location
    return parse_qs(urlsplit(location).query)


def gets_a_code(browser: Browser, app: Any) -> bool:
    auth = authorize(browser, app)
    return auth.response.status_code == 302 and "code" in parse_qs(urlsplit(auth.location).query)


def recorded_credential(browser: Browser) -> Any:
    key = browser.client.cookies["threshold_session"].value
    return Session.objects.get(session_key=key).get_decoded().get(SIGN_IN_CREDENTIAL)


def test_a_passkey_a_group_now_refuses_asks_for_a_sign_in_with_one_it_allows(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada", backup_eligible=True, backup_state=True)
    browser = signed_in(ada)
    bound = SoftAuthenticator()
    assert_ok(add_passkey(browser, bound))
    app = add_app()
    assert gets_a_code(browser, app)

    # Engineering allows no synced passkeys: the one Ada's session signed in with is refused.
    do_add_member(
        group_with_rules("Engineering", block_synced_passkeys=True), ada.user, Origin.cli()
    )

    assert answer_of(authorize(browser, app, prompt="none").location)["error"] == ["login_required"]
    auth = authorize(browser, app)
    assert auth.location.startswith(SIGN_IN_AGAIN), auth.location
    _, result = sign_in_again(browser, auth.location, bound)
    back = browser.get(assert_ok(result)["redirect"])
    code = answer_of(back["Location"])["code"][0]
    assert exchange(app, code, auth.verifier).status_code == 200
    # The session now stands on the device-bound passkey.
    assert recorded_credential(browser) == str(
        Passkey.objects.get(user=ada.user, backup_eligible=False).pk
    )
    assert gets_a_code(browser, app)


def test_with_no_passkey_the_policy_allows_the_app_gets_login_required(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    browser = signed_in(ada)
    app = add_app()
    set_policy(aaguid_deny_list=(str(Passkey.objects.get(user=ada.user).aaguid),))

    auth = authorize(browser, app)

    assert answer_of(auth.location)["error"] == ["login_required"]
    assert browser.is_signed_in()  # Threshold's own pages still open: Settings fixes methods


def test_a_removed_passkey_no_longer_signs_in_to_apps(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    browser = signed_in(ada)
    other = SoftAuthenticator()
    assert_ok(add_passkey(browser, other))
    app = add_app()
    first = Passkey.objects.filter(user=ada.user).earliest("id")
    assert recorded_credential(browser) == str(first.pk)

    do_remove_passkey(ada.user, first.pk, Origin.cli())

    auth = authorize(browser, app)
    assert auth.location.startswith(SIGN_IN_AGAIN), auth.location
    # Another browser, signed in with the passkey that is left, is not affected.
    assert gets_a_code(signed_in_with(ada, other), app)


def signed_in_with(person: Any, authenticator: SoftAuthenticator) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, authenticator))
    return browser


def test_a_password_session_stops_signing_in_to_apps_when_the_fallback_is_turned_off(
    db: None,
) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    secret = set_up_fallback(ada)
    browser = Browser()
    assert password_sign_in(browser, "ada@example.com", secret).status_code == 303
    assert recorded_credential(browser) is None
    app = add_app()
    assert gets_a_code(browser, app)

    set_policy(allow_password_fallback=False)

    auth = authorize(browser, app)
    assert auth.location.startswith(SIGN_IN_AGAIN), auth.location  # with her passkey


@pytest.mark.parametrize(
    "change",
    [{"allow_device_app_sign_in": False}, {"require_hardware_device_key": True}],
)
def test_a_push_session_stops_signing_in_to_apps_when_the_policy_refuses_its_device(
    db: None, change: dict[str, bool]
) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    device = device_for(ada)
    browser = Browser()
    approved_push(browser, ada, device)
    browser.post_form("/sign-in/push/finish")
    assert browser.is_signed_in()
    assert recorded_credential(browser) is not None
    app = add_app()
    assert gets_a_code(browser, app)

    set_policy(**change)

    assert answer_of(authorize(browser, app, prompt="none").location)["error"] == ["login_required"]


def test_a_session_that_recorded_no_credential_is_not_second_guessed(db: None) -> None:
    """Signed in before sessions recorded their passkey: it lives out its timeouts."""
    ada = enrolled_person("ada@example.com", "Ada")
    browser = signed_in(ada)
    app = add_app()
    key = browser.client.cookies["threshold_session"].value
    store = Session.get_session_store_class()(key)
    del store[SIGN_IN_CREDENTIAL]
    store.save()
    assert recorded_credential(browser) is None

    assert gets_a_code(browser, app)


def test_with_only_the_password_left_the_session_ends_and_the_sign_in_page_brings_her_back(
    db: None,
) -> None:
    """A passkey session whose passkey is now refused, for someone whose password the policy
    still allows: the session ends (audited), the sign-in page offers every way in, and the
    password's sign-in comes back to the app's authorization, which now gives its code."""
    ada = enrolled_person("ada@example.com", "Ada")
    secret = set_up_fallback(ada)
    browser = signed_in(ada)
    app = add_app()
    set_policy(aaguid_deny_list=(str(Passkey.objects.get(user=ada.user).aaguid),))

    auth = authorize(browser, app)

    assert auth.location.startswith("/sign-in?"), auth.location
    assert not browser.is_signed_in()
    ended = last_event("sign_out")
    assert (ended.subject, ended.reason) == (ada.user, "sign_in_no_longer_allowed")
    back = parse_qs(urlsplit(auth.location).query)["next"][0]
    token = browser.csrf_token()
    browser.client.post(
        "/sign-in/password",
        {
            "username": "ada@example.com",
            "password": PASSWORD,
            "csrfmiddlewaretoken": token,
            "next": back,
        },
    )
    code = pyotp.TOTP(secret, digits=totp.DIGITS, interval=totp.STEP_SECONDS).now()
    done = browser.client.post(
        f"/sign-in/code?{urlencode({'next': back})}",
        {"code": code, "csrfmiddlewaretoken": token},
    )
    assert done.status_code == 303, done.content[:300]
    # Past the passkey prompt ("Set up a passkey" after a password sign-in), if it shows.
    location = done["Location"]
    if location.startswith("/sign-in/set-up-passkey"):
        location = parse_qs(urlsplit(location).query)["next"][0]
    again = browser.get(location)
    assert again.status_code == 302, (location, again.status_code, again.content[:500])
    assert answer_of(again["Location"])["code"], again["Location"]


def test_a_refresh_without_offline_access_stops_once_the_passkey_is_refused(db: None) -> None:
    """A refresh token without offline_access lives with its session, and only while the way
    it signed in still stands, as /authorize asks; "Stay signed in to the app" keeps its own."""
    ada = enrolled_person("ada@example.com", "Ada")
    browser = signed_in(ada)
    app = add_app()
    plain = full_flow(browser, app)
    inside = refresh(app, plain["refresh_token"])
    assert inside.status_code == 200, inside.content

    set_policy(aaguid_deny_list=(str(Passkey.objects.get(user=ada.user).aaguid),))

    refused = refresh(app, inside.json()["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    event = last_event("sso.token_refused")
    assert (event.subject, event.reason) == (ada.user, "sign_in_no_longer_allowed")
