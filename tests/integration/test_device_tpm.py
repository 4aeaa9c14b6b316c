"""A device key counts as "tpm" only once its TPM proved it (threshold/core/tpm.py): the EK
certificate chains to a configured manufacturer, the credential is activated in that TPM, and
the AK certifies the key. Real TPM (swtpm), real TPM2_MakeCredential, real signatures."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.conftest import assert_failed, assert_ok, last_event
from tests.integration.test_concurrent_changes import while_one_holds
from tests.integration.test_device_app import (
    api_raw,
    new_device,
    show_setup_code,
    signed_in,
)
from tests.integration.test_fallback import post
from tests.support.verify_app import swtpm, tpm_manufacturer_ca
from threshold.audit.actions import Origin
from threshold.core import assurance
from threshold.core.assurance import Amr
from threshold.core.policy import Policy
from threshold.devices import actions as device_actions
from threshold.devices.models import Device
from threshold.policy.actions import do_update_policy
from threshold_verify.client import Signer
from threshold_verify.encoding import b64url, b64url_decode
from threshold_verify.stores import TpmStore

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("swtpm") is None, reason="swtpm is not installed"),
]


@pytest.fixture(scope="module")
def manufacturer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tpm_manufacturer_ca(tmp_path_factory.mktemp("tpm-ca"))


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory, manufacturer: Path) -> Iterator[str]:
    with swtpm(tmp_path_factory.mktemp("swtpm"), manufacturer.parent) as tcti:
        yield tcti


@pytest.fixture
def trusted(settings, manufacturer: Path, tpm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server trusts the swtpm's manufacturer; the app finds the swtpm."""
    roots = tuple(x509.load_pem_x509_certificates(manufacturer.read_bytes()))
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, device_tpm_roots=roots)
    monkeypatch.setenv("THRESHOLD_VERIFY_TCTI", tpm)


def enroll_with_tpm(code: str, *, evidence_changes: dict[str, str] | None = None):
    """Redeem ``code`` with a key in the TPM and its evidence: (store, ref, signer, answer)."""
    store = TpmStore(blobs={})
    ref = store.create()
    evidence = {**store.evidence(ref), **(evidence_changes or {})}
    signer = Signer(store, ref)
    path = "/api/device/v1/enroll"
    body = {"setup_code": code, "platform": "linux", "key_protection": "tpm", "tpm": evidence}
    response = api_raw(path, signer.sign(path, body))
    return store, ref, signer, response


def attest(store: TpmStore, ref: str, signer: Signer, challenge: dict[str, str], **changes):
    path = "/api/device/v1/attest"
    return api_raw(path, attestation(store, ref, signer, challenge, **changes))


def attestation(
    store: TpmStore, ref: str, signer: Signer, challenge: dict[str, str], **changes: str
) -> str:
    """The signed ``attest`` request: the TPM's proof for ``challenge``."""
    proof = store.activate_and_certify(
        ref,
        b64url_decode(challenge["credential_blob"]),
        b64url_decode(challenge["encrypted_secret"]),
    )
    proof.update(changes)
    return str(signer.sign("/api/device/v1/attest", proof))


def test_a_tpm_key_is_recorded_as_tpm_once_proven(ada, clock, trusted):
    browser = signed_in(ada)
    code, action = show_setup_code(browser)
    store, ref, signer, response = enroll_with_tpm(code)
    answer = assert_ok(response)
    assert answer["key_protection"] == "software"  # not proven yet
    signer.device_id = answer["device_id"]
    proven = assert_ok(attest(store, ref, signer, answer["tpm_challenge"]))
    assert proven["key_protection"] == "tpm"
    assert post(browser, action, returned_code=answer["returned_code"]).status_code == 303
    device = Device.objects.get(public_id=answer["device_id"])
    assert (device.key_protection, device.is_active, device.tpm_challenge) == ("tpm", True, None)
    assert last_event("device.key_attested").subject == ada.user
    assert "Key in the device\u2019s TPM" in browser.get("/settings").content.decode()
    assert assurance.for_device_app(hardware_bound=True).amr == (Amr.POP, Amr.HWK, Amr.MFA)
    # Proven once: a second proof is refused.
    again = attest(store, ref, signer, answer["tpm_challenge"])
    assert again.status_code == 400


