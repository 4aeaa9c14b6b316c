"""Registration policy (Policy.check_registration) on registrations the real core verified.

Each rule refuses with its own error, and the person sees the catalog entry for
it. The registrations are W3C §16 vectors: trusted ones chain to the
specification's test CA, untrusted ones carry no attestation.
"""

from __future__ import annotations

import uuid

import pytest

from tests.unit.vectors import register, registration_state, vector
from threshold.core import catalog, errors
from threshold.core.ceremony import DEFAULT_ALGORITHMS, VerifiedRegistration
from threshold.core.policy import Policy, PolicyError

# Trusted (packed, full attestation, chained to the test CA), BE set.
TRUSTED_SYNCED = "packed-es256/registration"
# Trusted, BE clear.
TRUSTED_DEVICE_BOUND = "packed-eddsa-ed25519/registration"
# No attestation, BE set.
UNATTESTED_SYNCED = "none-es256/registration"
# No attestation, BE clear.
UNATTESTED_DEVICE_BOUND = "none-es256-top-origin/registration"
# fido-u2f, trusted, BE clear, AAGUID zero.
U2F = "fido-u2f-es256/registration"


def _verified(name: str) -> VerifiedRegistration:
    return register(vector(name))


def _aaguid(name: str) -> str:
    return str(vector(name)["expected"]["aaguid"])


def _title(error: errors.CeremonyError) -> str:
    return catalog.entry_for(error, "registration").title


def test_the_vectors_have_the_kinds_these_tests_rely_on() -> None:
    kinds = {
        name: (_verified(name).attestation_trusted, _verified(name).backup_eligible)
        for name in (
            TRUSTED_SYNCED,
            TRUSTED_DEVICE_BOUND,
            UNATTESTED_SYNCED,
            UNATTESTED_DEVICE_BOUND,
        )
    }

    assert kinds == {
        TRUSTED_SYNCED: (True, True),
        TRUSTED_DEVICE_BOUND: (True, False),
        UNATTESTED_SYNCED: (False, True),
        UNATTESTED_DEVICE_BOUND: (False, False),
    }


@pytest.mark.parametrize(
    "name", [TRUSTED_SYNCED, TRUSTED_DEVICE_BOUND, UNATTESTED_SYNCED, UNATTESTED_DEVICE_BOUND]
)
def test_default_policy_admits_every_fido2_registration(name: str) -> None:
    Policy().check_registration(_verified(name))


# --- U2F-only authenticators ----------------------------------------------------------------------


def test_default_policy_refuses_a_fido_u2f_registration() -> None:
    with pytest.raises(errors.U2fAuthenticatorRefused) as exc_info:
        Policy().check_registration(_verified(U2F))

    assert exc_info.value.code == "authenticator_u2f_only"
    assert _title(exc_info.value) == "Authenticator Not Allowed"


def test_policy_that_admits_u2f_admits_a_fido_u2f_registration() -> None:
    Policy(refuse_u2f_authenticators=False).check_registration(_verified(U2F))


# --- Deny-list and allow-list --------------------------------------------------------------------


def test_denied_aaguid_is_refused() -> None:
    policy = Policy(aaguid_deny_list=(_aaguid(TRUSTED_SYNCED),))

    with pytest.raises(errors.AuthenticatorDenied) as exc_info:
        policy.check_registration(_verified(TRUSTED_SYNCED))

    assert exc_info.value.code == "authenticator_denied"
    assert _title(exc_info.value) == "Authenticator Not Allowed"


def test_deny_list_matches_an_aaguid_written_in_capitals() -> None:
    policy = Policy(aaguid_deny_list=(_aaguid(TRUSTED_SYNCED).upper(),))

    with pytest.raises(errors.AuthenticatorDenied):
        policy.check_registration(_verified(TRUSTED_SYNCED))


def test_deny_list_refuses_an_unattested_aaguid_too() -> None:
    policy = Policy(aaguid_deny_list=(_aaguid(UNATTESTED_SYNCED),))

    with pytest.raises(errors.AuthenticatorDenied):
        policy.check_registration(_verified(UNATTESTED_SYNCED))


