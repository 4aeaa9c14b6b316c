"""One failure convention for actions: they raise a ThresholdError. Where a failure must still
leave a trace (the used challenge, the failure's audit row, the counted attempt), the action
commits that first and then raises."""

from __future__ import annotations

import pyotp
import pytest

from tests.integration.conftest import ORIGIN, last_event
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core import errors
from threshold.core.encoding import b64url_encode
from threshold.core.policy import Policy
from threshold.fallback.actions import do_finish_fallback_sign_in, do_set_up_fallback
from threshold.fallback.models import FailureCounter
from threshold.passkeys.actions import (
    do_begin_registration,
    do_begin_sign_in,
    do_finish_registration,
    do_finish_sign_in,
)
from threshold.passkeys.models import Passkey, UsedChallenge
from threshold.passkeys.pending import Ceremonies

pytestmark = pytest.mark.django_db


def test_a_failed_sign_in_raises_once_its_challenge_and_audit_row_are_stored(ada):
    browser = Ceremonies()
    options = do_begin_sign_in(browser)
    assertion = ada.authenticator.get(options, "https://evil.example")
    used = UsedChallenge.objects.count()
    with pytest.raises(errors.OriginNotAllowed):
        do_finish_sign_in(browser.returned(), assertion, Origin())
    # Raised after the transaction committed: neither the used challenge nor the row rolled back.
    assert UsedChallenge.objects.count() == used + 1
    assert last_event("sign_in.failed").reason == "origin_not_allowed"
    # So the same response cannot try again.
    with pytest.raises(errors.ChallengeMissing):
        do_finish_sign_in(browser.returned(), assertion, Origin())


def test_a_sign_in_returns_who_signed_in(ada):
    browser = Ceremonies()
    options = do_begin_sign_in(browser)
    signed_in = do_finish_sign_in(
        browser.returned(), ada.authenticator.get(options, ORIGIN), Origin()
    )
    assert signed_in.user == ada.user
    assert signed_in.user_verified is True


@pytest.mark.parametrize(("made_for_ada", "signalled"), [(True, True), (False, False)])
def test_an_unknown_discoverable_credential_may_be_hidden_by_the_browser(
    ada, made_for_ada, signalled
):
    # A passkey made for Ada's account that it does not hold (removed since) may be hidden;
    # one made for a user handle no account has is not (saying so would tell nothing the
    # browser needs, and whatever it says must not depend on who has passkeys).
    browser = Ceremonies()
    options = do_begin_sign_in(browser)
    stranger = SoftAuthenticator()
    handle = b64url_encode(bytes(ada.user.user_handle)) if made_for_ada else "AAAA"
    stranger.create(
        {
            **options,
            "rp": {"id": "localhost", "name": "x"},
            "user": {"id": handle, "name": "x", "displayName": "x"},
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        },
        ORIGIN,
    )
    with pytest.raises(errors.CredentialUnknown) as refused:
        do_finish_sign_in(browser.returned(), stranger.get(options, ORIGIN), Origin())
    assert refused.value.signal_unknown is signalled
    assert last_event("sign_in.failed").reason == "credential_unknown"
    assert last_event("sign_in.failed").subject is None


def test_an_unknown_credential_among_offered_ones_is_never_signalled(ada):
    browser = Ceremonies()
    options = do_begin_sign_in(browser, username="ada@example.com")  # allowCredentials
    assertion = ada.authenticator.get(options, ORIGIN)
    Passkey.objects.filter(user=ada.user).delete()
    with pytest.raises(errors.CredentialUnknown) as refused:
        do_finish_sign_in(browser.returned(), assertion, Origin())
    assert refused.value.signal_unknown is False


def test_a_failed_registration_raises_once_its_challenge_and_audit_row_are_stored(ada):
    browser = Ceremonies(session_key="s" * 32)
    options = do_begin_registration(browser, ada.user, purpose="add")
    credential = SoftAuthenticator().create(options, "https://evil.example")
    used = UsedChallenge.objects.count()
    with pytest.raises(errors.OriginNotAllowed):
        do_finish_registration(browser.returned(), credential, Origin(), purpose="add")
    assert UsedChallenge.objects.count() == used + 1
    event = last_event("passkey.registration_failed")
    assert event.reason == "origin_not_allowed"
    assert event.detail["purpose"] == "add"
    assert Passkey.objects.filter(user=ada.user).count() == 1  # nothing stored


def test_a_registration_for_someone_deleted_meanwhile_is_refused_not_a_server_error(ada):
    browser = Ceremonies(session_key="s" * 32)
    options = do_begin_registration(browser, ada.user, purpose="add")
    credential = SoftAuthenticator().create(options, ORIGIN)
    ada.user.delete()
    used = UsedChallenge.objects.count()
    with pytest.raises(errors.ChallengeMissing):
        do_finish_registration(browser.returned(), credential, Origin(), purpose="add")
    # The token is used up all the same: it cannot be tried again.
    assert UsedChallenge.objects.count() == used + 1
    assert last_event("passkey.registration_failed").reason == "challenge_missing"


def test_a_registration_returns_the_new_passkey(ada):
    browser = Ceremonies(session_key="s" * 32)
    options = do_begin_registration(browser, ada.user, purpose="add")
    credential = SoftAuthenticator().create(options, ORIGIN)
    passkey = do_finish_registration(browser.returned(), credential, Origin(), purpose="add")
    assert isinstance(passkey, Passkey)
    assert passkey.user == ada.user


def test_a_wrong_code_raises_once_its_attempt_and_audit_row_are_stored(ada):
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    do_set_up_fallback(ada.user, "correct horse battery staple", secret, 0, Origin.cli())
    wrong = str((int(pyotp.TOTP(secret).now()) + 1) % 1_000_000).zfill(6)
    with pytest.raises(errors.SecondFactorIncorrect):
        do_finish_fallback_sign_in(ada.user, wrong, Origin(ip="192.0.2.1"), Policy())
    assert last_event("sign_in.failed").reason == "code_incorrect"
    assert FailureCounter.objects.filter(failures=1).exists()
    assert not AuditEvent.objects.filter(action="sign_in.succeeded").exists()
