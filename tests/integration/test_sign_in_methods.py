"""The sign-in method registry (threshold/accounts/methods.py): every app that gives people a
way to sign in registers it, and the last-method rule and Settings ask the registry."""

from __future__ import annotations

from enum import StrEnum

import pytest
from django.conf import settings as django_settings

from tests.integration.conftest import Browser, Person, assert_ok, sign_in
from tests.integration.test_fallback import PASSWORD, SECRET, post
from tests.integration.test_settings_pages import labelled_groups
from threshold.accounts import methods
from threshold.accounts.methods import MethodKind, SignInMethod, count_sign_in_methods
from threshold.audit.actions import Origin
from threshold.fallback.actions import do_set_up_fallback
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

PASSKEYS_GROUP = "Security Key or Biometric Authenticator"
FALLBACK_GROUP = "Password and authenticator app"
DEVICE_APP_GROUP_HEADING = "Threshold Verify"


def signed_in(person: Person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def test_passkeys_the_password_and_app_and_the_device_app_are_registered_in_that_order():
    registered = methods.sign_in_methods()
    assert [method.kind for method in registered] == [
        MethodKind.PASSKEY,
        MethodKind.PASSWORD_AND_APP,
        MethodKind.DEVICE_APP,
    ]
    # A push approved with a typed number is multi-factor, never phishing-resistant.
    assert [method.phishing_resistant for method in registered] == [True, False, False]


def test_a_persons_methods_are_counted_across_kinds(ada, clock):
    passkeys, fallback, _devices = methods.sign_in_methods()
    assert (passkeys.count(ada.user), fallback.count(ada.user)) == (1, 0)
    assert count_sign_in_methods(ada.user) == 1

    do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    assert (passkeys.count(ada.user), fallback.count(ada.user)) == (1, 1)
    assert count_sign_in_methods(ada.user) == 2


def test_a_kind_is_registered_once():
    passkeys = methods.sign_in_methods()[0]
    with pytest.raises(ValueError, match="registered already"):
        methods.register(SignInMethod(**{**passkeys.__dict__, "phishing_resistant": False}))
    methods.register(passkeys)  # the same method again changes nothing
    assert methods.sign_in_methods()[0] is passkeys


# --- A fourth kind, registered by a test ---------------------------------------------------------


class FakeKind(StrEnum):
    HARDWARE_TOKEN = "hardware_token"


HARDWARE_TOKEN_GROUP = """
<div role="group" aria-labelledby="token-heading" id="token">
  <h3 id="token-heading">Hardware token</h3>
  <ul>{% for token in group.tokens %}<li>{{ token }}</li>{% endfor %}</ul>
</div>
"""


@pytest.fixture
def device_app(settings, tmp_path):
    """A fourth kind of method, as a new app would register one: each person has one token.

    (It was a fake device app until the device app registered itself, threshold/devices.)"""
    (tmp_path / "hardware_token").mkdir()
    (tmp_path / "hardware_token" / "_settings_group.html").write_text(HARDWARE_TOKEN_GROUP)
    settings.TEMPLATES = [{**django_settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    method = SignInMethod(
        kind=FakeKind.HARDWARE_TOKEN,  # type: ignore[arg-type]
        phishing_resistant=True,
        count=lambda user: 1,
        usable=lambda user, policy: 1,
        settings_template="hardware_token/_settings_group.html",
        settings_context=lambda user, policy: {"tokens": [f"{user.display_name}'s token"]},
        still_signs_in=lambda user, policy, recorded: True,
    )
    before = methods.sign_in_methods()
    methods.register(method)
    try:
        yield method
    finally:
        methods.unregister(FakeKind.HARDWARE_TOKEN)  # type: ignore[arg-type]
        assert methods.sign_in_methods() == before


def test_a_registered_kind_gets_its_group_on_settings_after_the_others(ada, clock, device_app):
    html = signed_in(ada).get("/settings").content.decode()
    groups = labelled_groups(html)
    assert list(groups) == [
        PASSKEYS_GROUP,
        FALLBACK_GROUP,
        DEVICE_APP_GROUP_HEADING,
        "Hardware token",
    ]
    assert groups["Hardware token"] == "Hardware token Ada Lovelace's token"


def test_a_registered_kind_counts_towards_the_last_method_rule(ada, clock, device_app):
    assert count_sign_in_methods(ada.user) == 2
    browser = signed_in(ada)
    passkey_id = ada.passkey.pk
    # Her only passkey is not her only way in: the registered kind counts.
    page = browser.get(f"/settings/security-methods/{passkey_id}/remove")
    assert "button danger" in page.content.decode()
    response = post(browser, f"/settings/security-methods/{passkey_id}/remove")
    assert response.status_code == 303
    assert not Passkey.objects.filter(pk=passkey_id).exists()


def test_without_the_third_kind_her_only_passkey_stays(ada, clock):
    browser = signed_in(ada)
    assert (
        "button danger"
        not in browser.get(f"/settings/security-methods/{ada.passkey.pk}/remove").content.decode()
    )
    response = post(browser, f"/settings/security-methods/{ada.passkey.pk}/remove")
    assert response.status_code == 409
    assert Passkey.objects.filter(pk=ada.passkey.pk).exists()
