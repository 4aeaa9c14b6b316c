"""WebAuthn Level 3 §7.1 and §7.2, step by step, through the real endpoints.

Each test sends a response the software authenticator signed for real, changed in one
way, over Django's test client (the lean sign-in path included), and checks what the
person is shown, what the audit log records and what is stored. They cover the steps
the other files leave out at this level (tokenBinding, origins spelled differently, the
ED and AT flags, bytes after the authenticator data, the backup state moving between
sign-ins, the counter's wrap, attestation formats, the members' types, base64url
spellings), and three defects the audit found, now fixed:

- a discoverable sign-in answered ``unknownCredential`` for a credential ID before any
  signature was checked, so the decoys of username-first options could be told apart
  from a real person's credentials;
- ``sign_in.failed`` rows named the credential's owner as their subject for failures found
  before the signature is checked (type, challenge, origin, rpIdHash, expiry), although
  the response could claim anyone's credential;
- a clientDataJSON that starts with a UTF-8 byte order mark was refused, where §7.1
  step 5 and §7.2 step 8 say the BOM MUST be stripped.

Nothing is mocked but the clock.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

import pytest
from fido2 import cbor

from tests.integration.conftest import (
    NOT_VERIFIED,
    ORIGIN,
    REGISTRATION_FAILED,
    SESSION_EXPIRED,
    VERIFICATION_FAILED,
    Browser,
    Person,
    assert_failed,
    assert_ok,
    begin_sign_in,
    enrolled_person,
    invite,
    last_event,
)
from tests.support.authenticator import (
    AT,
    BE,
    BS,
    ED,
    TEST_AAGUID,
    UP,
    UV,
    Credential,
    _cose_for,
    _new_key,
    authenticator_data,
    client_data_json,
    sign,
)
from threshold.audit.models import AuditEvent
from threshold.core.encoding import b64url_encode
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

RP_ID = "localhost"
# A DER ECDSA signature that verifies for no key: what someone without the private key sends.
FORGED_SIGNATURE = bytes.fromhex("3006020101020101")
UTF8_BOM = b"\xef\xbb\xbf"


# --- Crafting responses -------------------------------------------------------------------------


def assertion(
    credential: Credential,
    options: dict[str, Any],
    *,
    flags: int = UP | UV,
    sign_count: int | None = None,
    origin: str = ORIGIN,
    client_extra: dict[str, Any] | None = None,
    client_data: bytes | None = None,
    tail: bytes = b"",
    user_handle: bytes | None = None,
    signature: bytes | None = None,
) -> dict[str, Any]:
    """AuthenticationResponseJSON for ``credential``, signed over whatever the test built."""
    if sign_count is None:
        credential.sign_count += 1
        sign_count = credential.sign_count
    auth_data = authenticator_data(RP_ID, flags, sign_count) + tail
    cdj = client_data or client_data_json(
        "webauthn.get", options["challenge"], origin, **(client_extra or {})
    )
    if signature is None:
        signature = sign(
            credential.alg, credential.private_key, auth_data + hashlib.sha256(cdj).digest()
        )
    handle = credential.user_handle if user_handle is None else user_handle
    return {
        "id": b64url_encode(credential.credential_id),
        "rawId": b64url_encode(credential.credential_id),
        "type": "public-key",
        "authenticatorAttachment": "platform",
        "clientExtensionResults": {},
        "response": {
            "clientDataJSON": b64url_encode(cdj),
            "authenticatorData": b64url_encode(auth_data),
            "signature": b64url_encode(signature),
            "userHandle": b64url_encode(handle),
        },
    }


def registration(
    options: dict[str, Any],
    *,
    flags: int = UP | UV,
    fmt: str = "none",
    att_stmt: dict[str, Any] | None = None,
    auth_data_tail: bytes = b"",
    client_extra: dict[str, Any] | None = None,
    client_data: bytes | None = None,
    credential_id: bytes | None = None,
    origin: str = ORIGIN,
) -> dict[str, Any]:
    """RegistrationResponseJSON with an ES256 key, its authenticator data built here."""
    key = _new_key(-7)
    cred_id = credential_id if credential_id is not None else os.urandom(16)
    attested = (
        TEST_AAGUID + struct.pack(">H", len(cred_id)) + cred_id + cbor.encode(_cose_for(-7, key))
    )
    auth_data = authenticator_data(RP_ID, flags | AT, 0, attested) + auth_data_tail
    cdj = client_data or client_data_json(
        "webauthn.create", options["challenge"], origin, **(client_extra or {})
    )
    if att_stmt is None:
        att_stmt = (
            {"alg": -7, "sig": sign(-7, key, auth_data + hashlib.sha256(cdj).digest())}
            if fmt == "packed"
            else {}
        )
    attestation_object = cbor.encode({"fmt": fmt, "attStmt": att_stmt, "authData": auth_data})
    return {
        "id": b64url_encode(cred_id),
        "rawId": b64url_encode(cred_id),
        "type": "public-key",
        "authenticatorAttachment": "platform",
        "clientExtensionResults": {"credProps": {"rk": True}},
        "response": {
            "clientDataJSON": b64url_encode(cdj),
            "attestationObject": b64url_encode(attestation_object),
            "transports": ["internal"],
        },
    }


def sign_in_with(person: Person, username: str | None = None, **kwargs: Any):
    browser = Browser()
    options = begin_sign_in(browser, username)
    credential = person.authenticator.credentials[0]
    return browser.post_json("/sign-in/result", assertion(credential, options, **kwargs))


def enroll_with(build) -> tuple[Any, Any]:
    """A fresh invite's options, the response ``build(options)`` makes, the result."""
    created, token = invite(f"{os.urandom(4).hex()}@example.com", "Someone")
    browser = Browser()
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    return created, browser.post_json(f"/enroll/{token}/result", build(options))


