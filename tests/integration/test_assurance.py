"""What a sign-in proves, kept in the session for applications: RFC 8176 amr and the
OpenID Extended Authentication Profile's acr (threshold/core/assurance.py)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import (
    Browser,
    assert_ok,
    enroll,
    enrolled_person,
    invite,
    sign_in,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.core import assurance
from threshold.core.assurance import Acr, Amr
from threshold.passkeys.models import Passkey
from threshold.sessions.models import Session
from threshold.sessions.store import SIGN_IN_ACR, SIGN_IN_AMR

pytestmark = pytest.mark.django_db


def signed_in_assurance(browser: Browser) -> tuple[list[str], str | None]:
    data = Session.objects.get(session_key=browser.session_key).get_decoded()
    return data[SIGN_IN_AMR], data[SIGN_IN_ACR]


def test_a_synced_passkey_is_phishing_resistant_but_not_hardware_bound(db):
    person = enrolled_person("ada@example.com", "Ada", backup_eligible=True, backup_state=True)
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    assert signed_in_assurance(browser) == (["pop", "swk", "mfa"], "phr")


def test_a_synced_passkey_with_trusted_attestation_is_still_not_hardware_bound(db):
    """Attestation vouches for the authenticator the passkey was made on, not for where the
    passkey is now: a backup-eligible passkey can be copied to other devices."""
    person = enrolled_person("ada@example.com", "Ada", backup_eligible=True, backup_state=False)
    Passkey.objects.filter(user=person.user).update(attestation_trusted=True)
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    assert signed_in_assurance(browser) == (["pop", "swk", "mfa"], "phr")


def test_a_device_bound_passkey_needs_trusted_attestation_to_be_hardware_bound(db):
    person = enrolled_person("ada@example.com", "Ada")
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    # Attestation "none": nothing vouches for the hardware.
    assert signed_in_assurance(browser) == (["pop", "swk", "mfa"], "phr")
    Passkey.objects.filter(user=person.user).update(attestation_trusted=True)
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    assert signed_in_assurance(browser) == (["pop", "hwk", "mfa"], "phrh")


def test_enrolling_signs_in_with_what_the_new_passkey_proves(db):
    _, token = invite("ada@example.com", "Ada")
    browser = Browser()
    assert_ok(enroll(browser, token, SoftAuthenticator(backup_eligible=True)))
    assert signed_in_assurance(browser) == (["pop", "swk", "mfa"], "phr")


def test_without_user_verification_there_is_no_mfa():
    bare = assurance.for_passkey(hardware_bound=True, user_verified=False)
    assert bare.amr == (Amr.POP, Amr.HWK)
    assert bare.acr == Acr.PHRH


def test_phrh_satisfies_phr_but_not_the_other_way_round():
    hardware = assurance.for_passkey(hardware_bound=True, user_verified=True)
    synced = assurance.for_passkey(hardware_bound=False, user_verified=True)
    assert hardware.satisfies(Acr.PHR)
    assert hardware.satisfies(Acr.PHRH)
    assert synced.satisfies(Acr.PHR)
    assert not synced.satisfies(Acr.PHRH)
    assert not assurance.PASSWORD_AND_APP.satisfies(Acr.PHR)
    assert not assurance.PASSWORD_AND_RECOVERY_CODE.satisfies(Acr.PHR)
