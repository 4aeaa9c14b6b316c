"""Threshold Verify end to end (issue 12): the desktop app, headless, against `threshold serve`.

The app runs as its real command (tests/support/verify_app.py) with a file keyring and a
PIN, and with a TPM store against swtpm; the browser side is Chromium, signed in with a
virtual authenticator. Only the clock is moved (the server's and the app's together).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import Authenticator, Invite, Person, Server, enroll
from tests.browser.test_first_day import VIEWPORTS, PageAudit
from tests.support.verify_app import VerifyApp, swtpm

pytestmark = pytest.mark.browser

PIN = "246810"
STORES = ["software", "tpm"]


def _app(tmp_path: Path, server: Server, name: str, tcti: str | None = None) -> VerifyApp:
    return VerifyApp(tmp_path / name, server.env["THRESHOLD_TEST_CLOCK_FILE"], tcti)


@pytest.fixture(params=STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, server: Server) -> Iterator[VerifyApp]:
    """One installation of Threshold Verify, with a software key or a TPM (swtpm) key."""
    if request.param == "software":
        installed = _app(tmp_path, server, "app")
        yield installed
        installed.close()
        return
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (make test installs it: scripts/system-deps tpm)")
    ca_dir = Path(server.env["THRESHOLD_DEVICE_TPM_ROOTS"]).parent
    with swtpm(tmp_path / "swtpm", ca_dir) as tcti:
        installed = _app(tmp_path, server, "app", tcti)
        yield installed
        installed.close()


@pytest.fixture
def software_app(tmp_path: Path, server: Server) -> Iterator[VerifyApp]:
    installed = _app(tmp_path, server, "app")
    yield installed
    installed.close()


@pytest.fixture
def person(page: Page, authenticator: Authenticator, invite: Invite) -> Person:
    """Someone enrolled with a passkey, signed in on ``page`` (a fresh step-up)."""
    someone = invite()
    enroll(page, someone)
    return someone


def show_setup_code(page: Page) -> str:
    """Settings → Threshold Verify → Set up; "Verify it's you" first when the page asks."""
    page.goto("/settings")
    page.locator("#device-app").get_by_role("link", name="Set up").click()
    page.wait_for_load_state()
    if page.get_by_role("heading", name="Verify it\u2019s you").is_visible():
        page.get_by_role("button", name="Verify").click()
    page.get_by_role("button", name="Show setup code").click()
    code = page.locator("#setup-code").inner_text()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    return code


def add_device(app: VerifyApp, page: Page, server: Server, *, first_pin: bool = True) -> str:
    """Settings → Threshold Verify → Set up, `threshold-verify add-account URL`, the returned code
    typed into the page; returns the app's output."""
    code = show_setup_code(page)
    running = app.start("add-account", server.url, "--setup-code", code, "--name", "Laptop")
    if first_pin:
        running.answer(PIN)
        running.answer(PIN)
    returned = running.expect(r"Returned code: (\d{6})").group(1)
    page.get_by_label("6-digit code from Threshold Verify").fill(returned)
    page.get_by_role("button", name="Add device").click()
    expect(page.get_by_text("Threshold Verify is set up on your device.")).to_be_visible()
    running.expect(r"Account added: ")
    assert running.finish() == 0, running.text
    return running.text


def push_page(browser_context: BrowserContext, email: str) -> tuple[Page, str]:
    """/sign-in, the username, "Send a push to Threshold Verify": the number, on the same page."""
    page = browser_context.new_page()
    page.goto("/sign-in")
    page.get_by_label("Username or work email").fill(email)
    page.get_by_role("button", name="Send a push to Threshold Verify").click()
    number = page.locator("#push-number").inner_text()
    assert re.fullmatch(r"\d\d", number)
    assert page.url.endswith("/sign-in")  # the sign-in page's username step, not another page
    expect(page.get_by_role("heading", name="Type this number in Threshold Verify")).to_be_focused()
    return page, number


@pytest.fixture
def other_browser(full_chromium: Browser, server: Server) -> Iterator[BrowserContext]:
    """Another browser, signed out: where the push sign-in happens. A desktop Chromium with no
    passkey here, whose sign-in page's passkey request waits (Chromium's headless shell, with no
    authenticator attached, would fail it as "not supported")."""
    other = full_chromium.new_context(base_url=server.url)
    other.set_default_timeout(10_000)
    yield other
    other.close()


# --- Set-up, approval, refusals --------------------------------------------------------------