def assert_sign_in_refused(response, reason: str, title: str = VERIFICATION_FAILED) -> None:
    body = assert_failed(response, 400, title)
    assert reason not in response.content.decode()
    assert "unknownCredential" not in body
    assert last_event("sign_in.failed").reason == reason


def assert_registration_refused(created, response, reason: str, title=REGISTRATION_FAILED):
    assert_failed(response, 400, title)
    assert reason not in response.content.decode()
    assert not Passkey.objects.filter(user=created.user).exists()
    assert EnrollmentInvite.objects.get(pk=created.invite.pk).used_at is None
    assert last_event("passkey.registration_failed").reason == reason


# --- §7.2: verifying an authentication assertion -------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:8001",  # another port
        "http://localhost",  # the default port instead of the configured one
        "https://localhost:8000",  # another scheme
        "http://localhost:8000/",  # a trailing slash
        "http://LOCALHOST:8000",  # upper case: origins are compared exactly
        "http://127.0.0.1:8000",
        "http://localhost:8000.evil.example",
        " http://localhost:8000",
        "null",
        "android:apk-key-hash:" + "A" * 43,  # an app origin nobody configured
        "https://localhost",  # the iOS app origin, no iOS app configured
    ],
)
def test_step_12_the_origin_must_match_exactly(ada, origin):
    assert_sign_in_refused(sign_in_with(ada, origin=origin), "origin_not_allowed")
    assert ada.passkey.sign_count == 0


def test_step_14_a_top_origin_equal_to_the_origin_is_still_refused_without_cross_origin(ada):
    response = sign_in_with(ada, client_extra={"topOrigin": ORIGIN})
    assert_sign_in_refused(response, "cross_origin_not_allowed")


@pytest.mark.parametrize(
    "token_binding",
    [{"status": "present", "id": "AAAA"}, {"status": "supported"}, {"status": "bogus"}],
)
def test_token_binding_is_ignored_as_level_3_says(ada, token_binding):
    # L3 keeps clientDataJSON.tokenBinding reserved and has no step that reads it.
    assert_ok(sign_in_with(ada, client_extra={"tokenBinding": token_binding}))


