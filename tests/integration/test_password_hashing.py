"""Production's password hashing, which the other integration tests replace with Argon2id at its
lowest cost (``tests/support/hashers.py``, ``conftest._lowest_cost_password_hashing``)."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.hashers import get_hasher, identify_hasher

from tests.integration.conftest import Browser, Person
from tests.integration.test_fallback import PASSWORD, SECRET, code_at, fallback_sign_in
from tests.support.hashers import LowestCostArgon2idHasher
from threshold.accounts.hashers import Argon2idHasher
from threshold.audit.actions import Origin
from threshold.fallback.actions import do_set_up_fallback

PRODUCTION = "threshold.accounts.hashers.Argon2idHasher"
OWASP = "$argon2id$v=19$m=19456,t=2,p=1$"


def test_production_hashes_with_argon2id_at_owasps_cost() -> None:
    production = importlib.import_module("threshold.settings")
    assert production.PASSWORD_HASHERS == [PRODUCTION]
    hasher = Argon2idHasher()
    encoded = hasher.encode(PASSWORD, hasher.salt())
    assert encoded.startswith("argon2" + OWASP)
    assert hasher.verify(PASSWORD, encoded)
    assert not hasher.verify(PASSWORD + " ", encoded)


def test_the_tests_hash_with_the_same_algorithm_and_production_would_strengthen_it() -> None:
    cheap = LowestCostArgon2idHasher()
    encoded = cheap.encode(PASSWORD, cheap.salt())
    assert encoded.startswith("argon2$argon2id$v=19$m=8,t=1,p=1$")
    # Production reads it (same algorithm name) and re-hashes it at its own cost when checked.
    assert Argon2idHasher().verify(PASSWORD, encoded)
    assert Argon2idHasher().must_update(encoded)


@pytest.mark.django_db
def test_a_fallback_password_at_productions_cost_signs_in(ada: Person, clock, settings) -> None:
    settings.PASSWORD_HASHERS = [PRODUCTION]
    assert isinstance(get_hasher(), Argon2idHasher)
    assert not isinstance(get_hasher(), LowestCostArgon2idHasher)
    do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    ada.user.refresh_from_db()
    assert ada.user.password.startswith("argon2" + OWASP)
    assert type(identify_hasher(ada.user.password)) is Argon2idHasher

    browser = Browser()
    response = fallback_sign_in(browser, code_at(clock.now))
    assert response.status_code == 303
    assert browser.is_signed_in()