def test_enroll_and_approve_a_sign_in_with_the_right_number(
    app: VerifyApp, page: Page, person: Person, server: Server, other_browser: BrowserContext
) -> None:
    output = add_device(app, page, server)
    store = "tpm" if app.tcti else "software"
    # A TPM key is recorded as such only because its attestation checked out.
    assert f"Key protection: {store} (the server recorded: {store})" in output
    page.goto("/settings")
    group = page.locator("#device-app")
    expect(group).to_contain_text("Laptop")
    expect(group).to_contain_text("Linux")
    listed = app.run("accounts")
    assert f"{person.email} at {server.url}: device 'Laptop', key: {store}" in listed.text
    assert f"(server: {store})" in listed.text
    expect(group).to_contain_text("Key in the device\u2019s TPM" if app.tcti else "Software key")

    tab, number = push_page(other_browser, person.email)
    running = app.run(
        "run", "--once", "--timeout", "20", "--interval", "0.2", answers=(number, PIN)
    )
    assert "Approved" in running.text, running.text
    assert "Browser and system: Chrome" in running.text
    assert "IP address: 127.0.0.1" in running.text
    tab.wait_for_url(f"{server.url}/")
    expect(tab.get_by_text("Threshold Verify").first).to_be_visible()


def test_a_wrong_number_is_refused(
    app: VerifyApp, page: Page, person: Person, server: Server, other_browser: BrowserContext
) -> None:
    add_device(app, page, server)
    tab, number = push_page(other_browser, person.email)
    wrong = str(int(number) % 90 + 10)
    running = app.run("run", "--once", "--timeout", "20", "--interval", "0.2", answers=(wrong, PIN))
    assert "Sign-in Not Approved" in running.text, running.text
    expect(tab.get_by_role("heading", name="Sign-in Not Approved")).to_be_visible()


def test_three_wrong_returned_codes_cancel_the_set_up(
    software_app: VerifyApp, page: Page, person: Person, server: Server
) -> None:
    code = show_setup_code(page)
    running = software_app.start("add-account", server.url, "--setup-code", code, "--wait", "30")
    running.answer(PIN)
    running.answer(PIN)
    returned = running.expect(r"Returned code: (\d{6})").group(1)
    wrong = f"{(int(returned) + 1) % 10**6:06d}"
    for _ in range(3):
        page.get_by_label("6-digit code from Threshold Verify").fill(wrong)
        page.get_by_role("button", name="Add device").click()
    expect(page.get_by_role("heading", name="Setup Code Not Valid")).to_be_visible()
    assert running.finish() == 1
    assert "canceled" in running.text
    assert "No accounts." in software_app.run("accounts").text


def test_a_wrong_pin_approves_nothing(
    software_app: VerifyApp,
    page: Page,
    person: Person,
    server: Server,
    other_browser: BrowserContext,
) -> None:
    add_device(software_app, page, server)
    tab, number = push_page(other_browser, person.email)
    running = software_app.run(
        "run", "--once", "--timeout", "20", "--interval", "0.2", answers=(number, "999999")
    )
    assert "That PIN is not right." in running.text
    assert "Approved" not in running.text
    expect(tab.locator("#ceremony-status")).to_have_text("Waiting for your approval\u2026")


def test_cancel_ends_the_push_shown_on_the_sign_in_page(
    software_app: VerifyApp,
    page: Page,
    person: Person,
    server: Server,
    other_browser: BrowserContext,
) -> None:
    """The number shown in place has a Cancel, by keyboard: the push ends on the server, the
    username step is back as it was, and another push may be sent at once."""
    add_device(software_app, page, server)
    tab, _ = push_page(other_browser, person.email)
    tab.get_by_role("button", name="Cancel").focus()
    tab.keyboard.press("Enter")
    push_button = tab.get_by_role("button", name="Send a push to Threshold Verify")
    expect(push_button).to_be_focused()
    expect(tab.locator("#push-number")).to_have_count(0)
    expect(tab.get_by_label("Username or work email")).to_have_value(person.email)
    expect(tab.get_by_role("button", name="Sign in with a passkey")).to_be_enabled()
    expect(tab.locator("#ceremony-status")).to_have_text("")
    # Ended on the server: the device sees no request (3 s: the page would have asked too).
    quiet = software_app.run("run", "--once", "--timeout", "3", "--interval", "0.2")
    assert quiet.process.returncode == 2, quiet.text
    assert tab.url.endswith("/sign-in")
    expect(push_button).to_be_focused()
    # Another push at once (not "Push Already Sent"), approved: signed in.
    push_button.press("Enter")
    number = tab.locator("#push-number").inner_text()
    running = software_app.run(
        "run", "--once", "--timeout", "20", "--interval", "0.2", answers=(number, PIN)
    )
    assert "Approved" in running.text, running.text
    tab.wait_for_url(f"{server.url}/")