def test_deny_list_does_not_refuse_other_aaguids() -> None:
    Policy(aaguid_deny_list=(_aaguid(TRUSTED_DEVICE_BOUND),)).check_registration(
        _verified(TRUSTED_SYNCED)
    )


def test_deny_list_wins_over_the_allow_list() -> None:
    aaguid = _aaguid(TRUSTED_SYNCED)
    policy = Policy(aaguid_allow_list=(aaguid,), aaguid_deny_list=(aaguid,))

    with pytest.raises(errors.AuthenticatorDenied):
        policy.check_registration(_verified(TRUSTED_SYNCED))


def test_allow_list_admits_an_attested_aaguid_on_it() -> None:
    Policy(aaguid_allow_list=(_aaguid(TRUSTED_SYNCED),)).check_registration(
        _verified(TRUSTED_SYNCED)
    )


def test_allow_list_refuses_an_attested_aaguid_not_on_it() -> None:
    policy = Policy(aaguid_allow_list=(_aaguid(TRUSTED_DEVICE_BOUND),))

    with pytest.raises(errors.AuthenticatorNotAllowed) as exc_info:
        policy.check_registration(_verified(TRUSTED_SYNCED))

    assert exc_info.value.code == "authenticator_not_allowed"
    assert _title(exc_info.value) == "Authenticator Not Allowed"


def test_allow_list_refuses_an_aaguid_on_it_that_attestation_does_not_prove() -> None:
    # Without attestation the AAGUID is only the authenticator's claim.
    policy = Policy(aaguid_allow_list=(_aaguid(UNATTESTED_SYNCED),))

    with pytest.raises(errors.AuthenticatorNotAllowed) as exc_info:
        policy.check_registration(_verified(UNATTESTED_SYNCED))

    assert "not attested" in exc_info.value.detail


def test_allow_list_refuses_an_aaguid_whose_chain_is_untrusted() -> None:
    # The same attested vector without the test CA among the anchors.
    verified = register(vector(TRUSTED_SYNCED), trust_anchors=())
    policy = Policy(aaguid_allow_list=(_aaguid(TRUSTED_SYNCED),))

    with pytest.raises(errors.AuthenticatorNotAllowed):
        policy.check_registration(verified)


# --- Trusted attestation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [UNATTESTED_SYNCED, UNATTESTED_DEVICE_BOUND, "packed-self-es256/registration"]
)
def test_policy_requiring_trusted_attestation_refuses_an_untrusted_one(name: str) -> None:
    with pytest.raises(errors.AttestationUntrusted) as exc_info:
        Policy(require_trusted_attestation=True).check_registration(_verified(name))

    assert exc_info.value.code == "attestation_untrusted"
    assert _title(exc_info.value) == "Authenticator Not Allowed"
    assert exc_info.value.detail == _verified(name).untrusted_reason


def test_policy_requiring_trusted_attestation_admits_a_trusted_one() -> None:
    Policy(require_trusted_attestation=True).check_registration(_verified(TRUSTED_DEVICE_BOUND))


# --- Synced passkeys ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [TRUSTED_SYNCED, UNATTESTED_SYNCED])
def test_policy_blocking_synced_passkeys_refuses_a_backup_eligible_one(name: str) -> None:
    with pytest.raises(errors.SyncedPasskeyBlocked) as exc_info:
        Policy(block_synced_passkeys=True).check_registration(_verified(name))

    assert exc_info.value.code == "synced_passkey_blocked"
    entry = catalog.entry_for(exc_info.value, "registration")
    assert entry.title == "Synced Passkeys Not Allowed"
    assert "iCloud Keychain" in entry.message


@pytest.mark.parametrize("name", [TRUSTED_DEVICE_BOUND, UNATTESTED_DEVICE_BOUND])
def test_policy_blocking_synced_passkeys_admits_a_device_bound_one(name: str) -> None:
    Policy(block_synced_passkeys=True).check_registration(_verified(name))


# --- Algorithms: offered from the policy, refused at §7.1 step 20 ---------------------------------


