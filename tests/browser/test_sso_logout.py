"""Single sign-on logout: RP-initiated (OpenID Connect RP-Initiated Logout 1.0) and back-channel
(Back-Channel Logout 1.0), each checked by the relying party in tests/rp/server.mjs, which
verifies every logout_token's signature against the JWKS and its claims (§2.6) with jose.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser import sso_rp
from tests.browser.conftest import Authenticator, Invite, Person, Server, enroll, sign_out
from tests.browser.sso_rp import App, RegisterApp, hold_autofill, straight_to

pytestmark = pytest.mark.browser

relying_party = sso_rp.relying_party
register_app = sso_rp.register_app

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