@pytest.mark.parametrize(
    ("flags", "tail", "reason"),
    [
        (UP | UV | ED, b"", "malformed_response"),  # ED set, no extension data
        (UP | UV, cbor.encode({"credProtect": 1}), "malformed_response"),  # data, ED clear
        (UP | UV, b"\x00", "malformed_response"),  # a byte after the authenticator data
        (UP | UV | AT, b"", "malformed_response"),  # AT set, no attested credential data
    ],
    ids=["ed-without-extensions", "extensions-without-ed", "trailing-byte", "at-without-data"],
)
def test_authenticator_data_that_does_not_parse_is_refused(ada, flags, tail, reason):
    assert_sign_in_refused(sign_in_with(ada, flags=flags, tail=tail), reason)


def test_step_18_backup_state_without_eligibility_is_refused(ada):
    assert_sign_in_refused(
        sign_in_with(ada, flags=UP | UV | BS), "backup_state_without_eligibility"
    )


def test_step_25_the_backup_state_follows_the_authenticator_between_sign_ins(db):
    sam = enrolled_person("sam@example.com", "Sam", backup_eligible=True, backup_state=False)
    assert sam.passkey.backup_state is False
    assert_ok(sign_in_with(sam, flags=UP | UV | BE | BS))
    assert sam.passkey.backup_state is True
    assert_ok(sign_in_with(sam, flags=UP | UV | BE))
    assert sam.passkey.backup_state is False
    # BE itself never changes for a credential (§6.1.3).
    assert_sign_in_refused(sign_in_with(sam, flags=UP | UV), "backup_eligibility_changed")


def test_step_6_a_user_handle_sent_as_an_empty_string_is_no_user_handle(ada):
    response = sign_in_with(ada, user_handle=b"")
    assert_sign_in_refused(response, "user_handle_missing")


def test_step_5_a_decoy_allow_list_does_not_admit_a_real_credential(ada):
    response = sign_in_with(ada, username="nobody@example.com")
    assert_sign_in_refused(response, "credential_not_allowed")


@pytest.mark.parametrize(
    ("stored", "received"),
    [(5, 5), (5, 4), (5, 0), (0xFFFFFFFF, 0), (0xFFFFFFFF, 1)],
    ids=["equal", "lower", "zero-after-non-zero", "wrap-to-zero", "wrap-to-one"],
)
def test_step_23_a_counter_that_does_not_move_forward_flags_the_passkey(ada, stored, received):
    assert_ok(sign_in_with(ada, sign_count=stored))
    assert_sign_in_refused(sign_in_with(ada, sign_count=received), "sign_count_regressed")
    passkey = ada.passkey
    assert passkey.is_possibly_cloned is True
    assert passkey.sign_count == stored
    assert last_event("passkey.flagged_possibly_cloned").subject == ada.user


def test_padded_base64url_names_the_same_credential(ada):
    browser = Browser()
    options = begin_sign_in(browser)
    body = assertion(ada.authenticator.credentials[0], options)
    for key in ("id", "rawId"):
        body[key] += "=" * (-len(body[key]) % 4)
    assert_ok(browser.post_json("/sign-in/result", body))


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s[:8] + " " + s[8:],
        lambda s: s[:8] + "\n" + s[8:],
        lambda s: s.replace("-", "+").replace("_", "/") + "+/",
    ],
    ids=["space", "newline", "standard-alphabet"],
)
def test_client_data_that_is_not_base64url_is_refused(ada, change):
    browser = Browser()
    options = begin_sign_in(browser)
    body = assertion(ada.authenticator.credentials[0], options)
    body["response"]["clientDataJSON"] = change(body["response"]["clientDataJSON"])
    assert_sign_in_refused(browser.post_json("/sign-in/result", body), "malformed_response")


# --- Defects the audit found ---------------------------------------------------------------------


