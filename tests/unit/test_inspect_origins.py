"""`threshold inspect` with an Android app's origin and with related origins.

Run as support staff run it (a subprocess, a file, flags, JSON out) on real
responses from the software authenticator whose clientDataJSON.origin is
``android:apk-key-hash:...`` or a related origin.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fido2 import cbor
from fido2.cose import ES256

from tests.support.authenticator import SoftAuthenticator
from threshold.core.ceremony import RelyingParty, begin_authentication, begin_registration
from threshold.core.encoding import b64url_encode

ROOT = Path(__file__).resolve().parents[2]
RP_ID = "example.com"
WEB_ORIGIN = "https://example.com"
APP_ORIGIN = "android:apk-key-hash:" + b64url_encode(hashlib.sha256(b"app certificate").digest())
RELATED_ORIGIN = "https://login.example.co.uk"


def _responses() -> dict[str, tuple[str, dict[str, Any], tuple[str, ...]]]:
    """(kind, response, the ceremony's flags) for each origin, registered and signed in."""
    rp = RelyingParty(id=RP_ID, name="Example", origins=frozenset({WEB_ORIGIN}))
    made: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {}
    for name, origin in (("app", APP_ORIGIN), ("related", RELATED_ORIGIN)):
        authenticator = SoftAuthenticator()
        options, _ = begin_registration(
            rp,
            user_handle=os.urandom(32),
            user_name="ada@example.com",
            user_display_name="Ada",
            now=0,
            timeout_seconds=60,
        )
        made[f"{name}-registration"] = (
            "registration",
            authenticator.create(options, origin),
            ("--challenge", options["challenge"]),
        )
        credential = authenticator.credentials[0]
        public_key = cbor.encode(
            dict(ES256.from_cryptography_key(credential.private_key.public_key()))
        )
        options, _ = begin_authentication(rp, now=0, timeout_seconds=60)
        made[f"{name}-authentication"] = (
            "authentication",
            authenticator.get(options, origin),
            (
                "--challenge",
                options["challenge"],
                "--public-key",
                b64url_encode(public_key),
                "--sign-count",
                "0",
            ),
        )
    return made


RESPONSES = _responses()

# name: (which response, the origin flags)
RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "app-registration": ("app-registration", ("--origin", WEB_ORIGIN, "--origin", APP_ORIGIN)),
    "app-registration-app-only": ("app-registration", ("--origin", APP_ORIGIN)),
    "app-registration-not-given": ("app-registration", ("--origin", WEB_ORIGIN)),
    "app-authentication": ("app-authentication", ("--origin", WEB_ORIGIN, "--origin", APP_ORIGIN)),
    "app-authentication-not-given": ("app-authentication", ("--origin", WEB_ORIGIN)),
    "app-origin-padded": ("app-registration", ("--origin", APP_ORIGIN + "=")),
    "app-origin-hex": ("app-registration", ("--origin", "android:apk-key-hash:" + "ab" * 32)),
    "related-registration": (
        "related-registration",
        ("--origin", WEB_ORIGIN, "--related-origin", RELATED_ORIGIN),
    ),
    "related-authentication": (
        "related-authentication",
        ("--origin", WEB_ORIGIN, "--related-origin", RELATED_ORIGIN),
    ),
    "related-not-given": ("related-authentication", ("--origin", WEB_ORIGIN)),
    "related-as-origin": ("related-registration", ("--origin", RELATED_ORIGIN)),
    "related-over-http": (
        "related-registration",
        ("--origin", WEB_ORIGIN, "--related-origin", "http://login.example.co.uk"),
    ),
}


def _run(name: str, directory: Path) -> subprocess.CompletedProcess[str]:
    response_name, origin_args = RUNS[name]
    kind, response, ceremony_args = RESPONSES[response_name]
    path = directory / "response.json"
    path.write_text(json.dumps(response))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "threshold.cli.main",
            "inspect",
            kind,
            str(path),
            "--rp-id",
            RP_ID,
            *origin_args,
            *ceremony_args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("inspect-origins")
    directories = {name: base / name for name in RUNS}
    for directory in directories.values():
        directory.mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, name, directories[name]) for name in RUNS}
        return {name: future.result() for name, future in futures.items()}


def _verdict(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str | None]:
    report = json.loads(result.stdout)
    return result.returncode, report["verdict"], report["reason"]


@pytest.mark.parametrize(
    "run",
    [
        "app-registration",
        "app-registration-app-only",
        "app-authentication",
        "related-registration",
        "related-authentication",
    ],
)
def test_a_configured_app_or_related_origin_is_accepted(inspected, run: str) -> None:
    result = inspected[run]
    assert _verdict(result) == (0, "accept", None), result.stdout + result.stderr


@pytest.mark.parametrize(
    "run", ["app-registration-not-given", "app-authentication-not-given", "related-not-given"]
)
def test_an_origin_not_given_is_rejected_with_its_reason(inspected, run: str) -> None:
    result = inspected[run]
    assert _verdict(result) == (1, "reject", "origin_not_allowed"), result.stderr


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("app-origin-padded", "no '=' padding"),
        ("app-origin-hex", "is not an Android app origin"),
        ("related-as-origin", "does not match RP ID 'example.com'"),
        ("related-over-http", "must be https://"),
    ],
)
def test_a_malformed_origin_is_a_usage_error(inspected, run: str, message: str) -> None:
    result = inspected[run]
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr
