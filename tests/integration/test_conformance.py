"""The FIDO Alliance conformance API ("Server Requirements and Transport Binding Profile").

The requests and responses use the shapes the FIDO conformance tool sends:
the credential carries ``getClientExtensionResults``, and options come back at
the top level next to ``status`` and ``errorMessage``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client, override_settings
from django.urls import Resolver404, clear_url_caches, resolve

import threshold.urls
from tests.integration.conftest import ORIGIN, last_event
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.models import User
from threshold.audit.models import AuditEvent
from threshold.config import ConfigError, load
from threshold.core.encoding import b64url_decode
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]

ENDPOINTS = (
    "/attestation/options",
    "/attestation/result",
    "/assertion/options",
    "/assertion/result",
)


@pytest.fixture
def tool() -> Client:
    # The conformance tool sends no CSRF token: the API is exempt, so enforce checks.
    return Client(enforce_csrf_checks=True)


def post(client: Client, path: str, data) -> dict:
    response = client.post(path, json.dumps(data), content_type="application/json")
    body = response.json()
    assert body["status"] in ("ok", "failed")
    assert isinstance(body["errorMessage"], str)
    if body["status"] == "ok":
        assert response.status_code == 200
        assert body["errorMessage"] == ""
    else:
        assert 400 <= response.status_code < 500
        assert body["errorMessage"]
    return body


def as_tool_sends(credential: dict) -> dict:
    """A browser's toJSON() form, rewritten as the conformance tool sends it."""
    response = {k: v for k, v in credential["response"].items() if k != "transports"}
    return {
        "id": credential["id"],
        "rawId": credential["rawId"],
        "type": "public-key",
        "response": response,
        "getClientExtensionResults": {},
    }


ATTESTATION_REQUEST = {
    "username": "johndoe@example.com",
    "displayName": "John Doe",
    "authenticatorSelection": {
        "residentKey": "required",
        "authenticatorAttachment": "cross-platform",
        "userVerification": "required",
        "requireResidentKey": True,
    },
    "attestation": "direct",
}


def test_register_then_sign_in_through_the_conformance_api(tool):
    options = post(tool, "/attestation/options", ATTESTATION_REQUEST)
    assert options["status"] == "ok"
    assert options["rp"]["id"] == "localhost"
    assert options["rp"]["name"]
    user = User.objects.get(username="johndoe@example.com")
    assert b64url_decode(options["user"]["id"]) == bytes(user.user_handle)
    assert options["user"]["name"] == "johndoe@example.com"
    assert options["user"]["displayName"] == "John Doe"
    assert len(b64url_decode(options["challenge"])) >= 16
    algorithms = {p["alg"] for p in options["pubKeyCredParams"]}
    assert {-7, -8, -257} <= algorithms
    assert all(p["type"] == "public-key" for p in options["pubKeyCredParams"])
    assert isinstance(options["timeout"], int)
    assert options["timeout"] > 0
    assert options["excludeCredentials"] == []
    assert options["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "authenticatorAttachment": "cross-platform",
        "userVerification": "required",
    }
    assert options["attestation"] == "direct"

    authenticator = SoftAuthenticator()
    credential = authenticator.create(options, ORIGIN, attestation="packed-self")
    assert post(tool, "/attestation/result", as_tool_sends(credential)) == {
        "status": "ok",
        "errorMessage": "",
    }
    passkey = Passkey.objects.get(user=user)
    assert bytes(passkey.credential_id) == authenticator.credentials[0].credential_id
    assert passkey.attestation_format == "packed"
    assert passkey.transports == []
    assert passkey.is_discoverable is None  # the tool reported no credProps
    registered = last_event("passkey.registered")
    assert registered.detail["purpose"] == "conformance"

    request = post(
        tool,
        "/assertion/options",
        {"username": "johndoe@example.com", "userVerification": "required"},
    )
    assert request["status"] == "ok"
    assert request["rpId"] == "localhost"
    assert request["userVerification"] == "required"
    assert len(b64url_decode(request["challenge"])) >= 16
    assert [c["id"] for c in request["allowCredentials"]] == [credential["id"]]
    assert isinstance(request["timeout"], int)

    assertion = authenticator.get(request, ORIGIN)
    assert post(tool, "/assertion/result", as_tool_sends(assertion)) == {
        "status": "ok",
        "errorMessage": "",
    }
    passkey.refresh_from_db()
    assert passkey.sign_count == 1
    assert last_event("sign_in.succeeded").subject == user

    # A second registration excludes the first credential.
    again = post(tool, "/attestation/options", ATTESTATION_REQUEST)
    assert [c["id"] for c in again["excludeCredentials"]] == [credential["id"]]
    assert User.objects.filter(username="johndoe@example.com").count() == 1


