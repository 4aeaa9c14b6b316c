"""An outside tester's pass over the device API (docs/device-api.md) and the push sign-in's
pages: JWS requests that are not what Threshold Verify sends, IDs that name nothing, and the
database failing. Every refusal is JSON in the catalog's words, never a 500, and stores
nothing (see test_fuzz_lean_paths.py for the sign-in's lean path)."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest
from jwcrypto import jws

import threshold.clock
from tests.integration.conftest import Browser
from tests.integration.test_device_app import new_device, set_up_device, signed_in
from tests.integration.test_fuzz_lean_paths import assert_refused
from tests.support.device import TYPE, SoftDevice
from tests.support.faults import database_fails, nul_refused_as_postgresql_does
from tests.support.wsgi import wsgi
from threshold.audit.models import AuditEvent
from threshold.devices.models import Device, DeviceEnrollment, SignInApproval, UsedDeviceRequest

pytestmark = pytest.mark.django_db

JOSE = {"CONTENT_TYPE": "application/jose"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(device: SoftDevice, claims: dict[str, Any] | str, **header: Any) -> bytes:
    """A request signed by ``device``'s key with exactly these claims (no defaults filled in)."""
    protected = {"alg": "ES256", "typ": TYPE, "kid": device.device_id, **header}
    token = jws.JWS(claims if isinstance(claims, str) else json.dumps(claims))
    token.add_signature(device.key, alg="ES256", protected=json.dumps(protected))
    return str(token.serialize(compact=True)).encode()


def claims(path: str, body: dict[str, Any] | None = None, **changed: Any) -> dict[str, Any]:
    now = threshold.clock.now()
    return {
        "jti": secrets.token_urlsafe(16),
        "iat": int(now),
        "exp": int(now + 60),
        "htu": path,
        "body": body or {},
        **changed,
    }


def stored() -> dict[str, int]:
    return {
        "used requests": UsedDeviceRequest.objects.count(),
        "audit rows": AuditEvent.objects.count(),
        "devices": Device.objects.count(),
        "set-ups": DeviceEnrollment.objects.count(),
        "pushes": SignInApproval.objects.count(),
    }


ACCOUNT = "/api/device/v1/account"


def test_a_deeply_nested_payload_is_malformed_not_a_server_error(ada, clock):
    # Before any key is looked up: json.loads raised RecursionError, a 500 for anyone.
    header = b64url(json.dumps({"alg": "ES256", "typ": TYPE, "kid": "x" * 22}).encode())
    compact = f"{header}.{b64url(b'[' * 5000)}.{b64url(b'signature')}".encode()
    before = stored()
    assert_refused(wsgi("POST", ACCOUNT, compact, **JOSE), 400, "bad_request")
    assert stored() == before


def test_a_deeply_nested_payload_signed_by_a_known_device_is_malformed(ada, clock):
    device = set_up_device(ada)
    before = stored()
    compact = signed(device, '{"body": ' + "[" * 5000 + "}")
    assert_refused(wsgi("POST", ACCOUNT, compact, **JOSE), 400, "bad_request")
    assert stored() == before


@pytest.mark.parametrize(
    "changed",
    [{"iat": 10**400}, {"exp": 10**400}, {"iat": float("nan")}, {"exp": float("inf")}],
    ids=["iat beyond a float", "exp beyond a float", "iat NaN", "exp infinite"],
)
def test_times_that_are_not_finite_numbers_are_refused(ada, clock, changed):
    # float(10**400) raised OverflowError once the signature verified: a 500.
    device = set_up_device(ada)
    before = stored()
    answer = wsgi("POST", ACCOUNT, signed(device, claims(ACCOUNT, **changed)), **JOSE)
    assert_refused(answer, 400, "bad_request")
    assert stored() == before
    # The device itself still works.
    good = wsgi("POST", ACCOUNT, signed(device, claims(ACCOUNT)), **JOSE)
    assert good[0] == 200, good[2]


def with_header(header: bytes) -> bytes:
    return f"{b64url(header)}.e30.AA".encode()


MALFORMED_COMPACT = [
    ("empty", b""),
    ("not a JWS", b"abc"),
    ("not ASCII", b"\xff\xfe.a.b"),
    ("three empty parts", b".."),
    ("not base64url", b"!!.!!.!!"),
    ("a header that is an array", with_header(b"[]")),
    ("a header that is a number", with_header(b"1e999")),
    ("a header that is not UTF-8", with_header(b"\xff\xfe")),
    ("a header nested deep", with_header(b"[" * 5000)),
]


@pytest.mark.parametrize(
    "compact", [case[1] for case in MALFORMED_COMPACT], ids=[case[0] for case in MALFORMED_COMPACT]
)
@pytest.mark.parametrize("path", [ACCOUNT, "/api/device/v1/enroll"])
def test_requests_that_are_not_a_compact_jws_are_refused(db, path, compact):
    before = stored()
    assert_refused(wsgi("POST", path, compact, **JOSE), 400, "bad_request")
    assert stored() == before


