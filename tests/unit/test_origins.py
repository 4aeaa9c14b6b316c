"""Origins beyond the RP ID's own pages: the company's apps and related origins (L3 §5.11).

An Android app sends ``android:apk-key-hash:<base64url SHA-256 of its signing
certificate>``; a related origin is a web origin on another domain that the RP
ID's ``/.well-known/webauthn`` lists. Both are accepted only where configured,
matched exactly; real responses from the software authenticator, nothing mocked.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.authenticator import SoftAuthenticator
from tests.unit.conftest import NOW, ORIGIN, RP_ID, TIMEOUT_SECONDS, TOP_ORIGIN
from threshold.core import errors
from threshold.core.ceremony import (
    RelyingParty,
    StoredCredential,
    VerifiedRegistration,
    android_origin,
    begin_authentication,
    begin_registration,
    finish_authentication,
    finish_registration,
    origin_problem,
    parse_authentication_response,
    parse_registration_response,
    related_origin_label,
    related_origin_problem,
)
from threshold.core.encoding import b64url_encode

APP_HASH = hashlib.sha256(b"the company's app signing certificate").digest()
APP_ORIGIN = "android:apk-key-hash:" + b64url_encode(APP_HASH)
OTHER_APP_ORIGIN = "android:apk-key-hash:" + b64url_encode(hashlib.sha256(b"another").digest())
RELATED_ORIGIN = "https://login.example.co.uk"

_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The same 32 bytes with one of the last character's two unused bits set.
NON_CANONICAL_APP_ORIGIN = APP_ORIGIN[:-1] + _BASE64URL[_BASE64URL.index(APP_ORIGIN[-1]) | 1]


def _rp(**kwargs: Any) -> RelyingParty:
    return RelyingParty(id=RP_ID, name="Example", origins=frozenset({ORIGIN}), **kwargs)


APPS_RP = _rp(app_origins=frozenset({APP_ORIGIN}))
RELATED_RP = _rp(related_origins=frozenset({RELATED_ORIGIN}))


def _register(
    rp: RelyingParty, origin: str, authenticator: SoftAuthenticator | None = None, **create: Any
) -> VerifiedRegistration:
    options, state = begin_registration(
        rp,
        user_handle=b"\x11" * 32,
        user_name="ada@example.com",
        user_display_name="Ada",
        now=NOW,
        timeout_seconds=TIMEOUT_SECONDS,
    )
    response = (authenticator or SoftAuthenticator()).create(options, origin, **create)
    return finish_registration(rp, state, parse_registration_response(response), now=NOW)


def _sign_in(rp: RelyingParty, origin: str, **get: Any) -> bytes:
    """Register through the RP's own web origin, then sign in from ``origin``."""
    authenticator = SoftAuthenticator()
    registered = _register(rp, ORIGIN, authenticator)
    options, state = begin_authentication(rp, now=NOW, timeout_seconds=TIMEOUT_SECONDS)
    response = parse_authentication_response(authenticator.get(options, origin, **get))
    stored = StoredCredential(
        credential_id=registered.credential_id,
        public_key=registered.public_key,
        sign_count=0,
        backup_eligible=False,
        user_handle=b"\x11" * 32,
    )
    return finish_authentication(rp, state, response, stored, now=NOW).user_handle


# --- Android app origins -------------------------------------------------------------------


def test_an_android_origin_is_the_base64url_sha256_of_the_signing_certificate() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example app signing key")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)

    origin = android_origin(certificate.fingerprint(hashes.SHA256()))

    assert origin == "android:apk-key-hash:" + b64url_encode(hashlib.sha256(der).digest())
    assert len(origin) == len("android:apk-key-hash:") + 43
    assert "=" not in origin
    assert origin_problem(RP_ID, origin) is None


@pytest.mark.parametrize(
    "origin",
    [
        APP_ORIGIN + "=",  # padded: Android never pads
        APP_ORIGIN[:-1],  # 31 bytes and a bit
        APP_ORIGIN + "AAAA",  # 35 bytes
        NON_CANONICAL_APP_ORIGIN,
        APP_ORIGIN.replace("android:apk-key-hash:", "android:apk-key-hash:+/"),
        "android:apk-key-hash:",
        "android:apk-key-hash:" + APP_HASH.hex(),
        "android:" + b64url_encode(APP_HASH),
        "ANDROID:apk-key-hash:" + b64url_encode(APP_HASH),
    ],
    ids=[
        "padded",
        "short",
        "long",
        "non-canonical",
        "standard-base64",
        "empty",
        "hex",
        "no-apk-key-hash",
        "upper-case-scheme",
    ],
)
def test_a_malformed_android_origin_is_a_problem(origin: str) -> None:
    assert origin_problem(RP_ID, origin)


def test_registration_from_a_configured_android_app_is_accepted() -> None:
    assert _register(APPS_RP, APP_ORIGIN).credential_id


def test_sign_in_from_a_configured_android_app_is_accepted() -> None:
    assert _sign_in(APPS_RP, APP_ORIGIN) == b"\x11" * 32


