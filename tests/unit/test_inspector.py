"""`threshold inspect`, run as support staff run it: a subprocess, a file, flags, JSON out.

Every invocation is declared in RUNS and the module fixture runs them all at once
(each is a fresh interpreter that loads fido2 and the FIDO metadata, ~0.7 s);
each test then reads the result of its own invocation.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.authenticator import SoftAuthenticator
from tests.unit.vectors import (
    REAL,
    TEST_CA,
    W3C_ORIGIN,
    W3C_RP_ID,
    W3C_TOP_ORIGIN,
    authentication_json,
    hex_bytes,
    pem,
    registration_json,
    vector,
)
from threshold.core import ceremony, errors
from threshold.core.encoding import b64url_decode, b64url_encode

ROOT = Path(__file__).resolve().parents[2]

REPORT_KEYS = [
    "verdict",
    "reason",
    "message",
    "fmt",
    "attestation_type",
    "attestation_trusted",
    "aaguid",
    "authenticator_name",
    "credential_id",
    "public_key_cose",
    "alg",
    "sign_count",
    "flags",
]
FLAG_KEYS = ["UP", "UV", "BE", "BS", "AT", "ED"]


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


BASE64URL_MEMBERS = ("id", "rawId", "clientDataJSON", "attestationObject")


def _padded(document: dict[str, Any]) -> dict[str, Any]:
    """The base64url members padded with "=" as standard base64 would be."""

    def pad(value: str) -> str:
        return value + "=" * (-len(value) % 4)

    padded = {**document, "response": dict(document["response"])}
    for members in (padded, padded["response"]):
        for name in BASE64URL_MEMBERS:
            if name in members:
                members[name] = pad(members[name])
    return padded


def _challenge(name: str) -> str:
    return b64url_encode(hex_bytes(vector(name), "challenge_hex"))


def _w3c(name: str, *extra: str) -> tuple[str, ...]:
    return ("--rp-id", W3C_RP_ID, "--origin", W3C_ORIGIN, "--challenge", _challenge(name), *extra)


def _public_key(name: str) -> str:
    return b64url_encode(hex_bytes(vector(name), "credential_public_key_cose_hex"))


NONE = "none-es256/registration"
PACKED = "packed-es256/registration"
EDDSA = "packed-eddsa-ed25519/registration"
TOP_ORIGIN = "none-es256-top-origin/registration"
TPM = "tpm-es256/registration"
U2F = "fido-u2f-es256/registration"
SIGN_IN = "packed-es256/authentication"  # BE set, sign count 0

IPHONE = REAL["IPHONE_12"]
IPHONE_ARGS = (
    "--rp-id",
    IPHONE.rp_id,
    "--origin",
    IPHONE.origin,
    "--challenge",
    b64url_encode(IPHONE.challenge),
)

_WITH_UNKNOWN_MEMBERS = registration_json(vector(NONE))
_WITH_UNKNOWN_MEMBERS["clientExtensionResults"] = {"credProps": {"rk": True}, "future": [1, 2]}
_WITH_UNKNOWN_MEMBERS["response"]["publicKeyAlgorithm"] = -7
_WITH_UNKNOWN_MEMBERS["response"]["somethingNew"] = {"nested": True}
_WITH_UNKNOWN_MEMBERS["copiedFrom"] = "https://example.org/admin/"
# Written as PHP's json_encode and some loggers write it: every "/" as "\/".
_UNKNOWN_MEMBERS_ESCAPED_SLASHES = json.dumps(_WITH_UNKNOWN_MEMBERS).replace("/", "\\/").encode()


BINARY_RESPONSE_MEMBERS = ("clientDataJSON", "attestationObject", "authenticatorData", "signature")


def _standard_base64(document: dict[str, Any]) -> dict[str, Any]:
    """The binary members in standard base64 (RFC 4648 §4: "+", "/" and padding)."""

    def standard(value: str) -> str:
        return base64.b64encode(b64url_decode(value)).decode("ascii")

    rewritten = {**document, "response": dict(document["response"])}
    for name in ("id", "rawId"):
        rewritten[name] = standard(rewritten[name])
    for name in BINARY_RESPONSE_MEMBERS:
        if name in rewritten["response"]:
            rewritten["response"][name] = standard(rewritten["response"][name])
    return rewritten


# A challenge whose base64url starts with "-", as one in 64 does, and a registration for it.
DASH_CHALLENGE = b64url_encode(b"\xfb" + bytes(range(31)))
_DASH_REGISTRATION = SoftAuthenticator().create(
    {
        "challenge": DASH_CHALLENGE,
        "rp": {"id": "localhost", "name": "Threshold"},
        "user": {"id": b64url_encode(b"user"), "name": "ada", "displayName": "Ada"},
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    },
    "http://localhost:8000",
)
_LOCALHOST = ("--rp-id", "localhost", "--origin", "http://localhost:8000")


def _with_slashes_and_padding() -> dict[str, Any]:
    """A registration whose clientDataJSON and attestationObject, in standard base64, hold "/"
    or "+" and padding. Five "?" in a row hold an aligned "???", which encodes as "Pz8/"."""
    for note in ("?????", "?????!", "?????!!"):
        created = SoftAuthenticator().create(
            {
                "challenge": DASH_CHALLENGE,
                "rp": {"id": "localhost", "name": "Threshold"},
                "user": {"id": b64url_encode(b"user"), "name": "ada", "displayName": "Ada"},
                "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            },
            "http://localhost:8000",
            client_extra={"note": note},
        )
        standard = _standard_base64(created)["response"]
        if all(
            set(standard[name]) & set("+/") and standard[name].endswith("=")
            for name in ("clientDataJSON", "attestationObject")
        ):
            return created
    raise AssertionError("no registration with slashes and padding in both members")


MIB = 1024 * 1024
_AT_THE_LIMIT = _json(registration_json(vector(NONE)))
_AT_THE_LIMIT += b" " * (MIB - len(_AT_THE_LIMIT))


@dataclass(frozen=True)
class Run:
    kind: str
    document: bytes | None  # None: RESPONSE.json does not exist
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    # Read this instead of the document's file (a device such as /dev/zero).
    response_path: str | None = None


RUNS: dict[str, Run] = {
    # Registrations.
    "none": Run(
        "registration",
        _json(registration_json(vector(NONE))),
        _w3c(NONE),
        # The inspector needs no Django settings: a broken settings module changes nothing.
        env={"DJANGO_SETTINGS_MODULE": "no.such.settings"},
    ),
    "packed-with-anchor": Run(
        "registration",
        _json(registration_json(vector(PACKED))),
        _w3c(PACKED, "--trust-anchor", "{test_ca}"),
    ),
    "tpm": Run("registration", _json(registration_json(vector(TPM))), _w3c(TPM)),
    "top-origin": Run(
        "registration",
        _json(registration_json(vector(TOP_ORIGIN))),
        _w3c(TOP_ORIGIN, "--allow-cross-origin", "--top-origin", W3C_TOP_ORIGIN),
    ),
    "padded": Run("registration", _json(_padded(registration_json(vector(NONE)))), _w3c(NONE)),
    "unknown-members": Run("registration", _UNKNOWN_MEMBERS_ESCAPED_SLASHES, _w3c(NONE)),
    "malformed-json": Run("registration", b'{"id": "AAAA", "response": {', _w3c(NONE)),
    "eddsa-offered-es256": Run(
        "registration", _json(registration_json(vector(EDDSA))), _w3c(EDDSA, "--alg", "-7")
    ),
    "uv-required": Run(
        "registration",
        _json(registration_json(vector(NONE))),
        _w3c(NONE, "--require-user-verification"),
    ),
    "iphone-today": Run("registration", _json(IPHONE.json()), IPHONE_ARGS),
    "iphone-2022": Run(
        "registration", _json(IPHONE.json()), (*IPHONE_ARGS, "--at", "2022-04-07T12:00:00Z")
    ),
    "iphone-today-trust-required": Run(
        "registration", _json(IPHONE.json()), (*IPHONE_ARGS, "--require-trusted-attestation")
    ),
    # Usage errors.
    "missing-rp-id": Run(
        "registration",
        _json(registration_json(vector(NONE))),
        ("--origin", W3C_ORIGIN, "--challenge", _challenge(NONE)),
    ),
    "bad-challenge": Run(
        "registration",
        _json(registration_json(vector(NONE))),
        ("--rp-id", W3C_RP_ID, "--origin", W3C_ORIGIN, "--challenge", "not base64!"),
    ),
    "bad-at": Run(
        "registration", _json(registration_json(vector(NONE))), _w3c(NONE, "--at", "last tuesday")
    ),
    "unreadable-file": Run("registration", None, _w3c(NONE)),
    # Authentications.
    "sign-in": Run(
        "authentication",
        _json(authentication_json(vector(SIGN_IN))),
        _w3c(
            SIGN_IN, "--public-key", _public_key(SIGN_IN), "--sign-count", "0", "--backup-eligible"
        ),
    ),
    "sign-in-counter-regressed": Run(
        "authentication",
        _json(authentication_json(vector(SIGN_IN))),
        _w3c(
            SIGN_IN, "--public-key", _public_key(SIGN_IN), "--sign-count", "7", "--backup-eligible"
        ),
    ),
    "sign-in-be-changed": Run(
        "authentication",
        _json(authentication_json(vector(SIGN_IN))),
        _w3c(SIGN_IN, "--public-key", _public_key(SIGN_IN), "--sign-count", "0"),
    ),
    # Standard base64 where the browser writes base64url.
    "standard-base64": Run(
        "registration",
        _json(_standard_base64(_with_slashes_and_padding())),
        (*_LOCALHOST, "--challenge", DASH_CHALLENGE),
    ),
    "sign-in-standard-base64": Run(
        "authentication",
        _json(_standard_base64(authentication_json(vector(SIGN_IN)))),
        _w3c(
            SIGN_IN, "--public-key", _public_key(SIGN_IN), "--sign-count", "0", "--backup-eligible"
        ),
    ),
    # A challenge that starts with "-", as a separate argument and joined with "=".
    "dash-challenge": Run(
        "registration", _json(_DASH_REGISTRATION), (*_LOCALHOST, "--challenge", DASH_CHALLENGE)
    ),
    "dash-challenge-joined": Run(
        "registration", _json(_DASH_REGISTRATION), (*_LOCALHOST, f"--challenge={DASH_CHALLENGE}")
    ),
    # --alg replays the server's allowed algorithms at sign-in too.
    "sign-in-alg-allowed": Run(
        "authentication",
        _json(authentication_json(vector(SIGN_IN))),
        _w3c(
            SIGN_IN,
            "--public-key",
            _public_key(SIGN_IN),
            "--sign-count",
            "0",
            "--backup-eligible",
            "--alg",
            "-8",
            "--alg",
            "-7",
        ),
    ),
    "sign-in-alg-not-allowed": Run(
        "authentication",
        _json(authentication_json(vector(SIGN_IN))),
        _w3c(
            SIGN_IN,
            "--public-key",
            _public_key(SIGN_IN),
            "--sign-count",
            "0",
            "--backup-eligible",
            "--alg",
            "-8",
            "--alg",
            "-257",
        ),
    ),
    # Sizes: files are read up to 1 MiB.
    "at-the-size-limit": Run("registration", _AT_THE_LIMIT, _w3c(NONE)),
    "over-the-size-limit": Run("registration", _AT_THE_LIMIT + b" ", _w3c(NONE)),
    "endless-response": Run("registration", None, _w3c(NONE), response_path="/dev/zero"),
    "endless-trust-anchor": Run(
        "registration",
        _json(registration_json(vector(PACKED))),
        _w3c(PACKED, "--trust-anchor", "/dev/zero"),
    ),
    # Instants that exist in their own time zone but not in UTC, and the ends of the range.
    "at-before-year-1": Run(
        "registration",
        _json(registration_json(vector(NONE))),
        _w3c(NONE, "--at", "0001-01-01T00:00:00+14:00"),
    ),
    "at-after-year-9999": Run(
        "registration",
        _json(registration_json(vector(NONE))),
        _w3c(NONE, "--at", "9999-12-31T23:59:59-14:00"),
    ),
    "at-year-1": Run(
        "registration",
        _json(registration_json(vector(PACKED))),
        _w3c(PACKED, "--trust-anchor", "{test_ca}", "--at", "0001-01-01T00:00:00Z"),
    ),
    "at-year-9999": Run(
        "registration",
        _json(registration_json(vector(PACKED))),
        _w3c(PACKED, "--trust-anchor", "{test_ca}", "--at", "9999-12-31T23:59:59Z"),
    ),
}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        report = json.loads(self.stdout)
        assert isinstance(report, dict)
        return report


def _run(run: Run, directory: Path, test_ca: Path) -> Result:
    response = directory / "response.json"
    if run.document is not None:
        response.write_bytes(run.document)
    args = [arg.replace("{test_ca}", str(test_ca)) for arg in run.args]
    path = run.response_path or str(response)
    completed = subprocess.run(
        [sys.executable, "-m", "threshold.cli.main", "inspect", run.kind, path, *args],
        cwd=ROOT,
        env={**os.environ, **run.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    base = tmp_path_factory.mktemp("inspect")
    test_ca = base / "w3c-test-ca.pem"
    test_ca.write_bytes(pem(TEST_CA))
    directories = {}
    for name in RUNS:
        directories[name] = base / name
        directories[name].mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(_run, run, directories[name], test_ca) for name, run in RUNS.items()
        }
        return {name: future.result() for name, future in futures.items()}


def _accepted(result: Result) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report
    assert report["verdict"] == "accept"
    assert report["reason"] is None
    return report


def _rejected(result: Result, reason: str) -> dict[str, Any]:
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.report
    assert report["verdict"] == "reject"
    assert report["reason"] == reason
    assert report["message"]
    return report


def _usage_error(result: Result) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip()


# --- The report --------------------------------------------------------------------------------


def test_report_has_exactly_the_documented_keys_in_order(inspected: dict[str, Result]) -> None:
    report = _accepted(inspected["none"])

    assert list(report) == REPORT_KEYS
    assert list(report["flags"]) == FLAG_KEYS


def test_report_describes_an_accepted_registration(inspected: dict[str, Result]) -> None:
    v = vector(NONE)

    report = _accepted(inspected["none"])

    assert report["fmt"] == "none"
    assert report["attestation_type"] == "none"
    assert report["attestation_trusted"] is False
    assert report["aaguid"] == v["expected"]["aaguid"]
    assert report["authenticator_name"] == "Synced passkey"
    assert report["credential_id"] == b64url_encode(hex_bytes(v, "credential_id_hex"))
    assert report["public_key_cose"] == b64url_encode(
        hex_bytes(v, "credential_public_key_cose_hex")
    )
    assert report["alg"] == -7
    assert report["sign_count"] == 0
    assert report["flags"] == v["expected"]["flags"]
    # Accepted, and support staff are told why it is not trusted.
    assert "no attestation" in report["message"]


def test_attested_registration_is_trusted_with_the_trust_anchor_given(
    inspected: dict[str, Result],
) -> None:
    report = _accepted(inspected["packed-with-anchor"])

    assert report["fmt"] == "packed"
    assert report["attestation_type"] == "basic"
    assert report["attestation_trusted"] is True
    assert report["message"] is None


def test_cross_origin_registration_is_accepted_when_its_top_origin_is_given(
    inspected: dict[str, Result],
) -> None:
    _accepted(inspected["top-origin"])


def test_attestation_fido2_cannot_verify_is_a_reject_with_a_reason(
    inspected: dict[str, Result],
) -> None:
    report = _rejected(inspected["tpm"], "attestation_invalid")

    # What could be read is still reported.
    assert report["fmt"] == "tpm"
    assert report["aaguid"] == vector(TPM)["expected"]["aaguid"]
    assert report["flags"]["AT"] is True


# --- Lenient input -------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["padded", "unknown-members"])
def test_lenient_input_is_accepted(inspected: dict[str, Result], run: str) -> None:
    report = _accepted(inspected[run])

    assert report["credential_id"] == b64url_encode(hex_bytes(vector(NONE), "credential_id_hex"))


def test_lenient_inputs_are_what_they_claim_to_be() -> None:
    padded = json.loads(RUNS["padded"].document or b"")
    assert padded["id"].endswith("=")
    assert padded["response"]["attestationObject"].endswith("=")
    assert b"\\/" in (RUNS["unknown-members"].document or b"")
    registration = json.loads(RUNS["standard-base64"].document or b"")["response"]
    for name in ("clientDataJSON", "attestationObject"):
        assert set(registration[name]) & set("+/")
        assert registration[name].endswith("=")
    sign_in = json.loads(RUNS["sign-in-standard-base64"].document or b"")["response"]
    assert any(set(value) & set("+/") for value in sign_in.values())
    assert any(value.endswith("=") for value in sign_in.values())
    for response in (registration, sign_in):
        for name in BINARY_RESPONSE_MEMBERS:
            assert not set(response.get(name, "")) & set("-_"), name
    assert DASH_CHALLENGE.startswith("-")


@pytest.mark.parametrize("run", ["standard-base64", "sign-in-standard-base64"])
def test_standard_base64_is_accepted_the_bytes_are_what_is_verified(
    inspected: dict[str, Result], run: str
) -> None:
    report = _accepted(inspected[run])

    original = json.loads(RUNS[run].document or b"")
    assert report["credential_id"] == b64url_encode(base64.b64decode(original["rawId"]))


def test_the_server_itself_still_refuses_standard_base64() -> None:
    document = json.loads(RUNS["standard-base64"].document or b"")
    with pytest.raises(errors.MalformedResponse):
        ceremony.parse_registration_response(document)


@pytest.mark.parametrize("run", ["dash-challenge", "dash-challenge-joined"])
def test_a_challenge_that_starts_with_a_dash_is_read_as_the_challenge(
    inspected: dict[str, Result], run: str
) -> None:
    _accepted(inspected[run])


def test_alg_lists_the_algorithms_the_server_allows_at_sign_in(
    inspected: dict[str, Result],
) -> None:
    _accepted(inspected["sign-in-alg-allowed"])
    report = _rejected(inspected["sign-in-alg-not-allowed"], "algorithm_not_allowed")
    assert report["alg"] == -7


def test_a_response_of_exactly_1_mib_is_read() -> None:
    assert len(RUNS["at-the-size-limit"].document or b"") == MIB


def test_a_response_at_the_size_limit_is_inspected(inspected: dict[str, Result]) -> None:
    _accepted(inspected["at-the-size-limit"])


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("over-the-size-limit", "larger than 1 MiB"),
        ("endless-response", "/dev/zero: larger than 1 MiB"),
        ("endless-trust-anchor", "trust anchor /dev/zero: larger than 1 MiB"),
        ("at-before-year-1", "--at is out of range"),
        ("at-after-year-9999", "--at is out of range"),
    ],
)
def test_oversized_files_and_out_of_range_instants_are_usage_errors(
    inspected: dict[str, Result], run: str, message: str
) -> None:
    _usage_error(inspected[run])
    assert message in inspected[run].stderr
    assert "Traceback" not in inspected[run].stderr


@pytest.mark.parametrize("run", ["at-year-1", "at-year-9999"])
def test_the_ends_of_the_time_range_are_inspected(inspected: dict[str, Result], run: str) -> None:
    # Accepted, untrusted: the test CA's certificates are not valid then.
    report = _accepted(inspected[run])
    assert report["attestation_trusted"] is False
    assert inspected[run].stderr == ""


# --- Rejections ----------------------------------------------------------------------------------


def test_malformed_json_is_a_reject_with_a_reason(inspected: dict[str, Result]) -> None:
    report = _rejected(inspected["malformed-json"], "malformed_response")

    assert report["fmt"] is None


def test_algorithm_the_server_did_not_offer_is_rejected(inspected: dict[str, Result]) -> None:
    report = _rejected(inspected["eddsa-offered-es256"], "algorithm_not_allowed")

    assert report["alg"] == -8


def test_required_user_verification_rejects_a_response_without_it(
    inspected: dict[str, Result],
) -> None:
    report = _rejected(inspected["uv-required"], "user_not_verified")

    assert report["flags"]["UV"] is False
    assert "We could not verify you" in report["message"]


# --- The clock: --at ----------------------------------------------------------------------------


def test_iphone_12_is_accepted_untrusted_today(inspected: dict[str, Result]) -> None:
    report = _accepted(inspected["iphone-today"])

    assert report["fmt"] == "apple"
    assert report["attestation_type"] == "anonca"
    assert report["attestation_trusted"] is False
    assert "expired" in report["message"]


def test_iphone_12_is_trusted_at_a_date_its_certificate_was_valid(
    inspected: dict[str, Result],
) -> None:
    # No --trust-anchor: Apple's WebAuthn root is built in.
    report = _accepted(inspected["iphone-2022"])

    assert report["attestation_trusted"] is True
    assert report["message"] is None


def test_requiring_trusted_attestation_rejects_the_expired_iphone_12_chain(
    inspected: dict[str, Result],
) -> None:
    report = _rejected(inspected["iphone-today-trust-required"], "attestation_untrusted")

    assert "Authenticator Not Allowed" in report["message"]
    assert report["attestation_trusted"] is False


# --- Usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        "missing-rp-id",
        "bad-challenge",
        "bad-at",
        "unreadable-file",
    ],
)
def test_usage_error_exits_2_with_a_message_and_no_report(
    inspected: dict[str, Result], run: str
) -> None:
    _usage_error(inspected[run])


# --- Authentication ------------------------------------------------------------------------------


def test_authentication_is_accepted_with_the_registered_key(inspected: dict[str, Result]) -> None:
    v = vector(SIGN_IN)

    report = _accepted(inspected["sign-in"])

    assert list(report) == REPORT_KEYS
    assert report["credential_id"] == b64url_encode(hex_bytes(v, "credential_id_hex"))
    assert report["public_key_cose"] == _public_key(SIGN_IN)
    assert report["alg"] == -7
    assert report["sign_count"] == 0
    assert report["flags"] == v["expected"]["flags"]


def test_authentication_with_a_counter_behind_the_stored_one_is_rejected(
    inspected: dict[str, Result],
) -> None:
    _rejected(inspected["sign-in-counter-regressed"], "sign_count_regressed")


def test_authentication_whose_backup_eligibility_changed_is_rejected(
    inspected: dict[str, Result],
) -> None:
    _rejected(inspected["sign-in-be-changed"], "backup_eligibility_changed")
