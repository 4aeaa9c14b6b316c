"""What the pages do in a browser without passkeys, and under their Content Security Policy."""

from __future__ import annotations

import urllib.request

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    STEP_TIMEOUT_MS,
    Authenticator,
    Console,
    Invite,
    Server,
    enroll,
    open_sign_in_with_autofill_pending,
    sign_out,
)

pytestmark = pytest.mark.browser

NO_WEBAUTHN = "delete window.PublicKeyCredential;"


def _csp_messages(console: Console) -> list[str]:
    return [text for text in console.texts() if "Content Security Policy" in text]


def test_browser_without_webauthn_is_told_passkeys_are_not_supported(
    browser: Browser, server: Server, invite: Invite
) -> None:
    person = invite()
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.add_init_script(NO_WEBAUTHN)
    try:
        page = context.new_page()
        for url, buttons in [
            ("/sign-in", ["Sign in with a passkey", "Continue"]),
            (person.link, ["Create a passkey"]),
        ]:
            page.goto(url)
            assert page.evaluate("typeof window.PublicKeyCredential") == "undefined"
            expect(page.locator("#not-supported")).to_be_visible()
            expect(page.locator("#not-supported")).to_contain_text("Passkeys Not Supported")
            expect(page.locator("#passkey-ui")).to_be_hidden()
            for name in buttons:
                expect(page.get_by_role("button", name=name)).to_be_hidden()
            expect(page.locator("#ceremony-error")).to_be_hidden()
    finally:
        context.close()
    assert server.passkey_count(person.email) == 0


def test_content_security_policy_forbids_inline_code_and_framing(server: Server) -> None:
    for path in ("/sign-in", "/sign-out"):
        with urllib.request.urlopen(server.url + path) as response:  # noqa: S310 - our server
            policy = response.headers["Content-Security-Policy"]
        directives = {
            name: values
            for name, *values in (part.split() for part in policy.split(";") if part.strip())
        }
        assert "'unsafe-inline'" not in policy, path
        assert "'unsafe-eval'" not in policy, path
        assert directives["frame-ancestors"] == ["'none'"], path
        assert directives["script-src"] == ["'self'"], path
        assert directives["object-src"] == ["'none'"], path


def test_pages_work_under_their_content_security_policy(
    page: Page, authenticator: Authenticator, invite: Invite, console: Console
) -> None:
    person = invite()

    enroll(page, person)
    sign_out(page)
    open_sign_in_with_autofill_pending(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("/")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {person.name}")
    page.goto("/sign-out")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign out")

    assert _csp_messages(console) == []

    # The check above can fail: an inline script is refused and reported on the console.
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.inlineRan = true;";
                document.body.append(script);
            }"""
        )
    assert page.evaluate("window.inlineRan") is None
