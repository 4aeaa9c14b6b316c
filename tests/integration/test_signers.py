"""threshold.web.signers: a kept signer follows the keys in the settings."""

import pytest
from django.conf import settings
from django.core import signing
from django.test import override_settings

from threshold.web.signers import signer


def test_a_kept_signer_is_djangos_signer_for_the_salt() -> None:
    token = signer("threshold.tests:a").sign("value")
    assert signing.Signer(salt="threshold.tests:a").unsign(token) == "value"
    assert signer("threshold.tests:a") is signer("threshold.tests:a")
    with pytest.raises(signing.BadSignature):
        signer("threshold.tests:b").unsign(token)


def test_a_new_secret_key_is_used_at_once_and_the_old_one_as_a_fallback() -> None:
    old = signer("threshold.tests:a").sign("value")
    with override_settings(SECRET_KEY="another key " * 4):
        new = signer("threshold.tests:a").sign("value")
        assert new != old
        with pytest.raises(signing.BadSignature):
            signer("threshold.tests:a").unsign(old)
    with override_settings(
        SECRET_KEY="another key " * 4, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]
    ):
        assert signer("threshold.tests:a").unsign(old) == "value"
    assert signer("threshold.tests:a").unsign(old) == "value"
    with pytest.raises(signing.BadSignature):
        signer("threshold.tests:a").unsign(new)
