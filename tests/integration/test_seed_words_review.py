"""Review: what a person sees, against the seeds' words (/work/shared/seeds).

Seeds: 000 = "How To Manage Okta Passkeys" (+ troubleshooting), 001 = "Okta User iPhone Face ID
Setup", 002 = the passkey help page with the error tables. Okta Verify reads as Threshold Verify.

Passing tests pin what agrees with the seeds; a comment "Was a defect" marks a mismatch the
review found and that was fixed. The strict xfails are differences kept on purpose: each reason
says why.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.staticfiles import finders

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    Person,
    assert_failed,
    assert_ok,
    sign_in,
)
from tests.integration.test_device_app import set_up_device, signed_in
from tests.integration.test_fallback import SECRET, code_at, fallback_sign_in
from tests.integration.test_security_methods import MAC_CHROME, add_passkey, signed_in_browser
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.core.catalog import CATALOG
from threshold.core.policy import Policy
from threshold.fallback.actions import do_set_up_fallback
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db

MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
WINDOWS_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0"
)


def page_catalog(html: str) -> dict[str, dict[str, str]]:
    """The catalog a page hands webauthn.js: the words the person reads when a ceremony fails."""
    found = re.search(
        r'<script id="threshold-catalog" type="application/json">(.*?)</script>', html
    )
    assert found, "no catalog on the page"
    return json.loads(found.group(1))


def passkey_meta(html: str, passkey: Passkey) -> str:
    """The kind and storage line of one passkey on Settings."""
    item = html[html.index(f'id="passkey-{passkey.pk}"') :]
    found = re.search(r'<p class="meta">\s*(.*?)<br>', item, re.S)
    assert found, item[:500]
    return found.group(1).strip()


@pytest.fixture
def ada_browser(ada: Person, clock) -> Browser:
    return signed_in_browser(ada, HTTP_USER_AGENT=MAC_CHROME)


# --- Settings → Security Methods (seeds 000 "Manage Passkeys", 001 step 6) ------------------


def test_security_methods_set_up_another_then_verify(ada, ada_browser, clock):
    """001 step 6: under Security Methods click "Set up another" beside Security Key or
    Biometric; a setup authentication screen asks to click "Verify"."""
    html = ada_browser.get("/settings").content.decode()
    assert '<h2 id="security-methods-heading">Security Methods</h2>' in html
    group = html[html.index('id="passkeys-heading"') :]
    assert group.startswith('id="passkeys-heading">Security Key or Biometric Authenticator</h3>')
    assert (
        '<a class="button secondary" href="/settings/security-methods/add">Set up another</a>'
        in (group[:400])
    )
    clock.advance(6 * 60)  # past the five-minute step-up window
    response = ada_browser.get("/settings/security-methods/add")
    assert response.status_code == 303
    assert response["Location"].startswith("/settings/verify?next=")
    verify = ada_browser.get(response["Location"]).content.decode()
    assert "<h1>Verify it\u2019s you</h1>" in verify
    assert 'class="button primary">Verify</button>' in verify


def test_new_passkey_nickname_and_remove(ada, ada_browser):
    """000: when the Security Methods list is returned, give the newly added authenticator a
    nickname (it is the most recently enrolled); Remove Passkeys: "Select Remove"."""
    body = assert_ok(add_passkey(ada_browser, SoftAuthenticator(), transports=("usb",)))
    newest = Passkey.objects.filter(user=ada.user).latest("id")
    assert body["redirect"] == f"/settings?added={newest.pk}"
    html = ada_browser.get(body["redirect"]).content.decode()
    assert "Give it a nickname so it&rsquo;s easily identifiable" in html
    item = html[html.index(f'id="passkey-{newest.pk}"') :]
    assert '<span class="badge">Most recently added</span>' in item[:400]
    remove = ada_browser.get(f"/settings/security-methods/{newest.pk}/remove").content.decode()
    assert '<button type="submit" class="button danger">Remove</button>' in remove
    assert ada_browser.post_form(f"/settings/security-methods/{newest.pk}/remove").status_code in (
        302,
        303,
    )
    assert not Passkey.objects.filter(pk=newest.pk).exists()


# Was a defect: seed 000: Security Methods is 'split up into two sections: Okta Verify [=
# Threshold Verify] ... Security Key or Biometric Authenticator'; Settings heads the app's section
# 'Device app'
def test_device_section_is_headed_threshold_verify(ada, ada_browser):
    html = ada_browser.get("/settings").content.decode()
    assert '<h3 id="device-app-heading">Threshold Verify</h3>' in html


@pytest.mark.xfail(
    strict=True,
    reason="Known, left alone: the add page asks which device first (this device, a phone, a "
    "security key), which the seeds' two Set up clicks do not; the product's guide describes it. "
    "seeds 000/001: 'Select Set up, then Set up again' / 'click \"Set up\", then click "
    '"Set up" again on the next screen\'; the add page has no Set up button, only three choices',
)
def test_add_page_has_the_set_up_step(ada, ada_browser):
    html = ada_browser.get("/settings/security-methods/add").content.decode()
    assert re.search(r"<button[^>]*>\s*Set up\s*</button>", html)


# --- What kind of passkey it is (seed 002's three kinds, 000's list) ------------------------


# Was a defect: seed 002: a platform passkey 'uses built-in technology on the same device or all
# synced devices', cross-platform 'uses your phone'; an iCloud Keychain / Touch ID passkey made on
# a Mac (attachment platform, transports internal+hybrid, as Safari and Chrome report it) is
# listed as 'Phone or tablet' (Passkey.kind checks hybrid before the attachment)
def test_a_mac_touch_id_passkey_is_not_called_a_phone(ada, clock):
    browser = signed_in_browser(ada, HTTP_USER_AGENT=MAC_SAFARI)
    icloud = SoftAuthenticator(backup_eligible=True, backup_state=True)
    body = assert_ok(
        add_passkey(
            browser, icloud, "this-device", transports=("hybrid", "internal"), attachment="platform"
        )
    )
    passkey = Passkey.objects.filter(user=ada.user).latest("id")
    meta = passkey_meta(browser.get(body["redirect"]).content.decode(), passkey)
    assert meta == "Built-in authenticator · Synced across your devices"


@pytest.mark.xfail(
    strict=True,
    reason="Known, left alone: Settings names the kinds by the help page's own descriptions "
    "(built in, phone, security key) rather than its technical names. "
    "seed 002: 'The primary types are Passkey - Platform Authenticator, Passkey "
    "Cross-Platform Authenticator, and Security Keys'; Settings says 'Built-in authenticator', "
    "'Phone or tablet', 'Security key' (passkeys/models.py claims 'in their words')",
)
def test_passkey_kinds_use_the_seed_names(ada, clock):
    browser = signed_in_browser(ada, HTTP_USER_AGENT=WINDOWS_EDGE)
    body = assert_ok(
        add_passkey(
            browser,
            SoftAuthenticator(),
            "this-device",
            transports=("internal",),
            attachment="platform",
        )
    )
    passkey = Passkey.objects.filter(user=ada.user).latest("id")
    assert "Platform Authenticator" in passkey_meta(
        browser.get(body["redirect"]).content.decode(), passkey
    )


# --- The error tables (seed 002) as the pages hand them to the browser -----------------------

# Seed 002's entries that Threshold shows word for word (title, message).
SEED_WORDS = {
    "sign_in_timed_out": (
        "Passkey Request Timed Out",
        "You did not respond to the passkey prompt in time. Please try again.",
    ),
    "setup_timed_out": (
        "Passkey Request Timed Out",
        "You did not respond to the passkey prompt in time. Try again or set it up later.",
    ),
    "setup_unavailable": (
        "Passkey Unavailable",
        "We could not complete the passkey setup right now. You can try again or set it up later.",
    ),
    "already_registered": (
        "Passkey already registered for this device",
        "The passkey already exists for this device. You cannot register the same device twice.",
    ),
    "no_compatible_device": (
        "No compatible device found",
        "We could not find a compatible device for this action. "
        "Connect a supported device or use another login method.",
    ),
}


def test_sign_in_and_set_up_pages_carry_the_seed_error_words(ada, ada_browser):
    shown = page_catalog(Browser().get("/sign-in").content.decode())
    shown |= page_catalog(ada_browser.get("/settings/security-methods/add").content.decode())
    for key, (title, message) in SEED_WORDS.items():
        assert (shown[key]["title"], shown[key]["message"]) == (title, message), key
    assert shown["passkey_not_found_or_canceled"]["message"].startswith(
        "No passkey was detected for this device, or the operation was canceled."
    )
    assert shown["setup_canceled"]["title"] == "Passkey Set Up Canceled"


# Was a defect: seed 002: 'Passkey is not found on this device- No Passkey is set up for this
# device.' and 'We could not verify you- We were unable to verify your biometric input.'; the
# sign-in page says 'There is no passkey for this account on this device.' and '...your biometric
# input or PIN.'
def test_sign_in_messages_keep_the_seed_sentences():
    shown = page_catalog(Browser().get("/sign-in").content.decode())
    assert (
        shown["passkey_not_on_device"]["message"]
        .lower()
        .startswith("no passkey is set up for this device.")
    )
    # Sent by the server (a response without user verification), not carried by the page.
    assert CATALOG["not_verified"].message.startswith(
        "We were unable to verify your biometric input. "
    )


def test_server_sent_errors_use_the_seed_words(ada):
    """002 'Session Expired' (a request from a different session or a modified one) and
    'Verification failed' (the passkey assertion failed verification)."""
    credential = ada.authenticator.get(
        {"challenge": "AAAA", "rpId": "localhost", "allowCredentials": []}, ORIGIN
    )
    body = assert_failed(Browser().post_json("/sign-in/result", credential), 400, "Session Expired")
    assert body["error"]["message"] == "Your session has expired; restart to continue."
    body = assert_failed(
        sign_in(Browser(), ada.authenticator, tamper_signature=True), 400, "Verification failed"
    )
    assert body["error"]["message"] == (
        "We could not verify your identity. Use another sign-in method to access your account."
    )


# Was a defect: seed 002: 'Session Expired- Your session has expired; restart to continue.' covers
# a modified URL or request; web/views.bad_request shows the seed title with a message of its own,
# 'This request could not be understood; restart to continue.'
def test_a_request_a_page_cannot_take_reads_as_the_seed_session_expired(ada_browser):
    response = ada_browser.post_form("/settings/security-methods/add")
    html = response.content.decode()
    assert "Session Expired" in html
    assert "Your session has expired; restart to continue." in html


def test_the_sixth_passkey_meets_passkey_limit_reached(ada, ada_browser):
    """002: 'There is a limit of five passkeys per user ... users who attempt to configure a
    sixth passkey' (a policy setting here; 000 says 10, the default)."""
    assert Policy().passkey_limit == 10
    do_update_policy(Policy(passkey_limit=5), Origin.cli())
    for _ in range(4):
        assert_ok(add_passkey(ada_browser, SoftAuthenticator()))
    html = ada_browser.get("/settings/security-methods/add").content.decode()
    assert "<h2>Passkey Limit Reached</h2>" in html
    assert "<p>You have reached the maximum number of passkeys. " in html
    options = ada_browser.post_json("/settings/security-methods/add/options", {"device": "phone"})
    assert_failed(options, 400, "Passkey Limit Reached")
    assert Passkey.objects.filter(user=ada.user).count() == 5


