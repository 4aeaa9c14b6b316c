"""Browser tests: Debian's Chromium, driven by Playwright, against the real `threshold serve`.

The session starts the production server (gunicorn, two workers, SQLite in a
temporary THRESHOLD_VAR_DIR) as a subprocess and Chromium's headless shell
(Debian's chromium-headless-shell: the same Blink and WebAuthn as `chromium`,
without the desktop browser around them, at half its CPU). A test marked
``full_chromium`` gets Debian's whole `chromium` instead, for what the shell
lacks. Every test gets a fresh browser context and, when it asks for one, a
virtual authenticator attached over the DevTools protocol. People are created with
`threshold invite`, and results are read back through the pages and through
`threshold users` and `threshold audit`, as an operator would.

These are not Django tests: nothing here touches the database directly.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    CDPSession,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from tests.support.commands import Commands
from tests.support.processes import (
    free_port,
    migrated,
    newcomer_environment,
    threshold_command,
)
from tests.support.verify_app import tpm_manufacturer_ca
from threshold.core.catalog import CATALOG

REPO_ROOT = Path(__file__).resolve().parents[2]
# Holds the sitecustomize module that lets tests move the server's clock.
CLOCK_DIR = Path(__file__).resolve().parent / "clock"
# The single sign-on tests' relying party (tests/browser/sso_rp.py).
RP_SCRIPT = Path(__file__).resolve().parents[1] / "rp" / "server.mjs"
CHROMIUM = "/usr/bin/chromium"
# Chromium without its desktop browser: the one Playwright itself prefers for headless runs. It
# lacks notifications, and a WebAuthn request with no authenticator attached fails at once as
# "not supported" where a desktop browser waits for one (its phone, a security key): a test of
# either runs on CHROMIUM (``@pytest.mark.full_chromium``).
HEADLESS_SHELL = "/usr/bin/chromium-headless-shell"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Fail fast: every step here takes well under a second on a working server.
STEP_TIMEOUT_MS = 10_000

# Instrumentation: reports each navigator.credentials.get() call and its
# mediation on the console, then makes the call unchanged. It is how a test
# tells the autofill (conditional) request from the button's (modal) one. A page
# with window.__thresholdHoldAutofill keeps its autofill requests pending.
CREDENTIALS_SPY = """
(() => {
  const container = navigator.credentials;
  if (!container || typeof container.get !== "function") return;
  const get = container.get.bind(container);
  container.get = (options) => {
    const mediation = (options && options.mediation) || "optional";
    console.debug("threshold-test:credentials.get:" + mediation);
    if (mediation === "conditional" && window.__thresholdHoldAutofill) {
      // Pending like an autofill nobody picked from, until the page aborts it.
      return new Promise((resolve, reject) => {
        const signal = options.signal;
        if (signal) {
          signal.addEventListener("abort", () =>
            reject(new DOMException("aborted", "AbortError")));
        }
      });
    }
    return get(options);
  };
})();
"""
SPY_PREFIX = "threshold-test:credentials.get:"


# --- The server ---------------------------------------------------------------------------------


def _server_env(var_dir: Path, port: int) -> dict[str, str]:
    """The production configuration, isolated from whatever the test run itself set."""
    env = newcomer_environment()
    env.update(
        THRESHOLD_VAR_DIR=str(var_dir),
        THRESHOLD_HOST="127.0.0.1",
        THRESHOLD_PORT=str(port),
        THRESHOLD_RP_ID="localhost",
        THRESHOLD_ORIGINS=f"http://localhost:{port}",
        THRESHOLD_WORKERS="2",
        THRESHOLD_EMAIL_BACKEND="file",
        THRESHOLD_TEST_CLOCK_FILE=str(var_dir / "clock-offset"),
        # The TPM manufacturer of the device app's tests' swtpm (tests/support/verify_app.py).
        THRESHOLD_DEVICE_TPM_ROOTS=str(tpm_manufacturer_ca(var_dir / "tpm-ca")),
        # Web Push to the phone web app: its page carries the VAPID key (test_verify_web_app.py).
        THRESHOLD_WEB_PUSH="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(CLOCK_DIR), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Server:
    url: str
    env: dict[str, str]
    log_path: Path
    commands: Commands | None = None

    def cli(self, *args: str) -> str:
        """Run `threshold ARGS...` against this server's database; its standard output.
        Each in a process of its own, forked from one that loaded Threshold once
        (tests/support/commands.py)."""
        if self.commands is None:
            self.commands = Commands(threshold_command(), self.env, REPO_ROOT)
        done = self.commands.run(*args)
        assert done.returncode == 0, f"threshold {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def invite(self, email: str, name: str) -> str:
        """A one-time enrollment link for ``email``: the last line `threshold invite` prints."""
        link = self.cli("invite", email, "--name", name, "--no-email").strip().splitlines()[-1]
        assert link.startswith(f"{self.url}/enroll/"), link
        return link

    def people(self) -> list[dict[str, str]]:
        """`threshold users`: a row per person (USERNAME, NAME, ROLE, STATUS, PASSKEYS)."""
        return _table(self.cli("users"))

    def passkey_count(self, email: str) -> int:
        rows = [row for row in _table(self.cli("users")) if row["USERNAME"] == email]
        assert len(rows) == 1, f"{email} is not listed by `threshold users`"
        return int(rows[0]["PASSKEYS"])

    def audit(self, subject: str | None = None) -> list[tuple[str, str]]:
        """(action, reason) of the latest audit events, newest first, optionally for one subject."""
        return [
            (row["ACTION"], row["REASON"])
            for row in _table(self.cli("audit", "--limit", "50"))
            if subject is None or row["SUBJECT"] == subject
        ]

    def now(self) -> float:
        """The server's clock (``threshold.clock.now``): real time plus the offset."""
        offset_file = Path(self.env["THRESHOLD_TEST_CLOCK_FILE"])
        return time.time() + (float(offset_file.read_text()) if offset_file.exists() else 0.0)

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock (``threshold.clock.now``) forward, for good."""
        offset_file = Path(self.env["THRESHOLD_TEST_CLOCK_FILE"])
        current = float(offset_file.read_text()) if offset_file.exists() else 0.0
        offset_file.write_text(str(current + seconds))

    def emails(self) -> list[str]:
        """Every email the server wrote to its mailbox directory (var/mail), oldest first."""
        mailbox = Path(self.env["THRESHOLD_VAR_DIR"]) / "mail"
        if not mailbox.exists():
            return []
        files = sorted(mailbox.iterdir(), key=lambda path: path.stat().st_mtime_ns)
        return [path.read_text() for path in files]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _table(output: str) -> list[dict[str, str]]:
    """Parse the CLI's fixed-width tables by the header's column positions (cells may be empty)."""
    header, *lines = output.splitlines()
    # Names are separated by two or more spaces and may contain one ("TIME (UTC)").
    columns = list(re.finditer(r"\S+(?: \S+)*", header))
    names = [column.group() for column in columns]
    starts = [column.start() for column in columns]
    ends = [*starts[1:], None]
    return [
        {
            name: line[start:end].strip()
            for name, start, end in zip(names, starts, ends, strict=True)
        }
        for line in lines
        if line.strip()
    ]


def _serve() -> Iterator[Server]:
    """A migrated `threshold serve` of its own (var directory, port, clock), until the end."""
    var_dir = Path(tempfile.mkdtemp(prefix="threshold-browser-"))
    port = free_port()
    server = Server(
        url=f"http://localhost:{port}",
        env=_server_env(var_dir, port),
        log_path=var_dir / "serve.log",
    )
    migrated(var_dir)
    with server.log_path.open("w") as log:
        process = subprocess.Popen(
            [*threshold_command(), "serve"],
            cwd=REPO_ROOT,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if server.commands is not None:
            server.commands.close()
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture(scope="session")
def sso_server() -> Iterator[Server]:
    """The single sign-on tests' own server, one per test process, which each test_sso_*.py
    binds as ``server`` (tests/browser/sso_rp.py): other modules move their server's clock by
    days (test_fallback.py), rotate nothing and change policies; on this one, the clock only
    moves where a single sign-on test says so, and key rotation stays among these tests."""
    yield from _serve()


@dataclass
class RelyingParty:
    """The single sign-on tests' relying party (tests/rp/server.mjs), started once per test
    process: its control routes."""

    url: str

    def call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """GET (no body) or POST a JSON body to the relying party's control routes."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            self.url + path, data=data, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())


