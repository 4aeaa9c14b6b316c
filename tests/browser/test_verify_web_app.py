"""Threshold Verify on a phone (issue 12, item 6): the web app at /verify/, in Chromium with a
phone's screen, touch and user agent (Playwright's "Pixel 7" descriptor) and a virtual
authenticator as the phone's screen lock. Settings is on a desktop browser; the push sign-in
in a third, signed-out one. The phone's clock is the server's (the tests may move it)."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import (
    STEP_TIMEOUT_MS,
    Authenticator,
    Invite,
    Person,
    Server,
    add_authenticator,
    enroll,
)
from tests.browser.test_device_app import push_page, show_setup_code
from tests.browser.test_first_day import PageAudit
from threshold.devices import webpush

pytestmark = pytest.mark.browser

WHEN = re.compile(r"^\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}, \d\d:\d\d$")

# Playwright's "Pixel 7" device descriptor (playwright.devices), without its browser type.
PIXEL_7 = {
    "user_agent": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/159.0.8154.6 Mobile Safari/537.36"
    ),
    "viewport": {"width": 412, "height": 839},
    "screen": {"width": 412, "height": 915},
    "device_scale_factor": 2.625,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture
def phone(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, **PIXEL_7)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.clock.set_system_time(server.now())
    yield context.new_page()
    context.close()


@pytest.fixture
def other_browser(full_chromium: Browser, server: Server) -> Iterator[BrowserContext]:
    """Another browser, signed out: where the push sign-in happens (a desktop Chromium with no
    passkey here: test_device_app.py's ``other_browser``)."""
    other = full_chromium.new_context(base_url=server.url)
    other.set_default_timeout(STEP_TIMEOUT_MS)
    yield other
    other.close()


@pytest.fixture
def person(page: Page, authenticator: Authenticator, invite: Invite) -> Person:
    """Someone enrolled with a passkey, signed in on ``page`` (the desktop browser)."""
    someone = invite()
    enroll(page, someone)
    return someone


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_phone_app_is_installable(phone: Page, server: Server) -> None:
    phone.goto("/verify/")
    href = phone.locator('link[rel="manifest"]').get_attribute("href")
    assert href
    manifest = phone.request.get(href)
    assert manifest.ok
    data = manifest.json()
    assert data["name"] == "Threshold Verify"
    assert data["start_url"] == "/verify/"
    assert data["scope"] == "/verify/"
    assert data["display"] == "standalone"
    pngs = {icon["sizes"]: icon["src"] for icon in data["icons"] if icon["type"] == "image/png"}
    assert set(pngs) == {"192x192", "512x512"}
    for sizes, src in pngs.items():
        icon = phone.request.get(src)
        assert icon.ok, src
        assert icon.headers["content-type"] == "image/png"
        assert "x".join(map(str, png_size(icon.body()))) == sizes
    touch = phone.locator('link[rel="apple-touch-icon"]').get_attribute("href")
    assert touch
    assert png_size(phone.request.get(touch).body()) == (180, 180)
    expect(phone.locator('meta[name="apple-mobile-web-app-capable"]')).to_have_attribute(
        "content", "yes"
    )
    expect(phone.locator('meta[name="theme-color"]')).to_have_attribute("content", "#1a53e6")
    # The service worker registers for /verify/, and the installed app opens offline.
    scope = phone.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
    assert scope == f"{server.url}/verify/"
    phone.reload()
    phone.wait_for_function("navigator.serviceWorker.controller !== null")
    phone.context.set_offline(True)
    try:
        phone.reload()
        expect(phone.get_by_role("heading", name="Add account")).to_be_visible()
    finally:
        phone.context.set_offline(False)


def test_set_up_from_the_qr_link_and_approve_with_the_screen_lock(
    page: Page, person: Person, phone: Page, server: Server, other_browser: BrowserContext
) -> None:
    audit = PageAudit(phone)
    screen_lock = add_authenticator(phone.context, phone)
    code = show_setup_code(page)
    link = page.locator("#setup-link").get_attribute("href")
    assert link == f"{server.url}/verify/#setup={code.replace('-', '')}"

    # Select Scan QR code: the link opens the app, with the setup code filled in.
    phone.goto(link)
    expect(phone.get_by_role("heading", name="Add account")).to_be_visible()
    expect(phone.get_by_label("Setup code")).to_have_value(code.replace("-", ""))
    assert "#" not in phone.url  # the code leaves the address bar at once
    audit.check("add account")
    phone.get_by_label("Name for this phone").fill("Pixel")
    phone.get_by_role("button", name="Add account").click()

    # The returned code, typed where the setup code was shown.
    expect(phone.get_by_role("heading", name="Enter the returned code")).to_be_visible()
    returned = phone.locator("#verify-returned-code").inner_text()
    assert re.fullmatch(r"\d{6}", returned)
    audit.check("returned code")
    page.get_by_label("6-digit code from Threshold Verify").fill(returned)
    page.get_by_role("button", name="Add device").click()
    expect(page.get_by_text("Threshold Verify is set up on your device.")).to_be_visible()
    expect(page.locator("#device-app")).to_contain_text("Pixel")
    expect(page.locator("#device-app")).to_contain_text("Android")

    # Select Got it and Allow for notifications; select Enable for screen lock confirmation.
    expect(phone.get_by_role("heading", name="Account added")).to_be_visible()
    expect(phone.locator("#verify-added-username")).to_have_text(person.email)
    audit.check("account added")
    phone.get_by_role("button", name="Got it").click()
    expect(phone.get_by_role("heading", name="Enable screen lock confirmation")).to_be_visible()
    audit.check("screen lock")
    phone.get_by_role("button", name="Enable").click()
    expect(phone.locator("#verify-home")).to_be_visible()
    expect(phone.locator("#verify-status")).to_have_text("Waiting for sign-in requests\u2026")
    [credential] = screen_lock.credentials()
    assert credential["isResidentCredential"] is False  # the app's own, never a passkey
    assert ("device.screen_lock_enabled", "") in server.audit(person.email)

    # A push from /sign-in in another browser: its number is typed on the phone, the screen
    # lock confirms, and that browser is signed in.
    tab, number = push_page(other_browser, person.email)
    expect(phone.get_by_role("heading", name="Are you trying to sign in?")).to_be_visible()
    expect(phone.locator("#verify-request-browser")).to_contain_text("Chrome")
    expect(phone.locator("#verify-request-ip")).to_have_text("127.0.0.1")
    # As the rest of Threshold writes dates: "4 Dec 2026, 14:05".
    expect(phone.locator("#verify-request-time")).to_have_text(WHEN)
    audit.check("sign-in request")
    phone.get_by_label("Type the number shown in your browser").fill(number)
    phone.get_by_role("button", name="Approve").click()
    expect(phone.locator("#verify-status")).to_have_text("Approved: the browser signs in.")
    tab.wait_for_url(f"{server.url}/")
    assert ("push.approved", "") in server.audit(person.email)

    # A wrong number refuses the next one.
    other_browser.clear_cookies()  # signed out again
    tab, number = push_page(other_browser, person.email)
    expect(phone.get_by_role("heading", name="Are you trying to sign in?")).to_be_visible()
    phone.get_by_label("Type the number shown in your browser").fill(str(int(number) % 90 + 10))
    phone.get_by_role("button", name="Approve").click()
    expect(phone.get_by_role("alert")).to_contain_text("Sign-in Not Approved")
    expect(tab.get_by_role("heading", name="Sign-in Not Approved")).to_be_visible()
    audit.check("refused")

    # "Verify it's you" on the desktop, with no passkey at hand there: a push, which the
    # phone says is no sign-in and what approving it allows; then "Set up another".
    page.goto("/settings/verify?next=%2Fsettings%2Fsecurity-methods%2Fadd")
    page.get_by_role("button", name="Send a push to Threshold Verify").click()
    expect(page.get_by_role("heading", name="Type this number in Threshold Verify")).to_be_visible()
    number = page.locator("#push-number").inner_text()
    expect(phone.get_by_role("heading", name="Are you verifying it\u2019s you?")).to_be_visible()
    expect(phone.locator("#verify-request-detail")).to_contain_text("add a passkey")
    expect(phone.locator("#verify-status")).to_have_text(
        "A request to verify it\u2019s you is waiting for you."
    )
    audit.check("verify it's you request")
    phone.get_by_label("Type the number shown in your browser").fill(number)
    phone.get_by_role("button", name="Approve").click()
    expect(phone.locator("#verify-status")).to_have_text(
        "Approved: the browser may add a passkey now."
    )
    page.wait_for_url("**/settings/security-methods/add")
    expect(page.get_by_role("heading", name="Set up another passkey")).to_be_visible()
    assert ("step_up.succeeded", "") in server.audit(person.email)

    # Reopened, the app remembers its account (its key stays in IndexedDB).
    phone.goto("/verify/")
    expect(phone.locator("#verify-username")).to_have_text(person.email)
    audit.assert_clean()


def test_the_service_worker_shows_a_web_push_as_a_notification(
    full_chromium: Browser, server: Server
) -> None:
    """What Chromium allows without a push service: the page's applicationServerKey, and a push
    message handed to the app's service worker over the DevTools protocol
    (ServiceWorker.deliverPushMessage) becomes a notification. Untested here: a real push
    service's subscription (headless Chromium reaches none) and the notification's click.
    Chromium's headless shell shows no notification: the whole Chromium."""
    context = full_chromium.new_context(base_url=server.url, **PIXEL_7)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        context.grant_permissions(["notifications"], origin=server.url)
        phone = context.new_page()
        cdp = context.new_cdp_session(phone)
        registrations: list[dict] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )
        cdp.send("ServiceWorker.enable")
        phone.goto("/verify/")
        key = phone.locator("#verify").get_attribute("data-push-key")
        assert key
        assert re.fullmatch(r"[A-Za-z0-9_-]{87}", key)  # a P-256 point, base64url
        scope = phone.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
        phone.wait_for_timeout(200)
        [registration_id] = {
            r["registrationId"]
            for r in registrations
            if r["scopeURL"] == scope and not r["isDeleted"]
        }

        tag = "threshold-verify-request"

        def shows(message: object, title: str, body: str) -> None:
            """Deliver ``message`` to the worker: one notification, ``title`` and ``body``.

            Delivered again every 2 s until it shows (at most 10 times): a worker still
            starting under a loaded CI machine may miss a message, and one tag for all means a
            message delivered twice is still one notification."""
            # Polled here: wait_for_function takes a pending promise for a true value.
            shown: list[list[str]] = []
            for attempt in range(200):
                if attempt % 20 == 0:
                    cdp.send(
                        "ServiceWorker.deliverPushMessage",
                        {
                            "origin": server.url,
                            "registrationId": registration_id,
                            "data": json.dumps(message),
                        },
                    )
                shown = phone.evaluate(
                    """() => navigator.serviceWorker.ready
                        .then((r) => r.getNotifications())
                        .then((all) => all.map((n) => [n.title, n.body, n.tag]))"""
                )
                if shown == [[title, body, tag]]:
                    return
                phone.wait_for_timeout(100)
            raise AssertionError(f"shown: {shown}, not {[[title, body, tag]]}")

        message = {
            "type": "sign_in_request",
            "title": "Threshold Verify",
            "body": "A sign-in is waiting.",
        }
        shows(message, "Threshold Verify", "A sign-in is waiting.")
        # A message without words of its own: its purpose's, as the server words them
        # (webpush.PAYLOADS); one tag for all, so each replaces the last.
        for purpose, words in webpush.PAYLOADS.items():
            shows({"type": "sign_in_request", "purpose": purpose}, words["title"], words["body"])
        # No purpose it knows, or no message at all: words for any request, not a sign-in's.
        anything = webpush.ANY_REQUEST
        assert "sign-in" not in anything["body"]
        for message in ({}, {"purpose": "__proto__"}, {"purpose": 7, "title": ""}, None):
            shows({"title": "Between", "body": "two"}, "Between", "two")
            shows(message, anything["title"], anything["body"])
    finally:
        context.close()


