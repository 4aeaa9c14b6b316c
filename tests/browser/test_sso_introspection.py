"""Token introspection (RFC 7662) as a certified relying party library asks for it.

The relying party (openid-client 6, tests/rp/server.mjs) signs a person in, then asks
Threshold's /introspect about the access token it received (``tokenIntrospection``, with
its client credentials, the endpoint found by discovery), as an API given that token would.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser import sso_rp
from tests.browser.conftest import Authenticator, Invite, Server, enroll
from tests.browser.sso_rp import RegisterApp, hold_autofill, straight_to

pytestmark = pytest.mark.browser

register_app = sso_rp.register_app
server = sso_rp.sso_server_bound


def test_an_access_token_is_active_until_the_person_signs_out_of_the_app(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    # An API registered as an app of its own (client_secret_post), and a public app.
    api = register_app(auth="post")
    spa = register_app(public=True)
    assert app.metadata["introspection_endpoint"] == f"{server.url}/introspect"
    person = invite()
    enroll(page, person)
    hold_autofill(page)
    signed_in = straight_to(page, app)
    assert signed_in["ok"], signed_in
    access_token = signed_in["access_token"]

    for asking in (app, api):
        asked = asking.introspect(access_token)
        assert asked["ok"], asked
        answer = asked["introspection"]
        assert answer["active"] is True
        assert answer["sub"] == signed_in["claims"]["sub"]
        assert answer["client_id"] == app.client_id
        assert answer["aud"] == app.client_id
        assert answer["iss"] == signed_in["claims"]["iss"]
        assert answer["token_type"] == "Bearer"
        assert set(answer["scope"].split()) == {"openid", "email", "profile"}
        assert answer["exp"] > answer["iat"]
        assert person.email not in str(answer)
    # Not the refresh token; and a public app has no credentials to ask with.
    assert app.introspect(signed_in["refresh_token"])["introspection"] == {"active": False}
    refused = spa.introspect(access_token)
    assert not refused["ok"]
    assert refused["status"] == 401, refused
    # RFC 6749 §5.2: the scheme to authenticate with (the body says invalid_client).
    assert [challenge["scheme"].lower() for challenge in refused["challenges"]] == ["basic"]

    # Settings: "Sign out of this app" revokes what the app holds.
    page.goto(f"{server.url}/settings")
    listed = page.locator("#apps li", has_text=app.name)
    listed.get_by_role("button", name="Sign out of this app").click()
    expect(page.locator("#apps li", has_text=app.name)).to_have_count(0)
    for asking in (app, api):
        after = asking.introspect(access_token)
        assert after["ok"], after
        assert after["introspection"] == {"active": False}
