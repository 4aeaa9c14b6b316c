"""Web Push to the phone web app: "a sign-in is waiting" (or "Verify it's you") reaches the phone
while the app is closed.

Only when the operator turns it on (``THRESHOLD_WEB_PUSH=1``). The phone's browser subscribes
with its push service (the Push API, our VAPID public key as ``applicationServerKey``) and the
app stores the subscription through the signed device API (``push-subscription``). When a push
is written for a person, each of their usable devices with a subscription gets one
message, after the commit and from a short-lived thread, so the browser's answer never waits
for a push service: encrypted to the browser's keys (RFC 8291, ``aes128gcm``, pywebpush and
http_ece), signed with our VAPID key (RFC 8292, ``vapid t=...,k=...``), ``TTL: 120`` (the push's
two minutes), ``Urgency: high``. The message holds no number and no secret: it says what the
push asks (a sign-in, or "Verify it's you"), and the app fetches the rest through the signed
API. Not retried: a push is worth two minutes, and the app polls while it is open. A push
service that answers 404 or 410 has forgotten the subscription: it is deleted.

The endpoint is a URL a phone gave us, so it is checked like one (server-side request
forgery): ``https`` on port 443, a DNS name (no IP address in any spelling, no ``localhost``
or local-only suffix), at most 1024 characters, no user, no fragment, when it is stored; and
before each send every address the name resolves to must be a public one (and so must the IPv4
address an IPv6 one reaches through NAT64, 6to4 or Teredo), the connection goes to the
address checked (TLS still checks the name: no DNS rebinding between check and connection),
and redirects are not followed. ``THRESHOLD_WEB_PUSH_ALLOW_PRIVATE_HOSTS`` and
``THRESHOLD_WEB_PUSH_CA_BUNDLE`` (Django settings the tests set, never the environment) let a
test's local push service through.

The VAPID key is ``THRESHOLD_VAPID_KEY`` (PEM; the same on every server that shares a
database) or ``var/vapid-key.pem``, made on first use with mode 0600 by whichever process
gets there first, as the OpenID Connect keys are (``threshold/sso/keys.py``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import string
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import connections, transaction
from requests.adapters import HTTPAdapter

from threshold import clock
from threshold.audit.actions import Action, Origin, record
from threshold.core import errors
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.core.files import create_once
from threshold.devices.models import Device, PushPurpose, PushSubscription

if TYPE_CHECKING:
    from py_vapid import Vapid02

log = logging.getLogger(__name__)

MAX_ENDPOINT_LENGTH = 1024
TIMEOUT_SECONDS = 5
TTL_SECONDS = 120  # the push sign-in's two minutes: a later message is worth nothing
VAPID_LIFETIME_SECONDS = 12 * 3600  # RFC 8292 §2: at most 24 hours
# Names that only mean something inside a network (RFC 6761, RFC 6762, RFC 8375, ICANN's .internal).
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan", ".localdomain")
# What the message says, per push's purpose; the app shows it as the notification (the
# service worker), in the words the app itself shows for that purpose (verify-app.js, ASKS).
PAYLOADS: dict[PushPurpose, dict[str, str]] = {
    PushPurpose.SIGN_IN: {
        "type": "sign_in_request",
        "purpose": PushPurpose.SIGN_IN,
        "title": "Are you trying to sign in?",
        "body": "A sign-in request is waiting for you. Open Threshold Verify to answer it.",
    },
    PushPurpose.STEP_UP: {
        "type": "sign_in_request",
        "purpose": PushPurpose.STEP_UP,
        "title": "Are you verifying it\u2019s you?",
        "body": "A request to verify it\u2019s you is waiting for you. Open Threshold Verify "
        "to answer it.",
    },
}
# What the service worker shows for a message that says neither its words nor a purpose it
# knows: a request, whichever it is.
ANY_REQUEST = {
    "title": "Threshold Verify",
    "body": "A request is waiting for you. Open Threshold Verify to answer it.",
}


def is_enabled() -> bool:
    return bool(settings.THRESHOLD.web_push)


def _private_hosts_allowed() -> bool:
    # A test's local push service only: a Django setting, not an environment variable.
    return bool(getattr(settings, "THRESHOLD_WEB_PUSH_ALLOW_PRIVATE_HOSTS", False))


# --- The VAPID key -------------------------------------------------------------------------------

_key_lock = threading.Lock()
_key_cache: tuple[str, ec.EllipticCurvePrivateKey] | None = None


def _key_path() -> Path:
    return Path(settings.THRESHOLD.var_dir) / "vapid-key.pem"


def _stored_pem() -> str:
    configured: str = settings.THRESHOLD.vapid_key_pem
    if configured:
        return configured
    path = _key_path()
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Two processes may both find no key: one key wins, and both use it.
        create_once(path, pem)
    return path.read_text()


def vapid_key() -> ec.EllipticCurvePrivateKey:
    global _key_cache  # noqa: PLW0603 - the per-process cache of the parsed key
    pem = _stored_pem()
    cached = _key_cache
    if cached is not None and cached[0] == pem:
        return cached[1]
    with _key_lock:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the VAPID key is not an EC key")
        _key_cache = (pem, key)
    return key


def public_key() -> str:
    """The VAPID public key as the Push API's ``applicationServerKey`` takes it: the
    uncompressed P-256 point, base64url."""
    point = (
        vapid_key()
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return b64url_encode(point)


# --- Subscriptions -------------------------------------------------------------------------------


# NAT64 (RFC 6052 §2.1): the well-known prefix carries an IPv4 address in its last 32 bits;
# the local-use one (RFC 8215) is the network's own, never a public address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a translator or a tunnel:
    IPv4-mapped, 6to4, Teredo's server and client, NAT64's well-known prefix."""
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ipv4 for ipv4 in embedded if ipv4 is not None]