# --- "I'll do it later" (seed 002) ------------------------------------------------------------


def test_ill_do_it_later_is_offered_after_a_password_sign_in(ada, clock):
    """002: after a password and 2FA sign-in, optionally prompted to register a passkey; "I'll do
    it later" hides it until 10 successful sign-ins or 7 days."""
    do_set_up_fallback(ada.user, "correct horse battery staple", SECRET, 0, Origin.cli())
    browser = Browser()
    response = fallback_sign_in(browser, code_at(clock.now))
    assert response["Location"] == "/sign-in/set-up-passkey"
    html = browser.get("/sign-in/set-up-passkey").content.decode()
    assert 'class="button secondary">I&rsquo;ll do it later</button>' in html
    assert "until you\n    have signed in 10 more times or 7\n    days have passed" in html


# --- Threshold Verify (seed 000 "Set up Okta Verify", troubleshooting) -----------------------


def test_add_account_to_another_device_in_the_seed_words(ada, clock):
    """000: 'Select Add Account to Another Device. A QR code and a setup code are displayed.
    ... Another code will display. Enter the returned code on the device with Okta Verify
    already set up.'"""
    browser = signed_in(ada)
    set_up_device(ada, browser)
    html = browser.get("/settings").content.decode()
    steps = html[html.index("<summary>Add Account to Another Device</summary>") :]
    assert (
        "Select the account and select Add Account to Another Device. A QR code and a setup "
        in (steps)
    )
    assert "Another code will display." in steps
    assert "Enter the returned code on the device with Threshold Verify already set up." in steps
    assert (
        "These are the Threshold Verify apps set up on your devices (laptops and cellphones)."
        in (html)
    )