def test_conformance_defaults_and_require_resident_key(tool):
    options = post(
        tool, "/attestation/options", {"username": "jane@example.com", "displayName": "Jane"}
    )
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["attestation"] == "none"

    legacy = post(
        tool,
        "/attestation/options",
        {
            "username": "jane@example.com",
            "authenticatorSelection": {"requireResidentKey": True},
        },
    )
    assert legacy["authenticatorSelection"]["residentKey"] == "required"
    assert legacy["authenticatorSelection"]["requireResidentKey"] is True


def test_user_verification_preferred_accepts_an_authenticator_without_uv(tool):
    authenticator = SoftAuthenticator(user_verified=False)
    options = post(
        tool,
        "/attestation/options",
        {
            "username": "key@example.com",
            "authenticatorSelection": {"userVerification": "preferred"},
        },
    )
    assert (
        post(tool, "/attestation/result", as_tool_sends(authenticator.create(options, ORIGIN)))[
            "status"
        ]
        == "ok"
    )
    assert Passkey.objects.get().uv_initialized is False

    request = post(
        tool, "/assertion/options", {"username": "key@example.com", "userVerification": "preferred"}
    )
    assert (
        post(tool, "/assertion/result", as_tool_sends(authenticator.get(request, ORIGIN)))["status"]
        == "ok"
    )

    request = post(
        tool, "/assertion/options", {"username": "key@example.com", "userVerification": "required"}
    )
    failed = post(tool, "/assertion/result", as_tool_sends(authenticator.get(request, ORIGIN)))
    assert failed["status"] == "failed"
    assert last_event("sign_in.failed").reason == "user_not_verified"


def test_unknown_username_fails_at_assertion_options(tool):
    unknown = post(tool, "/assertion/options", {"username": "nobody@example.com"})
    assert unknown["status"] == "failed"
    assert "challenge" not in unknown

    # Begun but never finished: no passkey to sign in with either.
    post(tool, "/attestation/options", {"username": "halfway@example.com"})
    halfway = post(tool, "/assertion/options", {"username": "halfway@example.com"})
    assert halfway["status"] == "failed"


def test_conformance_results_refuse_replays_and_strangers(tool):
    authenticator = SoftAuthenticator()
    options = post(tool, "/attestation/options", {"username": "r@example.com"})
    credential = as_tool_sends(authenticator.create(options, ORIGIN))
    assert post(tool, "/attestation/result", credential)["status"] == "ok"
    assert post(tool, "/attestation/result", credential)["status"] == "failed"
    assert last_event("passkey.registration_failed").reason == "challenge_missing"

    request = post(tool, "/assertion/options", {"username": "r@example.com"})
    assertion = as_tool_sends(authenticator.get(request, ORIGIN))
    stranger = Client()
    assert post(stranger, "/assertion/result", assertion)["status"] == "failed"
    assert post(tool, "/assertion/result", assertion)["status"] == "ok"
    assert post(tool, "/assertion/result", assertion)["status"] == "failed"
    assert last_event("sign_in.failed").reason == "challenge_missing"
    assert Passkey.objects.count() == 1


def test_conformance_registration_refused_for_wrong_origin(tool):
    options = post(tool, "/attestation/options", {"username": "o@example.com"})
    credential = as_tool_sends(SoftAuthenticator().create(options, "https://evil.example"))
    assert post(tool, "/attestation/result", credential)["status"] == "failed"
    assert last_event("passkey.registration_failed").reason == "origin_not_allowed"
    assert not Passkey.objects.exists()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_conformance_endpoints_are_post_only(tool, path):
    assert tool.get(path).status_code == 405


@contextlib.contextmanager
def conformance_switched_off() -> Iterator[None]:
    """The URLconf as built with THRESHOLD_FIDO_CONFORMANCE unset (it reads the flag at import),
    then rebuilt as configured."""
    off = dataclasses.replace(django_settings.THRESHOLD, fido_conformance=False)
    try:
        with override_settings(THRESHOLD=off):
            importlib.reload(threshold.urls)
            clear_url_caches()
            yield
    finally:
        importlib.reload(threshold.urls)
        clear_url_caches()


@pytest.fixture
def conformance_off() -> Iterator[None]:
    with conformance_switched_off():
        yield


