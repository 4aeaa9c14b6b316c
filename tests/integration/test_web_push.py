"""Web Push to Threshold Verify on a phone (issue 12): a real HTTP server on loopback plays the
push service; the test is the phone's browser, with a P-256 key and an authentication secret
of its own. It decrypts what arrives (RFC 8291, http_ece) and checks the VAPID token's
signature (RFC 8292) against the server's public key. Nothing is mocked: the push service is
the outbound network, and it is a real server here."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import re
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import http_ece
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings as django_settings
from py_vapid import jwt as vapid_jwt

from tests.integration.conftest import (
    SESSION_EXPIRED,
    Browser,
    assert_failed,
    assert_ok,
    last_event,
    sign_in,
)
from tests.integration.test_device_app import (
    api,
    new_device,
    pending,
    send_push,
    set_up_device,
    shown_number,
)
from tests.integration.test_fallback import post
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.devices import webpush
from threshold.devices.models import PushSubscription

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]

SUBSCRIBE = "/api/device/v1/push-subscription"


class PushService:
    """A push service on loopback: it keeps each message and answers ``status`` (once ``hold``
    is set, when given)."""

    def __init__(
        self,
        status: int = 201,
        *,
        hold: threading.Event | None = None,
        address: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        location: str = "",
    ) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = status
        self.arrived = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if hold is not None:
                    hold.wait(30)
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

        self.server = Server((address, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PhoneBrowser:
    """The keys a browser makes for a push subscription (the Push API's p256dh and auth)."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.endpoint = endpoint

    def subscription(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url_encode(point), "auth": b64url_encode(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return dict(json.loads(plain))


@pytest.fixture
def web_push(settings):
    """Web Push on, sent inline, and a loopback push service allowed (the test-only setting)."""
    settings.THRESHOLD = dataclasses.replace(django_settings.THRESHOLD, web_push=True)
    settings.THRESHOLD_WEB_PUSH_SEND_INLINE = True
    settings.THRESHOLD_WEB_PUSH_ALLOW_PRIVATE_HOSTS = True


@pytest.fixture
def service():
    running = PushService()
    yield running
    running.close()


def subscribed_phone(person, endpoint: str):
    device = set_up_device(person)
    phone = PhoneBrowser(endpoint)
    answer = assert_ok(api(device, SUBSCRIBE, {"subscription": phone.subscription()}))
    assert answer["web_push"] is True
    return device, phone


def test_a_push_sign_in_sends_an_encrypted_vapid_signed_web_push(
    ada, clock, web_push, service, django_capture_on_commit_callbacks
):
    device, phone = subscribed_phone(ada, f"{service.origin}/push/abc123")
    assert last_event("device.push_subscribed").detail["push_service"] == "127.0.0.1"
    browser = Browser()
    with django_capture_on_commit_callbacks(execute=True):
        assert send_push(browser, "ada@example.com").status_code == 303
    [(headers, body)] = service.received
    # RFC 8030 §5.2 and §5.3: two minutes to live, high urgency; RFC 8188 / 8291: aes128gcm.
    assert headers["ttl"] == "120"
    assert headers["urgency"] == "high"
    assert headers["content-encoding"] == "aes128gcm"
    # What the phone decrypts with its own key says that a sign-in waits, and nothing more:
    # not the number, not the push's ID.
    message = phone.decrypt(body)
    assert message == {
        "type": "sign_in_request",
        "purpose": "sign_in",
        "title": "Are you trying to sign in?",
        "body": "A sign-in request is waiting for you. Open Threshold Verify to answer it.",
    }
    number = shown_number(browser)
    [push] = pending(device)
    assert str(number) not in json.dumps(message)
    assert push["id"] not in json.dumps(message)
    # RFC 8292 §3: "vapid t=<JWT>, k=<the server's public key>", the JWT signed by that key.
    scheme, _, parameters = headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in parameters.split(","))
    assert fields["k"] == webpush.public_key()
    claims = vapid_jwt.decode(fields["t"], fields["k"])
    assert claims["aud"] == service.origin
    assert claims["sub"] == f"mailto:{django_settings.THRESHOLD.admin_email}"
    assert 0 < claims["exp"] - clock.now <= 24 * 3600
    # Another key's token does not verify.
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_k = b64url_encode(
        other.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    with pytest.raises(Exception):  # noqa: B017, PT011 - cryptography's InvalidSignature
        vapid_jwt.decode(fields["t"], other_k)


def test_a_step_up_push_says_it_asks_to_verify_its_you(
    ada, clock, web_push, service, django_capture_on_commit_callbacks
):
    """ "Verify it's you" with a push: the notification asks what the app will ask, not about
    a sign-in."""
    _, phone = subscribed_phone(ada, f"{service.origin}/push/abc")
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    with django_capture_on_commit_callbacks(execute=True):
        response = post(browser, "/settings/verify/push?next=/settings/security-methods/add")
    assert response.status_code == 303
    [(_, body)] = service.received
    assert phone.decrypt(body) == {
        "type": "sign_in_request",
        "purpose": "step_up",
        "title": "Are you verifying it\u2019s you?",
        "body": "A request to verify it\u2019s you is waiting for you. Open Threshold Verify "
        "to answer it.",
    }


def test_the_notifications_ask_in_the_apps_words():
    """Each purpose's title is the question the phone web app shows for it (verify-app.js)."""
    script = (REPO / "threshold/devices/static/threshold/verify-app.js").read_text()
    for purpose, message in webpush.PAYLOADS.items():
        heading = json.dumps(message["title"])  # the script writes ’ as \u2019
        assert re.search(rf"{purpose}: {{\s*heading: {re.escape(heading)},", script), purpose
        waiting = re.search(rf"{purpose}: {{.*?waiting: (\"[^\"]*\")", script, re.S)
        assert waiting, purpose
        assert message["body"].startswith(json.loads(waiting.group(1))), purpose


def test_no_push_for_an_unknown_username_or_a_muted_person(
    ada, clock, web_push, service, django_capture_on_commit_callbacks
):
    device, _ = subscribed_phone(ada, f"{service.origin}/push/abc")
    with django_capture_on_commit_callbacks(execute=True):
        send_push(Browser(), "nobody@example.com")
    assert service.received == []
    with django_capture_on_commit_callbacks(execute=True):
        send_push(Browser(), "ada@example.com")
    [push] = pending(device)
    assert_ok(
        api(device, "/api/device/v1/approvals/answer", {"id": push["id"], "decision": "deny"})
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert send_push(Browser(), "ada@example.com").status_code == 303
    assert len(service.received) == 1  # the first push only: muted after "I didn't do this"


@pytest.mark.parametrize("status", [404, 410])
def test_a_subscription_the_push_service_forgot_is_removed(
    ada, clock, web_push, status, django_capture_on_commit_callbacks
):
    gone = PushService(status=status)
    try:
        device, _ = subscribed_phone(ada, f"{gone.origin}/push/old")
        with django_capture_on_commit_callbacks(execute=True):
            assert send_push(Browser(), "ada@example.com").status_code == 303
    finally:
        gone.close()
    assert len(gone.received) == 1
    assert PushSubscription.objects.count() == 0
    assert last_event("device.push_subscription_gone").detail["status"] == status
    # Polling still finds the push.
    assert len(pending(device)) == 1


@pytest.mark.parametrize("status", [500, 429])
def test_a_failing_push_service_does_not_break_the_push_sign_in(
    ada, clock, web_push, status, django_capture_on_commit_callbacks
):
    failing = PushService(status=status)
    try:
        device, _ = subscribed_phone(ada, f"{failing.origin}/push/x")
        browser = Browser()
        with django_capture_on_commit_callbacks(execute=True):
            assert send_push(browser, "ada@example.com").status_code == 303
    finally:
        failing.close()
    assert len(failing.received) == 1
    assert PushSubscription.objects.count() == 1  # kept: it may work next time
    number = shown_number(browser)
    [push] = pending(device)
    answer = api(
        device,
        "/api/device/v1/approvals/answer",
        {"id": push["id"], "decision": "approve", "number": str(number), "user_verified": True},
    )
    assert assert_ok(answer)["state"] == "approved"


def test_an_unreachable_push_service_does_not_break_the_push_sign_in(
    ada, clock, web_push, django_capture_on_commit_callbacks
):
    closed = PushService()
    endpoint = f"{closed.origin}/push/x"
    closed.close()  # nothing listens there any more
    device, _ = subscribed_phone(ada, endpoint)
    with django_capture_on_commit_callbacks(execute=True):
        assert send_push(Browser(), "ada@example.com").status_code == 303
    assert len(pending(device)) == 1


@pytest.mark.django_db(transaction=True)
def test_the_browser_does_not_wait_for_the_push_service(ada, settings, caplog):
    """Without the tests' inline setting the message goes from a thread after the commit: the
    browser has its answer while the push service still holds its own, and the message is
    delivered once the service answers (no timing: it answers only once the test lets it)."""
    settings.THRESHOLD = dataclasses.replace(django_settings.THRESHOLD, web_push=True)
    settings.THRESHOLD_WEB_PUSH_ALLOW_PRIVATE_HOSTS = True
    hold = threading.Event()
    slow = PushService(hold=hold)
    try:
        subscribed_phone(ada, f"{slow.origin}/push/slow")
        assert send_push(Browser(), "ada@example.com").status_code == 303
        assert not slow.arrived.is_set()
        hold.set()
        assert slow.arrived.wait(10)
        for thread in threading.enumerate():
            if thread.name == "threshold-web-push":
                thread.join(10)
        # Sent inline, the browser's request would have waited for the service until its
        # timeout, and the message would have failed.
        assert not [r for r in caplog.records if r.name.startswith("threshold")]
    finally:
        hold.set()
        slow.close()


# --- Subscriptions: what is refused --------------------------------------------------------------


VALID_KEYS = PhoneBrowser("https://push.example.com/x").subscription()["keys"]


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://push.example.com/x", "https"),
        ("https://127.0.0.1/x", "address"),
        ("https://10.0.0.8/x", "address"),
        ("https://[::1]/x", "address"),
        ("https://169.254.169.254/latest/meta-data", "address"),
        ("https://localhost/x", "public DNS name"),
        ("https://push.localhost/x", "local name"),
        ("https://metadata.google.internal/x", "local name"),
        ("https://intranet/x", "public DNS name"),
        ("https://push.example.com:8443/x", "port 443"),
        ("https://user:pw@push.example.com/x", "no user"),
        ("https://push.example.com/x#frag", "no fragment"),
        ("https://push.example.com/" + "a" * 1100, "longer than 1024"),
        ("https://push.example.com/a b", "without spaces"),
        ("file:///etc/passwd", "https"),
        ("", "must be text"),
    ],
)
def test_an_endpoint_threshold_would_not_send_to_is_refused_and_nothing_stored(
    ada, clock, settings, endpoint, why
):
    settings.THRESHOLD = dataclasses.replace(django_settings.THRESHOLD, web_push=True)
    device = set_up_device(ada)
    response = api(device, SUBSCRIBE, {"subscription": {"endpoint": endpoint, "keys": VALID_KEYS}})
    assert_failed(response, 400, SESSION_EXPIRED)
    assert why in webpush.endpoint_problem(endpoint)
    assert PushSubscription.objects.count() == 0


@pytest.mark.parametrize(
    "keys",
    [
        None,
        {},
        {"p256dh": VALID_KEYS["p256dh"]},
        {"p256dh": VALID_KEYS["p256dh"], "auth": b64url_encode(b"short")},
        {"p256dh": b64url_encode(b"\x04" + b"\x01" * 64), "auth": VALID_KEYS["auth"]},
        {"p256dh": "not base64!", "auth": VALID_KEYS["auth"]},
    ],
)
def test_subscription_keys_must_be_a_p256_point_and_a_16_byte_secret(ada, clock, settings, keys):
    settings.THRESHOLD = dataclasses.replace(django_settings.THRESHOLD, web_push=True)
    device = set_up_device(ada)
    subscription = {"endpoint": "https://push.example.com/x", "keys": keys}
    assert_failed(api(device, SUBSCRIBE, {"subscription": subscription}), 400, SESSION_EXPIRED)
    assert PushSubscription.objects.count() == 0


def test_a_subscription_is_refused_while_web_push_is_off(ada, clock):
    assert django_settings.THRESHOLD.web_push is False  # the default
    device = set_up_device(ada)
    subscription = {"endpoint": "https://push.example.com/x", "keys": VALID_KEYS}
    assert_failed(api(device, SUBSCRIBE, {"subscription": subscription}), 400, SESSION_EXPIRED)
    assert PushSubscription.objects.count() == 0
    assert 'data-push-key=""' in Browser().get("/verify/").content.decode()


def test_a_subscription_needs_a_signed_request_from_a_known_device(ada, clock, web_push):
    stranger = new_device()
    stranger.device_id = "unknown-device-id"
    subscription = {"endpoint": "https://push.example.com/x", "keys": VALID_KEYS}
    assert_failed(
        api(stranger, SUBSCRIBE, {"subscription": subscription}), 401, "Device Not Recognized"
    )
    assert PushSubscription.objects.count() == 0


def test_a_new_subscription_replaces_the_devices_last(ada, clock, web_push):
    device = set_up_device(ada)
    for endpoint in ("https://push.example.com/one", "https://push.example.com/two"):
        subscription = {"endpoint": endpoint, "keys": VALID_KEYS}
        assert_ok(api(device, SUBSCRIBE, {"subscription": subscription}))
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [
        "https://push.example.com/two"
    ]


def test_a_name_that_resolves_to_a_private_address_is_not_sent_to(settings):
    """Checked again before each send: a public-looking name may point inside."""
    settings.THRESHOLD_WEB_PUSH_ALLOW_PRIVATE_HOSTS = False
    assert "not a public address" in webpush.resolved_problem("https://localhost/x")
    settings.THRESHOLD_WEB_PUSH_ALLOW_PRIVATE_HOSTS = True
    assert webpush.resolved_problem("https://localhost/x") == ""


# --- The VAPID key -------------------------------------------------------------------------------


def test_the_vapid_key_is_made_once_under_var_with_mode_0600(web_push):
    path = webpush._key_path()
    path.unlink(missing_ok=True)
    first = webpush.public_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert webpush.public_key() == first
    assert len(b64url_decode(first)) == 65


def test_the_vapid_key_may_come_from_the_environment(settings):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    settings.THRESHOLD = dataclasses.replace(
        django_settings.THRESHOLD, web_push=True, vapid_key_pem=pem
    )
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert webpush.public_key() == b64url_encode(point)
    assert f'data-push-key="{b64url_encode(point)}"' in Browser().get("/verify/").content.decode()


def test_a_removed_devices_subscription_is_deleted(ada, clock, web_push):
    device = set_up_device(ada)
    subscription = {"endpoint": "https://push.example.com/x", "keys": VALID_KEYS}
    assert_ok(api(device, SUBSCRIBE, {"subscription": subscription}))
    assert_ok(api(device, "/api/device/v1/remove"))
    assert PushSubscription.objects.count() == 0


def test_a_redirect_from_the_push_service_is_not_followed(
    ada, clock, web_push, django_capture_on_commit_callbacks
):
    inside = PushService()
    redirecting = PushService(status=307, location=f"{inside.origin}/internal")
    try:
        subscribed_phone(ada, f"{redirecting.origin}/push/x")
        with django_capture_on_commit_callbacks(execute=True):
            assert send_push(Browser(), "ada@example.com").status_code == 303
    finally:
        redirecting.close()
        inside.close()
    assert len(redirecting.received) == 1
    assert inside.received == []


def _tls_for(name: str, directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server certificate for ``name`` from a CA of the test's own; the CA's file."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test push CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, chain = directory / "ca.pem", directory / "server.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return context, ca_file


def test_the_send_connects_to_the_checked_address_and_checks_the_hosts_certificate(
    ada, clock, web_push, settings, tmp_path, django_capture_on_commit_callbacks
):
    """DNS rebinding: the name is resolved and checked once, the connection goes to that
    address, and TLS still verifies the push service's name (SNI, certificate, Host)."""
    address, problem = webpush.resolve("https://localhost/")
    assert problem == ""
    tls, ca_file = _tls_for("localhost", tmp_path)
    settings.THRESHOLD_WEB_PUSH_CA_BUNDLE = str(ca_file)
    secure = PushService(address=address, tls=tls)
    try:
        device, phone = subscribed_phone(ada, f"https://localhost:{secure.port}/push/tls")
        with django_capture_on_commit_callbacks(execute=True):
            assert send_push(Browser(), "ada@example.com").status_code == 303
        [(headers, body)] = secure.received
        assert headers["host"] == f"localhost:{secure.port}"
        assert phone.decrypt(body)["type"] == "sign_in_request"
    finally:
        secure.close()
    # A certificate for another name is refused, whatever address answers.
    (tmp_path / "other").mkdir()
    other_tls, other_ca = _tls_for("push.example.com", tmp_path / "other")
    settings.THRESHOLD_WEB_PUSH_CA_BUNDLE = str(other_ca)
    impostor = PushService(address=address, tls=other_tls)
    try:
        PushSubscription.objects.update(endpoint=f"https://localhost:{impostor.port}/push/tls")
        [push] = pending(device)
        assert_ok(
            api(device, "/api/device/v1/approvals/answer", {"id": push["id"], "decision": "deny"})
        )
        clock.advance(20 * 60 + 1)  # the denial's mute is over
        with django_capture_on_commit_callbacks(execute=True):
            assert send_push(Browser(), "ada@example.com").status_code == 303
        assert impostor.received == []
        assert len(pending(device)) == 1  # polling still finds it
    finally:
        impostor.close()
