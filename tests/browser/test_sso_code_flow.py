"""Single sign-on through a strict relying party: discovery, the code flow, every claim,
userinfo, refresh rotation and reuse detection, key rotation, and the refusals.

The relying party is openid-client 6 in Node (tests/rp/server.mjs, started by sso_rp.py): it
runs discovery, sends PKCE S256, state and nonce, checks `iss` in the authorization response
(RFC 9207), verifies the ID token's signature against the JWKS with zero clock tolerance, and
calls userinfo. Nothing here trusts Threshold's own code to say that a token is right.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser import sso_rp
from tests.browser.conftest import Authenticator, Invite, Person, Server, enroll
from tests.browser.sso_rp import RegisterApp, hold_autofill, result_on, sign_in_to

pytestmark = pytest.mark.browser

register_app = sso_rp.register_app
server = sso_rp.sso_server_bound


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the test server
        return json.loads(response.read())


def _audited(server: Server, action: str, reason: str, subject: str | None = None) -> bool:
    """Whether one of the latest audit events (this test's, as tests run one at a time) is it."""
    return (action, reason) in server.audit(subject)[:10]


def _signed_in(page: Page, invite: Invite) -> Person:
    """A new person, enrolled in this browser with the virtual authenticator: signed in."""
    person = invite()
    enroll(page, person)
    hold_autofill(page)
    return person


def test_discovery_describes_a_strict_provider(server: Server, register_app: RegisterApp) -> None:
    app = register_app()
    metadata = app.metadata

    assert metadata["issuer"].rstrip("/") == server.url  # THRESHOLD_PUBLIC_URL
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"], "no plain PKCE"
    assert set(metadata["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert {"phr", "phrh"} <= set(metadata["acr_values_supported"])
    assert "groups" in metadata["scopes_supported"]
    assert {"auth_time", "sid", "amr", "acr", "groups"} <= set(metadata["claims_supported"])
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True  # RFC 9207
    assert metadata["end_session_endpoint"]
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        metadata["token_endpoint_auth_methods_supported"]
    )
    jwks = _get_json(metadata["jwks_uri"])
    kids = [key["kid"] for key in jwks["keys"]]
    assert kids, "a JWKS with keys"
    assert all(kids), "every key has a kid"
    assert len(set(kids)) == len(kids)


def test_code_flow_gives_the_relying_party_every_claim_and_userinfo(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    started = server.now()
    person = _signed_in(page, invite)
    group = f"staff-{person.email.split('@')[0]}"
    server.cli("groups", "add", group)
    server.cli("groups", "add-member", group, person.email)
    app = register_app()

    # Already signed in at Threshold: straight back to the app, no page in between.
    page.goto(app.login_url(scope="openid email profile groups"))
    assert page.url.startswith(app.callback_url)
    result = result_on(page)

    assert result["ok"], result
    assert result["callback"]["iss"].rstrip("/") == server.url, "RFC 9207 iss in the response"
    assert result["id_token_header"]["alg"] == "RS256"
    claims = result["claims"]
    assert claims["aud"] == app.client_id
    sub = claims["sub"]
    assert sub
    assert person.email not in sub, "sub is opaque"
    assert person.email.split("@")[0] not in sub
    assert claims["email"] == person.email
    # `threshold invite --no-email`: the link was handed over, so nothing proved the address.
    assert claims["email_verified"] is False
    assert claims["name"] == person.name
    assert claims["preferred_username"] == person.email
    assert claims["groups"] == [group]
    assert started - 1 <= claims["auth_time"] <= server.now() + 1, "the enrollment's sign-in"
    assert isinstance(claims["sid"], str)
    assert claims["sid"]
    # Chromium's virtual authenticator: device-bound, verifies the person, but its attestation
    # chains to no trusted root, so a software-protected key, phishing resistant (RFC 8176).
    assert claims["amr"] == ["pop", "swk", "mfa"]
    assert claims["acr"] == "phr"

    userinfo = result["userinfo"]
    assert userinfo["sub"] == sub
    assert userinfo["email"] == person.email
    assert userinfo["email_verified"] is False
    assert userinfo["name"] == person.name
    assert userinfo["preferred_username"] == person.email
    assert userinfo["groups"] == [group]
    assert _audited(server, "sso.authorized", "", person.email)
    assert _audited(server, "sso.token_issued", "", person.email)

    # sub is stable: a second sign-in to the same app, without the groups scope, has no groups.
    again = sign_in_to(page, app)
    assert again["ok"], again
    assert again["claims"]["sub"] == sub
    assert "groups" not in again["claims"]
    assert "groups" not in again["userinfo"]


def test_the_relying_party_refuses_an_id_token_its_jwks_does_not_sign(
    page: Page, authenticator: Authenticator, invite: Invite, register_app: RegisterApp
) -> None:
    """The harness itself: were the signature not checked, the tests above could not fail on it."""
    _signed_in(page, invite)
    app = register_app()

    result = sign_in_to(page, app, rp_forge_jwks="1")

    assert not result["ok"]
    assert result["cause"]["message"] == "JWT signature verification failed", result


def test_es256_app_gets_an_es256_id_token_verified_against_the_jwks(
    page: Page,
    authenticator: Authenticator,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    _signed_in(page, invite)
    app = register_app(id_token_alg="ES256")

    result = sign_in_to(page, app)

    assert result["ok"], result
    assert result["id_token_header"]["alg"] == "ES256"
    assert app.verify(result["id_token"])["ok"]


def test_refresh_rotates_and_reusing_an_old_token_revokes_the_family(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app()
    first = sign_in_to(page, app)
    assert first["ok"], first
    assert first["refresh_token"]

    second = app.refresh(first["refresh_token"])
    assert second["ok"], second
    assert second["refresh_token"]
    assert second["refresh_token"] != first["refresh_token"], "rotated"
    assert second["access_token"] != first["access_token"]
    # The refresh's ID token: the same person and the same sign-in (OpenID Connect Core §12.2).
    assert second["claims"]["sub"] == first["claims"]["sub"]
    assert second["claims"]["auth_time"] == first["claims"]["auth_time"], "never moved"
    assert second["claims"]["sid"] == first["claims"]["sid"]
    assert second["claims"]["amr"] == first["claims"]["amr"]
    assert second["claims"]["acr"] == first["claims"]["acr"]
    assert app.userinfo(second["access_token"], first["claims"]["sub"])["ok"]

    reused = app.refresh(first["refresh_token"])
    assert not reused["ok"]
    assert reused["error"] == "invalid_grant"

    # RFC 9700 §4.14.2: the reuse revoked the whole family, the newest token too.
    after = app.refresh(second["refresh_token"])
    assert not after["ok"]
    assert after["error"] == "invalid_grant"
    # Audited with the person (issue 10: every refusal names the app, the person, the reason).
    assert any(action == "sso.token_refused" for action, _ in server.audit(person.email)[:5])


def test_key_rotation_keeps_tokens_signed_with_the_old_key_valid(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    _signed_in(page, invite)
    app = register_app()
    before = sign_in_to(page, app)
    assert before["ok"], before
    old_kid = before["id_token_header"]["kid"]

    server.cli("keys", "rotate")

    kids = [key["kid"] for key in _get_json(app.metadata["jwks_uri"])["keys"]]
    assert old_kid in kids, "the retired key stays in the JWKS"
    checked = app.verify(before["id_token"])
    assert checked["ok"], checked
    assert checked["header"]["kid"] == old_kid

    after = sign_in_to(page, app)
    assert after["ok"], after
    assert after["id_token_header"]["kid"] != old_kid, "new tokens are signed with the new key"
    assert after["id_token_header"]["kid"] in kids


# --- Refusals: each a clean OAuth error, nothing issued ------------------------------------------


def test_wrong_code_verifier_is_refused(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app()

    result = sign_in_to(page, app, rp_wrong_verifier="1")

    assert not result["ok"]
    assert result["error"] == "invalid_grant"
    assert _audited(server, "sso.token_refused", "code_verifier_mismatch", person.email)
    assert not _audited(server, "sso.token_issued", "", person.email)


def test_replayed_code_is_refused_and_revokes_what_it_was_exchanged_for(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app()
    first = sign_in_to(page, app)
    assert first["ok"], first

    replayed = app.replay(first["index"])

    assert not replayed["ok"]
    assert replayed["error"] == "invalid_grant"
    assert _audited(server, "sso.token_refused", "code_replayed", person.email)
    # RFC 6749 §4.1.2: the tokens the code was first exchanged for are revoked.
    refreshed = app.refresh(first["refresh_token"])
    assert not refreshed["ok"]
    assert refreshed["error"] == "invalid_grant"


def test_foreign_redirect_uri_is_refused_without_redirecting(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    _signed_in(page, invite)
    app = register_app()
    foreign = f"{app.rp.url}/cb/someone-else"

    response = page.goto(app.login_url(rp_redirect_uri=foreign))

    assert response is not None
    assert page.url.startswith(server.url), "Threshold never redirects to an unregistered URI"
    assert response.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("App Sign-in Link Not Valid")
    assert app.flows() == []
    assert any(action == "sso.refused" for action, _ in server.audit()[:5])


def test_plain_pkce_is_refused(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app()

    result = sign_in_to(page, app, rp_pkce="plain")

    assert not result["ok"]
    assert result["callback"]["error"] == "invalid_request"
    assert "code" not in result["callback"]
    assert _audited(server, "sso.refused", "pkce_plain", person.email)


def test_missing_pkce_is_refused(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app()

    result = sign_in_to(page, app, rp_pkce="none")

    assert not result["ok"]
    assert result["callback"]["error"] == "invalid_request"
    assert "code" not in result["callback"]
    assert _audited(server, "sso.refused", "pkce_missing", person.email)


def test_public_client_signs_in_with_pkce_and_no_nonce(
    page: Page, authenticator: Authenticator, invite: Invite, register_app: RegisterApp
) -> None:
    # openid-client's own flow once discovery advertises S256: PKCE, no nonce (OpenID Connect
    # Core §3.1.2.1 makes it optional for the code flow).
    person = _signed_in(page, invite)
    app = register_app(public=True)

    result = sign_in_to(page, app, rp_nonce="omit")

    assert result["ok"], result
    assert result["claims"]["email"] == person.email
    assert "nonce" not in result["claims"]


def test_public_client_signs_in_with_pkce_and_no_secret(
    page: Page, authenticator: Authenticator, invite: Invite, register_app: RegisterApp
) -> None:
    person = _signed_in(page, invite)
    app = register_app(public=True)

    result = sign_in_to(page, app)

    assert result["ok"], result
    assert result["claims"]["email"] == person.email


def test_client_secret_post_signs_in_and_a_rotated_secret_replaces_the_old_one(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app(auth="post")
    first = sign_in_to(page, app)
    assert first["ok"], first
    assert first["claims"]["email"] == person.email

    rotated = json.loads(server.cli("apps", "rotate-secret", app.client_id, "--json"))
    new_secret = rotated["client_secret"]
    assert new_secret
    assert new_secret != app.client_secret

    # The old secret no longer authenticates the app: nothing is issued.
    refused = app.refresh(first["refresh_token"])
    assert not refused["ok"]
    assert refused["error"] == "invalid_client"
    assert _audited(server, "sso.token_refused", "invalid_client")
    refused_flow = sign_in_to(page, app)
    assert not refused_flow["ok"]
    assert refused_flow["error"] == "invalid_client"

    app.use_secret(new_secret)
    assert app.refresh(first["refresh_token"])["ok"]
    assert sign_in_to(page, app)["ok"]
