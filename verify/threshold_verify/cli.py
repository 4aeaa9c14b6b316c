"""`threshold-verify`: add an account, approve sign-ins, add the account to another device.

    threshold-verify add-account URL                 first device: the code from Settings
    threshold-verify add-account --setup-code CODE   a new device, from one already set up
    threshold-verify add-to-another-device           shows a QR code and a setup code
    threshold-verify run [--once]                    waits for sign-ins to approve
    threshold-verify accounts
    threshold-verify remove

Answers are read from standard input, one line each (PINs without echo on a terminal), so
the app runs headless too: every question is a line.
"""

from __future__ import annotations

import argparse
import getpass
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import segno

from threshold_verify import __version__
from threshold_verify.client import ServerError, Signer, call, check_server_url
from threshold_verify.encoding import b64url_decode
from threshold_verify.pin import PinError, check_pin, set_pin
from threshold_verify.state import Account, State, default_home
from threshold_verify.stores import KeyStore, SoftwareStore, StoreUnavailable, TpmStore

POLL_SECONDS = 1.0


class Stop(Exception):
    """End the command with a message for the person and an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- Talking to the person ------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def ask(prompt: str, *, secret: bool = False) -> str:
    if secret and sys.stdin.isatty():
        return getpass.getpass(prompt)
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        raise Stop("No answer (end of input).")
    return line.strip()


def notify(title: str, text: str) -> None:
    """A desktop notification where the system has a way to show one (notify-send, osascript)."""
    command: list[str] | None = None
    if sys.platform.startswith("linux") and shutil.which("notify-send"):
        command = ["notify-send", title, text]
    elif sys.platform == "darwin" and shutil.which("osascript"):
        command = ["osascript", "-e", f"display notification {text!r} with title {title!r}"]
    if command:
        subprocess.run(command, check=False, capture_output=True, timeout=5)  # noqa: S603


# --- The app's pieces ----------------------------------------------------------------------------


class App:
    def __init__(self, home: Path, key_store: str) -> None:
        self.home = home
        self.key_store = key_store
        self.state = State.load(home)

    def save(self) -> None:
        self.state.save(self.home)

    def store(self, name: str) -> KeyStore:
        if name == "tpm":
            return TpmStore(blobs=self.state.tpm_blobs)
        return SoftwareStore()

    def new_store(self) -> KeyStore:
        """The best store here: the TPM unless told otherwise or there is none."""
        if self.key_store in ("tpm", "auto"):
            tpm = TpmStore(blobs=self.state.tpm_blobs)
            try:
                tpm._esapi().close()  # noqa: SLF001 - probing the TPM
            except StoreUnavailable as error:
                if self.key_store == "tpm":
                    raise Stop(f"No TPM: {error}") from None
            else:
                return tpm
        return SoftwareStore()

    def signer(self, account: Account) -> Signer:
        return Signer(self.store(account.store), account.key_ref, account.device_id)

    def account(self, number: int | None) -> Account:
        if not self.state.accounts:
            raise Stop("No account yet: add one with `threshold-verify add-account`.")
        if number is None:
            if len(self.state.accounts) > 1:
                raise Stop("Several accounts: choose one with --account N (see `accounts`).")
            return self.state.accounts[0]
        if not 1 <= number <= len(self.state.accounts):
            raise Stop(f"No account {number} (see `threshold-verify accounts`).")
        return self.state.accounts[number - 1]

    def verify_person(self, reason: str) -> None:
        """The device PIN, before anything that speaks for the person."""
        pin = ask(f"Device PIN to {reason}: ", secret=True)
        try:
            check_pin(self.state, pin)
        except PinError as error:
            self.save()
            raise Stop(str(error)) from None
        self.save()

    def ensure_pin(self) -> None:
        """ "Enable for Touch ID or Windows Hello confirmation": here, a device PIN."""
        if self.state.pin_hash:
            return
        say("Every approval will ask for a device PIN. Choose one now.")
        for _ in range(3):
            pin = ask("Choose a device PIN (at least 6 digits): ", secret=True)
            if ask("The same PIN again: ", secret=True) != pin:
                say("The two PINs differ. Try again.")
                continue
            try:
                set_pin(self.state, pin)
            except PinError as error:
                say(str(error))
                continue
            self.save()
            say("Device PIN confirmation enabled.")
            return
        raise Stop("No device PIN was set.")


def _platform() -> str:
    return {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, "other")


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%d %b %Y, %H:%M:%S %Z")


# --- Commands ----------------------------------------------------------------------------------


def _enroll(
    app: App, server: str, code: str, name: str | None
) -> tuple[KeyStore, str, Signer, dict[str, Any], str]:
    """A new key redeems the setup code; with a TPM, the key is proven to be in it."""
    store = app.new_store()
    key_ref = store.create()
    app.save()  # a TPM key's blobs
    signer = Signer(store, key_ref)
    body: dict[str, Any] = {
        "setup_code": code,
        # The computer's name: Threshold says "Threshold Verify on <name>" itself.
        "name": name or platform.node() or _platform(),
        "platform": _platform(),
        "app_version": __version__,
        "key_protection": store.protection,
    }
    if isinstance(store, TpmStore):
        # The proof that the key is in this TPM (the server checks it: docs/device-api.md).
        try:
            body["tpm"] = store.evidence(key_ref)
        except StoreUnavailable as error:
            say(f"The TPM cannot prove where the key is ({error}): the server will see software.")
        app.save()
    try:
        enrolled = call(server, "enroll", signer, body)
    except ServerError:
        store.delete(key_ref)
        app.save()
        raise
    signer.device_id = enrolled["device_id"]
    recorded = enrolled["key_protection"]
    challenge = enrolled.get("tpm_challenge")
    if challenge and isinstance(store, TpmStore):
        proof = store.activate_and_certify(
            key_ref,
            b64url_decode(challenge["credential_blob"]),
            b64url_decode(challenge["encrypted_secret"]),
        )
        recorded = call(server, "attest", signer, proof)["key_protection"]
    return store, key_ref, signer, enrolled, recorded


def add_account(app: App, args: argparse.Namespace) -> int:
    code = args.setup_code or ""
    url = args.url or ""
    if not url and "#setup=" in code:
        url = code.split("/verify/", 1)[0]
    if not url:
        url = ask("Sign-in address (for example https://id.example.com): ")
    try:
        server = check_server_url(url)
    except ValueError as error:
        raise Stop(str(error)) from None
    if not code:
        code = ask("Setup code: ")
    app.ensure_pin()
    store, key_ref, signer, enrolled, recorded = _enroll(app, server, code, args.name)
    say(f"Key protection: {store.protection} (the server recorded: {recorded})")
    say("Another code will display. Enter it where you got the setup code (the Settings page,")
    say("or the device with Threshold Verify already set up):")
    say(f"Returned code: {enrolled['returned_code']}")
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        state = call(server, "enrollment", signer)["state"]
        if state == "done":
            app.state.accounts.append(
                Account(server, enrolled["device_id"], enrolled["username"], store.name, key_ref)
            )
            app.save()
            say(f"Account added: {enrolled['username']}")
            return 0
        if state == "canceled":
            break
        time.sleep(POLL_SECONDS)
    store.delete(key_ref)
    app.save()
    raise Stop("The set-up was canceled or timed out. Start again with a new setup code.")


def add_to_another_device(app: App, args: argparse.Namespace) -> int:
    account = app.account(args.account)
    app.verify_person("add your account to another device")
    signer = app.signer(account)
    issued = call(account.server, "setup-codes", signer, {"user_verified": True})
    link = f"{account.server}/verify/#setup={issued['setup_code'].replace('-', '')}"
    say("Add Account to Another Device")
    say("On the new device, scan this QR code or enter the setup code.")
    qr = segno.make(link, error="m")
    qr.terminal(compact=True)
    say(f"Setup code: {issued['setup_code']}")
    say(f"Valid until {_when(issued['expires_at'])}.")
    for _ in range(3):
        returned = ask("Enter the returned code shown on the new device: ")
        try:
            done = call(
                account.server,
                "setup-codes/confirm",
                signer,
                {"enrollment_id": issued["enrollment_id"], "returned_code": returned},
            )
        except ServerError as error:
            say(str(error))
            if error.code != "returned_code_invalid":
                return 1
            continue
        say(f"Done: {done['device_name']} can now approve your sign-ins.")
        return 0
    return 1


# What each kind of push asks (the API's "purpose"), in the words the phone web app uses.
_ASKS = {
    "sign_in": {
        "request": "Sign-in request",
        "detail": "",
        "pin": "approve this sign-in",
        "approved": "Approved: the browser signs in.",
    },
    "step_up": {
        "request": "Request to verify it\u2019s you",
        "detail": (
            "A browser where you are signed in asks to verify it\u2019s you. Approving lets it "
            "add a passkey to your account for the next few minutes."
        ),
        "pin": "verify it\u2019s you",
        "approved": "Approved: the browser may add a passkey now.",
    },
}


def _approve(app: App, account: Account, approval: dict[str, Any]) -> str:
    """Show what the push asks and where it comes from; the typed number and the PIN, or
    "deny"."""
    asks = _ASKS.get(str(approval.get("purpose", "sign_in")), _ASKS["sign_in"])
    say()
    say(f"{asks['request']} for {account.username} ({account.server})")
    if asks["detail"]:
        say(f"  {asks['detail']}")
    say(f"  Browser and system: {approval['browser']}")
    say(f"  IP address: {approval['ip'] or 'unknown'}")
    say(f"  Time: {_when(approval['created_at'])}")
    notify("Threshold Verify", f"{asks['request']} for {account.username}: type the number")
    typed = ask("Type the number shown in your browser, or 'deny' if you didn't do this: ")
    signer = app.signer(account)
    if typed.lower() in ("deny", "i didn't do this", "no"):
        call(account.server, "approvals/answer", signer, {"id": approval["id"], "decision": "deny"})
        say("Denied. Sign-in requests are paused for 20 minutes, and you will get an email.")
        return "denied"
    app.verify_person(asks["pin"])
    answer = call(
        account.server,
        "approvals/answer",
        signer,
        {"id": approval["id"], "decision": "approve", "number": typed, "user_verified": True},
    )
    say(asks["approved"])
    return str(answer["state"])


def run(app: App, args: argparse.Namespace) -> int:
    if not app.state.accounts:
        raise Stop("No account yet: add one with `threshold-verify add-account`.")
    say("Threshold Verify is running: waiting for sign-in requests.")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen: set[str] = set()
    while deadline is None or time.monotonic() < deadline:
        for account in list(app.state.accounts):
            try:
                approvals = call(account.server, "approvals/pending", app.signer(account))[
                    "approvals"
                ]
            except ServerError as error:
                if error.status != 0:  # refused: removed, clock, ... the person must act
                    raise
                say(f"{error} Trying again.")  # offline for a moment: keep waiting
                continue
            for approval in approvals:
                if approval["id"] in seen:
                    continue
                seen.add(approval["id"])
                try:
                    _approve(app, account, approval)
                except ServerError as error:
                    say(str(error))
                    if args.once:
                        return 1
                except Stop as stop:
                    say(str(stop))
                    if args.once:
                        return stop.status
                if args.once:
                    return 0
        time.sleep(args.interval)
    say("No sign-in request arrived.")
    return 2


def accounts(app: App, args: argparse.Namespace) -> int:
    if not app.state.accounts:
        say("No accounts.")
        return 0
    for number, account in enumerate(app.state.accounts, start=1):
        try:
            info = call(account.server, "account", app.signer(account))
            status = (
                f"device {info['device_name']!r}, key: {account.store} "
                f"(server: {info['key_protection']})"
            )
        except ServerError as error:
            status = f"not usable: {error}"
        say(f"{number}. {account.username} at {account.server}: {status}")
    return 0


def remove(app: App, args: argparse.Namespace) -> int:
    account = app.account(args.account)
    try:
        call(account.server, "remove", app.signer(account))
        say(f"Removed {account.username} from Threshold Verify and from your account's devices.")
    except ServerError as error:
        say(f"The server said: {error}. The account is removed from this device all the same.")
    app.store(account.store).delete(account.key_ref)
    app.state.accounts.remove(account)
    app.save()
    return 0


# --- The command line -----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="threshold-verify", description=__doc__.splitlines()[0])
    top.add_argument("--home", type=Path, default=None, help="where the app keeps its state")
    top.add_argument(
        "--key-store",
        choices=("auto", "tpm", "software"),
        default="auto",
        help="where a new key goes: the TPM if there is one (auto), or insist",
    )
    top.add_argument("--version", action="version", version=__version__)
    commands = top.add_subparsers(dest="command", required=True)

    add = commands.add_parser("add-account", help="add your account to this device")
    add.add_argument("url", nargs="?", help="the sign-in address, e.g. https://id.example.com")
    add.add_argument("--setup-code", help="the setup code (or the QR code's link)")
    add.add_argument("--name", help="what Settings calls this device")
    add.add_argument("--wait", type=float, default=600, help="seconds to wait for the code")
    add.set_defaults(handler=add_account)

    another = commands.add_parser("add-to-another-device", help="Add Account to Another Device")
    another.add_argument("--account", type=int)
    another.set_defaults(handler=add_to_another_device)

    runner = commands.add_parser("run", help="wait for sign-in requests and approve them")
    runner.add_argument("--once", action="store_true", help="stop after one request")
    runner.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    runner.add_argument("--interval", type=float, default=2.0, help="seconds between checks")
    runner.set_defaults(handler=run)

    listing = commands.add_parser("accounts", help="list the accounts on this device")
    listing.set_defaults(handler=accounts)

    removal = commands.add_parser("remove", help="remove an account from this device")
    removal.add_argument("--account", type=int)
    removal.set_defaults(handler=remove)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    app = App(args.home or default_home(), args.key_store)
    handler: Callable[[App, argparse.Namespace], int] = args.handler
    try:
        return handler(app, args)
    except ServerError as error:
        print(f"threshold-verify: {error}", file=sys.stderr)
        return 1
    except (Stop, StoreUnavailable) as error:
        print(f"threshold-verify: {error}", file=sys.stderr)
        return getattr(error, "status", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