def _forged_discoverable_answer(credential_id: str, user_handle: bytes = b"anyone"):
    """A discoverable sign-in answered by someone without any key: the credential ID is all
    they have, and the signature verifies for nobody."""
    browser = Browser()
    options = begin_sign_in(browser)
    cdj = client_data_json("webauthn.get", options["challenge"], ORIGIN)
    body = {
        "id": credential_id,
        "rawId": credential_id,
        "type": "public-key",
        "clientExtensionResults": {},
        "response": {
            "clientDataJSON": b64url_encode(cdj),
            "authenticatorData": b64url_encode(authenticator_data(RP_ID, UP | UV, 1)),
            "signature": b64url_encode(FORGED_SIGNATURE),
            "userHandle": b64url_encode(user_handle),
        },
    }
    return browser.post_json("/sign-in/result", body)


@pytest.mark.parametrize("whose_handle", ["nobody's", "the sender's own"])
def test_a_discoverable_sign_in_does_not_tell_decoy_credentials_from_real_ones(ada, whose_handle):
    # The sender may be a person with an account of their own, who knows their own user
    # handle (Settings' signals give it to their page).
    handle = (
        bytes(enrolled_person("bob@example.com", "Bob").user.user_handle)
        if whose_handle == "the sender's own"
        else b"anyone"
    )
    real = begin_sign_in(Browser(), "ada@example.com")["allowCredentials"][0]["id"]
    decoy = begin_sign_in(Browser(), "nobody@example.com")["allowCredentials"][0]["id"]
    answer_for_real = _forged_discoverable_answer(real, handle)
    answer_for_decoy = _forged_discoverable_answer(decoy, handle)
    assert answer_for_real.status_code == answer_for_decoy.status_code == 400
    assert answer_for_real.json() == answer_for_decoy.json()


@pytest.mark.parametrize(
    "change",
    [
        {"origin": "https://evil.example"},
        {"client_extra": {"type": "webauthn.create"}},
        {"client_data": client_data_json("webauthn.get", "A" * 43, ORIGIN)},
        {"client_extra": {"crossOrigin": True}},
    ],
    ids=["origin", "type", "challenge", "cross-origin"],
)
def test_a_response_nobody_signed_names_no_one_in_the_audit_log(ada, change):
    # The credential ID is public: username-first options give it to anyone who asks.
    response = sign_in_with(ada, username="ada@example.com", signature=FORGED_SIGNATURE, **change)
    assert_failed(response, 400, VERIFICATION_FAILED)
    event = last_event("sign_in.failed")
    assert event.subject is None
    assert not AuditEvent.objects.filter(subject=ada.user, action="sign_in.failed").exists()


def test_an_expired_forged_response_names_no_one_in_the_audit_log(ada, clock):
    browser = Browser()
    options = begin_sign_in(browser, "ada@example.com")
    clock.advance(301)
    body = assertion(ada.authenticator.credentials[0], options, signature=FORGED_SIGNATURE)
    assert_failed(browser.post_json("/sign-in/result", body), 400, SESSION_EXPIRED)
    assert last_event("sign_in.failed").subject is None


def test_step_8_a_leading_byte_order_mark_is_stripped_at_sign_in(ada):
    browser = Browser()
    options = begin_sign_in(browser)
    cdj = UTF8_BOM + client_data_json("webauthn.get", options["challenge"], ORIGIN)
    body = assertion(ada.authenticator.credentials[0], options, client_data=cdj)
    assert_ok(browser.post_json("/sign-in/result", body))


def test_step_5_a_leading_byte_order_mark_is_stripped_at_registration(db):
    _, response = enroll_with(
        lambda o: registration(
            o, client_data=UTF8_BOM + client_data_json("webauthn.create", o["challenge"], ORIGIN)
        )
    )
    assert_ok(response)