@pytest.fixture(scope="session")
def relying_party(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelyingParty]:
    node = shutil.which("node")
    assert node, "Node is needed for the relying party (`make node-deps` installs npm and node)"
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # openid-client 6 and jose 6 use the WebCrypto and fetch globals of Node 20 and later.
    assert int(version.lstrip("v").split(".")[0]) >= 20, (
        f"the relying party needs Node 20+: {version}"
    )
    log_path = tmp_path_factory.mktemp("relying-party") / "rp.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            # ipv4first: the provider listens on 127.0.0.1, and `localhost` must reach it.
            [node, "--dns-result-order=ipv4first", str(RP_SCRIPT)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not (first := log_path.read_text().partition("\n")[0]).startswith("listening "):
            assert process.poll() is None, f"the relying party exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, "the relying party did not start"
            time.sleep(0.05)
        yield RelyingParty(f"http://127.0.0.1:{int(first.split()[1])}")
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_serving(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`threshold serve` exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/sign-in", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"`threshold serve` did not answer {server.url}/sign-in:\n{server.log_tail()}")


# --- People -------------------------------------------------------------------------------------

_people = itertools.count(1)


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    link: str


Invite = Callable[[], Person]


@pytest.fixture
def invite(server: Server) -> Invite:
    """Invite a new person: ``invite()`` returns a Person with a fresh enrollment link."""

    def make() -> Person:
        number = next(_people)
        email = f"someone-{number}@example.com"
        name = f"Someone Number{number}"
        return Person(email, name, server.invite(email, name))

    return make


# --- The browser --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as started:
        yield started


def _launch(playwright: Playwright, executable: str) -> Iterator[Browser]:
    assert Path(executable).exists(), f"{executable} is missing: `make test` installs it"
    launched = playwright.chromium.launch(
        executable_path=executable, headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


# This process's headless shell, once launched: what the guard below looks in.
_shells: list[Browser] = []


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium's headless shell, one per test process."""
    for launched in _launch(playwright, HEADLESS_SHELL):
        _shells.append(launched)
        yield launched
        _shells.remove(launched)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fails a passing test that left a page of the headless shell saying "Passkeys Not
    Supported" after a passkey request: the shell's answer when no authenticator is attached,
    where a desktop browser waits for one. Attach one, or use ``full_chromium``."""
    result = yield
    title = CATALOG["not_supported"].title
    for shell in _shells:
        for context in shell.contexts:
            for page in context.pages:
                said = page.locator("#ceremony-error").filter(has_text=title)
                try:
                    saying = not page.is_closed() and said.is_visible()
                except PlaywrightError:  # closed or navigating meanwhile: not left saying it
                    continue
                if saying:
                    pytest.fail(
                        f"{page.url} says {title!r}: Chromium's headless shell had no"
                        " authenticator to ask. A desktop browser waits for one: attach one"
                        " (add_authenticator) or mark the test full_chromium.",
                        pytrace=False,
                    )
    return result


@pytest.fixture(scope="session")
def full_chromium(playwright: Playwright) -> Iterator[Browser]:
    """Debian's whole Chromium, one per test process, started by the first test that needs it."""
    yield from _launch(playwright, CHROMIUM)


@pytest.fixture
def context(request: pytest.FixtureRequest, server: Server) -> Iterator[BrowserContext]:
    """A fresh context of ``browser``, or of ``full_chromium`` in a test so marked."""
    marked = request.node.get_closest_marker("full_chromium") is not None
    browser: Browser = request.getfixturevalue("full_chromium" if marked else "browser")
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    yield context
    context.close()


@dataclass
class Console:
    """Console messages of one page, across its navigations."""

    messages: list[ConsoleMessage] = field(default_factory=list)

    def texts(self) -> list[str]:
        return [message.text for message in self.messages]

    def credential_requests(self) -> list[str]:
        """The mediation of each navigator.credentials.get() call, in order."""
        return [t[len(SPY_PREFIX) :] for t in self.texts() if t.startswith(SPY_PREFIX)]


@pytest.fixture
def console(context: BrowserContext) -> Console:
    """Collects the console of the test's pages; with CREDENTIALS_SPY, their WebAuthn calls."""
    collected = Console()
    context.add_init_script(CREDENTIALS_SPY)
    # A lambda, not the bound method: Playwright sets an attribute on each handler, which a
    # builtin method cannot carry.
    context.on("console", lambda message: collected.messages.append(message))  # noqa: PLW0108
    return collected


@pytest.fixture
def page(context: BrowserContext, console: Console) -> Page:
    return context.new_page()


@dataclass
class Authenticator:
    """A Chromium virtual authenticator: a platform authenticator with user verification."""

    cdp: CDPSession
    authenticator_id: str

    def _send(self, method: str, **params: Any) -> Any:
        return self.cdp.send(method, {"authenticatorId": self.authenticator_id, **params})

    def set_user_verified(self, is_user_verified: bool) -> None:
        self._send("WebAuthn.setUserVerified", isUserVerified=is_user_verified)

    def set_presence_simulation(self, enabled: bool) -> None:
        """Off: the authenticator never answers, as if nobody touched it."""
        self._send("WebAuthn.setAutomaticPresenceSimulation", enabled=enabled)

    def credentials(self) -> list[dict[str, Any]]:
        return list(self._send("WebAuthn.getCredentials")["credentials"])

    def remove(self) -> None:
        """Unplug this authenticator."""
        self._send("WebAuthn.removeVirtualAuthenticator")

    def remove_credentials(self) -> None:
        """Forget every passkey, as a device whose passkeys were deleted."""
        self._send("WebAuthn.clearCredentials")


def add_authenticator(context: BrowserContext, page: Page, **options: Any) -> Authenticator:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
                **options,
            }
        },
    )
    return Authenticator(cdp, added["authenticatorId"])