def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if _private_hosts_allowed():
        return ""
    if not address.is_global or address.is_multicast:
        return f"{address} is not a public address"
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return f"{address} is not a public address"
        for ipv4 in _embedded_ipv4(address):
            if not ipv4.is_global or ipv4.is_multicast:
                return f"{address} reaches {ipv4}, not a public address"
    return ""


def _is_address(host: str) -> bool:
    """An IP address, or a host that "ends in a number" (the WHATWG URL standard's test: the
    last label decimal or 0x-hex digits), which browsers and the resolver read as an IPv4
    address whatever it looks like ("127.1", "0x7f.1", "0177.0.0.1")."""
    if ":" in host:
        return True
    last = host.rsplit(".", 1)[-1].lower()
    hexadecimal = last.startswith("0x") and all(c in string.hexdigits for c in last[2:])
    return last.isdigit() or hexadecimal


_NOT_A_NAME = "the endpoint must name its host, not an address"


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address ``_is_address`` saw in ``host`` (an unreadable one: 0.0.0.0, refused as
    not public)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return ipaddress.IPv4Address(0)


def endpoint_problem(url: object) -> str:
    """Why Threshold would not send to ``url`` ("" when it would): see the module's docstring."""
    if not isinstance(url, str) or not url:
        return "the endpoint must be text"
    if len(url) > MAX_ENDPOINT_LENGTH:
        return f"the endpoint is longer than {MAX_ENDPOINT_LENGTH} characters"
    if not url.isascii() or any(
        not character.isprintable() or character == " " for character in url
    ):
        return "the endpoint must be an ASCII URL without spaces"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the endpoint is not a URL"
    return _parts_problem(parts, port, _private_hosts_allowed())


def _parts_problem(parts: SplitResult, port: int | None, allowed: bool) -> str:
    if parts.scheme != "https" and not (allowed and parts.scheme == "http"):
        return "the endpoint must be https"
    if parts.username is not None or parts.password is not None or parts.fragment:
        return "the endpoint must have no user and no fragment"
    if port not in (None, 443) and not allowed:
        return "the endpoint must use port 443"
    return _host_problem((parts.hostname or "").rstrip("."), allowed)


_MAX_NAME_LENGTH = 253  # RFC 1035 §2.3.4
_MAX_LABEL_LENGTH = 63


