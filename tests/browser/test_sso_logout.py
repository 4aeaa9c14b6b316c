"""Single sign-on logout: RP-initiated (OpenID Connect RP-Initiated Logout 1.0) and back-channel
(Back-Channel Logout 1.0), each checked by the relying party in tests/rp/server.mjs, which
verifies every logout_token's signature against the JWKS and its claims (§2.6) with jose.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import sso_rp
from tests.browser.conftest import (
    CREDENTIALS_SPY,
    Authenticator,
    Invite,
    Person,
    Server,
    add_authenticator,
    enroll,
    sign_out,
)
from tests.browser.sso_rp import App, RegisterApp, hold_autofill, result_on, sign_in_to, straight_to

pytestmark = pytest.mark.browser

register_app = sso_rp.register_app
server = sso_rp.sso_server_bound

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def _signed_in_to(page: Page, invite: Invite, app: App) -> tuple[Person, dict[str, Any]]:
    person = invite()
    enroll(page, person)
    hold_autofill(page)
    result = straight_to(page, app)
    assert result["ok"], result
    return person, result


def _assert_logout_token_for(app: App, signed_in: dict[str, Any], logout: dict[str, Any]) -> None:
    assert logout["ok"], logout  # signature, iss, aud, iat, jti, events, no nonce: verified
    claims = logout["claims"]
    assert claims["sid"] == signed_in["claims"]["sid"]
    assert claims["sub"] == signed_in["claims"]["sub"]
    assert claims["aud"] in (app.client_id, [app.client_id])
    assert BACKCHANNEL_EVENT in claims["events"]
    assert abs(claims["iat"] - app.server.now()) < 60
    assert logout["header"]["kid"]


def test_rp_initiated_logout_ends_the_threshold_session_and_returns_with_state(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    _signed_in_to(page, invite, app)

    page.goto(app.logout_url)
    if not page.url.startswith(f"{app.rp.url}/logged-out/"):
        # A confirmation at Threshold ("Sign out"), as RP-Initiated Logout §3 allows.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{app.rp.url}/logged-out/*")

    [returned] = app.state()["logged_out"]
    assert returned["state_matches"], returned
    home = page.request.get(f"{server.url}/", max_redirects=0)
    assert home.status == 302, "signed out of Threshold"
    assert home.headers["location"].startswith("/sign-in")


def test_rp_initiated_logout_sent_as_a_cross_site_form_post_signs_out_as_the_get_does(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    """RP-Initiated Logout §2's POST: the app's page (another site) submits its logout form
    without Threshold's CSRF token or its SameSite=Lax session cookie; the 303 to the same
    request as a GET, a top-level navigation, carries the cookie and signs out without asking,
    as the GET with a valid hint does."""
    app = register_app()
    _signed_in_to(page, invite, app)

    page.goto(f"{app.logout_url}?rp_method=post")
    page.wait_for_url(f"{app.rp.url}/logged-out/*")

    [returned] = app.state()["logged_out"]
    assert returned["state_matches"], returned
    home = page.request.get(f"{server.url}/", max_redirects=0)
    assert home.status == 302, "signed out of Threshold"
    assert home.headers["location"].startswith("/sign-in")


def test_rp_initiated_logout_without_a_hint_asks_then_returns_to_the_app(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    _signed_in_to(page, invite, app)

    page.goto(f"{app.logout_url}?rp_hint=omit")
    assert page.url.startswith(server.url), "without id_token_hint Threshold asks first"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{app.rp.url}/logged-out/*")

    [returned] = app.state()["logged_out"]
    assert returned["state_matches"], returned
    home = page.request.get(f"{server.url}/", max_redirects=0)
    assert home.status == 302, "signed out of Threshold"


def test_signing_out_of_threshold_sends_a_verified_back_channel_logout_token(
    page: Page, authenticator: Authenticator, invite: Invite, register_app: RegisterApp
) -> None:
    app = register_app()
    _person, signed_in = _signed_in_to(page, invite, app)
    assert app.state()["logouts"] == []

    page.goto(f"{app.server.url}/")
    sign_out(page)

    [logout] = app.logouts()
    _assert_logout_token_for(app, signed_in, logout)


def test_locking_a_person_sends_a_back_channel_logout_token(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    person, signed_in = _signed_in_to(page, invite, app)

    server.cli("users", "lock", person.email)

    [logout] = app.logouts()
    _assert_logout_token_for(app, signed_in, logout)


def test_my_apps_tile_signs_in_and_settings_signs_out_of_the_app(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app(initiate_login=True)
    hidden = register_app()
    person = invite()
    group = f"nobody-{person.email.split('@')[0]}"
    server.cli("groups", "add", group)
    server.cli("apps", "assign", hidden.client_id, "--group", group)
    enroll(page, person)
    hold_autofill(page)

    # Home's "My apps": a tile per app the person may use, linking to its initiate-login URI.
    tiles = page.locator("#my-apps")
    # OpenID Connect Core §4: the link names the issuer the app is to sign in with.
    initiate = f"{app.login_url()}?{urlencode({'iss': server.url})}"
    expect(tiles.get_by_role("link", name=app.name)).to_have_attribute("href", initiate)
    expect(tiles).not_to_contain_text(hidden.name)
    tiles.get_by_role("link", name=app.name).click()
    page.wait_for_url(f"{app.callback_url}?*")
    signed_in = result_on(page)
    assert signed_in["ok"], signed_in
    assert "iss" not in signed_in["request"], "the app checked it and did not pass it on"

    # Settings: "Sign out of this app" revokes what the app holds.
    page.goto(f"{server.url}/settings")
    listed = page.locator("#apps li", has_text=app.name)
    listed.get_by_role("button", name="Sign out of this app").click()
    expect(page.locator("#apps li", has_text=app.name)).to_have_count(0)
    refreshed = app.refresh(signed_in["refresh_token"])
    assert not refreshed["ok"]
    assert refreshed["error"] == "invalid_grant"
    userinfo = app.userinfo(signed_in["access_token"], signed_in["claims"]["sub"])
    assert not userinfo["ok"]
    assert userinfo["status"] == 401


def test_recovery_ends_the_old_sessions_apps_tokens_and_tells_the_app(
    page: Page,
    browser: Browser,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    person, signed_in = _signed_in_to(page, invite, app)
    link = server.cli("recover", person.email).strip().splitlines()[-1]

    # On a new device, with a new passkey: every other session ends.
    elsewhere = browser.new_context(base_url=server.url)
    try:
        new_page = elsewhere.new_page()
        add_authenticator(elsewhere, new_page)
        new_page.goto(link)
        new_page.get_by_role("button", name="Create a new passkey").click()
        new_page.wait_for_url(re.compile(r"/(\?.*)?$"))
    finally:
        elsewhere.close()

    refreshed = app.refresh(signed_in["refresh_token"])
    assert not refreshed["ok"]
    assert refreshed["error"] == "invalid_grant"
    [logout] = app.logouts()
    _assert_logout_token_for(app, signed_in, logout)


def test_signing_out_other_sessions_revokes_their_app_tokens_and_tells_the_app(
    page: Page,
    browser: Browser,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    _person, here = _signed_in_to(page, invite, app)
    # The same passkey in a second browser (copied, as a synced passkey would be).
    [credential] = authenticator.credentials()
    other = browser.new_context(base_url=server.url)
    try:
        other.add_init_script(CREDENTIALS_SPY)
        other_page = other.new_page()
        copy = add_authenticator(other, other_page)
        copy.cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": copy.authenticator_id, "credential": credential},
        )
        hold_autofill(other_page)
        elsewhere = sign_in_to(other_page, app)
        assert elsewhere["ok"], elsewhere
        assert elsewhere["claims"]["sid"] != here["claims"]["sid"]

        page.goto(f"{server.url}/settings")
        page.get_by_role("button", name="Sign out other sessions").first.click()

        refused = app.refresh(elsewhere["refresh_token"])
        assert not refused["ok"]
        assert refused["error"] == "invalid_grant"
        assert app.refresh(here["refresh_token"])["ok"], "this session's app keeps its tokens"
        [logout] = app.logouts()
        _assert_logout_token_for(app, elsewhere, logout)
    finally:
        other.close()
