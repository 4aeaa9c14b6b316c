"""Bad input on every JSON endpoint: a 4xx in the catalog's words, never a 500, nothing stored.

Each endpoint is first brought to the point where it reads its input: a valid
invite for the enrollment endpoints, and a pending ceremony in the same session
for the result endpoints. Otherwise a result endpoint would refuse everything
with "no challenge" before ever parsing the body, and the test would prove
nothing about the parser.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from oauth2_provider.models import get_access_token_model

from tests.integration.conftest import CSRF_COOKIE, ORIGIN, PageClient, invite, last_event
from tests.integration.test_sso_speed import full_stack
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.models import User
from threshold.audit.models import AuditEvent
from threshold.core.encoding import b64url_encode
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

MAX_BODY = 64 * 1024


class People:
    """Ada, enrolled only when an endpoint needs her: enrolling costs a ceremony per test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    @property
    def ada(self):
        return self._request.getfixturevalue("ada")


@pytest.fixture
def people(request: pytest.FixtureRequest) -> People:
    return People(request)


@dataclass
class Endpoint:
    """A URL ready to read its body, and what it records when it refuses."""

    client: Client
    path: str
    # The audit action a refused result writes (None for options endpoints).
    failure_action: str | None
    # A real response for this endpoint's pending ceremony, to damage.
    genuine: dict | None = None
    # Settings endpoints are for a signed-in person; the others for anyone.
    signed_in: bool = False


class PageScriptClient(PageClient):
    """What webauthn.js sends: the page's flow token on the dated options endpoints (test_flow
    covers it) and the CSRF token in X-CSRFToken, checked as for a browser (test_sessions covers
    a missing one), so that the body is parsed. 500s come back as responses."""

    def __init__(self) -> None:
        super().__init__(
            enforce_csrf_checks=True, raise_request_exception=False, HTTP_ACCEPT="application/json"
        )
        self.get("/sign-out")  # sets the CSRF cookie, as any page does

    def generic(self, method: str, path: str, *args, **extra):
        if CSRF_COOKIE in self.cookies:
            extra.setdefault("HTTP_X_CSRFTOKEN", self.cookies[CSRF_COOKIE].value)
        return super().generic(method, path, *args, **extra)


def _client() -> Client:
    return PageScriptClient()