@pytest.mark.parametrize("length", ["abc", "-1", "99999999"])
def test_a_content_length_that_is_not_a_small_number_is_refused_as_json(db, length):
    # "abc": Django's request.body raised ValueError (a 500); over 2.5 MB, its own 400 page.
    before = stored()
    answer = wsgi("POST", ACCOUNT, b"a.b.c", CONTENT_LENGTH=length, **JOSE)
    assert_refused(answer, 400, "bad_request")
    assert stored() == before


def test_the_device_api_answers_503_try_again_while_the_database_is_down(ada, clock):
    device = set_up_device(ada)
    before = stored()
    with database_fails():
        answer = wsgi("POST", ACCOUNT, signed(device, claims(ACCOUNT)), **JOSE)
    assert_refused(answer, 503, "passkey_unavailable")
    assert stored() == before
    assert wsgi("POST", ACCOUNT, signed(device, claims(ACCOUNT)), **JOSE)[0] == 200


# --- IDs that name nothing: a NUL, which PostgreSQL refuses in a query (a 500) --------------------

NUL = "abc\x00def"


def test_a_kid_with_a_nul_is_an_unknown_device(ada, clock):
    device = set_up_device(ada)
    device.device_id = NUL
    with nul_refused_as_postgresql_does():
        answer = wsgi("POST", ACCOUNT, signed(device, claims(ACCOUNT)), **JOSE)
    assert_refused(answer, 401, "device_not_recognized")


@pytest.mark.parametrize(
    ("endpoint", "body", "code"),
    [
        (
            "setup-codes/confirm",
            {"enrollment_id": NUL, "returned_code": "123456"},
            "setup_code_invalid",
        ),
        # As a push that is no longer waiting.
        ("approvals/answer", {"id": NUL, "decision": "deny"}, "session_expired"),
    ],
)
def test_ids_with_a_nul_in_signed_requests_name_nothing(ada, clock, endpoint, body, code):
    device = set_up_device(ada)
    path = f"/api/device/v1/{endpoint}"
    with nul_refused_as_postgresql_does():
        answer = wsgi("POST", path, signed(device, claims(path, body)), **JOSE)
    assert_refused(answer, 400, code)
    assert DeviceEnrollment.objects.filter(state="done").count() == 1  # the device's own


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/settings/device-app/set-up/abc%00def", {"returned_code": "123456"}),
        ("/settings/device-app/abc%00def/rename", {"nickname": "Phone"}),
        ("/settings/device-app/abc%00def/remove", {}),
    ],
)
def test_settings_urls_with_a_nul_name_nothing(ada, clock, path, form):
    browser = signed_in(ada)
    browser.client.raise_request_exception = False
    with nul_refused_as_postgresql_does():
        response = browser.client.post(path, {**form, "csrfmiddlewaretoken": browser.csrf_token()})
    assert 400 <= response.status_code < 500, response.status_code


def test_a_push_for_a_username_with_a_nul_is_refused(ada, clock):
    browser = Browser()
    browser.client.raise_request_exception = False
    with nul_refused_as_postgresql_does():
        response = browser.client.post(
            "/sign-in/push",
            {"username": "ada@example.com\x00", "csrfmiddlewaretoken": browser.csrf_token()},
        )
    assert response.status_code == 400, response.status_code
    assert SignInApproval.objects.count() == 0
    # The form itself still sends pushes.
    response = browser.client.post(
        "/sign-in/push",
        {"username": "ada@example.com", "csrfmiddlewaretoken": browser.csrf_token()},
    )
    assert response.status_code == 303


def test_a_push_cookie_that_is_not_a_token_reads_as_expired(db):
    for cookie in ("threshold_push=\xff\xfe", "threshold_push=abc", "threshold_push=" + "a" * 5000):
        status, _, content = wsgi("GET", "/sign-in/push/state", raw_cookie=cookie)
        assert (status, json.loads(content)) == (200, {"state": "expired"})
        status, _, _ = wsgi("GET", "/sign-in/push/wait", raw_cookie=cookie)
        assert status == 400


def test_a_new_device_with_a_nul_in_its_fields_is_refused_or_stored_cleanly(ada, clock):
    # The enroll request's own fields (setup code, name, platform): never a 500.
    device = new_device()
    path = "/api/device/v1/enroll"
    for field in ("setup_code", "name", "platform", "app_version", "key_protection"):
        body = {"setup_code": "ABCD-EFGH", "name": "Phone", field: NUL}
        with nul_refused_as_postgresql_does():
            answer = wsgi("POST", path, device.sign(path, body, with_jwk=True).encode(), **JOSE)
        assert answer[0] < 500, (field, answer[2][:300])
