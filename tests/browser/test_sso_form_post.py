"""response_mode=form_post through a strict relying party (openid-client 6, tests/rp/server.mjs):
Threshold's page posts the code, or the error, to the app's redirect URI by itself in Chromium,
under Threshold's own CSP (no inline script; form-action naming the app's origin), and with its
Continue button when JavaScript is off. The app checks the POSTed response (iss, state) and
exchanges the code as it does a query response.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.browser import sso_rp
from tests.browser.conftest import STEP_TIMEOUT_MS, Authenticator, Console, Invite, Server, enroll
from tests.browser.sso_rp import RegisterApp, hold_autofill, result_on

pytestmark = pytest.mark.browser

register_app = sso_rp.register_app
server = sso_rp.sso_server_bound


def _posts_to(page: Page, url: str) -> list[Request]:
    """The requests the page's navigations send to ``url``, as they are sent."""
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request) if request.url == url else None)
    return sent


def _csp_reports(console: Console) -> list[str]:
    return [text for text in console.texts() if "Content Security Policy" in text]


def test_form_post_signs_in_to_the_relying_party_by_itself(
    page: Page,
    authenticator: Authenticator,
    console: Console,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = invite()
    enroll(page, person)
    hold_autofill(page)
    app = register_app()
    callbacks = _posts_to(page, app.callback_url)

    page.goto(app.login_url(response_mode="form_post"))
    page.wait_for_url(app.callback_url)
    result = result_on(page)

    assert result["ok"], result
    assert result["callback_method"] == "POST"
    assert set(result["callback"]) == {"code", "state", "iss"}
    assert result["callback"]["iss"].rstrip("/") == server.url
    assert result["claims"]["email"] == person.email
    assert result["userinfo"]["email"] == person.email
    assert [request.method for request in callbacks] == ["POST"]
    assert callbacks[0].post_data is not None
    assert "code=" in callbacks[0].post_data
    assert "code=" not in callbacks[0].url, "the code is in no URL"
    assert _csp_reports(console) == [], "Threshold's CSP let the page post to the app"


def test_form_post_sends_an_error_to_the_relying_party_too(
    page: Page, console: Console, register_app: RegisterApp
) -> None:
    app = register_app()

    page.goto(app.login_url(response_mode="form_post", prompt="none"))
    page.wait_for_url(app.callback_url)
    result = result_on(page)

    assert not result["ok"]
    assert result["callback_method"] == "POST"
    assert result["callback"]["error"] == "login_required"
    assert "code" not in result["callback"]
    assert result["error"] == "login_required", "openid-client read the POSTed error"
    assert _csp_reports(console) == []


def test_without_javascript_continue_sends_the_form(
    page: Page,
    authenticator: Authenticator,
    browser: Browser,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = invite()
    enroll(page, person)
    app = register_app()
    # The same person's Threshold session, in a browser with JavaScript off.
    no_script = browser.new_context(base_url=server.url, java_script_enabled=False)
    no_script.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        no_script.add_cookies(page.context.cookies())
        other = no_script.new_page()

        other.goto(app.login_url(response_mode="form_post"))
        assert other.url.startswith(server.url), "the page waits for the person"
        expect(other.get_by_role("heading", level=1)).to_have_text(f"Continue to {app.name}")
        other.get_by_role("button", name="Continue").click()
        other.wait_for_url(app.callback_url)
        result = result_on(other)
    finally:
        no_script.close()

    assert result["ok"], result
    assert result["callback_method"] == "POST"
    assert result["claims"]["email"] == person.email