@pytest.mark.parametrize("path", ENDPOINTS)
def test_conformance_endpoints_do_not_exist_when_switched_off(conformance_off, path):
    client = Client()
    response = client.post(
        path, json.dumps({"username": "x@example.com"}), content_type="application/json"
    )
    assert response.status_code == 404
    assert client.get(path).status_code == 404
    assert not User.objects.exists()
    # The rest of the site is still there.
    assert client.get("/sign-in").status_code == 200


def test_conformance_endpoints_come_back_after_the_flag_test():
    # Guards the fixture above: the reload restored the routes for later tests. It switches the
    # flag off itself, since the tests run in a random order and this one may come first.
    with conformance_switched_off(), pytest.raises(Resolver404):
        resolve(ENDPOINTS[0])
    assert django_settings.THRESHOLD.fido_conformance is True
    for path in ENDPOINTS:
        assert resolve(path).func.__module__ == "threshold.conformance.views"
    assert Client().get("/attestation/options").status_code == 405


# --- Names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        {"username": "csi\u009b31m@example.com"},
        {"username": "evil\u202egpj.exe@example.com"},
        {"username": "<b>x</b>@example.com"},
        {"username": "x@example.com", "displayName": "John\u009b2J Doe"},
        {"username": "x@example.com", "displayName": "John \u202eeoD"},
        {"username": "x@example.com", "displayName": "x" * 101},
        {"username": "x@example.com", "displayName": 5},
    ],
    ids=[
        "username-c1-control",
        "username-direction-override",
        "username-markup",
        "display-name-c1-control",
        "display-name-direction-override",
        "display-name-too-long",
        "display-name-not-text",
    ],
)
def test_conformance_names_follow_the_settings_name_rules(tool, names):
    response = tool.post("/attestation/options", json.dumps(names), content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "failed"
    assert body["errorMessage"]
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


def test_conformance_names_are_stored_as_settings_stores_them(tool):
    post(
        tool,
        "/attestation/options",
        {"username": "cafe\u0301@example.com", "displayName": " Jo   Doe "},
    )
    user = User.objects.get()
    assert user.username == "caf\u00e9@example.com"  # NFC
    assert user.full_name == "Jo Doe"


# --- Start-up ------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"THRESHOLD_VAR_DIR": str(tmp_path), "THRESHOLD_SECRET_KEY": "test-key-" * 5}


PRODUCTION = {
    "THRESHOLD_RP_ID": "example.com",
    "THRESHOLD_ORIGINS": "https://login.example.com",
    "THRESHOLD_FIDO_CONFORMANCE": "1",
}


def test_conformance_outside_localhost_stops_start_up(env):
    with pytest.raises(ConfigError) as raised:
        load({**env, **PRODUCTION})
    message = str(raised.value)
    assert "anyone register a passkey on any account" in message
    assert "THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND=1" in message
    with pytest.raises(ConfigError):
        load({**env, **PRODUCTION, "THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND": "0"})
    with pytest.raises(ConfigError, match="THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND must be 1 or 0"):
        load({**env, **PRODUCTION, "THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND": "sure"})


def test_conformance_starts_on_localhost_or_when_the_operator_insists(env):
    assert load({**env, "THRESHOLD_FIDO_CONFORMANCE": "1"}).fido_conformance is True
    insisted = load({**env, **PRODUCTION, "THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND": "1"})
    assert insisted.fido_conformance is True
    # The acknowledgement alone switches nothing on.
    off = load(
        {
            **env,
            "THRESHOLD_RP_ID": "example.com",
            "THRESHOLD_ORIGINS": "https://example.com",
            "THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND": "1",
        }
    )
    assert off.fido_conformance is False


def run_threshold(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THRESHOLD_")}
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "threshold.cli.main", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_the_command_refuses_conformance_outside_localhost(env):
    result = run_threshold({**env, **PRODUCTION}, "check")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "configuration error: THRESHOLD_FIDO_CONFORMANCE=1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_the_command_warns_whenever_conformance_is_on(env):
    on = run_threshold({**env, "THRESHOLD_FIDO_CONFORMANCE": "1"}, "check")
    assert on.returncode == 0, on.stderr
    assert "WARNING: THRESHOLD_FIDO_CONFORMANCE=1" in on.stderr
    assert "anyone who can reach this server can register a passkey on any account" in on.stderr
    insisted = run_threshold(
        {**env, **PRODUCTION, "THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND": "1"}, "check"
    )
    assert insisted.returncode == 0, insisted.stderr
    assert "WARNING: THRESHOLD_FIDO_CONFORMANCE=1" in insisted.stderr
    off = run_threshold(env, "check")
    assert off.returncode == 0, off.stderr
    assert "WARNING" not in off.stderr