def _host_problem(host: str, allowed: bool) -> str:
    if not host:
        return "the endpoint has no host"
    if _is_address(host):
        return _address_problem(_address(host)) if allowed else _NOT_A_NAME
    labels = host.split(".")
    well_formed = all(
        label and len(label) <= _MAX_LABEL_LENGTH and label.replace("-", "").isalnum()
        for label in labels
    )
    if len(host) > _MAX_NAME_LENGTH or not well_formed or (len(labels) == 1 and not allowed):
        return "the endpoint's host is not a public DNS name"
    if (host == "localhost" or host.endswith(_LOCAL_SUFFIXES)) and not allowed:
        return "the endpoint's host is a local name"
    return ""


def resolve(url: str) -> tuple[str, str]:
    """Before a send: the address to connect to, or "" and why not. Every address the
    endpoint's host resolves to must be public; the send then connects to the one checked
    (``_PinnedAdapter``), so a name that resolves elsewhere a moment later (DNS rebinding)
    changes nothing."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return "", f"{host} does not resolve ({exc.strerror or type(exc).__name__})"
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        problem = _address_problem(address)
        if problem:
            return "", f"{host}: {problem}"
    if not addresses:
        return "", f"{host} does not resolve"
    return str(addresses[0]), ""


def resolved_problem(url: str) -> str:
    return resolve(url)[1]


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str


P256_POINT_LENGTH = 65
AUTH_SECRET_LENGTH = 16


def parse_subscription(value: object) -> Subscription:
    """A ``PushSubscription.toJSON()`` ({endpoint, keys: {p256dh, auth}}), checked; or
    DeviceRequestMalformed (400) saying what is wrong."""
    if not isinstance(value, dict):
        raise errors.DeviceRequestMalformed("subscription must be an object")
    endpoint = value.get("endpoint")
    problem = endpoint_problem(endpoint)
    if problem:
        raise errors.DeviceRequestMalformed(problem)
    keys = value.get("keys")
    if not isinstance(keys, dict):
        raise errors.DeviceRequestMalformed("subscription.keys must be an object")
    try:
        point = b64url_decode(keys.get("p256dh"))
        secret = b64url_decode(keys.get("auth"))
        if len(point) != P256_POINT_LENGTH:
            raise ValueError("p256dh must be an uncompressed P-256 point")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        if len(secret) != AUTH_SECRET_LENGTH:
            raise ValueError("auth must be 16 bytes")
    except ValueError as error:
        raise errors.DeviceRequestMalformed(f"subscription.keys: {error}") from None
    assert isinstance(endpoint, str)  # noqa: S101 - endpoint_problem checked it
    return Subscription(endpoint, b64url_encode(point), b64url_encode(secret))


def do_subscribe(device: Device, value: object, origin: Origin) -> None:
    """Store (or replace) the device's Web Push subscription; refused while Web Push is off."""
    if not is_enabled():
        raise errors.DeviceRequestMalformed("Web Push is not turned on on this server")
    subscription = parse_subscription(value)
    with transaction.atomic():
        PushSubscription.objects.update_or_create(
            device=device,
            defaults={
                "endpoint": subscription.endpoint,
                "p256dh": subscription.p256dh,
                "auth": subscription.auth,
                "created_at": clock.now_datetime(),
            },
        )
        record(
            Action.DEVICE_PUSH_SUBSCRIBED,
            origin,
            actor=device.user,
            subject=device.user,
            device=device.public_id,
            # The push service's host only: the rest of the URL is the browser's capability.
            push_service=urlsplit(subscription.endpoint).hostname or "",
        )


# --- Sending -------------------------------------------------------------------------------------


class _PinnedAdapter(HTTPAdapter):
    """Connects to the address ``resolve`` checked while TLS still checks the push service's
    name (SNI and the certificate's name are the host's, not the address's)."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


def _session(hostname: str) -> requests.Session:
    """A session for one send: no redirects (a push service answers, it never sends us
    elsewhere), no proxy from the environment (the address checked is the one connected to),
    the pinned connection, and the test's CA bundle if it set one."""
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = 0
    adapter = _PinnedAdapter(hostname)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = getattr(settings, "THRESHOLD_WEB_PUSH_CA_BUNDLE", True)
    return session