# --- §7.1: registering a new credential ----------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "reason", "title"),
    [
        (lambda o: registration(o, flags=UV), "user_not_present", REGISTRATION_FAILED),
        (lambda o: registration(o, flags=UP | UV | BS), "backup_state_without_eligibility", None),
        (
            lambda o: registration(o, client_extra={"type": "webauthn.get"}),
            "client_data_type_mismatch",
            None,
        ),
        (
            lambda o: registration(o, client_extra={"topOrigin": "https://evil.example"}),
            "cross_origin_not_allowed",
            None,
        ),
        (lambda o: registration(o, origin="http://LOCALHOST:8000"), None, None),
        (lambda o: registration(o, origin=ORIGIN + "/"), None, None),
        (lambda o: registration(o, flags=UP | UV | ED), "malformed_response", None),
        (
            lambda o: registration(o, auth_data_tail=cbor.encode({"credProtect": 2})),
            "malformed_response",
            None,
        ),
        (lambda o: registration(o, auth_data_tail=b"\x00"), "malformed_response", None),
        (lambda o: registration(o, fmt="Packed"), "attestation_format_unsupported", None),
        (lambda o: registration(o, fmt="none", att_stmt={"x": 1}), "attestation_invalid", None),
    ],
    ids=[
        "up-clear",
        "bs-without-be",
        "type-get",
        "top-origin",
        "origin-upper-case",
        "origin-trailing-slash",
        "ed-without-extensions",
        "extensions-without-ed",
        "trailing-byte-after-attested-data",
        "fmt-is-case-sensitive",
        "none-with-a-statement",
    ],
)
def test_registration_refusals(db, build, reason, title):
    created, response = enroll_with(build)
    assert_registration_refused(
        created, response, reason or "origin_not_allowed", title or REGISTRATION_FAILED
    )


def test_step_26_a_credential_id_of_1023_bytes_is_accepted(db):
    _, response = enroll_with(lambda o: registration(o, credential_id=os.urandom(1023)))
    assert_ok(response)
    assert len(bytes(Passkey.objects.get().credential_id)) == 1023


def test_step_27_another_persons_credential_id_is_refused_and_theirs_is_untouched(ada):
    theirs = ada.passkey
    created, response = enroll_with(
        lambda o: registration(o, credential_id=ada.authenticator.credentials[0].credential_id)
    )
    assert_failed(response, 400, "Passkey already registered for this device")
    assert last_event("passkey.registration_failed").reason == "credential_already_registered"
    assert not Passkey.objects.filter(user=created.user).exists()
    assert Passkey.objects.get(pk=theirs.pk).public_key == theirs.public_key


def test_registration_without_user_verification_says_so(db):
    created, response = enroll_with(lambda o: registration(o, flags=UP))
    assert_registration_refused(created, response, "user_not_verified", NOT_VERIFIED)


@pytest.mark.parametrize(
    ("member", "value"),
    [
        (("response", "transports"), "usb"),
        (("response", "transports"), [1, 2]),
        (("response", "transports"), [None]),
        (("id",), "+/+/"),
        (("response", "attestationObject"), "\n"),
    ],
    ids=["transports-a-string", "transports-ints", "transports-null-item", "id-std", "ws"],
)
def test_members_of_the_wrong_type_are_refused(db, member, value):
    def build(options):
        body = registration(options)
        target = body
        for key in member[:-1]:
            target = target[key]
        target[member[-1]] = value
        return body

    created, response = enroll_with(build)
    assert_registration_refused(created, response, "malformed_response")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("authenticatorAttachment", 5),
        ("authenticatorAttachment", ["platform"]),
        ("clientExtensionResults", "x"),
        ("clientExtensionResults", None),
        ("clientExtensionResults", {"credProps": {"rk": "true"}}),
    ],
)
def test_unsigned_client_hints_of_the_wrong_type_are_ignored(db, member, value):
    def build(options):
        body = registration(options)
        body[member] = value
        return body

    created, response = enroll_with(build)
    assert_ok(response)
    passkey = Passkey.objects.get(user=created.user)
    if member == "clientExtensionResults":
        assert passkey.is_discoverable is None
    else:
        assert passkey.authenticator_attachment != value
