"""Threshold Verify's own pieces (verify/threshold_verify), without a server: it stays a separate
program, its signed requests verify with the server's checks, and its PIN is throttled."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from threshold.core import device_requests, errors
from threshold_verify import clock as app_clock
from threshold_verify.client import Signer, check_server_url
from threshold_verify.pin import PinError, check_pin, set_pin, wait_seconds
from threshold_verify.state import State
from threshold_verify.stores import SoftwareStore

APP = Path(__file__).resolve().parents[2] / "verify" / "threshold_verify"


def imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_app_never_imports_the_server() -> None:
    files = sorted(APP.glob("**/*.py"))
    assert len(files) >= 7
    for path in files:
        modules = imported_modules(path.read_text())
        assert not {m for m in modules if m == "threshold" or m.startswith("threshold.")}, path


def test_the_import_check_catches_a_server_import() -> None:
    assert imported_modules("from threshold.core import errors\nimport threshold") == {
        "threshold.core",
        "threshold",
    }


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[None]:
    before = keyring.get_keyring()
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    keyring.set_keyring(backend)
    yield
    keyring.set_keyring(before)


def test_a_software_keys_requests_verify_with_the_servers_checks(file_keyring: None) -> None:
    store = SoftwareStore()
    ref = store.create()
    enroll = Signer(store, ref).sign("/api/device/v1/enroll", {"setup_code": "ABCD-EFGH"})
    request = device_requests.read(enroll)
    assert request.public_jwk == store.public_jwk(ref)
    device_requests.verify(
        request, store.public_jwk(ref), path="/api/device/v1/enroll", now=app_clock.now()
    )
    assert request.body == {"setup_code": "ABCD-EFGH"}

    signed = Signer(store, ref, "device-1").sign("/api/device/v1/account", {})
    request = device_requests.read(signed)
    assert request.kid == "device-1"
    other = SoftwareStore()
    with pytest.raises(errors.DeviceSignatureInvalid):
        device_requests.verify(
            request,
            other.public_jwk(other.create()),
            path="/api/device/v1/account",
            now=app_clock.now(),
        )
    store.delete(ref)
    assert keyring.get_password("threshold-verify", ref) is None


def test_the_pin_is_argon2id_and_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(app_clock, "now", lambda: now[0])
    state = State()
    with pytest.raises(PinError):
        set_pin(state, "123")
    set_pin(state, "246810")
    assert state.pin_hash.startswith("$argon2id$")
    check_pin(state, "246810")
    for _ in range(2):
        with pytest.raises(PinError, match="not right"):
            check_pin(state, "000000")
    assert wait_seconds(state) == 0
    with pytest.raises(PinError, match="not right"):
        check_pin(state, "000000")
    assert wait_seconds(state) == 5
    # Locked: even the right PIN waits.
    with pytest.raises(PinError, match="locked"):
        check_pin(state, "246810")
    now[0] += 5
    with pytest.raises(PinError, match="not right"):
        check_pin(state, "000000")
    assert wait_seconds(state) == 10
    now[0] += 10
    check_pin(state, "246810")
    assert (state.pin_failures, wait_seconds(state)) == (0, 0)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://id.example.com/", True),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://id.example.com", False),
        ("ftp://id.example.com", False),
        ("https://id.example.com/some/path", False),
    ],
)
def test_sign_in_addresses_are_https_except_on_this_machine(url: str, allowed: bool) -> None:
    if allowed:
        assert check_server_url(url) == url.rstrip("/")
    else:
        with pytest.raises(ValueError, match="sign-in address"):
            check_server_url(url)


def test_run_keeps_waiting_while_the_server_is_unreachable(
    file_keyring: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket  # noqa: PLC0415

    from threshold_verify.cli import main  # noqa: PLC0415
    from threshold_verify.state import Account  # noqa: PLC0415

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = SoftwareStore()
    state = State(
        accounts=[Account(f"http://127.0.0.1:{port}", "d-1", "ada", "software", store.create())]
    )
    state.save(tmp_path)
    status = main(["--home", str(tmp_path), "run", "--once", "--timeout", "1", "--interval", "0.2"])
    output = capsys.readouterr().out
    assert status == 2
    assert "could not be reached" in output
    assert "No sign-in request arrived." in output


@pytest.mark.parametrize(
    ("purpose", "request_words", "approved"),
    [
        ("sign_in", "Sign-in request for ada", "Approved: the browser signs in."),
        (
            "step_up",
            "Request to verify it\u2019s you for ada",
            "Approved: the browser may add a passkey now.",
        ),
    ],
)
def test_the_desktop_app_says_what_a_push_asks(
    file_keyring: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    purpose: str,
    request_words: str,
    approved: str,
) -> None:
    """As the phone web app does (device-api.md: the device says what approving allows). The
    server's answer is the network's, which is all this fakes."""
    import io  # noqa: PLC0415

    from threshold_verify import cli  # noqa: PLC0415
    from threshold_verify.state import Account  # noqa: PLC0415

    state = State(
        accounts=[Account("http://127.0.0.1:1", "d-1", "ada", "software", SoftwareStore().create())]
    )
    set_pin(state, "246813")
    state.save(tmp_path)
    app = cli.App(tmp_path, "software")
    sent: list[dict[str, object]] = []
    monkeypatch.setattr(
        cli, "call", lambda server, path, signer, body: sent.append(body) or {"state": "approved"}
    )
    monkeypatch.setattr(cli, "notify", lambda title, text: None)
    monkeypatch.setattr("sys.stdin", io.StringIO("42\n246813\n"))
    approval = {
        "id": "a-1",
        "browser": "Chrome on macOS",
        "ip": "",
        "created_at": 1796400000,
        "purpose": purpose,
    }
    assert cli._approve(app, app.state.accounts[0], approval) == "approved"
    output = capsys.readouterr().out
    assert f"{request_words} (http://127.0.0.1:1)" in output
    assert output.rstrip().endswith(approved)
    assert ("add a passkey to your account" in output) is (purpose == "step_up")
    assert sent == [{"id": "a-1", "decision": "approve", "number": "42", "user_verified": True}]