def test_algorithm_the_policy_does_not_allow_is_refused_with_the_not_supported_entry() -> None:
    policy = Policy(allowed_algorithms=(-7,))
    v = vector(TRUSTED_DEVICE_BOUND)  # EdDSA

    with pytest.raises(errors.AlgorithmNotAllowed) as exc_info:
        register(v, state=registration_state(v, algorithms=policy.allowed_algorithms))

    assert _title(exc_info.value) == "Passkeys Not Supported"


def test_algorithm_the_policy_allows_is_accepted() -> None:
    policy = Policy(allowed_algorithms=(-8,))
    v = vector(TRUSTED_DEVICE_BOUND)

    assert register(v, state=registration_state(v, algorithms=policy.allowed_algorithms)).alg == -8


# --- Changing the policy from text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("NO", False),
        ("0", False),
        (" off ", False),
    ],
)
def test_boolean_settings_parse_from_text(text: str, value: bool) -> None:
    policy = Policy().with_text_changes(
        {
            "block_synced_passkeys": text,
            "require_trusted_attestation": text,
            "refuse_u2f_authenticators": text,
        }
    )

    assert policy.block_synced_passkeys is value
    assert policy.require_trusted_attestation is value
    assert policy.refuse_u2f_authenticators is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "yes please"])
def test_boolean_setting_rejects_other_text(text: str) -> None:
    with pytest.raises(PolicyError):
        Policy().with_text_changes({"block_synced_passkeys": text})


def test_aaguid_lists_parse_from_comma_separated_text() -> None:
    first, second = _aaguid(TRUSTED_SYNCED), _aaguid(U2F)

    policy = Policy().with_text_changes(
        {"aaguid_allow_list": f" {first.upper()} ,{second},", "aaguid_deny_list": second}
    )

    assert policy.aaguid_allow_list == (first, second)
    assert policy.aaguid_deny_list == (second,)


def test_empty_text_empties_an_aaguid_list() -> None:
    policy = Policy(aaguid_deny_list=(_aaguid(U2F),)).with_text_changes({"aaguid_deny_list": ""})

    assert policy.aaguid_deny_list == ()


# A fixed AAGUID, not uuid4(): pytest-xdist's workers must collect the same test IDs.
@pytest.mark.parametrize("text", ["not-an-aaguid", "1234", f"{uuid.UUID(int=0x1D)},nope"])
@pytest.mark.parametrize("setting", ["aaguid_allow_list", "aaguid_deny_list"])
def test_aaguid_list_rejects_text_that_is_not_an_aaguid(setting: str, text: str) -> None:
    with pytest.raises(PolicyError, match=setting):
        Policy().with_text_changes({setting: text})


def test_allowed_algorithms_parse_from_text() -> None:
    policy = Policy().with_text_changes({"allowed_algorithms": "-7, -8,-257"})

    assert policy.allowed_algorithms == (-7, -8, -257)


@pytest.mark.parametrize("text", ["-7,abc", "ES256", "-999", "-7,-65535", "", "-7,-47"])
def test_allowed_algorithms_reject_unknown_or_unsupported_values(text: str) -> None:
    with pytest.raises(PolicyError, match="allowed_algorithms"):
        Policy().with_text_changes({"allowed_algorithms": text})


def test_every_default_algorithm_may_be_allowed() -> None:
    assert Policy(allowed_algorithms=DEFAULT_ALGORITHMS).allowed_algorithms == DEFAULT_ALGORITHMS


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(PolicyError, match="unknown policy setting"):
        Policy().with_text_changes({"block_synced": "true"})


def test_policy_as_json_lists_the_registration_rules() -> None:
    settings = Policy(aaguid_deny_list=(_aaguid(U2F),)).as_json()

    assert settings["aaguid_deny_list"] == [_aaguid(U2F)]
    assert settings["allowed_algorithms"] == list(DEFAULT_ALGORITHMS)
    assert settings["refuse_u2f_authenticators"] is True
    assert settings["require_trusted_attestation"] is False
    assert settings["block_synced_passkeys"] is False