@pytest.fixture
def authenticator(context: BrowserContext, page: Page) -> Authenticator:
    """A virtual authenticator on the test's page (it follows the page's navigations)."""
    return add_authenticator(context, page)


# --- Steps shared by the tests ------------------------------------------------------------------


def enroll(page: Page, person: Person) -> None:
    """Open the invite link and create a passkey; ends on the signed-in home page."""
    page.goto(person.link)
    page.get_by_role("button", name="Create a passkey").click()
    page.wait_for_url("/?enrolled=1")


def open_account_menu(page: Page) -> None:
    """Select the person's name in the header: it opens Settings and Sign out."""
    page.locator("header .account-menu summary").click()


def sign_out(page: Page) -> None:
    open_account_menu(page)
    page.locator("header").get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="You are signed out").wait_for()


def open_sign_in_with_autofill_pending(page: Page) -> None:
    """Open /sign-in with its conditional (autofill) request left pending.

    Chromium's virtual authenticator answers a conditional request at once, with
    no focus or click, so the page would sign in by itself. Holding the request
    in the page (see CREDENTIALS_SPY) keeps it pending, as when nobody picks a
    passkey from the autofill list, until the page aborts it for the button's or
    "Continue"'s modal request. (Toggling the authenticator's presence
    simulation instead raced with the request under load.)
    """
    page.add_init_script("window.__thresholdHoldAutofill = true;")
    with page.expect_console_message(lambda m: m.text == SPY_PREFIX + "conditional"):
        page.goto("/sign-in")


def record_requests(page: Page) -> list[Request]:
    """The requests ``page`` makes from now on."""
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))  # noqa: PLW0108 - see console()
    return requests


def posts_to(requests: list[Request], path: str) -> list[Request]:
    return [r for r in requests if r.method == "POST" and r.url.split("?")[0].endswith(path)]
