"""Authentication, WebAuthn Level 3 §7.2: begin_authentication, parse_authentication_response,
finish_authentication.

Every negative test takes a valid assertion from the software authenticator,
changes one thing, and expects the typed error for the step that catches it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fido2 import cbor
from fido2.cose import CoseKey

from tests.support.authenticator import (
    BE,
    BS,
    ED,
    UP,
    UV,
    Credential,
    SoftAuthenticator,
    authenticator_data,
    sign,
)
from tests.unit.conftest import NOW, ORIGIN, RP_ID, TIMEOUT_SECONDS, TOP_ORIGIN
from tests.unit.edits import client_data, mutate, response, top
from threshold.core import errors
from threshold.core.ceremony import (
    AuthenticationState,
    CredentialDescriptor,
    RelyingParty,
    StoredCredential,
    VerifiedAuthentication,
    begin_authentication,
    begin_registration,
    finish_authentication,
    finish_registration,
    parse_authentication_response,
    parse_registration_response,
)
from threshold.core.encoding import b64url_decode, b64url_encode

ADA = b"\x11" * 32  # the user handle of the account signing in
GRACE = b"\x22" * 32  # another account's
ALGORITHMS = pytest.mark.parametrize("alg", [-7, -8, -257], ids=["ES256", "EdDSA", "RS256"])


# --- Helpers ------------------------------------------------------------------------------


@dataclass
class Passkey:
    """A credential the software authenticator holds, and what the store holds about it."""

    authenticator: SoftAuthenticator
    credential: Credential
    stored: StoredCredential


def make_passkey(
    private_key: Any,
    alg: int = -7,
    *,
    user_handle: bytes = ADA,
    sign_count: int = 0,
    backup_eligible: bool = False,
    backup_state: bool = False,
    counter_step: int = 1,
) -> Passkey:
    credential = Credential(
        credential_id=os.urandom(16),
        alg=alg,
        private_key=private_key,
        rp_id=RP_ID,
        user_handle=user_handle,
        sign_count=sign_count,
    )
    authenticator = SoftAuthenticator(
        backup_eligible=backup_eligible,
        backup_state=backup_state,
        counter_step=counter_step,
        credentials=[credential],
    )
    public_key = CoseKey.for_alg(alg).from_cryptography_key(private_key.public_key())
    stored = StoredCredential(
        credential_id=credential.credential_id,
        public_key=cbor.encode(dict(public_key)),
        sign_count=sign_count,
        backup_eligible=backup_eligible,
        user_handle=user_handle,
    )
    return Passkey(authenticator, credential, stored)


@dataclass
class SignIn:
    """A begun authentication ceremony and the passkey that will answer it."""

    rp: RelyingParty
    options: dict[str, Any]
    state: AuthenticationState
    passkey: Passkey

    def respond(self, origin: str = ORIGIN, **overrides: Any) -> dict[str, Any]:
        """AuthenticationResponseJSON, as ``credential.toJSON()`` returns it."""
        overrides.setdefault("credential", self.passkey.credential)
        return self.passkey.authenticator.get(self.options, origin, **overrides)

    def client_data(self, **fields: Any) -> bytes:
        """This ceremony's clientDataJSON with ``fields`` changed; a value of None removes one."""
        data: dict[str, Any] = {
            "type": "webauthn.get",
            "challenge": self.options["challenge"],
            "origin": ORIGIN,
            "crossOrigin": False,
        }
        data.update(fields)
        return json.dumps({k: v for k, v in data.items() if v is not None}).encode()

    def assertion(
        self,
        auth_data: bytes,
        client_data: bytes | None = None,
        *,
        signed_auth_data: bytes | None = None,
        signed_client_data: bytes | None = None,
    ) -> dict[str, Any]:
        """A response built from raw parts, signed over ``signed_*`` (by default, what is sent)."""
        client_data = client_data if client_data is not None else self.client_data()
        message = (
            signed_auth_data if signed_auth_data is not None else auth_data
        ) + hashlib.sha256(
            signed_client_data if signed_client_data is not None else client_data
        ).digest()
        credential = self.passkey.credential
        signature = sign(credential.alg, credential.private_key, message)
        data = self.respond()
        data["response"].update(
            clientDataJSON=b64url_encode(client_data),
            authenticatorData=b64url_encode(auth_data),
            signature=b64url_encode(signature),
        )
        return data

    def finish(
        self,
        data: object,
        *,
        rp: RelyingParty | None = None,
        stored: StoredCredential | None = None,
        now: float = NOW,
    ) -> VerifiedAuthentication:
        return finish_authentication(
            rp or self.rp,
            self.state,
            parse_authentication_response(data),
            stored or self.passkey.stored,
            now=now,
        )