def test_a_second_pending_push_is_refused(
    software_app: VerifyApp,
    page: Page,
    person: Person,
    server: Server,
    other_browser: BrowserContext,
) -> None:
    add_device(software_app, page, server)
    push_page(other_browser, person.email)
    second = other_browser.new_page()
    second.goto("/sign-in/push")
    second.get_by_label("Username or work email").fill(person.email)
    second.get_by_role("button", name="Send a push to Threshold Verify").click()
    expect(second.get_by_role("heading", name="Push Already Sent")).to_be_visible()


def test_a_push_expires_after_two_minutes(
    software_app: VerifyApp,
    page: Page,
    person: Person,
    server: Server,
    other_browser: BrowserContext,
) -> None:
    add_device(software_app, page, server)
    tab, _ = push_page(other_browser, person.email)
    server.advance_clock(121)
    running = software_app.run("run", "--once", "--timeout", "3", "--interval", "0.2")
    assert running.process.returncode == 2
    assert "No sign-in request arrived." in running.text
    expect(tab.get_by_role("heading", name="Session Expired")).to_be_visible()


def test_i_didnt_do_this_mutes_pushes_and_emails(
    software_app: VerifyApp,
    page: Page,
    person: Person,
    server: Server,
    other_browser: BrowserContext,
) -> None:
    add_device(software_app, page, server)
    tab, _ = push_page(other_browser, person.email)
    running = software_app.run(
        "run", "--once", "--timeout", "20", "--interval", "0.2", answers=("deny",)
    )
    assert "Denied." in running.text
    expect(tab.get_by_role("heading", name="Sign-in Not Approved")).to_be_visible()
    assert any("was denied" in mail and person.email in mail for mail in server.emails()), (
        "no denial email"
    )
    # Muted: the browser shows a number as always, the app sees no request.
    push_page(other_browser, person.email)
    quiet = software_app.run("run", "--once", "--timeout", "3", "--interval", "0.2")
    assert quiet.process.returncode == 2


# --- Signed requests ----------------------------------------------------------------------------


