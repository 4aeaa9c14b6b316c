"""The device API's request checks (threshold/core/device_requests.py) and the TPM proof's
first refusals (threshold/core/tpm.py): a valid request, one thing changed, the matching error."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from jwcrypto import jwk

from tests.support.device import SoftDevice
from threshold.core import device_requests, errors, tpm
from threshold.core.encoding import b64url_encode

NOW = 1_800_000_000.0
PATH = "/api/device/v1/approvals/pending"


@pytest.fixture
def device() -> SoftDevice:
    return SoftDevice(device_id="d-1", now=lambda: NOW)


def check(device: SoftDevice, compact: str, *, path: str = PATH, now: float = NOW) -> None:
    request = device_requests.read(compact)
    device_requests.verify(request, device.public_jwk, path=path, now=now)


def test_a_valid_request_verifies(device: SoftDevice) -> None:
    compact = device.sign(PATH, {"a": 1})
    check(device, compact)
    request = device_requests.read(compact)
    assert (request.kid, request.body) == ("d-1", {"a": 1})


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"iat": NOW - 121}, errors.DeviceClockSkew),
        ({"iat": NOW + 121}, errors.DeviceClockSkew),
        ({"iat": NOW - 100, "lifetime": 60}, errors.DeviceClockSkew),  # expired
        ({"lifetime": 121}, errors.DeviceClockSkew),
        ({"lifetime": 0}, errors.DeviceClockSkew),
        ({"jti": "short"}, errors.DeviceRequestMalformed),
        ({"jti": "has spaces in it, sixteen+"}, errors.DeviceRequestMalformed),
        ({"header": {"typ": "JWT"}}, errors.DeviceRequestMalformed),
        ({"header": {"jwk": {"kty": "EC"}}}, errors.DeviceRequestMalformed),  # kid and jwk
    ],
)
def test_one_thing_changed_is_refused(device: SoftDevice, change: dict, error: type) -> None:
    with pytest.raises(error):
        check(device, device.sign(PATH, {}, **change))


def test_another_key_another_path_and_garbage(device: SoftDevice) -> None:
    with pytest.raises(errors.DeviceSignatureInvalid):
        check(device, device.sign(PATH, {}, key=jwk.JWK.generate(kty="EC", crv="P-256")))
    with pytest.raises(errors.DeviceRequestMalformed):
        check(device, device.sign("/api/device/v1/account", {}))
    for garbage in ("", "a.b", "a.b.c", "x" * 20_000, "..."):
        with pytest.raises(errors.DeviceRequestMalformed):
            device_requests.read(garbage)
    _header, payload, signature = device.sign(PATH, {}).split(".")
    hs256 = b64url_encode(json.dumps({"alg": "HS256", "kid": "d-1"}).encode())
    with pytest.raises(errors.DeviceRequestMalformed):
        device_requests.read(f"{hs256}.{payload}.{signature}")


def test_a_new_devices_key_must_be_a_public_p256_jwk() -> None:
    private = json.loads(jwk.JWK.generate(kty="EC", crv="P-256").export_private())
    with pytest.raises(errors.DeviceRequestMalformed):
        device_requests.public_key(private)
    p384 = json.loads(jwk.JWK.generate(kty="EC", crv="P-384").export_public())
    with pytest.raises(errors.DeviceRequestMalformed):
        device_requests.public_key(p384)
    public = json.loads(jwk.JWK.generate(kty="EC", crv="P-256").export_public())
    stored, thumbprint = device_requests.public_key(public)
    assert set(stored) == {"kty", "crv", "x", "y"}
    assert len(thumbprint) == 43


def test_tpm_evidence_needs_configured_roots_and_a_certificate() -> None:
    evidence = tpm.TpmEvidence(b"not a certificate", b"", b"", b"")
    jwk_point = {"x": "", "y": ""}
    with pytest.raises(tpm.TpmEvidenceInvalid, match="no TPM manufacturer roots"):
        tpm.begin(evidence, jwk_point, [], datetime.now(UTC))