def _pinned(url: str, address: str) -> str:
    """``url`` with its host replaced by the checked address (the Host header keeps the name)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return parts._replace(netloc=netloc).geturl()


def send_soon(device_ids: list[int], purpose: PushPurpose) -> None:
    """After the commit that wrote a push (a sign-in's, or "Verify it's you"'s: ``purpose``):
    tell the devices without holding up the browser's answer (inline under
    ``THRESHOLD_WEB_PUSH_SEND_INLINE``, which the tests set). With no devices (a push no one
    sees), the same thread and query find nothing."""
    if not is_enabled():
        return
    if getattr(settings, "THRESHOLD_WEB_PUSH_SEND_INLINE", False):
        send_to_devices(device_ids, purpose)
        return
    thread = threading.Thread(
        target=_send_in_thread,
        args=(device_ids, purpose),
        name="threshold-web-push",
        daemon=True,
    )
    thread.start()


def _send_in_thread(device_ids: list[int], purpose: PushPurpose) -> None:
    try:
        send_to_devices(device_ids, purpose)
    except Exception:
        log.exception("Web Push failed")
    finally:
        # The thread's own connection: a persistent one would outlive the thread.
        connections.close_all()


def send_to_devices(device_ids: list[int], purpose: PushPurpose) -> int:
    """One message to each of these devices that has a subscription, saying what the push
    asks (``purpose``); how many were accepted."""
    subscriptions = list(
        PushSubscription.objects.filter(
            # No devices (a push no one sees, send_soon): the same query, of no one's row.
            device_id__in=device_ids or [0],
            device__is_active=True,
            device__revoked_at__isnull=True,
        ).select_related("device__user")
    )
    if not subscriptions:
        return 0
    # Imported here: pywebpush brings aiohttp and more (about 13 MB) into a worker, which only
    # a push to a subscribed phone needs.
    from py_vapid import Vapid02  # noqa: PLC0415

    key = Vapid02(vapid_key())
    contact = f"mailto:{settings.THRESHOLD.admin_email}"
    message = json.dumps(PAYLOADS[purpose]).encode()
    accepted = 0
    for subscription in subscriptions:
        accepted += _send(subscription, key, contact, message)
    return accepted


def _send(subscription: PushSubscription, key: Vapid02, contact: str, message: bytes) -> int:
    from pywebpush import WebPusher  # noqa: PLC0415 - see send_to_devices

    endpoint = subscription.endpoint
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    address, problem = "", endpoint_problem(endpoint)
    if not problem:
        address, problem = resolve(endpoint)
    if problem:
        log.warning("Web Push to %s not sent: %s", host, problem)
        return 0
    headers = key.sign(
        {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "exp": int(clock.now()) + VAPID_LIFETIME_SECONDS,
            "sub": contact,
        }
    )
    headers["Urgency"] = "high"
    headers["Host"] = parts.netloc
    pusher = WebPusher(
        {
            "endpoint": _pinned(endpoint, address),
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        },
        requests_session=_session(host),
    )
    try:
        response = pusher.send(message, headers, ttl=TTL_SECONDS, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        log.warning("Web Push to %s failed: %s", host, type(exc).__name__)
        return 0
    status = int(getattr(response, "status_code", 0))
    if status in (404, 410):  # RFC 8030 §7.3: the subscription is gone
        _forget(subscription, status)
        return 0
    if not 200 <= status < 300:  # noqa: PLR2004
        log.warning("Web Push to %s refused: HTTP %s", host, status)
        return 0
    return 1


def _forget(subscription: PushSubscription, status: int) -> None:
    device = subscription.device
    with transaction.atomic():
        PushSubscription.objects.filter(pk=subscription.pk, endpoint=subscription.endpoint).delete()
        record(
            Action.DEVICE_PUSH_SUBSCRIPTION_GONE,
            Origin(),
            subject=device.user,
            device=device.public_id,
            push_service=urlsplit(subscription.endpoint).hostname or "",
            status=status,
        )