def signed_request(app: VerifyApp, server: Server, endpoint: str) -> str:
    """A request signed with the app's own key (its file keyring), as the app signs them."""
    script = (
        "import json,sys\n"
        "from threshold_verify.cli import App\n"
        "from threshold_verify.state import default_home\n"
        "app = App(default_home(), 'auto')\n"
        "account = app.state.accounts[0]\n"
        f"print(app.signer(account).sign('/api/device/v1/{endpoint}', {{}}))\n"
    )
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    done = subprocess.run(
        [sys.executable, "-c", script], env=app.env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def post(server: Server, endpoint: str, compact: str) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - the test server
        f"{server.url}/api/device/v1/{endpoint}",
        data=compact.encode(),
        method="POST",
        headers={"Content-Type": "application/jose"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_replayed_signed_request_is_refused(
    software_app: VerifyApp, page: Page, person: Person, server: Server
) -> None:
    add_device(software_app, page, server)
    compact = signed_request(software_app, server, "account")
    status, body = post(server, "account", compact)
    assert (status, body["username"]) == (200, person.email)
    status, body = post(server, "account", compact)
    assert (status, body["error"]["title"]) == (400, "Session Expired")


def test_a_removed_device_gets_401(
    software_app: VerifyApp, page: Page, person: Person, server: Server
) -> None:
    add_device(software_app, page, server)
    page.goto("/settings")
    page.locator("#device-app").get_by_role("link", name="Remove").click()
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_text("The device was removed.")).to_be_visible()
    status, body = post(server, "account", signed_request(software_app, server, "account"))
    assert (status, body["error"]["title"]) == (401, "Device Not Recognized")
    listed = software_app.run("accounts")
    assert "not usable: Device Not Recognized" in listed.text
    running = software_app.run("run", "--once", "--timeout", "3")
    assert running.process.returncode == 1
    assert "Device Not Recognized" in running.text


# --- Add Account to Another Device --------------------------------------------------------------


def test_add_account_to_another_device_between_two_apps(
    request: pytest.FixtureRequest,
    app: VerifyApp,
    tmp_path: Path,
    page: Page,
    person: Person,
    server: Server,
    other_browser: BrowserContext,
) -> None:
    add_device(app, page, server)
    second = _app(tmp_path, server, "second")
    request.addfinalizer(second.close)
    first = app.start("add-to-another-device")
    first.answer(PIN)
    code = first.expect(r"Setup code: ([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})").group(1)
    new = second.start("add-account", server.url, "--setup-code", code, "--name", "Phone")
    new.answer(PIN)
    new.answer(PIN)
    returned = new.expect(r"Returned code: (\d{6})").group(1)
    first.answer("000000" if returned != "000000" else "111111")
    first.expect("Incorrect code")
    first.answer(returned)
    first.expect(r"Done: Phone can now approve your sign-ins.")
    assert first.finish() == 0
    new.expect(r"Account added: ")
    assert new.finish() == 0
    # The new device approves a sign-in.
    tab, number = push_page(other_browser, person.email)
    running = second.run(
        "run", "--once", "--timeout", "20", "--interval", "0.2", answers=(number, PIN)
    )
    assert "Approved" in running.text, running.text
    tab.wait_for_url(f"{server.url}/")


# --- The pages: layout and accessibility -------------------------------------------------------


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_the_device_app_pages_fit_and_pass_axe(
    software_app: VerifyApp,
    page: Page,
    person: Person,
    server: Server,
    other_browser: BrowserContext,
    viewport: str,
) -> None:
    page.set_viewport_size(VIEWPORTS[viewport])
    audit = PageAudit(page)
    code = show_setup_code(page)
    audit.check("set-up with its code")
    running = software_app.start("add-account", server.url, "--setup-code", code)
    running.answer(PIN)
    running.answer(PIN)
    running.expect(r"Returned code: (\d{6})")
    page.get_by_label("6-digit code from Threshold Verify").fill("000000")
    page.get_by_role("button", name="Add device").click()
    audit.check("set-up, wrong code")
    running.stop()
    page.goto("/settings#device-app")
    audit.check("settings")
    for path in ("/help/guide/threshold-verify", "/help/errors#push_refused", "/verify/"):
        page.goto(path)
        audit.check(path)
    tab, _ = push_page(other_browser, person.email)
    tab.set_viewport_size(VIEWPORTS[viewport])
    tab_audit = PageAudit(tab)
    tab_audit.check("push: the number")
    tab.goto("/sign-in/push")
    tab_audit.check("push: the form")
    tab.get_by_label("Username or work email").fill(person.email)
    tab.get_by_role("button", name="Send a push to Threshold Verify").click()
    tab_audit.check("push: already sent")
    audit.assert_clean()
    tab_audit.assert_clean()


# --- "Verify it's you" with a push, and a form sent before it ------------------------------------


def test_a_form_sent_to_verify_first_survives_a_step_up_push_that_failed(
    software_app: VerifyApp,
    page: Page,
    authenticator: Authenticator,
    invite: Invite,
    server: Server,
) -> None:
    """page.js keeps a form sent to "Verify it's you" first while the person is still verifying:
    the step-up push's pages count, its error page too (an expired push here). Verified with
    the passkey after all, the form comes back as typed."""
    someone = invite()
    server.cli("users", "role", someone.email, "admin")
    enroll(page, someone)
    add_device(software_app, page, server)
    server.advance_clock(301)  # past the step-up window
    email = f"new-hire-{secrets.token_hex(4)}@example.com"
    page.goto("/admin/people/invite")
    page.get_by_label("Work email (their username)").fill(email)
    page.get_by_label("Full name").fill("New Hire")
    page.get_by_role("button", name="Invite", exact=True).click()
    expect(page.get_by_role("heading", name="Verify it\u2019s you")).to_be_visible()
    # No passkey at hand, it seems: a push to Threshold Verify, which expires unanswered.
    page.goto("/settings/verify?next=%2Fsettings%2Fsecurity-methods%2Fadd")
    page.get_by_role("button", name="Send a push to Threshold Verify").click()
    expect(page.get_by_role("heading", name="Type this number in Threshold Verify")).to_be_visible()
    server.advance_clock(121)
    expect(page.get_by_role("heading", name="Session Expired")).to_be_visible()
    expect(page.get_by_role("link", name="Start again")).to_be_visible()
    assert ("step_up.failed", "push_expired") in server.audit(someone.email)
    # Back on the "Verify it's you" the form was sent to, the passkey after all.
    page.goto("/settings/verify?next=%2Fadmin%2Fpeople%2Finvite")
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/admin/people/invite")
    expect(page.locator("#form-kept")).to_be_focused()
    expect(page.get_by_label("Work email (their username)")).to_have_value(email)
    expect(page.get_by_label("Full name")).to_have_value("New Hire")
