"""Passkeys from the company's own apps and from related origins, through the real endpoints.

The software authenticator signs real responses whose clientDataJSON.origin is
an Android app's ``android:apk-key-hash:...``, an iOS app's ``https://<RP ID>``
or a related origin. Each is accepted once configured and refused otherwise,
in the catalog's words, with ``origin_not_allowed`` in the audit log.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest

from tests.integration.conftest import (
    CLIENT_IP,
    ORIGIN,
    REGISTRATION_FAILED,
    VERIFICATION_FAILED,
    Browser,
    Person,
    assert_failed,
    assert_ok,
    invite,
    last_event,
    sign_in,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.config import Config, load
from threshold.core.encoding import b64url_encode
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

APP_KEY = hashlib.sha256(b"the company's Android app signing certificate").digest()
APP_ORIGIN = "android:apk-key-hash:" + b64url_encode(APP_KEY)
ANDROID_APPS = "com.example.app=" + APP_KEY.hex(":").upper()
RELATED_ORIGIN = "https://login.example.co.uk"
# What an iOS app sends for the RP ID of these tests, localhost.
IOS_ORIGIN = "https://localhost"

Configure = Callable[..., Config]


@pytest.fixture
def configure(settings, tmp_path) -> Configure:
    """Load the configuration from these variables (and the tests' defaults) and use it."""

    def apply(**variables: str) -> Config:
        loaded = load(
            {
                "THRESHOLD_VAR_DIR": str(tmp_path),
                "THRESHOLD_SECRET_KEY": "test-key-" * 5,
                **variables,
            }
        )
        assert loaded.rp.origins == frozenset({ORIGIN})
        settings.THRESHOLD = dataclasses.replace(
            settings.THRESHOLD,
            rp=loaded.rp,
            android_apps=loaded.android_apps,
            ios_apps=loaded.ios_apps,
            related_origins=loaded.related_origins,
        )
        return loaded

    return apply


def enroll_from(origin: str, browser: Browser, authenticator: SoftAuthenticator):
    created, token = invite()
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    credential = authenticator.create(options, origin)
    return created.user, browser.post_json(f"/enroll/{token}/result", credential)


def assert_sign_in_refused(browser: Browser, response) -> None:
    assert_failed(response, 400, VERIFICATION_FAILED)
    assert "origin_not_allowed" not in response.content.decode()
    event = last_event("sign_in.failed")
    assert event.reason == "origin_not_allowed"
    assert event.ip == CLIENT_IP
    assert not browser.is_signed_in()


# --- Android apps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variables",
    [{"THRESHOLD_ANDROID_APPS": ANDROID_APPS}, {"THRESHOLD_ORIGINS": f"{ORIGIN},{APP_ORIGIN}"}],
    ids=["android-app", "android-origin"],
)
def test_an_android_app_registers_and_signs_in_once_configured(configure, browser, variables):
    configure(**variables)
    authenticator = SoftAuthenticator()
    user, response = enroll_from(APP_ORIGIN, browser, authenticator)
    assert_ok(response)
    assert Passkey.objects.get().user == user
    assert last_event("passkey.registered").subject == user

    other = Browser()
    assert_ok(sign_in(other, authenticator, origin=APP_ORIGIN))
    assert other.is_signed_in()
    assert last_event("sign_in.succeeded").subject == user


def test_an_android_app_not_configured_cannot_register(browser):
    authenticator = SoftAuthenticator()
    user, response = enroll_from(APP_ORIGIN, browser, authenticator)
    assert_failed(response, 400, REGISTRATION_FAILED)
    assert not Passkey.objects.exists()
    failure = last_event("passkey.registration_failed")
    assert failure.reason == "origin_not_allowed"
    assert failure.subject == user


def test_an_android_app_not_configured_cannot_sign_in(ada: Person, browser):
    assert_sign_in_refused(browser, sign_in(browser, ada.authenticator, origin=APP_ORIGIN))
    assert ada.passkey.sign_count == 0


def test_another_apps_signing_key_is_refused(configure, ada: Person, browser):
    other_key = hashlib.sha256(b"a repackaged copy of the app").digest()
    configure(THRESHOLD_ANDROID_APPS="com.example.app=" + other_key.hex(":").upper())
    assert_sign_in_refused(browser, sign_in(browser, ada.authenticator, origin=APP_ORIGIN))


def test_an_android_app_cannot_claim_to_be_embedded(configure, ada: Person, browser):
    configure(THRESHOLD_ANDROID_APPS=ANDROID_APPS)
    response = sign_in(
        browser, ada.authenticator, origin=APP_ORIGIN, client_extra={"crossOrigin": True}
    )
    assert_failed(response, 400, VERIFICATION_FAILED)
    assert last_event("sign_in.failed").reason == "cross_origin_not_allowed"


# --- iOS apps ----------------------------------------------------------------------------------


def test_an_ios_app_signs_in_once_configured(configure, ada: Person, browser):
    assert_sign_in_refused(browser, sign_in(browser, ada.authenticator, origin=IOS_ORIGIN))

    configure(THRESHOLD_IOS_APPS="ABCDE12345.com.example.app")
    signed_in = Browser()
    assert_ok(sign_in(signed_in, ada.authenticator, origin=IOS_ORIGIN))
    assert signed_in.is_signed_in()


# --- Related origins ---------------------------------------------------------------------------


def test_a_related_origin_registers_and_signs_in_once_configured(configure, browser):
    configure(THRESHOLD_RELATED_ORIGINS=f"{RELATED_ORIGIN},https://login.example.de")
    authenticator = SoftAuthenticator()
    user, response = enroll_from(RELATED_ORIGIN, browser, authenticator)
    assert_ok(response)
    # The passkey is bound to the RP ID, not to the related origin's domain.
    assert authenticator.credentials[0].rp_id == "localhost"

    other = Browser()
    assert_ok(sign_in(other, authenticator, origin=RELATED_ORIGIN))
    assert other.is_signed_in()
    assert last_event("sign_in.succeeded").subject == user


def test_a_related_origin_not_listed_cannot_register(configure, browser):
    configure(THRESHOLD_RELATED_ORIGINS="https://login.example.de")
    _user, response = enroll_from(RELATED_ORIGIN, browser, SoftAuthenticator())
    assert_failed(response, 400, REGISTRATION_FAILED)
    assert not Passkey.objects.exists()
    assert last_event("passkey.registration_failed").reason == "origin_not_allowed"


def test_a_related_origin_not_listed_cannot_sign_in(ada: Person, browser):
    assert_sign_in_refused(browser, sign_in(browser, ada.authenticator, origin=RELATED_ORIGIN))