@pytest.fixture
def passkey(private_keys: dict[int, Any]) -> Passkey:
    """Ada's device-bound ES256 passkey, never used before."""
    return make_passkey(private_keys[-7])


@pytest.fixture
def start(rp: RelyingParty) -> Callable[..., SignIn]:
    def start(passkey: Passkey, **options: Any) -> SignIn:
        request_options, state = begin_authentication(
            rp, now=NOW, timeout_seconds=TIMEOUT_SECONDS, **options
        )
        return SignIn(rp, request_options, state, passkey)

    return start


@pytest.fixture
def sign_in(start: Callable[..., SignIn], passkey: Passkey) -> SignIn:
    """A discoverable sign-in (no username) answered by ``passkey``."""
    return start(passkey)


def username_first(
    start: Callable[..., SignIn], passkey: Passkey, user_handle: bytes = ADA
) -> SignIn:
    """A sign-in for the account ``user_handle``, offering ``passkey`` in allowCredentials."""
    return start(
        passkey,
        allow_credentials=[CredentialDescriptor(passkey.credential.credential_id, ("internal",))],
        user_handle=user_handle,
    )


def flip_last_bit(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


# --- Options and state ---------------------------------------------------------------------


def test_discoverable_sign_in_options_allow_any_credential(sign_in: SignIn) -> None:
    options = sign_in.options
    assert options["rpId"] == RP_ID
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    assert options["timeout"] == TIMEOUT_SECONDS * 1000
    assert "extensions" not in options
    assert b64url_decode(options["challenge"]) == sign_in.state.challenge
    assert sign_in.state.allow_credentials is None
    assert sign_in.state.user_handle is None
    assert sign_in.state.expires_at == NOW + TIMEOUT_SECONDS


def test_username_first_sign_in_options_list_the_accounts_credentials(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    sign_in = username_first(start, passkey)
    credential_id = passkey.credential.credential_id
    assert sign_in.options["allowCredentials"] == [
        {"type": "public-key", "id": b64url_encode(credential_id), "transports": ["internal"]}
    ]
    assert sign_in.state.allow_credentials == (credential_id,)
    assert sign_in.state.user_handle == ADA


def test_sign_in_options_carry_the_given_user_verification_and_extensions(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    sign_in = start(passkey, user_verification="preferred", extensions={"appid": "x"})
    assert sign_in.options["userVerification"] == "preferred"
    assert sign_in.options["extensions"] == {"appid": "x"}
    assert sign_in.state.user_verification == "preferred"


def test_sign_in_challenge_is_random_and_at_least_16_bytes(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    challenges = [start(passkey).state.challenge for _ in range(20)]
    assert all(len(challenge) >= 16 for challenge in challenges)
    assert len(set(challenges)) == len(challenges)


def test_begin_authentication_refuses_an_unknown_user_verification(rp: RelyingParty) -> None:
    with pytest.raises(ValueError, match="userVerification must be one of"):
        begin_authentication(rp, now=NOW, timeout_seconds=60, user_verification="sometimes")


@pytest.mark.parametrize(
    "state",
    [
        AuthenticationState(b"\x01" * 32, "required", NOW + 60),
        AuthenticationState(b"\x01" * 32, "preferred", NOW + 60, (b"\x02" * 16, b"\x03" * 5), ADA),
        AuthenticationState(b"\x01" * 32, "required", NOW + 60, (), ADA),
    ],
    ids=["discoverable", "username-first", "empty-allow-list"],
)
def test_authentication_state_survives_a_json_round_trip(state: AuthenticationState) -> None:
    assert AuthenticationState.from_json(json.loads(json.dumps(state.to_json()))) == state


# --- Happy paths ---------------------------------------------------------------------------


@ALGORITHMS
def test_discoverable_sign_in_returns_the_credential_owner(
    start: Callable[..., SignIn], private_keys: dict[int, Any], alg: int
) -> None:
    passkey = make_passkey(private_keys[alg], alg)
    sign_in = start(passkey)

    verified = sign_in.finish(sign_in.respond())

    assert verified == VerifiedAuthentication(
        credential_id=passkey.credential.credential_id,
        sign_count=1,
        backup_state=False,
        user_verified=True,
        user_handle=ADA,
    )


def test_username_first_sign_in_accepts_a_response_with_the_user_handle(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    sign_in = username_first(start, passkey)
    assert sign_in.finish(sign_in.respond()).user_handle == ADA


def test_username_first_sign_in_accepts_a_response_without_a_user_handle(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    # A non-discoverable credential has no user handle to return (§7.2 step 6).
    sign_in = username_first(start, passkey)
    assert sign_in.finish(sign_in.respond(user_handle=None)).user_handle == ADA


def test_sign_in_with_a_freshly_registered_passkey(
    rp: RelyingParty, start: Callable[..., SignIn]
) -> None:
    """The key finish_registration stores is the one finish_authentication verifies with."""
    authenticator = SoftAuthenticator()
    options, state = begin_registration(
        rp, user_handle=ADA, user_name="ada", user_display_name="Ada", now=NOW, timeout_seconds=60
    )
    registered = finish_registration(
        rp, state, parse_registration_response(authenticator.create(options, ORIGIN)), now=NOW
    )
    stored = StoredCredential(
        credential_id=registered.credential_id,
        public_key=registered.public_key,
        sign_count=registered.sign_count,
        backup_eligible=registered.backup_eligible,
        user_handle=ADA,
    )
    passkey = Passkey(authenticator, authenticator.credentials[-1], stored)
    sign_in = start(passkey)
    assert sign_in.finish(sign_in.respond()).credential_id == registered.credential_id


def test_sign_in_reports_the_backup_state_of_a_synced_passkey(
    start: Callable[..., SignIn], private_keys: dict[int, Any]
) -> None:
    passkey = make_passkey(private_keys[-7], backup_eligible=True, backup_state=True)
    sign_in = start(passkey)
    assert sign_in.finish(sign_in.respond()).backup_state is True


def test_sign_in_accepts_a_passkey_backed_up_since_registration(
    start: Callable[..., SignIn], private_keys: dict[int, Any]
) -> None:
    # BS may change over a credential's life; only BE may not.
    passkey = make_passkey(private_keys[-7], backup_eligible=True, backup_state=False)
    passkey.authenticator.backup_state = True
    sign_in = start(passkey)
    assert sign_in.finish(sign_in.respond()).backup_state is True


@pytest.mark.parametrize("user_verification", ["preferred", "discouraged"])
def test_sign_in_accepts_user_verification_clear_unless_required(
    start: Callable[..., SignIn], passkey: Passkey, user_verification: str
) -> None:
    sign_in = start(passkey, user_verification=user_verification)
    assert sign_in.finish(sign_in.respond(user_verified=False)).user_verified is False


def test_sign_in_accepts_authenticator_extension_outputs(sign_in: SignIn) -> None:
    auth_data = authenticator_data(RP_ID, UP | UV | ED, 1) + cbor.encode({"credProtect": 2})
    assert sign_in.finish(sign_in.assertion(auth_data)).sign_count == 1


def test_sign_in_accepts_a_cross_origin_iframe_when_configured(
    sign_in: SignIn, embeddable_rp: RelyingParty
) -> None:
    data = sign_in.respond(client_extra={"crossOrigin": True, "topOrigin": TOP_ORIGIN})
    assert sign_in.finish(data, rp=embeddable_rp).user_handle == ADA


# --- Ceremony state and credential (§7.2 steps 5-6) ----------------------------------------


def test_sign_in_rejects_a_response_after_the_ceremony_expired(sign_in: SignIn) -> None:
    data = sign_in.respond()
    with pytest.raises(errors.ChallengeExpired):
        sign_in.finish(data, now=sign_in.state.expires_at + 1)


def test_sign_in_rejects_a_credential_not_in_allow_credentials(
    start: Callable[..., SignIn], passkey: Passkey, private_keys: dict[int, Any]
) -> None:
    # Ada's account offers one passkey; the response comes from another one she holds.
    sign_in = username_first(start, passkey)
    other = make_passkey(private_keys[-7])
    sign_in.passkey = other
    with pytest.raises(errors.CredentialNotAllowed):
        sign_in.finish(sign_in.respond())


def test_sign_in_with_an_empty_allow_list_allows_no_credential(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    # An account without passkeys: an empty list is not "any credential".
    sign_in = start(passkey, allow_credentials=[], user_handle=ADA)
    with pytest.raises(errors.CredentialNotAllowed):
        sign_in.finish(sign_in.respond())


def test_sign_in_rejects_a_stored_credential_other_than_the_one_named(
    sign_in: SignIn, private_keys: dict[int, Any]
) -> None:
    other = make_passkey(private_keys[-7])
    with pytest.raises(errors.CredentialIdMismatch):
        sign_in.finish(sign_in.respond(), stored=other.stored)


# --- Client data (§7.2 steps 10-14) ----------------------------------------------------------


def test_sign_in_rejects_client_data_of_a_registration(sign_in: SignIn) -> None:
    data = sign_in.respond(client_data=sign_in.client_data(type="webauthn.create"))
    with pytest.raises(errors.ClientDataTypeMismatch):
        sign_in.finish(data)


def test_sign_in_rejects_another_challenge(sign_in: SignIn) -> None:
    data = sign_in.respond(client_data=sign_in.client_data(challenge=b64url_encode(bytes(32))))
    with pytest.raises(errors.ChallengeMismatch):
        sign_in.finish(data)


def test_sign_in_rejects_a_response_replayed_into_a_new_ceremony(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    earlier, later = start(passkey), start(passkey)
    data = earlier.respond()
    earlier.finish(data)
    with pytest.raises(errors.ChallengeMismatch):
        later.finish(data)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://example.com:8443",
        "http://example.com",
        "https://example.com/",
        "https://login.example.com",
        "https://example.com.evil.example",
    ],
)
def test_sign_in_rejects_an_origin_not_allowed(sign_in: SignIn, origin: str) -> None:
    data = sign_in.respond(origin=origin)
    with pytest.raises(errors.OriginNotAllowed):
        sign_in.finish(data)


def test_sign_in_rejects_a_cross_origin_iframe_by_default(sign_in: SignIn) -> None:
    data = sign_in.respond(client_extra={"crossOrigin": True, "topOrigin": TOP_ORIGIN})
    with pytest.raises(errors.CrossOriginNotAllowed):
        sign_in.finish(data)


def test_sign_in_rejects_a_top_origin_without_cross_origin(sign_in: SignIn) -> None:
    data = sign_in.respond(client_extra={"topOrigin": TOP_ORIGIN})
    with pytest.raises(errors.CrossOriginNotAllowed):
        sign_in.finish(data)


@pytest.mark.parametrize(
    "client_extra",
    [{"crossOrigin": True, "topOrigin": "https://evil.example"}],
    ids=["unknown-top-origin"],
)
def test_sign_in_rejects_a_top_origin_not_allowed(
    sign_in: SignIn, embeddable_rp: RelyingParty, client_extra: dict[str, Any]
) -> None:
    data = sign_in.respond(client_extra=client_extra)
    with pytest.raises(errors.TopOriginNotAllowed):
        sign_in.finish(data, rp=embeddable_rp)


# --- Authenticator data and signature (§7.2 steps 15-21) -------------------------------------


def test_sign_in_rejects_an_rp_id_hash_for_another_rp_id(sign_in: SignIn) -> None:
    data = sign_in.respond(rp_id="other.example")
    with pytest.raises(errors.RpIdHashMismatch):
        sign_in.finish(data)


@ALGORITHMS
def test_sign_in_rejects_a_tampered_signature(
    start: Callable[..., SignIn], private_keys: dict[int, Any], alg: int
) -> None:
    sign_in = start(make_passkey(private_keys[alg], alg))
    with pytest.raises(errors.SignatureInvalid):
        sign_in.finish(sign_in.respond(tamper_signature=True))


def test_sign_in_rejects_a_signature_by_another_key(sign_in: SignIn) -> None:
    sign_in.passkey.credential.private_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(errors.SignatureInvalid):
        sign_in.finish(sign_in.respond())


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x00", b"\x30\x06\x02\x01\x00\x02\x01\x00"],
    ids=["empty", "one-byte", "zero-r-s"],
)
def test_sign_in_rejects_a_garbage_signature(sign_in: SignIn, signature: bytes) -> None:
    data = sign_in.respond()
    data["response"]["signature"] = b64url_encode(signature)
    with pytest.raises(errors.SignatureInvalid):
        sign_in.finish(data)


def test_sign_in_rejects_an_es256_signature_not_in_der(sign_in: SignIn) -> None:
    # §6.5.6: ECDSA signatures are ASN.1 DER; the raw r||s form is not accepted.
    data = sign_in.respond()
    r, s = decode_dss_signature(b64url_decode(data["response"]["signature"]))
    data["response"]["signature"] = b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    with pytest.raises(errors.SignatureInvalid):
        sign_in.finish(data)


@pytest.mark.parametrize(
    "change",
    [
        lambda auth_data: auth_data[:33] + (1000).to_bytes(4, "big"),  # a larger counter
        lambda auth_data: auth_data[:32] + bytes([auth_data[32] | BE]) + auth_data[33:],
        lambda auth_data: (
            auth_data[:32] + bytes([auth_data[32] | ED]) + auth_data[33:] + cbor.encode({})
        ),
    ],
    ids=["sign-count", "be-flag", "extensions"],
)
def test_sign_in_rejects_authenticator_data_changed_after_signing(
    sign_in: SignIn, change: Callable[[bytes], bytes]
) -> None:
    signed = authenticator_data(RP_ID, UP | UV, 1)
    data = sign_in.assertion(change(signed), signed_auth_data=signed)
    with pytest.raises(errors.SignatureInvalid):
        sign_in.finish(data)


def test_sign_in_rejects_client_data_changed_after_signing(sign_in: SignIn) -> None:
    # Same members, other bytes: the signature covers the exact clientDataJSON.
    signed = sign_in.client_data()
    sent = json.dumps(json.loads(signed), indent=1).encode()
    data = sign_in.assertion(authenticator_data(RP_ID, UP | UV, 1), sent, signed_client_data=signed)
    with pytest.raises(errors.SignatureInvalid):
        sign_in.finish(data)


def test_sign_in_rejects_an_assertion_without_user_presence(sign_in: SignIn) -> None:
    with pytest.raises(errors.UserNotPresent):
        sign_in.finish(sign_in.respond(flags=UV))


def test_sign_in_rejects_an_assertion_without_user_verification_when_required(
    sign_in: SignIn,
) -> None:
    with pytest.raises(errors.UserNotVerified):
        sign_in.finish(sign_in.respond(user_verified=False))


def test_sign_in_rejects_backup_state_without_backup_eligibility(sign_in: SignIn) -> None:
    with pytest.raises(errors.BackupStateInvalid):
        sign_in.finish(sign_in.respond(flags=UP | UV | BS))


@pytest.mark.parametrize(
    ("stored_backup_eligible", "flags"),
    [(False, UP | UV | BE), (False, UP | UV | BE | BS), (True, UP | UV)],
    ids=["became-eligible", "became-eligible-and-backed-up", "lost-eligibility"],
)
def test_sign_in_rejects_backup_eligibility_changed_since_registration(
    start: Callable[..., SignIn],
    private_keys: dict[int, Any],
    stored_backup_eligible: bool,
    flags: int,
) -> None:
    sign_in = start(make_passkey(private_keys[-7], backup_eligible=stored_backup_eligible))
    with pytest.raises(errors.BackupEligibilityChanged):
        sign_in.finish(sign_in.respond(flags=flags))


# --- User handle (§7.2 step 6) ----------------------------------------------------------------


def test_discoverable_sign_in_rejects_a_response_without_a_user_handle(sign_in: SignIn) -> None:
    with pytest.raises(errors.UserHandleMissing):
        sign_in.finish(sign_in.respond(user_handle=None))


def test_discoverable_sign_in_treats_an_empty_user_handle_as_missing(sign_in: SignIn) -> None:
    data = sign_in.respond()
    data["response"]["userHandle"] = ""
    with pytest.raises(errors.UserHandleMissing):
        sign_in.finish(data)


def test_discoverable_sign_in_rejects_another_accounts_user_handle(sign_in: SignIn) -> None:
    with pytest.raises(errors.UserHandleMismatch):
        sign_in.finish(sign_in.respond(user_handle=GRACE))


def test_username_first_sign_in_rejects_a_credential_of_another_account(
    start: Callable[..., SignIn], private_keys: dict[int, Any]
) -> None:
    # Grace's passkey answers a ceremony begun for Ada (her credential ID was offered).
    graces = make_passkey(private_keys[-7], user_handle=GRACE)
    sign_in = username_first(start, graces, user_handle=ADA)
    with pytest.raises(errors.UserHandleMismatch):
        sign_in.finish(sign_in.respond(user_handle=None))


def test_sign_in_for_an_identified_account_rejects_a_credential_of_another_account(
    start: Callable[..., SignIn], private_keys: dict[int, Any]
) -> None:
    # Re-authentication of Ada without an allow list: Grace's discoverable passkey answers.
    graces = make_passkey(private_keys[-7], user_handle=GRACE)
    sign_in = start(graces, user_handle=ADA)
    with pytest.raises(errors.UserHandleMismatch):
        sign_in.finish(sign_in.respond())


def test_username_first_sign_in_rejects_another_accounts_user_handle(
    start: Callable[..., SignIn], passkey: Passkey
) -> None:
    sign_in = username_first(start, passkey)
    with pytest.raises(errors.UserHandleMismatch):
        sign_in.finish(sign_in.respond(user_handle=GRACE))


# --- Signature counter (§7.2 step 22) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "received"),
    [(5, 5), (5, 4), (5, 0), (2**32 - 1, 0)],
    ids=["equal", "lower", "reset-to-zero", "wrapped"],
)
def test_sign_in_rejects_a_sign_count_regression(
    start: Callable[..., SignIn], private_keys: dict[int, Any], stored: int, received: int
) -> None:
    sign_in = start(make_passkey(private_keys[-7], sign_count=stored))
    with pytest.raises(errors.SignCountRegressed):
        sign_in.finish(sign_in.respond(sign_count=received))


@pytest.mark.parametrize(
    ("stored", "received"),
    [(0, 0), (0, 3), (5, 6), (5, 1000)],
    ids=["synced-passkey-zero", "first-use", "next", "jump"],
)
def test_sign_in_accepts_a_sign_count_that_increased_or_stays_zero(
    start: Callable[..., SignIn], private_keys: dict[int, Any], stored: int, received: int
) -> None:
    sign_in = start(make_passkey(private_keys[-7], sign_count=stored))
    assert sign_in.finish(sign_in.respond(sign_count=received)).sign_count == received


def test_synced_passkey_signs_in_repeatedly_with_a_zero_counter(
    start: Callable[..., SignIn], private_keys: dict[int, Any]
) -> None:
    passkey = make_passkey(
        private_keys[-7], counter_step=0, backup_eligible=True, backup_state=True
    )
    for _ in range(3):
        sign_in = start(passkey)
        assert sign_in.finish(sign_in.respond()).sign_count == 0


# --- Order: the signature first, then what depends on the account -----------------------------


@pytest.mark.parametrize(
    ("setup", "overrides", "error_when_signed"),
    [
        ("discoverable", {"user_handle": GRACE}, errors.UserHandleMismatch),
        ("discoverable", {"user_handle": None}, errors.UserHandleMissing),
        ("another-account", {}, errors.UserHandleMismatch),
        ("stored-count-5", {"sign_count": 5}, errors.SignCountRegressed),
        ("stored-count-5", {"sign_count": 0}, errors.SignCountRegressed),
        ("backup-eligibility-changed", {"flags": UP | UV | BE}, errors.BackupEligibilityChanged),
    ],
    ids=[
        "user-handle",
        "no-user-handle",
        "credential-owner",
        "sign-count",
        "counter-reset",
        "backup-eligibility",
    ],
)
def test_sign_in_checks_the_signature_before_account_and_history_checks(
    start: Callable[..., SignIn],
    private_keys: dict[int, Any],
    setup: str,
    overrides: dict[str, Any],
    error_when_signed: type[errors.CeremonyError],
) -> None:
    """A forged response learns nothing about the account: it fails as SignatureInvalid."""
    if setup == "another-account":
        sign_in = username_first(start, make_passkey(private_keys[-7], user_handle=GRACE), ADA)
    elif setup == "stored-count-5":
        sign_in = start(make_passkey(private_keys[-7], sign_count=5))
    else:
        sign_in = start(make_passkey(private_keys[-7]))
    # The same defect in a genuinely signed response is caught by its own check...
    with pytest.raises(error_when_signed):
        sign_in.finish(sign_in.respond(**overrides))
    # ...but with a bad signature, the signature check comes first.
    with pytest.raises(errors.SignatureInvalid):
        sign_in.finish(sign_in.respond(tamper_signature=True, **overrides))


# --- Malformed input ---------------------------------------------------------------------------


def _auth_data(change: Callable[[bytes], bytes]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(data: dict[str, Any]) -> dict[str, Any]:
        auth_data = b64url_decode(data["response"]["authenticatorData"])
        data["response"]["authenticatorData"] = b64url_encode(change(auth_data))
        return data

    return edit


def _with_flags(flags: int, rest: bytes = b"") -> Callable[[bytes], bytes]:
    return lambda auth_data: auth_data[:32] + bytes([flags]) + auth_data[33:37] + rest


MALFORMED_ASSERTIONS: list[tuple[str, Callable[[dict[str, Any]], object], type[Exception]]] = [
    # The credential object.
    ("not-an-object", lambda data: "public-key", errors.MalformedResponse),
    ("null", lambda data: None, errors.MalformedResponse),
    ("list", lambda data: [data], errors.MalformedResponse),
    ("bytes", lambda data: json.dumps(data).encode(), errors.MalformedResponse),
    ("missing-type", top(type=...), errors.MalformedResponse),
    ("missing-response", top(response=...), errors.MalformedResponse),
    ("type-password", top(type="password"), errors.CredentialTypeInvalid),
    ("type-empty", top(type=""), errors.CredentialTypeInvalid),
    ("response-string", top(response="ok"), errors.MalformedResponse),
    ("response-list", top(response=[{}]), errors.MalformedResponse),
    ("id-standard-base64", top(id="ab+/", rawId="ab+/"), errors.MalformedResponse),
    ("id-length-1-mod-4", top(id="abcde", rawId="abcde"), errors.MalformedResponse),
    ("raw-id-list", top(rawId=["a"]), errors.MalformedResponse),
    ("id-and-raw-id-empty", top(id="", rawId=""), errors.MalformedResponse),
    ("id-differs-from-raw-id", top(id=b64url_encode(b"\x00" * 16)), errors.CredentialIdMismatch),
    # clientDataJSON.
    ("client-data-missing", response(clientDataJSON=...), errors.MalformedResponse),
    ("client-data-not-base64url", response(clientDataJSON="e30+"), errors.MalformedResponse),
    (
        "client-data-not-json",
        response(clientDataJSON=b64url_encode(b"\x00\x01")),
        errors.MalformedResponse,
    ),
    ("client-data-array", response(clientDataJSON=b64url_encode(b"[]")), errors.MalformedResponse),
    (
        "client-data-deeply-nested",
        response(clientDataJSON=b64url_encode(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)),
        errors.MalformedResponse,
    ),
    ("challenge-missing", client_data(challenge=...), errors.MalformedResponse),
    ("challenge-number", client_data(challenge=0), errors.MalformedResponse),
    ("challenge-huge-number", client_data(challenge=2**62), errors.MalformedResponse),
    ("type-null", client_data(type=None), errors.MalformedResponse),
    ("origin-number", client_data(origin=443), errors.MalformedResponse),
    ("cross-origin-yes", client_data(crossOrigin="yes"), errors.MalformedResponse),
    ("top-origin-list", client_data(topOrigin=[]), errors.MalformedResponse),
    # authenticatorData.
    ("auth-data-missing", response(authenticatorData=...), errors.MalformedResponse),
    ("auth-data-null", response(authenticatorData=None), errors.MalformedResponse),
    (
        "auth-data-not-base64url",
        response(authenticatorData="SZYN5Y/g=="),
        errors.MalformedResponse,
    ),
    ("auth-data-empty", _auth_data(lambda a: b""), errors.MalformedResponse),
    ("auth-data-32-bytes", _auth_data(lambda a: a[:32]), errors.MalformedResponse),
    ("auth-data-36-bytes", _auth_data(lambda a: a[:36]), errors.MalformedResponse),
    ("auth-data-trailing-bytes", _auth_data(lambda a: a + b"\x00"), errors.MalformedResponse),
    (
        "auth-data-ed-flag-without-extensions",
        _auth_data(_with_flags(UP | UV | ED)),
        errors.MalformedResponse,
    ),
    (
        # §6.1: extensions are a CBOR map. An integer, or a lone CBOR "break" byte, is not.
        "auth-data-extensions-an-integer",
        _auth_data(_with_flags(UP | UV | ED, cbor.encode(1))),
        errors.MalformedResponse,
    ),
    (
        "auth-data-extensions-a-break-byte",
        _auth_data(_with_flags(UP | UV | ED, b"\xff")),
        errors.MalformedResponse,
    ),
    (
        "auth-data-extensions-then-trailing-bytes",
        _auth_data(_with_flags(UP | UV | ED, cbor.encode({}) + b"\x00")),
        errors.MalformedResponse,
    ),
    (
        "auth-data-extensions-deeply-nested",
        _auth_data(_with_flags(UP | UV | ED, b"\x81" * 100_000 + b"\x00")),
        errors.MalformedResponse,
    ),
    (
        "auth-data-at-flag-with-garbage",
        _auth_data(_with_flags(UP | UV | 0x40, b"\x00" * 20)),
        errors.MalformedResponse,
    ),
    # signature.
    ("signature-missing", response(signature=...), errors.MalformedResponse),
    ("signature-not-base64url", response(signature="MEUC IQ"), errors.MalformedResponse),
    ("signature-number", response(signature=0), errors.MalformedResponse),
    # userHandle.
    (
        "user-handle-not-base64url",
        response(userHandle="ada@example.com"),
        errors.MalformedResponse,
    ),
    ("user-handle-number", response(userHandle=17), errors.MalformedResponse),
    ("user-handle-list", response(userHandle=[]), errors.MalformedResponse),
    ("user-handle-object", response(userHandle={}), errors.MalformedResponse),
]


@pytest.mark.parametrize(
    ("garble", "expected"),
    [pytest.param(garble, expected, id=name) for name, garble, expected in MALFORMED_ASSERTIONS],
)
def test_parse_authentication_response_rejects_malformed_input(
    sign_in: SignIn, garble: Callable[[dict[str, Any]], object], expected: type[Exception]
) -> None:
    garbled = garble(sign_in.respond())
    with pytest.raises(expected):
        parse_authentication_response(garbled)


def test_fuzzed_assertions_raise_only_ceremony_errors(
    sign_in: SignIn, memory_ceiling: None
) -> None:
    valid = sign_in.respond()
    rng = random.Random(20250615)
    outcomes: dict[str, int] = {}
    escaped: list[str] = []
    for iteration in range(400):
        fuzzed = copy.deepcopy(valid)
        response = fuzzed["response"]
        for _ in range(rng.randrange(1, 4)):
            target = rng.choice(
                ["clientDataJSON", "authenticatorData", "signature", "userHandle", "id"]
            )
            if target == "id":
                fuzzed["id"] = fuzzed["rawId"] = b64url_encode(
                    mutate(rng, b64url_decode(fuzzed["id"]))
                )
            else:
                response[target] = b64url_encode(mutate(rng, b64url_decode(response[target])))
        if fuzzed == valid:
            # A mutation can write back the byte that was there (the keys and
            # ECDSA signatures differ on every run): nothing was tampered with.
            continue
        try:
            sign_in.finish(fuzzed)
            outcome = "accepted"
        except errors.CeremonyError as exc:
            outcome = exc.code
        except BaseException as exc:  # noqa: BLE001 - exactly what this test looks for
            outcome = f"escaped {type(exc).__name__}"
            escaped.append(
                f"#{iteration} {type(exc).__name__}: {exc!r:.200} in {json.dumps(fuzzed)}"
            )
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert not escaped, "\n".join(escaped[:5])
    # Nothing tampered with is accepted, and the loop reaches past the parser.
    assert "accepted" not in outcomes, outcomes
    assert len(outcomes) >= 4, outcomes


JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**62,
    10**400,
    1.5,
    "",
    "x",
    "public-key",
    [],
    {},
    [[]],
    [{}],
    {"a": []},
    "\u0000",
]


def test_reshaped_assertions_raise_only_ceremony_errors(
    sign_in: SignIn, memory_ceiling: None
) -> None:
    """Members of the wrong JSON type, anywhere: a typed error, never a crash."""
    valid = sign_in.respond()
    rng = random.Random(20250616)
    escaped: set[str] = set()
    for _ in range(300):
        reshaped = copy.deepcopy(valid)
        layer = rng.choice(["credential", "response", "clientData"])
        value = rng.choice(JSON_VALUES)
        if layer == "credential":
            name = rng.choice([*reshaped, "x"])
            reshaped[name] = value
        elif layer == "response":
            name = rng.choice([*reshaped["response"], "x"])
            reshaped["response"][name] = value
        else:
            name = rng.choice(["type", "challenge", "origin", "crossOrigin", "topOrigin"])
            client_data(**{name: value})(reshaped)
        try:
            sign_in.finish(reshaped)
        except errors.CeremonyError:
            pass
        except BaseException as exc:  # noqa: BLE001 - exactly what this test looks for
            escaped.add(f"{type(exc).__name__} after {layer}.{name} = {value!r:.40}")
    assert not escaped, "\n".join(sorted(escaped))