def _post(client: Client, path: str, data) -> dict:
    response = client.post(path, json.dumps(data), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def sign_in_options(people: People) -> Endpoint:
    return Endpoint(_client(), "/sign-in/options", None)


def sign_in_result(people: People) -> Endpoint:
    ada = people.ada
    client = _client()
    options = _post(client, "/sign-in/options", {})["publicKey"]
    return Endpoint(
        client, "/sign-in/result", "sign_in.failed", ada.authenticator.get(options, ORIGIN)
    )


def enroll_options(people: People) -> Endpoint:
    _, token = invite("grace@example.com", "Grace Hopper")
    return Endpoint(_client(), f"/enroll/{token}/options", None)


def enroll_result(people: People) -> Endpoint:
    _, token = invite("grace@example.com", "Grace Hopper")
    client = _client()
    options = _post(client, f"/enroll/{token}/options", {})["publicKey"]
    genuine = SoftAuthenticator().create(options, ORIGIN)
    return Endpoint(client, f"/enroll/{token}/result", "passkey.registration_failed", genuine)


def attestation_options(people: People) -> Endpoint:
    return Endpoint(_client(), "/attestation/options", None)


def attestation_result(people: People) -> Endpoint:
    client = _client()
    options = _post(
        client, "/attestation/options", {"username": "grace@example.com", "displayName": "Grace"}
    )
    genuine = SoftAuthenticator().create(options, ORIGIN)
    return Endpoint(client, "/attestation/result", "passkey.registration_failed", genuine)


def assertion_options(people: People) -> Endpoint:
    assert people.ada  # so that "ada@example.com" has a passkey to sign in with
    return Endpoint(_client(), "/assertion/options", None)


def assertion_result(people: People) -> Endpoint:
    ada = people.ada
    client = _client()
    options = _post(client, "/assertion/options", {"username": "ada@example.com"})
    return Endpoint(
        client, "/assertion/result", "sign_in.failed", ada.authenticator.get(options, ORIGIN)
    )


def _signed_in_client(people: People) -> Client:
    """Ada's browser, just signed in with user verification (a fresh step-up)."""
    ada = people.ada
    client = _client()
    options = _post(client, "/sign-in/options", {})["publicKey"]
    _post(client, "/sign-in/result", ada.authenticator.get(options, ORIGIN))
    return client


def verify_options(people: People) -> Endpoint:
    return Endpoint(_signed_in_client(people), "/settings/verify/options", None, signed_in=True)


def verify_result(people: People) -> Endpoint:
    client = _signed_in_client(people)
    options = _post(client, "/settings/verify/options", {})["publicKey"]
    genuine = people.ada.authenticator.get(options, ORIGIN)
    return Endpoint(client, "/settings/verify/result", "step_up.failed", genuine, signed_in=True)


def add_options(people: People) -> Endpoint:
    client = _signed_in_client(people)
    return Endpoint(client, "/settings/security-methods/add/options", None, signed_in=True)


def add_result(people: People) -> Endpoint:
    client = _signed_in_client(people)
    options = _post(client, "/settings/security-methods/add/options", {"device": "phone"})
    genuine = SoftAuthenticator().create(options["publicKey"], ORIGIN)
    return Endpoint(
        client,
        "/settings/security-methods/add/result",
        "passkey.registration_failed",
        genuine,
        signed_in=True,
    )


OPTIONS = [
    sign_in_options,
    enroll_options,
    attestation_options,
    assertion_options,
    verify_options,
    add_options,
]
RESULTS = [
    sign_in_result,
    enroll_result,
    attestation_result,
    assertion_result,
    verify_result,
    add_result,
]
ALL = OPTIONS + RESULTS
USERNAME_OPTIONS = [sign_in_options, attestation_options, assertion_options]
REGISTRATION_RESULTS = [enroll_result, attestation_result, add_result]
ASSERTION_RESULTS = [sign_in_result, assertion_result, verify_result]

# The reasons a refused result may give for bad input: never "challenge_missing",
# which would mean the pending ceremony was not there to begin with.
INPUT_REASONS = {
    "malformed_request",
    "request_too_large",
    "malformed_response",
    "credential_type_invalid",
    "credential_id_mismatch",
}

A = b64url_encode(b"\x01" * 16)


def _damaged(change: Callable[[dict], None]) -> Callable[[dict], bytes]:
    def build(genuine: dict) -> bytes:
        credential = json.loads(json.dumps(genuine))
        change(credential)
        return json.dumps(credential).encode()

    return build


def _set(path: str, value) -> Callable[[dict], bytes]:
    *parents, last = path.split(".")

    def change(credential: dict) -> None:
        target = credential
        for name in parents:
            target = target[name]
        target[last] = value

    return _damaged(change)


def _drop(path: str) -> Callable[[dict], bytes]:
    *parents, last = path.split(".")

    def change(credential: dict) -> None:
        target = credential
        for name in parents:
            target = target[name]
        del target[last]

    return _damaged(change)


def _b64json(value) -> str:
    return b64url_encode(json.dumps(value).encode())


# The surrogate U+D800 as UTF-8 would encode it (ED A0 80), which is not UTF-8: raw in a
# multipart field, percent-encoded in a form body or a URL.
SURROGATE_BYTES = b"\xed\xa0\x80"
SURROGATE_PERCENT = "%ED%A0%80"


def _multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "threshold-boundary"
    parts = [
        b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
        % (boundary.encode(), name.encode(), value)
        for name, value in fields.items()
    ]
    body = b"".join(parts) + b"--%s--\r\n" % boundary.encode()
    return body, f"multipart/form-data; boundary={boundary}"


# (case id, body: bytes or a function of the genuine response, endpoints, expected status)
CASES = [
    ("malformed json", b'{"username": ', ALL, 400),
    ("truncated json", b'{"type": "public-key", "id": "', ALL, 400),
    ("not utf-8", b'{"username": "\xff\xfe"}', ALL, 400),
    ("json array", b"[]", ALL, 400),
    ("json array of object", b'[{"username": "ada@example.com"}]', ALL, 400),
    ("json string", b'"public-key"', ALL, 400),
    ("json number", b"42", ALL, 400),
    ("json null", b"null", ALL, 400),
    ("deeply nested array", b"[" * 50_000, ALL, 400),
    ("deeply nested object", b'{"a":' * 12_000, ALL, 400),
    ("body over 64 KiB", b'{"username": "' + b"a" * MAX_BODY + b'"}', ALL, 413),
    # A form instead of JSON (anyone can send one with the token GET /sign-in hands out).
    (
        "multipart form",
        _multipart({"username": b"ada@example.com"}),
        ALL,
        400,
    ),
    ("multipart form, empty", _multipart({}), ALL, 400),
    (
        "urlencoded form",
        (b"username=ada%40example.com", "application/x-www-form-urlencoded"),
        ALL,
        400,
    ),
    # /sign-in/options and /enroll/.../options take an empty body as {} (no username).
    ("empty body", b"", [attestation_options, assertion_options, *RESULTS], 400),
    ("username is a number", b'{"username": 5}', USERNAME_OPTIONS, 400),
    ("username is an object", b'{"username": {"a": 1}}', USERNAME_OPTIONS, 400),
    ("username is a list", b'{"username": ["ada@example.com"]}', USERNAME_OPTIONS, 400),
    ("username is true", b'{"username": true}', USERNAME_OPTIONS, 400),
    ("username too long", json.dumps({"username": "a" * 151}).encode(), USERNAME_OPTIONS, 400),
    ("username missing", b"{}", [attestation_options, assertion_options], 400),
    ("device unknown", b'{"device": "toaster"}', [add_options], 400),
    ("device a number", b'{"device": 3}', [add_options], 400),
    ("device a list", b'{"device": ["phone"]}', [add_options], 400),
    ("device too long", json.dumps({"device": "p" * 500}).encode(), [add_options], 400),
    ("username blank", b'{"username": "   "}', [attestation_options, assertion_options], 400),
    (
        "displayName is a number",
        b'{"username": "x@example.com", "displayName": 5}',
        [attestation_options],
        400,
    ),
    (
        "authenticatorSelection is a string",
        b'{"username": "x@example.com", "authenticatorSelection": "yes"}',
        [attestation_options],
        400,
    ),
    (
        "userVerification unknown",
        b'{"username": "x@example.com", "authenticatorSelection": {"userVerification": "always"}}',
        [attestation_options],
        400,
    ),
    (
        "userVerification a number",
        b'{"username": "ada@example.com", "userVerification": 1}',
        [assertion_options],
        400,
    ),
    (
        "residentKey a list",
        b'{"username": "x@example.com", "authenticatorSelection": {"residentKey": []}}',
        [attestation_options],
        400,
    ),
    (
        "authenticatorAttachment unknown",
        b'{"username": "x@example.com", '
        b'"authenticatorSelection": {"authenticatorAttachment": "usb"}}',
        [attestation_options],
        400,
    ),
    (
        "attestation unknown",
        b'{"username": "x@example.com", "attestation": "please"}',
        [attestation_options],
        400,
    ),
    (
        "attestation an object",
        b'{"username": "x@example.com", "attestation": {"a": 1}}',
        [attestation_options],
        400,
    ),
    (
        "extensions a list",
        b'{"username": "x@example.com", "extensions": []}',
        [attestation_options],
        400,
    ),
    # A lone UTF-16 surrogate is not text: no database driver can store or compare it.
    ("username a lone surrogate", b'{"username": "\\ud800@example.com"}', USERNAME_OPTIONS, 400),
    ("username a lone low surrogate", b'{"username": "ada\\uDFFF"}', USERNAME_OPTIONS, 400),
    (
        "username surrogate bytes",
        b'{"username": "\xed\xa0\x80@example.com"}',
        USERNAME_OPTIONS,
        400,
    ),
    (
        "displayName a lone surrogate",
        b'{"username": "x@example.com", "displayName": "Grace \\ud800"}',
        [attestation_options],
        400,
    ),
    ("device a lone surrogate", b'{"device": "\\ud800"}', [add_options], 400),
    ("a key a lone surrogate", b'{"\\ud800": 1}', ALL, 400),
    # JSON is UTF-8 (RFC 8259): a UTF-16 or UTF-32 body, which Python's decoder would take and
    # through which a raw lone surrogate would pass, is not JSON here.
    (
        "a UTF-16 body with a raw lone surrogate",
        b'{\x00"\x00a\x00"\x00:\x00"\x00\x00\xd8"\x00}\x00',
        ALL,
        400,
    ),
    ("a UTF-32 body", '{"username": "ada@example.com"}'.encode("utf-32"), USERNAME_OPTIONS, 400),
    ("credential missing everything", b"{}", RESULTS, 400),
    ("credential missing response", _drop("response"), RESULTS, 400),
    ("credential missing type", _drop("type"), RESULTS, 400),
    (
        "credential missing id and rawId",
        lambda g: _drop("rawId")(json.loads(_drop("id")(g))),
        RESULTS,
        400,
    ),
    ("credential type wrong", _set("type", "password"), RESULTS, 400),
    ("credential type a number", _set("type", 5), RESULTS, 400),
    ("credential type an object", _set("type", {"a": 1}), RESULTS, 400),
    ("response a string", _set("response", "ok"), RESULTS, 400),
    ("response a list", _set("response", []), RESULTS, 400),
    ("id a number", _set("id", 5), RESULTS, 400),
    ("rawId an object", _set("rawId", {"a": 1}), RESULTS, 400),
    ("rawId not base64url", _set("rawId", "!!not*base64!!"), RESULTS, 400),
    ("id and rawId empty", _damaged(lambda c: c.update(id="", rawId="")), RESULTS, 400),
    ("id differs from rawId", _set("id", A), RESULTS, 400),
    ("clientDataJSON missing", _drop("response.clientDataJSON"), RESULTS, 400),
    ("clientDataJSON a number", _set("response.clientDataJSON", 5), RESULTS, 400),
    ("clientDataJSON not base64url", _set("response.clientDataJSON", "{not base64}"), RESULTS, 400),
    ("clientDataJSON padded wrongly", _set("response.clientDataJSON", "A"), RESULTS, 400),
    (
        "clientDataJSON not json",
        _set("response.clientDataJSON", b64url_encode(b"\x00\xff")),
        RESULTS,
        400,
    ),
    ("clientDataJSON a list", _set("response.clientDataJSON", _b64json([])), RESULTS, 400),
    ("clientDataJSON fields missing", _set("response.clientDataJSON", _b64json({})), RESULTS, 400),
    (
        "clientDataJSON fields wrong types",
        _set("response.clientDataJSON", _b64json({"type": 1, "challenge": [], "origin": None})),
        RESULTS,
        400,
    ),
    (
        "clientDataJSON crossOrigin a string",
        _set(
            "response.clientDataJSON",
            _b64json(
                {"type": "webauthn.get", "challenge": A, "origin": ORIGIN, "crossOrigin": "no"}
            ),
        ),
        RESULTS,
        400,
    ),
    (
        "clientDataJSON deeply nested",
        _set("response.clientDataJSON", b64url_encode(b"[" * 30_000)),
        RESULTS,
        400,
    ),
    ("attestationObject missing", _drop("response.attestationObject"), REGISTRATION_RESULTS, 400),
    (
        "attestationObject not base64url",
        _set("response.attestationObject", "%%%"),
        REGISTRATION_RESULTS,
        400,
    ),
    (
        "attestationObject not cbor",
        _set("response.attestationObject", b64url_encode(b"\xff\x00garbage")),
        REGISTRATION_RESULTS,
        400,
    ),
    (
        "attestationObject a cbor list",
        _set("response.attestationObject", b64url_encode(b"\x80")),
        REGISTRATION_RESULTS,
        400,
    ),
    ("transports a string", _set("response.transports", "usb"), REGISTRATION_RESULTS, 400),
    (
        "transports hold an object",
        _set("response.transports", [{"usb": True}]),
        REGISTRATION_RESULTS,
        400,
    ),
    ("transports hold a list", _set("response.transports", [["usb"]]), REGISTRATION_RESULTS, 400),
    ("authenticatorData missing", _drop("response.authenticatorData"), ASSERTION_RESULTS, 400),
    (
        "authenticatorData not base64url",
        _set("response.authenticatorData", "@@@@"),
        ASSERTION_RESULTS,
        400,
    ),
    (
        "authenticatorData too short",
        _set("response.authenticatorData", b64url_encode(b"\x00" * 10)),
        ASSERTION_RESULTS,
        400,
    ),
    ("signature a number", _set("response.signature", 7), ASSERTION_RESULTS, 400),
    ("signature not base64url", _set("response.signature", "~~~~"), ASSERTION_RESULTS, 400),
    ("userHandle an object", _set("response.userHandle", {"a": 1}), ASSERTION_RESULTS, 400),
    ("userHandle not base64url", _set("response.userHandle", "***"), ASSERTION_RESULTS, 400),
    ("type a lone surrogate", _set("type", "\ud800"), RESULTS, 400),
    ("id a lone surrogate", _set("id", "\udbff"), RESULTS, 400),
    ("clientDataJSON a lone surrogate", _set("response.clientDataJSON", "\ud800"), RESULTS, 400),
]

PARAMS = [
    pytest.param(endpoint, body, status, id=f"{endpoint.__name__}-{name}")
    for name, body, endpoints, status in CASES
    for endpoint in endpoints
]


@pytest.mark.parametrize(("make_endpoint", "body", "status"), PARAMS)
def test_bad_input_gets_a_4xx_in_the_catalogs_words_and_stores_nothing(
    people, make_endpoint, body, status
):
    endpoint = make_endpoint(people)
    passkeys = Passkey.objects.count()
    users = User.objects.count()
    used_invites = EnrollmentInvite.objects.filter(used_at__isnull=False).count()
    last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    raw = body(endpoint.genuine) if callable(body) else body
    raw, content_type = raw if isinstance(raw, tuple) else (raw, "application/json")

    response = endpoint.client.post(endpoint.path, raw, content_type=content_type)

    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    answer = response.json()
    assert answer["status"] == "failed"
    assert answer["errorMessage"]
    assert answer["error"]["title"]
    assert answer["error"]["message"]
    assert Passkey.objects.count() == passkeys
    assert User.objects.count() == users, "a refused request created an account"
    assert EnrollmentInvite.objects.filter(used_at__isnull=False).count() == used_invites
    if not endpoint.signed_in:
        assert endpoint.client.get("/").status_code != 200  # nobody got signed in
    if endpoint.failure_action is not None:
        event = AuditEvent.objects.filter(id__gt=last_id or 0, action=endpoint.failure_action).get()
        assert event.reason in INPUT_REASONS, (event.reason, event.detail)


@pytest.mark.parametrize("make_endpoint", ALL, ids=[e.__name__ for e in ALL])
def test_the_genuine_response_passes_where_the_damaged_ones_fail(people, make_endpoint):
    """The control for the table: undamaged, each endpoint accepts what the table breaks."""
    endpoint = make_endpoint(people)
    if endpoint.genuine is not None:
        body = json.dumps(endpoint.genuine)
    elif make_endpoint in (attestation_options, assertion_options):
        body = json.dumps({"username": "ada@example.com"})
    else:
        body = "{}"
    response = endpoint.client.post(endpoint.path, body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("make_endpoint", ALL, ids=[e.__name__ for e in ALL])
def test_get_is_not_allowed(people, make_endpoint):
    endpoint = make_endpoint(people)
    passkeys = Passkey.objects.count()
    response = endpoint.client.get(endpoint.path)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert Passkey.objects.count() == passkeys


@pytest.mark.parametrize("make_endpoint", ALL, ids=[e.__name__ for e in ALL])
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_a_method_not_allowed_is_answered_in_the_catalogs_words(people, make_endpoint, method):
    """Not a bare 405 with an empty body, which a browser shows as its own error page and
    a script cannot read (threshold/web/methods.py)."""
    endpoint = make_endpoint(people)
    events = AuditEvent.objects.count()
    as_json = getattr(endpoint.client, method)(endpoint.path, HTTP_ACCEPT="application/json")
    assert as_json.status_code == 405
    assert as_json["Allow"] == "POST"
    expected = "Page No Longer Available" if method == "get" else "Session Expired"
    assert as_json.json()["status"] == "failed"
    assert as_json.json()["error"]["title"] == expected
    as_page = getattr(endpoint.client, method)(endpoint.path, HTTP_ACCEPT="text/html")
    assert as_page.status_code == 405
    assert as_page["Content-Type"].startswith("text/html")
    assert f"<h1>{expected}</h1>" in as_page.content.decode().replace("\n", "")
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("path", ["/settings/profile", "/settings/verify/options"])
def test_a_form_or_api_address_opened_in_the_browser_reads_page_no_longer_available(path):
    response = Client().get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 405
    assert "Page No Longer Available" in response.content.decode()
    assert "POST" in response["Allow"]


@pytest.mark.parametrize("make_endpoint", [sign_in_options, attestation_options, assertion_options])
def test_a_body_of_exactly_64_kib_is_read(people, make_endpoint):
    endpoint = make_endpoint(people)
    prefix, suffix = b'{"username": "', b'"}'
    body = prefix + b"a" * (MAX_BODY - len(prefix) - len(suffix)) + suffix
    assert len(body) == MAX_BODY
    response = endpoint.client.post(endpoint.path, body, content_type="application/json")
    # Read, and refused for the username's length, not the body's.
    assert response.status_code == 400
    assert response.json()["status"] == "failed"


@pytest.mark.parametrize("make_endpoint", [sign_in_options, attestation_options, assertion_options])
def test_a_username_with_a_nul_character_is_not_a_server_error(people, make_endpoint):
    # PostgreSQL cannot store or compare text with NUL: it must be refused as bad input.
    endpoint = make_endpoint(people)
    users = User.objects.count()
    response = endpoint.client.post(
        endpoint.path,
        json.dumps({"username": "ada\x00@example.com"}),
        content_type="application/json",
    )
    assert response.status_code < 500, response.content[:300]
    assert User.objects.count() == users


def test_a_display_name_with_a_nul_character_is_not_a_server_error(people):
    endpoint = attestation_options(people)
    body = json.dumps({"username": "nul@example.com", "displayName": "Nul\x00Person"})
    response = endpoint.client.post(endpoint.path, body, content_type="application/json")
    assert response.status_code < 500, response.content[:300]


def test_a_bad_sign_in_result_is_audited_with_its_reason(people):
    endpoint = sign_in_result(people)
    response = endpoint.client.post(endpoint.path, b"{not json", content_type="application/json")
    assert response.status_code == 400
    event = last_event("sign_in.failed")
    assert event.reason == "malformed_request"
    assert event.subject is None


def test_lone_surrogates_in_form_fields_and_urls_are_refused_not_server_errors(people):
    """Django decodes forms and URLs with replacement characters; names refuse those."""
    ada = people.ada
    client = _signed_in_client(people)
    name_before = User.objects.get(pk=ada.user.pk).full_name
    nickname_before = ada.passkey.nickname

    for path, field in (
        ("/settings/profile", "full_name"),
        (f"/settings/security-methods/{ada.passkey.pk}/rename", "nickname"),
    ):
        form = f"{field}=Ada{SURROGATE_PERCENT}"
        response = client.post(path, form, content_type="application/x-www-form-urlencoded")
        assert response.status_code == 400, (path, response.status_code)
        body, content_type = _multipart({field: b"Ada" + SURROGATE_BYTES})
        response = client.post(path, body, content_type=content_type)
        assert response.status_code == 400, (path, response.status_code)
    assert User.objects.get(pk=ada.user.pk).full_name == name_before
    assert Passkey.objects.get(pk=ada.passkey.pk).nickname == nickname_before

    anonymous = Client(raise_request_exception=False)
    form = f"username=ada{SURROGATE_PERCENT}@example.com&password=x"
    response = anonymous.post(
        "/sign-in/password", form, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    body, content_type = _multipart({"username": b"ada" + SURROGATE_BYTES, "password": b"x"})
    assert anonymous.post("/sign-in/password", body, content_type=content_type).status_code == 400
    for path in (
        f"/sign-in?next=/{SURROGATE_PERCENT}",
        f"/enroll/{SURROGATE_PERCENT}",
        f"/settings/guide/{SURROGATE_PERCENT}",
        f"/help/errors?q={SURROGATE_PERCENT}",
    ):
        assert anonymous.get(path).status_code < 500, path
    response = PageClient(raise_request_exception=False).post(
        f"/enroll/{SURROGATE_PERCENT}/options", b"{}", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["status"] == "failed"


BROKEN_FORMS = [
    pytest.param(b"--x\r\n", "multipart/form-data", id="multipart without a boundary"),
    pytest.param(b"garbage", "multipart/form-data; boundary=\u00e9", id="multipart bad boundary"),
    pytest.param(
        b"&".join(b"f%d=" % n for n in range(1200)),
        "application/x-www-form-urlencoded",
        id="too many fields",
    ),
    pytest.param(
        _multipart({"username": b"a" * MAX_BODY})[0],
        _multipart({})[1],
        id="multipart over 64 KiB",
    ),
    pytest.param(
        b"username=" + b"a" * MAX_BODY, "application/x-www-form-urlencoded", id="form over 64 KiB"
    ),
]


@pytest.mark.parametrize(("raw", "content_type"), BROKEN_FORMS)
@pytest.mark.parametrize("make_endpoint", ALL, ids=[e.__name__ for e in ALL])
def test_a_form_that_cannot_be_read_is_refused_before_the_endpoint_in_one_log_line(
    people, make_endpoint, raw, content_type, caplog
):
    endpoint = make_endpoint(people)
    last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    caplog.clear()

    response = endpoint.client.post(endpoint.path, raw, content_type=content_type)

    assert response.status_code == 400, (response.status_code, response.content[:300])
    answer = response.json()
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "bad_request"
    # One line, no traceback: anyone can send these.
    [line] = caplog.records
    assert line.getMessage().startswith("Refused a ")
    assert line.exc_info is None
    # Refused before the endpoint: its ceremony is still there, nothing was written.
    assert not AuditEvent.objects.filter(id__gt=last_id or 0).exists()
    if endpoint.genuine is not None:
        genuine = json.dumps(endpoint.genuine)
        after = endpoint.client.post(endpoint.path, genuine, content_type="application/json")
        assert after.status_code == 200, after.content


@pytest.mark.parametrize(("raw", "content_type"), BROKEN_FORMS)
def test_a_page_form_that_cannot_be_read_gets_the_problem_page_in_one_log_line(
    db, raw, content_type, caplog
):
    client = Client(raise_request_exception=False)
    caplog.clear()
    response = client.post("/sign-in/password", raw, content_type=content_type)
    assert response.status_code == 400
    assert "Your session has expired" in response.content.decode()
    [line] = caplog.records
    assert line.getMessage().startswith("Refused a ")
    assert line.exc_info is None
    assert not AuditEvent.objects.exists()


# --- The endpoints an app's server calls: OAuth's JSON, never the page -------------------------

APPS_UNREADABLE_FORMS = [
    *BROKEN_FORMS,
    # Django 5.1+ will not parse a form in another charset (BadRequest); OAuth's are UTF-8.
    pytest.param(
        b"token=x&access_token=x",
        "application/x-www-form-urlencoded; charset=latin-1",
        id="form not in UTF-8",
    ),
]
APP_REFUSALS = {
    "/token": "sso.token_refused",
    "/userinfo": "sso.token_refused",
    "/revoke": "sso.token_refused",
    "/introspect": "sso.introspection_refused",
}


@pytest.mark.parametrize(("raw", "content_type"), APPS_UNREADABLE_FORMS)
@pytest.mark.parametrize("path", list(APP_REFUSALS))
@pytest.mark.parametrize("stack", ["lean", "full"])
def test_an_apps_form_that_cannot_be_read_is_an_oauth_error(db, path, stack, raw, content_type):
    """An app's server reads RFC 6749 §5.2's JSON (RFC 6750 §3.1's at /userinfo), not the
    person's page, on the lean path (threshold/sso/lean.py) and down the full stack
    (RequestBodyMiddleware); the refusal is audited and nothing else is stored."""
    with full_stack() if stack == "full" else contextlib.nullcontext():
        response = Client().post(path, raw, content_type=content_type)

    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json()["error"] == "invalid_request"
    if path == "/userinfo":
        assert response["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
    [refusal] = AuditEvent.objects.all()
    assert (refusal.action, refusal.reason) == (APP_REFUSALS[path], "invalid_request")
    assert not get_access_token_model().objects.exists()
