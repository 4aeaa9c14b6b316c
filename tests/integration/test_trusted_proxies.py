"""Behind the TLS proxy, X-Forwarded-For and X-Forwarded-Proto are believed only from the proxies
Threshold trusts (``THRESHOLD_TRUSTED_PROXIES``, by default this machine's): a client that reaches
the server directly cannot choose the address its audit rows, sessions and rate limits see."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest
from django.test import Client

from tests.integration.test_fuzz_lean_paths import begun, signed_out
from tests.support.wsgi import wsgi
from threshold.audit.models import AuditEvent
from threshold.config import LOOPBACK, ConfigError, load
from threshold.sessions.models import Session
from threshold.web.proxy import ForwardedHeaders, client_address

pytestmark = pytest.mark.django_db

CLIENT = "198.51.100.23"
BALANCER = "10.1.2.3"


@pytest.fixture
def behind_proxy(settings):
    """THRESHOLD_BEHIND_TLS_PROXY=1 with the given trusted networks (loopback by default)."""

    def configure(*networks: str) -> None:
        trusted = tuple(ipaddress.ip_network(n) for n in networks) if networks else LOOPBACK
        settings.THRESHOLD = dataclasses.replace(
            settings.THRESHOLD, proxy_ssl_header=True, trusted_proxies=trusted
        )
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    configure()
    return configure


def address(peer: str, forwarded: str | None = None) -> str | None:
    meta = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address(meta)


def test_without_the_proxy_flag_the_header_is_never_read(settings):
    assert settings.THRESHOLD.proxy_ssl_header is False
    assert address("127.0.0.1", CLIENT) == "127.0.0.1"
    assert address("", CLIENT) is None


def test_the_proxy_on_this_machine_names_the_client(behind_proxy):
    assert address("127.0.0.1", f"6.6.6.6, {CLIENT}") == CLIENT
    assert address("::1", CLIENT) == CLIENT
    # A dual-stack socket's name for 127.0.0.1, and a Unix socket (no address): this machine.
    assert address("::ffff:127.0.0.1", CLIENT) == CLIENT
    assert address("", CLIENT) == CLIENT
    # Without the header, or with garbage in it, the proxy's own address stands.
    assert address("127.0.0.1") == "127.0.0.1"
    assert address("127.0.0.1", "not an address") == "127.0.0.1"
    # An IPv6 zone names an interface of the proxy's host: dropped.
    assert address("127.0.0.1", "2001:db8::1%eth0") == "2001:db8::1"


def test_a_client_that_reaches_the_server_directly_cannot_choose_its_address(behind_proxy):
    assert address("203.0.113.7", CLIENT) == "203.0.113.7"
    assert address("203.0.113.7", "127.0.0.1") == "203.0.113.7"
    assert address("10.1.2.3", CLIENT) == "10.1.2.3"  # not a proxy until it is listed


def test_behind_a_chain_of_proxies_the_client_is_the_first_untrusted_hop(behind_proxy):
    behind_proxy("10.0.0.0/8", "127.0.0.1/32")
    # The client forged the left-most entry; the balancer appended the client's address;
    # nginx on this machine appended the balancer's.
    assert address("127.0.0.1", f"6.6.6.6, {CLIENT}, {BALANCER}") == CLIENT
    # Every hop a trusted proxy (a health check from the balancer's network): the farthest.
    assert address("127.0.0.1", f"10.9.9.9, {BALANCER}") == "10.9.9.9"
    # Garbage behind a trusted hop: the hop that vouched last stands, not the garbage's left.
    assert address("127.0.0.1", f"{CLIENT}, garbage, {BALANCER}") == BALANCER
    # A header of many trusted hops is read only so far.
    assert address("127.0.0.1", ", ".join(["10.0.0.1"] * 1000 + [CLIENT])) == CLIENT
    assert address("127.0.0.1", ", ".join([CLIENT] + ["10.0.0.1"] * 1000)) == "10.0.0.1"


def test_the_wsgi_front_drops_the_headers_of_an_untrusted_peer(behind_proxy):
    seen: list[dict] = []

    def application(environ, start_response):
        seen.append(dict(environ))
        return [b""]

    front = ForwardedHeaders(application)
    forwarded = {"HTTP_X_FORWARDED_FOR": CLIENT, "HTTP_X_FORWARDED_PROTO": "https"}
    front({"REMOTE_ADDR": "203.0.113.7", **forwarded}, None)
    front({"REMOTE_ADDR": "127.0.0.1", **forwarded}, None)
    assert "HTTP_X_FORWARDED_FOR" not in seen[0]
    assert "HTTP_X_FORWARDED_PROTO" not in seen[0]
    assert seen[1]["HTTP_X_FORWARDED_FOR"] == CLIENT
    assert seen[1]["HTTP_X_FORWARDED_PROTO"] == "https"


def test_a_sign_in_through_the_served_application_records_the_forwarded_client(ada, behind_proxy):
    # Straight to the server: the header is the client's own, and ignored.
    cookies, headers, assertion = begun(ada)
    body = json.dumps(assertion).encode()
    status, _, content = wsgi(
        "POST", "/sign-in/result", body, cookies, HTTP_X_FORWARDED_FOR=CLIENT, **headers
    )
    assert status == 200, content[:300]
    assert AuditEvent.objects.get(action="sign_in.succeeded").ip == "203.0.113.9"
    # Through the proxy on this machine: the address it forwarded.
    cookies, headers, assertion = begun(ada)
    body = json.dumps(assertion).encode()
    status, _, content = wsgi(
        "POST",
        "/sign-in/result",
        body,
        cookies,
        **{**headers, "REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": f"6.6.6.6, {CLIENT}"},
    )
    assert status == 200, content[:300]
    assert AuditEvent.objects.filter(action="sign_in.succeeded").latest("id").ip == CLIENT
    assert Session.objects.filter(ip=CLIENT).count() == 1


def test_an_untrusted_peer_cannot_claim_https(behind_proxy):
    # Over https, Django's CSRF check wants an Origin or a Referer; over http, the token will do.
    cookies, headers = signed_out()
    del headers["HTTP_ORIGIN"]
    forged = {**headers, "HTTP_X_FORWARDED_PROTO": "https"}
    status, _, content = wsgi(
        "POST", "/sign-in/options", b"{}", cookies, REMOTE_ADDR="127.0.0.1", **forged
    )
    assert status == 403, content[:300]
    # Straight to the server the forged header is gone: the request is plain http, as it was.
    status, _, content = wsgi("POST", "/sign-in/options", b"{}", cookies, **forged)
    assert status == 200, content[:300]


def test_single_sign_on_audits_the_forwarded_client(behind_proxy):
    junk = {"grant_type": "authorization_code", "code": "x", "client_id": "no-such-app"}
    Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=CLIENT).post("/token", junk)
    Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=CLIENT).post("/token", junk)
    ips = list(
        AuditEvent.objects.filter(action="sso.token_refused").order_by("id").values_list("ip")
    )
    assert ips == [(CLIENT,), ("203.0.113.7",)]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"THRESHOLD_VAR_DIR": str(tmp_path), "THRESHOLD_SECRET_KEY": "test-key-" * 5}


def test_the_trusted_proxies_are_configured(env):
    assert load(env).trusted_proxies == LOOPBACK
    assert load({**env, "THRESHOLD_BEHIND_TLS_PROXY": "1"}).trusted_proxies == LOOPBACK
    config = load(
        {
            **env,
            "THRESHOLD_BEHIND_TLS_PROXY": "1",
            "THRESHOLD_TRUSTED_PROXIES": " 10.0.0.5/24, fd00::/8 ,192.0.2.1",
        }
    )
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.0/24", "fd00::/8", "192.0.2.1/32"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"THRESHOLD_TRUSTED_PROXIES": "10.0.0.5"}, "set that too"),
        (
            {"THRESHOLD_BEHIND_TLS_PROXY": "1", "THRESHOLD_TRUSTED_PROXIES": "10.0.0.5, proxy"},
            "'proxy' is not an IP address or network",
        ),
        (
            {"THRESHOLD_BEHIND_TLS_PROXY": "1", "THRESHOLD_TRUSTED_PROXIES": "*"},
            "'*' is not an IP address or network",
        ),
    ],
    ids=["without-the-proxy-flag", "a-host-name", "a-wildcard"],
)
def test_a_misconfigured_proxy_list_stops_start_up(env, changes, message):
    with pytest.raises(ConfigError) as raised:
        load({**env, **changes})
    assert message in str(raised.value)
