"""Single sign-on: when Threshold makes the person sign in again, and whom it refuses.

prompt=login and max_age force a real passkey ceremony (a new auth_time), prompt=none never
shows a page, acr_values=phrh with only a synced passkey is unmet, a locked person's tokens stop
working, and a person outside the app's groups is refused. The relying party is openid-client
(tests/rp/server.mjs) with zero clock tolerance, so a stale auth_time fails its max_age check.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser import sso_rp
from tests.browser.conftest import (
    Authenticator,
    Console,
    Invite,
    Person,
    Server,
    add_authenticator,
    enroll,
    sign_out,
)
from tests.browser.sso_rp import RegisterApp, hold_autofill, result_on, sign_in_to, straight_to
from tests.browser.test_fallback import fallback_sign_in, set_up_fallback

pytestmark = pytest.mark.browser

register_app = sso_rp.register_app
server = sso_rp.sso_server_bound


def _signed_in(page: Page, invite: Invite) -> Person:
    person = invite()
    enroll(page, person)
    hold_autofill(page)
    return person


def _audited(server: Server, action: str, reason: str, subject: str | None = None) -> bool:
    """Whether one of the latest audit events (this test's, as tests run one at a time) is it."""
    return (action, reason) in server.audit(subject)[:10]


def _modal_requests(console: Console) -> int:
    """How many passkey requests the pages made with the button (not autofill)."""
    return console.credential_requests().count("optional")


def test_prompt_login_runs_a_new_passkey_ceremony(
    page: Page,
    authenticator: Authenticator,
    console: Console,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    _signed_in(page, invite)
    app = register_app()
    first = straight_to(page, app)
    assert first["ok"], first
    time.sleep(1.1)  # auth_time counts seconds
    ceremonies = _modal_requests(console)

    again = sign_in_to(page, app, prompt="login")

    assert again["ok"], again
    assert _modal_requests(console) == ceremonies + 1, "a real ceremony, not a redirect"
    assert again["claims"]["auth_time"] > first["claims"]["auth_time"]
    assert again["claims"]["sub"] == first["claims"]["sub"]


def test_prompt_none_answers_login_required_when_signed_out(
    page: Page, server: Server, register_app: RegisterApp
) -> None:
    app = register_app()

    result = straight_to(page, app, prompt="none")

    assert not result["ok"]
    assert result["callback"]["error"] == "login_required"
    assert "code" not in result["callback"]
    assert _audited(server, "sso.refused", "login_required")


def test_prompt_none_signs_in_silently_when_signed_in(
    page: Page, authenticator: Authenticator, invite: Invite, register_app: RegisterApp
) -> None:
    person = _signed_in(page, invite)
    app = register_app()

    result = straight_to(page, app, prompt="none")

    assert result["ok"], result
    assert result["claims"]["email"] == person.email


def test_max_age_forces_a_new_sign_in_checked_with_zero_clock_tolerance(
    page: Page,
    authenticator: Authenticator,
    console: Console,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    _signed_in(page, invite)
    app = register_app()
    recent = straight_to(page, app, max_age="300")  # recent enough: no new ceremony
    assert recent["ok"], recent
    app.server.advance_clock(6)  # the relying party follows (App.login_url syncs its clock)
    silent = straight_to(page, app, max_age="5", prompt="none")
    assert silent["callback"]["error"] == "login_required"
    ceremonies = _modal_requests(console)

    # The relying party refuses an auth_time older than 5 s (no tolerance): a provider that
    # ignored max_age would fail here.
    result = sign_in_to(page, app, max_age="5")

    assert result["ok"], result
    assert _modal_requests(console) == ceremonies + 1
    assert result["claims"]["auth_time"] > recent["claims"]["auth_time"]


def test_acr_phrh_with_only_a_synced_passkey_is_unmet(
    page: Page,
    context: BrowserContext,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    add_authenticator(
        context, page, transport="internal", defaultBackupEligibility=True, defaultBackupState=True
    )
    person = _signed_in(page, invite)
    app = register_app()

    phr = straight_to(page, app, acr_values="phr")
    assert phr["ok"], phr
    assert phr["claims"]["acr"] == "phr"
    assert phr["claims"]["amr"] == ["pop", "swk", "mfa"], "a synced passkey: software key"

    # Nothing the person has gives phrh (hardware-bound with trusted attestation).
    phrh = straight_to(page, app, acr_values="phrh")
    assert not phrh["ok"]
    assert phrh["callback"]["error"] == "unmet_authentication_requirements"
    assert "code" not in phrh["callback"]
    assert _audited(server, "sso.refused", "unmet_authentication_requirements", person.email)


def test_locked_person_cannot_refresh_or_use_tokens(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app()
    result = straight_to(page, app)
    assert result["ok"], result
    sub = result["claims"]["sub"]
    assert app.userinfo(result["access_token"], sub)["ok"]

    server.cli("users", "lock", person.email)
    assert _audited(server, "sso.tokens_revoked", "locked", person.email)

    refreshed = app.refresh(result["refresh_token"])
    assert not refreshed["ok"]
    assert refreshed["error"] == "invalid_grant"
    userinfo = app.userinfo(result["access_token"], sub)
    assert not userinfo["ok"]
    assert userinfo["status"] == 401


def test_person_outside_the_apps_group_is_refused_until_added(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    group = f"engineering-{person.email.split('@')[0]}"
    server.cli("groups", "add", group)
    app = register_app()
    server.cli("apps", "assign", app.client_id, "--group", group)

    response = page.goto(app.login_url())

    assert response is not None
    assert page.url.startswith(server.url), "refused at Threshold, not at the app"
    assert response.status == 403
    expect(page.locator("main")).to_contain_text(
        re.compile(f"You don[\u2019']t have access to {re.escape(app.name)}")
    )
    assert app.flows() == []
    assert _audited(server, "sso.refused", "not_assigned", person.email)

    server.cli("groups", "add-member", group, person.email)
    result = straight_to(page, app, scope="openid email groups")
    assert result["ok"], result
    assert group in result["claims"]["groups"]

    # Out of the group again: the app's refresh token stops working.
    server.cli("groups", "remove-member", group, person.email)
    refreshed = app.refresh(result["refresh_token"])
    assert not refreshed["ok"]
    assert refreshed["error"] == "invalid_grant"


def test_fallback_sign_in_is_not_phishing_resistant_and_acr_phr_steps_up_with_a_passkey(
    page: Page,
    context: BrowserContext,
    server: Server,
    console: Console,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    add_authenticator(context, page, transport="internal")
    person = invite()
    enroll(page, person)
    secret = set_up_fallback(page, server)
    sign_out(page)
    if fallback_sign_in(page, server, person, secret):  # the "Set up a passkey" prompt
        page.get_by_role("button", name="I\u2019ll do it later").click()
    hold_autofill(page)
    app = register_app()

    fallback = straight_to(page, app)
    assert fallback["ok"], fallback
    assert fallback["claims"]["amr"] == ["pwd", "otp", "mfa"]
    assert "acr" not in fallback["claims"], "a password is never phr"
    silent = straight_to(page, app, acr_values="phr", prompt="none")
    assert silent["callback"]["error"] == "interaction_required", "a step-up needs a page"
    ceremonies = _modal_requests(console)
    # auth_time is in whole seconds: the step-up a second later is seen to be later.
    server.advance_clock(1)

    stepped_up = sign_in_to(page, app, acr_values="phr")

    assert stepped_up["ok"], stepped_up
    assert _modal_requests(console) == ceremonies + 1, "a passkey ceremony"
    assert stepped_up["claims"]["acr"] == "phr"
    assert stepped_up["claims"]["amr"] == ["pop", "swk", "mfa"]
    assert stepped_up["claims"]["auth_time"] > fallback["claims"]["auth_time"]
    assert stepped_up["claims"]["sid"] == fallback["claims"]["sid"], "the same session"


def test_id_token_hint_naming_someone_else_is_refused(
    page: Page,
    browser: Browser,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    app = register_app()
    _signed_in(page, invite)
    first = straight_to(page, app)
    assert first["ok"], first
    # Someone else, in another browser, signs in to the same app.
    other_page = browser.new_context(base_url=server.url).new_page()
    try:
        add_authenticator(other_page.context, other_page)
        _signed_in(other_page, invite)
        theirs = straight_to(other_page, app)
        assert theirs["ok"], theirs

        # The app, believing the first person is signed in, asks silently with their ID token.
        mine = straight_to(page, app, prompt="none", id_token_hint=first["id_token"])
        wrong = straight_to(other_page, app, prompt="none", id_token_hint=first["id_token"])
    finally:
        other_page.context.close()

    assert mine["ok"], mine
    assert mine["claims"]["sub"] == first["claims"]["sub"]
    assert not wrong["ok"]
    assert wrong["callback"]["error"] == "login_required"


def test_app_that_requires_consent_lists_its_scopes_and_honours_the_answer(
    page: Page,
    authenticator: Authenticator,
    server: Server,
    invite: Invite,
    register_app: RegisterApp,
) -> None:
    person = _signed_in(page, invite)
    app = register_app("--require-consent")

    silent = straight_to(page, app, prompt="none")
    assert silent["callback"]["error"] == "consent_required"

    page.goto(app.login_url())
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Sign in to {app.name}")
    assert page.locator("#consent-scopes li").count() == 3  # openid email profile
    page.get_by_role("button", name="Don't allow").click()
    page.wait_for_url(f"{app.callback_url}?*")
    denied = result_on(page)
    assert denied["callback"]["error"] == "access_denied"
    assert _audited(server, "sso.refused", "access_denied", person.email)

    page.goto(app.login_url())
    page.get_by_role("button", name="Allow", exact=True).click()
    page.wait_for_url(f"{app.callback_url}?*")
    allowed = result_on(page)
    assert allowed["ok"], allowed