def test_the_phone_app_screens_use_the_seed_buttons(db):
    """000 (iOS/Android): Add account ... Select Got it and Allow for notifications. Select Enable
    to Enable screen lock confirmation."""
    html = Browser().get("/verify/").content.decode()
    assert 'class="button primary">Add account</button>' in html
    assert 'id="verify-got-it">Got it</button>' in html
    assert "<h1>Enable screen lock confirmation</h1>" in html
    assert 'id="verify-enable">Enable</button>' in html


# Was a defect: seed 000: on the device already set up (a phone included) 'select the account
# and select Add Account to Another Device'; the phone app (/verify/) had no such screen, only the
# desktop command did
def test_the_phone_app_can_add_the_account_to_another_device(db):
    assert "Add Account to Another Device" in Browser().get("/verify/").content.decode()


# Was a defect: seed 000: 'Okta Verify: Error: Connection Issue when adding mobile device.'
# (catalog device_connection_issue); the phone app says 'No Connection' / 'Threshold could not be
# reached...' (verify-app.js), while the desktop app says 'Connection Issue'
def test_the_phone_app_names_a_connection_issue_as_the_seed_does(db):
    html = Browser().get("/verify/").content.decode()
    assert "verify-app" in html
    path = finders.find("threshold/verify-app.js")
    with open(path, encoding="utf-8") as script:
        source = script.read()
    assert '"No Connection"' not in source
    assert "Connection Issue" in source


def test_a_passkey_made_through_a_phones_qr_code_is_a_phone(ada, clock):
    """The same transports as a Mac's synced passkey, made with the phone ("cross-platform",
    the help page's "uses your phone")."""
    browser = signed_in_browser(ada, HTTP_USER_AGENT=MAC_SAFARI)
    phone = SoftAuthenticator(backup_eligible=True, backup_state=True)
    body = assert_ok(
        add_passkey(
            browser, phone, "phone", transports=("hybrid", "internal"), attachment="cross-platform"
        )
    )
    passkey = Passkey.objects.filter(user=ada.user).latest("id")
    meta = passkey_meta(browser.get(body["redirect"]).content.decode(), passkey)
    assert meta == "Phone or tablet · Synced across your devices"