def set_up_phone(page: Page, phone: Page, name: str) -> Authenticator:
    """Settings' QR link opened on ``phone``, its returned code typed in Settings (``page``),
    Got it and Enable: the phone's home screen, with screen lock confirmation. Its screen lock."""
    screen_lock = add_authenticator(phone.context, phone)
    show_setup_code(page)
    link = page.locator("#setup-link").get_attribute("href")
    assert link
    phone.goto(link)
    phone.get_by_label("Name for this phone").fill(name)
    phone.get_by_role("button", name="Add account").click()
    returned = phone.locator("#verify-returned-code")
    expect(returned).to_have_text(re.compile(r"^\d{6}$"))
    page.get_by_label("6-digit code from Threshold Verify").fill(returned.inner_text())
    page.get_by_role("button", name="Add device").click()
    phone.get_by_role("button", name="Got it").click()
    phone.get_by_role("button", name="Enable").click()
    expect(phone.locator("#verify-status")).to_have_text("Waiting for sign-in requests\u2026")
    return screen_lock


def test_the_phone_adds_the_account_to_another_device(
    page: Page,
    person: Person,
    phone: Page,
    browser: Browser,
    server: Server,
    other_browser: BrowserContext,
) -> None:
    """Seed 000, on the phone already set up: select Add Account to Another Device (the screen
    lock confirms it); a QR code and a setup code are displayed; the new device enters the
    setup code and shows another code, which is entered on the phone."""
    screen_lock = set_up_phone(page, phone, "Pixel")
    add_another = phone.get_by_role("button", name="Add Account to Another Device")
    heading = phone.get_by_role("heading", name="Add Account to Another Device")

    # Cancel goes back home.
    add_another.click()
    expect(heading).to_be_focused()
    phone.get_by_role("button", name="Cancel").click()
    expect(phone.locator("#verify-home")).to_be_visible()
    expect(phone.locator("#verify-another-code")).to_be_empty()

    # The screen lock confirms it, the server checks the assertion: the QR code (its link is
    # the set-up link, with the code in the fragment), the setup code and when it expires.
    signed_before = screen_lock.credentials()[0]["signCount"]
    add_another.click()
    expect(heading).to_be_focused()
    assert phone.title().startswith("Add Account to Another Device")
    assert screen_lock.credentials()[0]["signCount"] > signed_before
    code = phone.locator("#verify-another-code").inner_text()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    expect(phone.locator("#verify-another-expires")).to_have_text(WHEN)
    qr = phone.get_by_role("img", name="QR code to add your account to another device")
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    # Drawn: the page's Content Security Policy lets the data: image load.
    assert qr.evaluate("(image) => image.complete && image.naturalWidth > 0")
    audit = PageAudit(phone)
    audit.check("add account to another device")
    audit.assert_clean()

    # The new device: Add account with the setup code; another code will display.
    new_context = browser.new_context(base_url=server.url, **PIXEL_7)
    try:
        new_context.set_default_timeout(STEP_TIMEOUT_MS)
        new_context.clock.set_system_time(server.now())
        new_phone = new_context.new_page()
        add_authenticator(new_context, new_phone)
        new_phone.goto("/verify/")
        new_phone.get_by_label("Setup code").fill(code)
        new_phone.get_by_label("Name for this phone").fill("Second phone")
        new_phone.get_by_role("button", name="Add account").click()
        returned = new_phone.locator("#verify-returned-code")
        expect(returned).to_have_text(re.compile(r"^\d{6}$"))

        # Enter the returned code on the phone: a wrong one is refused, and may be typed again.
        field = phone.get_by_label("Enter the returned code shown on the new device")
        right = returned.inner_text()
        field.fill("000000" if right != "000000" else "111111")
        phone.get_by_role("button", name="Add device").click()
        expect(phone.get_by_role("alert")).to_contain_text("Incorrect code")
        expect(field).to_have_attribute("aria-invalid", "true")
        field.fill(right)
        phone.get_by_role("button", name="Add device").click()
        expect(phone.locator("#verify-another-status")).to_have_text(
            "Done: Second phone can now approve your sign-ins."
        )
        expect(phone.get_by_role("alert")).to_be_hidden()
        expect(qr).to_have_count(0)  # the codes leave the screen

        # Done: back home, where the phone still checks for requests.
        phone.get_by_role("button", name="Done").click()
        expect(phone.locator("#verify-home")).to_be_visible()
        push_page(other_browser, person.email)
        expect(phone.get_by_role("heading", name="Are you trying to sign in?")).to_be_visible()

        # The new device is added to the account (it asked meanwhile).
        expect(new_phone.get_by_role("heading", name="Account added")).to_be_visible()
        expect(new_phone.locator("#verify-added-username")).to_have_text(person.email)
        audited = server.audit(person.email)
        assert ("device.setup_code_issued", "") in audited
        assert ("device.added", "") in audited
    finally:
        new_context.close()