def test_a_wrong_secret_leaves_the_key_software(ada, clock, trusted):
    code, _ = show_setup_code(signed_in(ada))
    store, ref, signer, response = enroll_with_tpm(code)
    answer = assert_ok(response)
    signer.device_id = answer["device_id"]
    forged = attest(store, ref, signer, answer["tpm_challenge"], secret=b64url(b"\0" * 32))
    assert assert_ok(forged)["key_protection"] == "software"
    assert last_event("device.key_not_attested").reason == "device_key_not_hardware"
    assert Device.objects.get(public_id=answer["device_id"]).key_protection == "software"


def test_evidence_for_another_key_gets_no_challenge(ada, clock, trusted):
    code, _ = show_setup_code(signed_in(ada))
    other = TpmStore(blobs={})
    other_ref = other.create()
    other_key = other.evidence(other_ref)["key_public"]
    _, _, _, response = enroll_with_tpm(code, evidence_changes={"key_public": other_key})
    answer = assert_ok(response)
    assert "tpm_challenge" not in answer
    event = last_event("device.setup_code_redeemed")
    assert "not the JWK" in event.detail["tpm_refused"]


def test_without_configured_roots_no_key_is_tpm(ada, clock, tpm, monkeypatch):
    monkeypatch.setenv("THRESHOLD_VERIFY_TCTI", tpm)
    code, _ = show_setup_code(signed_in(ada))
    _, _, _, response = enroll_with_tpm(code)
    assert "tpm_challenge" not in assert_ok(response)
    assert (
        "no TPM manufacturer roots"
        in last_event("device.setup_code_redeemed").detail["tpm_refused"]
    )


def test_hardware_keys_required(ada, clock, trusted):
    do_update_policy(Policy(require_hardware_device_key=True), Origin.cli())
    browser = signed_in(ada)
    # A software key is refused at once.
    code, _ = show_setup_code(browser)
    path = "/api/device/v1/enroll"
    software = new_device()
    refused = api_raw(path, software.sign(path, {"setup_code": code}, with_jwk=True))
    assert_failed(refused, 400, "Device Not Allowed")
    # A TPM key that never finishes its proof is refused when the code is typed.
    code, action = show_setup_code(browser)
    _, _, _, response = enroll_with_tpm(code)
    unproven = assert_ok(response)
    page = post(browser, action, returned_code=unproven["returned_code"])
    assert page.status_code == 400
    assert "Device Not Allowed" in page.content.decode()
    assert not Device.objects.get(public_id=unproven["device_id"]).is_active
    # A proven one is added.
    code, action = show_setup_code(browser)
    store, ref, signer, response = enroll_with_tpm(code)
    answer = assert_ok(response)
    signer.device_id = answer["device_id"]
    assert_ok(attest(store, ref, signer, answer["tpm_challenge"]))
    assert post(browser, action, returned_code=answer["returned_code"]).status_code == 303
    assert Device.objects.get(public_id=answer["device_id"]).is_active


@pytest.mark.django_db(transaction=True)
def test_a_proof_that_arrives_while_the_code_is_typed_counts(ada, clock, trusted, monkeypatch):
    """The device posts its proof (``attest`` may come before or after the set-up ends) while
    the person's returned code is being confirmed: the confirmation holds the person's row
    and is about to activate the device. The proof locks the device's row only, and both
    succeed: the device is added, its key "tpm". It locked the person's row with the
    device's (FOR UPDATE of both): each waited for the other on PostgreSQL, which undid
    one, and the proof was lost (a 503) or the device not added."""
    browser = signed_in(ada)
    code, action = show_setup_code(browser)
    store, ref, signer, response = enroll_with_tpm(code)
    answer = assert_ok(response)
    signer.device_id = answer["device_id"]
    proof = attestation(store, ref, signer, answer["tpm_challenge"])  # the TPM's work, first
    token = browser.csrf_token()

    confirmed, proven = while_one_holds(
        monkeypatch,
        device_actions,
        "lock_user",
        lambda: browser.client.post(
            action, {"csrfmiddlewaretoken": token, "returned_code": answer["returned_code"]}
        ),
        lambda: api_raw("/api/device/v1/attest", proof),
    )

    assert not isinstance(confirmed, BaseException), confirmed
    assert not isinstance(proven, BaseException), proven
    assert confirmed.status_code == 303, confirmed.content[:300]
    assert assert_ok(proven)["key_protection"] == "tpm"
    device = Device.objects.get(public_id=answer["device_id"])
    assert (device.key_protection, device.is_active, device.tpm_challenge) == ("tpm", True, None)