@pytest.mark.parametrize("rp", [_rp(), _rp(app_origins=frozenset({OTHER_APP_ORIGIN}))])
def test_an_android_app_not_configured_is_refused(rp: RelyingParty) -> None:
    with pytest.raises(errors.OriginNotAllowed):
        _register(rp, APP_ORIGIN)
    with pytest.raises(errors.OriginNotAllowed):
        _sign_in(rp, APP_ORIGIN)


@pytest.mark.parametrize(
    "client_extra",
    [{"crossOrigin": True}, {"crossOrigin": True, "topOrigin": TOP_ORIGIN}],
    ids=["cross-origin", "top-origin"],
)
def test_an_app_origin_is_never_embedded_even_where_iframes_are_allowed(
    client_extra: dict[str, Any],
) -> None:
    rp = _rp(
        app_origins=frozenset({APP_ORIGIN}),
        allow_cross_origin=True,
        top_origins=frozenset({TOP_ORIGIN}),
    )
    with pytest.raises(errors.CrossOriginNotAllowed):
        _register(rp, APP_ORIGIN, client_extra=client_extra)
    with pytest.raises(errors.CrossOriginNotAllowed):
        _sign_in(rp, APP_ORIGIN, client_extra=client_extra)


def test_an_app_origin_does_not_open_the_web_origins() -> None:
    # The app's hash is no reason to accept a look-alike web origin.
    with pytest.raises(errors.OriginNotAllowed):
        _sign_in(APPS_RP, "https://evil.example")


# --- Related origins ---------------------------------------------------------------------------


def test_a_listed_related_origin_registers_and_signs_in_with_the_rp_id() -> None:
    # login.example.co.uk is no subdomain of example.com: only the list lets it in.
    assert origin_problem(RP_ID, RELATED_ORIGIN)
    assert _register(RELATED_RP, RELATED_ORIGIN).credential_id
    assert _sign_in(RELATED_RP, RELATED_ORIGIN) == b"\x11" * 32


@pytest.mark.parametrize(
    "origin",
    ["https://example.co.uk", "https://login.example.co.uk:8443", "http://login.example.co.uk"],
)
def test_a_related_origin_is_matched_exactly(origin: str) -> None:
    with pytest.raises(errors.OriginNotAllowed):
        _sign_in(RELATED_RP, origin)


def test_an_unlisted_related_origin_is_refused() -> None:
    with pytest.raises(errors.OriginNotAllowed):
        _register(_rp(), RELATED_ORIGIN)


def test_a_related_origin_follows_the_iframe_rules_of_web_origins() -> None:
    with pytest.raises(errors.CrossOriginNotAllowed):
        _sign_in(RELATED_RP, RELATED_ORIGIN, client_extra={"crossOrigin": True})
    embeddable = _rp(
        related_origins=frozenset({RELATED_ORIGIN}),
        allow_cross_origin=True,
        top_origins=frozenset({TOP_ORIGIN}),
    )
    extra = {"crossOrigin": True, "topOrigin": TOP_ORIGIN}
    assert _sign_in(embeddable, RELATED_ORIGIN, client_extra=extra) == b"\x11" * 32


@pytest.mark.parametrize(
    ("origin", "label"),
    [
        ("https://login.example.co.uk", "example"),
        ("https://example.com", "example"),
        ("https://shop.example.de:8443", "example"),
        ("https://a.b.example-shop.com", "example-shop"),
        ("https://someone.github.io", "someone"),  # github.io is a public suffix
        ("https://login.example.internal", "example"),  # unlisted TLD: the default rule
        ("https://co.uk", None),
        ("https://github.io", None),
        ("https://192.0.2.1", None),
        ("https://[2001:db8::1]", None),
        ("https://localhost", None),
    ],
)
def test_related_origin_labels_follow_the_public_suffix_list(origin: str, label: str) -> None:
    assert related_origin_label(origin) == label


@pytest.mark.parametrize(
    ("origin", "message"),
    [
        ("http://login.example.co.uk", "must be https://"),
        ("https://login.example.co.uk/", "no path or trailing slash"),
        ("https://Login.Example.co.uk", "'https://login.example.co.uk'"),
        ("https://login.example.co.uk:443", "'https://login.example.co.uk'"),
        ("https://co.uk", "no registrable domain"),
        ("https://192.0.2.1", "no registrable domain"),
        # A fixed hash, not a random one: pytest-xdist's workers must collect the same test IDs.
        (
            "android:apk-key-hash:" + b64url_encode(hashlib.sha256(b"an app").digest()),
            "is not an origin",
        ),
    ],
)
def test_related_origin_problems_say_what_to_write(origin: str, message: str) -> None:
    problem = related_origin_problem(origin)
    assert problem is not None
    assert message in problem


def test_a_good_related_origin_has_no_problem() -> None:
    assert related_origin_problem("https://login.example.co.uk") is None
    assert related_origin_problem("https://login.example.co.uk:8443") is None
