"""Single sign-on: Threshold as an OpenID Connect provider (threshold/sso/), through real URLs.

The app here is the test itself: it sends the authorization request a relying party sends,
exchanges the code with PKCE, and verifies the ID token's signature against the JWKS with
jwcrypto. Nothing is mocked but the clock and, for back-channel logout, the outbound POST.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from jwcrypto import jwk, jwt
from oauth2_provider.models import get_access_token_model, get_grant_model

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    Person,
    assert_ok,
    enroll,
    enrolled_person,
    invite,
    last_event,
    sign_in,
    token_of,
)
from tests.integration.test_concurrent_changes import all_at_once
from tests.support.authenticator import SoftAuthenticator
from tests.support.faults import database_fails
from threshold.accounts.actions import do_lock_user
from threshold.audit.actions import Action, Origin
from threshold.audit.models import AuditEvent
from threshold.cli.commands.serve import GUNICORN_SETTINGS
from threshold.cli.main import main
from threshold.enrollment.actions import do_issue_recovery
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Membership
from threshold.passkeys.models import Passkey
from threshold.sessions import flow
from threshold.sessions.models import Session
from threshold.sso import cors, keys
from threshold.sso.actions import do_add_app, do_assign_app
from threshold.sso.logout import deliver_due, retry_logouts
from threshold.sso.models import Application, LogoutDelivery
from threshold.sso.validator import Validator
from threshold.web.http import REQUEST_TARGET_MAX_LENGTH

pytestmark = pytest.mark.django_db

ISSUER = "http://localhost:8000"
REDIRECT_URI = "http://127.0.0.1:9000/callback"


@dataclass
class App:
    client_id: str
    client_secret: str | None
    application: Application


def add_app(**kwargs: Any) -> App:
    kwargs.setdefault("redirect_uris", [REDIRECT_URI])
    new = do_add_app(kwargs.pop("name", "Wiki"), Origin.cli(), **kwargs)
    return App(new.application.client_id, new.client_secret, new.application)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


@dataclass
class Authorization:
    verifier: str
    state: str
    nonce: str
    response: Any

    @property
    def location(self) -> str:
        return self.response["Location"]

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


def authorize(browser: Browser, app: App, **extra: str) -> Authorization:
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email groups",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query.update(extra)
    query = {k: v for k, v in query.items() if v is not None}
    response = browser.get("/authorize?" + urlencode(query))
    return Authorization(verifier, state, nonce, response)


def exchange(app: App, code: str, verifier: str, **extra: str):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "client_id": app.client_id,
    }
    if app.client_secret:
        data["client_secret"] = app.client_secret
    data.update(extra)
    return Client().post("/token", data)


def refresh(app: App, refresh_token: str):
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": app.client_id,
    }
    if app.client_secret:
        data["client_secret"] = app.client_secret
    return Client().post("/token", data)


def verify_id_token(token: str, app: App) -> dict[str, Any]:
    keys = jwk.JWKSet.from_json(Client().get("/jwks").content)
    verified = jwt.JWT(jwt=token, key=keys, expected_type="JWS")
    claims = json.loads(verified.claims)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == app.client_id
    return claims


def signed_in(person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def sign_in_again(browser: Browser, location: str, authenticator, **get: Any):
    """What the "Sign in again" page does: the step-up ceremony, then back to the authorization."""
    assert location.startswith("/authorize/sign-in?"), location
    page = browser.get(location)
    assert page.status_code == 200
    html = page.content.decode()
    options_url = re.search(r'data-options-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    result_url = re.search(r'data-result-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    options = browser.post_json(
        options_url, {}, **{flow.META_KEY: flow.issue_flow_token(flow.Flow.STEP_UP)}
    )
    assert options.status_code == 200, options.content
    public_key = options.json()["publicKey"]
    result = browser.post_json(result_url, authenticator.get(public_key, ORIGIN, **get))
    return public_key, result


def full_flow(browser: Browser, app: App, **extra: str) -> dict[str, Any]:
    auth = authorize(browser, app, **extra)
    assert auth.response.status_code == 302, auth.response.content[:300]
    assert auth.location.startswith(REDIRECT_URI), auth.location
    assert auth.params["state"] == auth.state
    assert auth.params["iss"] == ISSUER
    assert "code" in auth.params, auth.params
    response = exchange(app, auth.params["code"], auth.verifier)
    assert response.status_code == 200, response.content
    tokens = response.json()
    tokens["claims"] = verify_id_token(tokens["id_token"], app)
    assert tokens["claims"]["nonce"] == auth.nonce
    return tokens


@pytest.fixture
def ada(db):
    return enrolled_person("ada@example.com", "Ada Lovelace")


# --- Discovery and keys ----------------------------------------------------------------------


def test_discovery_names_the_issuer_and_endpoints(db):
    document = Client().get("/.well-known/openid-configuration").json()
    assert document["issuer"] == ISSUER
    assert document["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert document["token_endpoint"] == f"{ISSUER}/token"
    assert document["jwks_uri"] == f"{ISSUER}/jwks"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["backchannel_logout_session_supported"] is True


def test_the_jwks_has_a_kid_per_key(db):
    keys = Client().get("/jwks").json()["keys"]
    assert {key["alg"] for key in keys} == {"RS256", "ES256"}
    assert all(key["kid"] and "d" not in key for key in keys)


# --- The code flow ---------------------------------------------------------------------------


def test_email_verified_only_for_an_address_a_link_was_emailed_to(
    db, mailoutbox, django_capture_on_commit_callbacks
):
    """``email_verified`` is true once the person used a link that went to their address by
    email: the enrollment link (the default), or a recovery link sent by email. A link the
    administrator handed over proves nothing about the mailbox (an app linking accounts by a
    verified address must not trust a typo)."""
    app = add_app()
    emailed = invited_and_enrolled("ada@example.com", django_capture_on_commit_callbacks)
    [sent] = [message for message in mailoutbox if message.subject.startswith("Set up")]
    assert sent.to == ["ada@example.com"]
    assert emailed.invite.sent_to == "ada@example.com"
    handed = invited_and_enrolled("grace@example.com")
    assert handed.invite.sent_to == ""

    assert full_flow(signed_in(emailed), app)["claims"]["email_verified"] is True
    tokens = full_flow(signed_in(handed), app)
    assert tokens["claims"]["email_verified"] is False
    assert userinfo_of(tokens)["email_verified"] is False

    # A recovery link handed over (the default) still proves nothing; one sent by email does.
    recover(handed, django_capture_on_commit_callbacks, email_link=False)
    assert full_flow(signed_in(handed), app)["claims"]["email_verified"] is False
    recover(handed, django_capture_on_commit_callbacks, email_link=True)
    tokens = full_flow(signed_in(handed), app)
    assert tokens["claims"]["email_verified"] is True
    assert userinfo_of(tokens)["email_verified"] is True


def test_an_invite_email_that_could_not_be_sent_proves_nothing(
    db, settings, caplog, django_capture_on_commit_callbacks
):
    """The SMTP server refused the connection: the link was printed, not delivered, so using
    it does not verify the address."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed_port(), 2
    person = invited_and_enrolled("ada@example.com", django_capture_on_commit_callbacks)
    assert "could not send enrollment/invite_email.txt" in caplog.text
    assert person.invite.sent_to == ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert full_flow(signed_in(person), add_app())["claims"]["email_verified"] is False


def test_a_username_that_is_no_address_gets_no_email_claims(db):
    person = invited_and_enrolled("ada")
    claims = full_flow(signed_in(person), add_app())["claims"]
    assert "email" not in claims
    assert "email_verified" not in claims
    assert claims["preferred_username"] == "ada"


def invited_and_enrolled(username: str, emails: Any = None) -> Person:
    """Invited, and enrolled from the link; with ``emails`` (the on-commit capture fixture),
    the link is emailed first, as the invite's transaction commits."""
    if emails is None:
        created, token = invite(username, "Ada Lovelace")
    else:
        with emails(execute=True):
            created, token = invite(username, "Ada Lovelace", send_email=True)
    authenticator = SoftAuthenticator()
    assert_ok(enroll(Browser(), token, authenticator))
    created.invite.refresh_from_db()
    return Person(created.user, authenticator, created.invite)


def recover(person: Person, emails: Any, *, email_link: bool) -> None:
    """A recovery link, emailed to the person (``email_link``) or not, then used: the person
    makes a new passkey with it and signs in with that."""
    with emails(execute=True):
        issued = do_issue_recovery(person.user, Origin.cli(), email_link=email_link)
    person.authenticator = SoftAuthenticator()
    assert_ok(enroll(Browser(), token_of(issued.link), person.authenticator))


def userinfo_of(tokens: dict[str, Any]) -> dict[str, Any]:
    answer = Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert answer.status_code == 200, answer.content
    return answer.json()


def closed_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_signed_in_person_gets_every_claim(ada):
    app = add_app()
    group = do_add_group("Engineering", Origin.cli())
    do_add_member(group, ada.user, Origin.cli())
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    claims = tokens["claims"]
    assert claims["email"] == "ada@example.com"
    assert claims["email_verified"] is False  # her link was handed over, not emailed
    assert claims["name"] == "Ada Lovelace"
    assert claims["preferred_username"] == "ada@example.com"
    assert claims["groups"] == ["Engineering"]
    assert claims["amr"] == ["pop", "swk", "mfa"]
    assert claims["acr"] == "phr"
    assert claims["sid"]
    assert "@" not in claims["sub"]
    userinfo = Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == 200, userinfo.content
    assert userinfo.json()["sub"] == claims["sub"]
    assert userinfo.json()["groups"] == ["Engineering"]
    assert AuditEvent.objects.filter(action="sso.authorized", actor=ada.user).exists()
    assert AuditEvent.objects.filter(action="sso.token_issued", actor=ada.user).exists()


def test_es256_apps_get_es256_id_tokens(ada):
    app = add_app(id_token_alg="ES256", public=True)
    tokens = full_flow(signed_in(ada), app)
    header = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    assert header["kid"]


def test_refresh_keeps_auth_time_and_rotates_and_reuse_revokes_the_family(ada, clock):
    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    auth_time = tokens["claims"]["auth_time"]
    clock.advance(120)
    first = refresh(app, tokens["refresh_token"])
    assert first.status_code == 200, first.content
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert verify_id_token(rotated["id_token"], app)["auth_time"] == auth_time
    reused = refresh(app, tokens["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # The whole family is revoked: the newest token no longer works either.
    assert refresh(app, rotated["refresh_token"]).status_code == 400


def test_not_signed_in_goes_to_the_sign_in_page_and_back(ada):
    app = add_app()
    auth = authorize(Browser(), app)
    assert auth.response.status_code == 302
    assert auth.location.startswith("/sign-in?next=%2Fauthorize")


def test_prompt_none_without_a_session_answers_login_required(ada):
    app = add_app()
    auth = authorize(Browser(), app, prompt="none")
    assert auth.location.startswith(REDIRECT_URI)
    assert auth.params["error"] == "login_required"
    assert auth.params["state"] == auth.state
    assert auth.params["iss"] == ISSUER


def test_prompt_login_asks_for_a_new_sign_in_and_gives_a_new_auth_time(ada, clock):
    app = add_app()
    browser = signed_in(ada)
    first = full_flow(browser, app)["claims"]
    clock.advance(60)
    auth = authorize(browser, app, prompt="login")
    assert auth.location.startswith("/authorize/sign-in?next=")
    _, result = sign_in_again(browser, auth.location, ada.authenticator)
    again = browser.get(assert_ok(result)["redirect"])
    assert again["Location"].startswith(REDIRECT_URI), again["Location"]
    code = parse_qs(urlsplit(again["Location"]).query)["code"][0]
    tokens = exchange(app, code, auth.verifier).json()
    claims = verify_id_token(tokens["id_token"], app)
    assert claims["auth_time"] >= first["auth_time"] + 60
    assert claims["sid"] == first["sid"]


def test_max_age_forces_a_new_sign_in_when_the_last_is_older(ada, clock):
    app = add_app()
    browser = signed_in(ada)
    clock.advance(100)
    assert authorize(browser, app, max_age="300").location.startswith(REDIRECT_URI)
    assert authorize(browser, app, max_age="60").location.startswith("/authorize/sign-in")
    assert authorize(browser, app, max_age="60", prompt="none").params["error"] == "login_required"


def test_acr_phrh_without_a_hardware_bound_passkey_is_unmet(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app, acr_values="phrh")
    assert auth.params["error"] == "unmet_authentication_requirements"


def test_acr_phrh_with_a_hardware_bound_passkey_steps_up(ada):
    app = add_app()
    browser = signed_in(ada)
    Passkey.objects.filter(user=ada.user).update(attestation_trusted=True)
    auth = authorize(browser, app, acr_values="phrh")
    assert auth.location.startswith("/authorize/sign-in")
    _, result = sign_in_again(browser, auth.location, ada.authenticator)
    again = browser.get(assert_ok(result)["redirect"])
    code = parse_qs(urlsplit(again["Location"]).query)["code"][0]
    claims = verify_id_token(exchange(app, code, auth.verifier).json()["id_token"], app)
    assert claims["acr"] == "phrh"
    assert claims["amr"] == ["pop", "hwk", "mfa"]


def test_a_person_outside_the_apps_groups_is_refused(ada):
    app = add_app()
    do_add_group("Finance", Origin.cli())
    do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])
    auth = authorize(signed_in(ada), app)
    assert auth.response.status_code == 403
    assert b"You don't have access to Wiki" in auth.response.content
    event = AuditEvent.objects.filter(action="sso.refused").latest("id")
    assert event.reason == "not_assigned"


def test_a_locked_persons_refresh_is_refused(ada):
    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    do_lock_user(ada.user, Origin.cli())
    assert refresh(app, tokens["refresh_token"]).status_code == 400
    userinfo = Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == 401


# --- Negative cases: a clean OAuth error, nothing issued, audited -----------------------------


def test_wrong_code_verifier_is_refused(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app)
    response = exchange(app, auth.params["code"], "x" * 50)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert not AuditEvent.objects.filter(action="sso.token_issued").exists()
    assert not get_access_token_model().objects.exists()
    refused = AuditEvent.objects.get(action="sso.token_refused")
    assert refused.reason == "code_verifier_mismatch"
    assert refused.subject == ada.user
    assert refused.detail["app"] == app.client_id


def test_a_replayed_code_is_refused_and_revokes_what_it_gave(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app)
    first = exchange(app, auth.params["code"], auth.verifier)
    assert first.status_code == 200
    again = exchange(app, auth.params["code"], auth.verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert refresh(app, first.json()["refresh_token"]).status_code == 400


def writing_together(monkeypatch: Any, call: Callable[[], Any]) -> list[Any]:
    """``call`` twice on two connections at once, both past every check before either writes
    its tokens (``save_bearer_token``): the answers, or the exceptions raised."""
    both_checked = threading.Barrier(2, timeout=30)
    save = Validator.save_bearer_token

    def save_when_both_checked(self: Validator, *args: Any, **kwargs: Any) -> Any:
        both_checked.wait()
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Validator, "save_bearer_token", save_when_both_checked)
    try:
        return all_at_once([call] * 2)
    finally:
        monkeypatch.setattr(Validator, "save_bearer_token", save)


@pytest.mark.django_db(transaction=True)
def test_two_exchanges_of_one_code_at_once_give_tokens_once(ada, monkeypatch):
    """Both exchanges read the grant and pass every check, then write at the same moment on
    their own connections: one is answered, the other refused and nothing written for it
    (DOT deleted the grant after writing the tokens, so both wrote theirs). As for any
    replay, what the code gave is revoked."""
    app = add_app()
    auth = authorize(signed_in(ada), app)
    exchanges = writing_together(
        monkeypatch, lambda: exchange(app, auth.params["code"], auth.verifier)
    )

    assert not [r for r in exchanges if isinstance(r, BaseException)], exchanges
    assert sorted(r.status_code for r in exchanges) == [200, 400]
    answered = next(r for r in exchanges if r.status_code == 200)
    refused = next(r for r in exchanges if r.status_code == 400)
    assert refused["Content-Type"].startswith("application/json"), refused.content[:300]
    assert refused.json()["error"] == "invalid_grant"
    assert get_access_token_model().objects.count() <= 1
    assert AuditEvent.objects.filter(action="sso.token_issued").count() == 1
    assert AuditEvent.objects.filter(action="sso.token_refused", reason="code_replayed").exists()
    assert refresh(app, answered.json()["refresh_token"]).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_two_refreshes_of_one_token_at_once_are_reuse_and_end_the_family(ada, monkeypatch):
    """Both refreshes read the refresh token and pass every check, then write at the same
    moment on their own connections: one is answered, the other finds the token rotated, is
    refused as reuse (RFC 9700 §4.14.2) and, as a reuse that came later would, revokes the
    family: the answered refresh's tokens stop working too."""
    app = add_app()
    first = full_flow(signed_in(ada), app)["refresh_token"]
    refreshes = writing_together(monkeypatch, lambda: refresh(app, first))

    assert not [r for r in refreshes if isinstance(r, BaseException)], refreshes
    assert sorted(r.status_code for r in refreshes) == [200, 400]
    answered = next(r for r in refreshes if r.status_code == 200).json()
    refused = next(r for r in refreshes if r.status_code == 400)
    assert refused.json() == {"error": "invalid_grant"}
    event = AuditEvent.objects.filter(action="sso.token_refused").latest("id")
    assert (event.reason, event.subject_id) == ("refresh_token_reused", ada.user.pk)
    assert not get_access_token_model().objects.filter(user=ada.user).exists()
    assert refresh(app, answered["refresh_token"]).status_code == 400


def test_a_foreign_redirect_uri_gets_a_page_not_a_redirect(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app, redirect_uri="https://evil.example/cb")
    assert auth.response.status_code == 400
    assert b"App Sign-in Link Not Valid" in auth.response.content
    assert AuditEvent.objects.get(action="sso.refused").reason == "mismatching_redirect_uri"


@pytest.mark.parametrize("mode", ["query", "form_post"])
def test_an_openid_request_without_a_redirect_uri_gets_a_page_not_a_code(ada, mode):
    """OpenID Connect Core §3.1.2.1: redirect_uri is REQUIRED (the conformance suite's
    oidcc-ensure-redirect-uri-in-authorization-request), even for an app with one registered
    URI, to which a plain OAuth request may fall back (test_sso_response_modes.py)."""
    app = add_app()
    auth = authorize(signed_in(ada), app, redirect_uri=None, response_mode=mode)
    assert auth.response.status_code == 400
    assert b"App Sign-in Link Not Valid" in auth.response.content
    assert not Grant.objects.exists()
    refused = AuditEvent.objects.get(action="sso.refused")
    assert (refused.reason, refused.detail["app"]) == ("missing_redirect_uri", app.client_id)


def test_plain_pkce_is_refused(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app, code_challenge_method="plain")
    assert auth.params["error"] == "invalid_request"
    assert "code" not in auth.params
    assert not Grant.objects.exists()
    refused = AuditEvent.objects.get(action="sso.refused")
    assert (refused.reason, refused.subject, refused.detail["app"]) == (
        "pkce_plain",
        ada.user,
        app.client_id,
    )


def test_a_public_client_with_pkce_needs_no_nonce(ada):
    # OpenID Connect Core §3.1.2.1: nonce is optional in the code flow; RFC 9700 §2.1.1: PKCE
    # is a public client's defence against code injection (openid-client v6 sends no nonce
    # once discovery advertises S256).
    app = add_app(public=True)
    auth = authorize(signed_in(ada), app, nonce=None)
    assert "code" in auth.params, auth.params
    assert not AuditEvent.objects.filter(action="sso.refused").exists()


@pytest.mark.parametrize(
    ("parameter", "error"),
    [
        ("request", "request_not_supported"),
        ("request_uri", "request_uri_not_supported"),
        ("registration", "registration_not_supported"),
    ],
)
@pytest.mark.parametrize("signed_in_first", [True, False])
def test_request_objects_and_registration_are_refused_not_ignored(
    ada, parameter, error, signed_in_first
):
    """Discovery says request_parameter_supported and request_uri_parameter_supported are
    false: such a request is answered with OpenID Connect's error (Core §6.1, §6.2, §7.2.1),
    before any sign-in page, instead of its request object being silently ignored."""
    app = add_app()
    browser = signed_in(ada) if signed_in_first else Browser()
    value = "eyJhbGciOiJub25lIn0.eyJub25jZSI6Im90aGVyIn0." if parameter == "request" else "{}"
    if parameter == "request_uri":
        value = "https://rp.example/request.jwt"
    auth = authorize(browser, app, **{parameter: value})
    assert auth.location.startswith(REDIRECT_URI)
    assert auth.params["error"] == error
    assert auth.params["state"] == auth.state
    assert auth.params["iss"] == ISSUER
    assert "code" not in auth.params
    refusal = AuditEvent.objects.filter(action="sso.refused").latest("at", "id")
    assert refusal.reason == error


# --- Logout: back-channel, RP-initiated; revocation -------------------------------------------


class LogoutReceiver:
    """An app's back-channel logout endpoint on loopback: a real HTTP server, in a thread."""

    def __init__(self, status: int = 200) -> None:

        received: list[str] = []
        self.received = received
        self.status = status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = parse_qs(self.rfile.read(length).decode())
                received.append(body["logout_token"][0])
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_logout_token(token: str, app: App) -> dict[str, Any]:
    keys = jwk.JWKSet.from_json(Client().get("/jwks").content)
    verified = jwt.JWT(jwt=token, key=keys, expected_type="JWS")
    header = json.loads(base64.urlsafe_b64decode(token.split(".", maxsplit=1)[0] + "=="))
    assert header["typ"] == "logout+jwt"
    claims = json.loads(verified.claims)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == app.client_id
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
    assert "nonce" not in claims
    return claims


def test_signing_out_sends_a_signed_logout_token_with_the_sid(
    ada, receiver, django_capture_on_commit_callbacks
):
    app = add_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    claims = full_flow(browser, app)["claims"]
    with django_capture_on_commit_callbacks(execute=True):
        browser.post_form("/sign-out")
    assert len(receiver.received) == 1
    logout = verify_logout_token(receiver.received[0], app)
    assert logout["sid"] == claims["sid"]
    assert logout["sub"] == claims["sub"]
    sent = AuditEvent.objects.get(action="sso.backchannel_logout_sent")
    assert (sent.detail["app"], sent.detail["sub"]) == (app.client_id, claims["sub"])


def test_signing_in_again_is_no_logout(ada, receiver, django_capture_on_commit_callbacks):
    app = add_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    full_flow(browser, app)
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(sign_in(browser, ada.authenticator))
    assert receiver.received == []


def test_a_failed_delivery_is_retried_by_cleanup(
    ada, receiver, clock, django_capture_on_commit_callbacks
):

    receiver.status = 500
    app = add_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    full_flow(browser, app)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post_form("/sign-out")
    delivery = LogoutDelivery.objects.get()
    assert delivery.delivered_at is None
    assert delivery.attempts == 1
    failed = AuditEvent.objects.get(action="sso.backchannel_logout_failed", reason="will_retry")
    assert failed.detail["sub"] == delivery.subject
    receiver.status = 200
    LogoutDelivery.objects.update(next_attempt_at=delivery.created_at)
    assert deliver_due() == 1
    assert LogoutDelivery.objects.get().delivered_at is not None
    assert len(receiver.received) == 2


def test_a_lock_ends_the_session_and_tells_the_app(
    ada, receiver, django_capture_on_commit_callbacks
):
    app = add_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    claims = full_flow(browser, app)["claims"]
    with django_capture_on_commit_callbacks(execute=True):
        do_lock_user(ada.user, Origin.cli())
    assert verify_logout_token(receiver.received[0], app)["sid"] == claims["sid"]
    assert AuditEvent.objects.filter(action="sso.tokens_revoked", reason="locked").exists()


def test_sign_out_other_sessions_revokes_their_tokens_only(ada):
    app = add_app()
    here, there = signed_in(ada), signed_in(ada)
    mine = full_flow(here, app)
    theirs = full_flow(there, app)
    assert mine["claims"]["sid"] != theirs["claims"]["sid"]
    here.post_form("/settings/sessions/sign-out-others")
    assert refresh(app, theirs["refresh_token"]).status_code == 400
    assert refresh(app, mine["refresh_token"]).status_code == 200


def test_rp_initiated_logout_ends_the_session_and_returns_with_state(ada):
    post_logout = "http://127.0.0.1:9000/signed-out"
    app = add_app(post_logout_redirect_uris=[post_logout])
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    response = browser.get(
        "/end-session?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": post_logout,
                "state": "xyz",
            }
        )
    )
    assert response.status_code == 302, response.content[:300]
    assert response["Location"] == f"{post_logout}?state=xyz"
    assert not browser.is_signed_in()
    assert refresh(app, tokens["refresh_token"]).status_code == 400
    assert AuditEvent.objects.filter(action="sso.logout", actor=ada.user).exists()


def test_rp_initiated_logout_refuses_an_unregistered_uri_with_a_page(ada):
    app = add_app()
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    response = browser.get(
        "/end-session?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "https://evil.example",
            }
        )
    )
    assert response.status_code == 400
    assert b"App Sign-in Link Not Valid" in response.content
    assert browser.is_signed_in()


def test_rp_initiated_logout_sent_as_a_form_post_is_answered_as_its_get(
    ada, receiver, django_capture_on_commit_callbacks
):
    """RP-Initiated Logout §2: the OP MUST support GET and POST at the Logout Endpoint. The
    app's page posts its form cross-site, without Threshold's CSRF token (the browser enforces
    CSRF checks, as Chromium's would): a 303 to the same request sent with GET, which then
    signs out as the GET does: tokens revoked, the app told by back-channel logout, back to
    the post-logout URI with the state."""
    post_logout = "http://127.0.0.1:9000/signed-out"
    app = add_app(post_logout_redirect_uris=[post_logout], backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    # The endpoint discovery names takes the POST.
    discovered = Client().get("/.well-known/openid-configuration").json()["end_session_endpoint"]
    endpoint = discovered.removeprefix(ISSUER)
    form = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": post_logout,
        "state": "x y&z=1+ü",  # every character survives the 303's URL
        "client_id": app.client_id,
        "ui_locales": "en fr",
    }
    posted = browser.client.post(endpoint, form)
    assert posted.status_code == 303, posted.content[:300]
    assert urlsplit(posted["Location"]).path == endpoint
    assert parse_qsl(urlsplit(posted["Location"]).query) == list(form.items())
    # The POST itself changes nothing.
    assert browser.is_signed_in()
    assert not AuditEvent.objects.filter(action="sso.logout").exists()
    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.get(posted["Location"])
    assert answer.status_code == 302, answer.content[:300]
    assert answer["Location"].startswith(post_logout + "?")
    assert parse_qsl(urlsplit(answer["Location"]).query) == [("state", form["state"])]
    assert not browser.is_signed_in()
    assert refresh(app, tokens["refresh_token"]).status_code == 400
    assert AuditEvent.objects.filter(action="sso.logout", actor=ada.user).exists()
    [logout] = receiver.received
    assert verify_logout_token(logout, app)["sid"] == tokens["claims"]["sid"]


def test_a_posted_logout_without_a_hint_asks_and_a_forged_answer_is_refused(ada):
    """Without an id_token_hint the GET the POST becomes asks the person; another site's form
    that answers "Sign out" for them (no CSRF token, or a wrong one) is refused as before."""
    post_logout = "http://127.0.0.1:9000/signed-out"
    app = add_app(post_logout_redirect_uris=[post_logout])
    browser = signed_in(ada)
    full_flow(browser, app)
    form = {"client_id": app.client_id, "post_logout_redirect_uri": post_logout, "state": "st"}
    posted = browser.client.post("/end-session", form)
    assert posted.status_code == 303
    asked = browser.get(posted["Location"])
    assert asked.status_code == 200
    assert b"Sign out of Wiki and Threshold?" in asked.content
    assert b'<a href="/" id="stay-signed-in">Stay signed in</a>' in asked.content
    assert form_action(asked) == ["'self'", "http://127.0.0.1:9000"]
    for forged in ({"allow": "true"}, {"allow": "true", "csrfmiddlewaretoken": "x" * 64}):
        refused = browser.client.post(asked.wsgi_request.get_full_path(), {**form, **forged})
        assert refused.status_code == 403
        assert b"Session Expired" in refused.content
    assert browser.is_signed_in()
    assert not AuditEvent.objects.filter(action="sso.logout").exists()
    # The person's own answer, with the token.
    answered = browser.client.post(
        asked.wsgi_request.get_full_path(),
        {**form, "allow": "true", "csrfmiddlewaretoken": browser.csrf_token()},
    )
    assert answered.status_code == 302
    assert answered["Location"] == f"{post_logout}?state=st"
    assert not browser.is_signed_in()


def test_the_longest_url_a_post_is_sent_on_to_fits_the_servers_request_line():
    request_line = f"GET {'/' * REQUEST_TARGET_MAX_LENGTH} HTTP/1.1"
    assert len(request_line) == GUNICORN_SETTINGS["limit_request_line"]


@pytest.mark.parametrize("path", ["/end-session", "/authorize"])
def test_a_posted_request_that_cannot_travel_in_a_url_is_a_page(ada, path):
    """A form whose parameters the 303's URL cannot all carry (more than the server reads in a
    request line, or a file) is refused with the catalog's page, audited, rather than sent on
    without them; one the server cannot read gets the catalog's page too. Nothing changes."""
    app = add_app()
    browser = signed_in(ada)
    room = REQUEST_TARGET_MAX_LENGTH - len(f"{path}?client_id={app.client_id}&state=")
    fits = browser.client.post(path, {"client_id": app.client_id, "state": "s" * room})
    assert fits.status_code == 303
    assert len(fits["Location"]) == REQUEST_TARGET_MAX_LENGTH
    too_long = {"client_id": app.client_id, "state": "s" * (room + 1)}
    with_a_file = {"client_id": app.client_id, "state": SimpleUploadedFile("state.txt", b"st")}
    for form in (too_long, with_a_file):
        refused = browser.client.post(path, form)
        assert refused.status_code == 400
        assert b"App Sign-in Link Not Valid" in refused.content
        assert not refused.has_header("Location")
    refusals = AuditEvent.objects.filter(action="sso.refused", reason="invalid_request")
    assert [(e.actor, e.detail["app"], e.detail["files"]) for e in refusals.order_by("id")] == [
        (ada.user, app.client_id, 0),
        (ada.user, app.client_id, 1),
    ]
    assert all(e.detail.get("logout", False) == (path == "/end-session") for e in refusals)
    oversize = browser.client.post(path, {"client_id": app.client_id, "state": "s" * 65 * 1024})
    broken = browser.client.post(path, b"--nope\r\n", content_type="multipart/form-data; boundary=")
    for unreadable in (oversize, broken):
        assert unreadable.status_code == 400
        assert b"Your session has expired" in unreadable.content
    assert browser.is_signed_in()
    assert not Grant.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["sso.logout", "sso.authorized"]).exists()


# --- Keys, hints, consent ---------------------------------------------------------------------


def test_key_rotation_keeps_the_old_kid_in_the_jwks(ada):

    app = add_app()
    browser = signed_in(ada)
    before = full_flow(browser, app)
    old_kid = json.loads(base64.urlsafe_b64decode(before["id_token"].split(".")[0] + "=="))["kid"]
    keys.rotate()
    after = full_flow(browser, app)
    new_kid = json.loads(base64.urlsafe_b64decode(after["id_token"].split(".")[0] + "=="))["kid"]
    assert new_kid != old_kid
    published = {key["kid"] for key in Client().get("/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= published
    # The old token still verifies against the published keys.
    verify_id_token(before["id_token"], app)


def test_an_id_token_hint_for_someone_else_is_login_required(ada):
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    app = add_app()
    hint = full_flow(signed_in(grace), app)["id_token"]
    auth = authorize(signed_in(ada), app, id_token_hint=hint, prompt="none")
    assert auth.params["error"] == "login_required"
    own = full_flow(signed_in(ada), app)["id_token"]
    assert "code" in authorize(signed_in(ada), app, id_token_hint=own).params
    assert authorize(signed_in(ada), app, id_token_hint="garbage").params["error"] == (
        "invalid_request"
    )


def test_consent_only_for_apps_that_require_it(ada):
    app = add_app(require_consent=True)
    browser = signed_in(ada)
    auth = authorize(browser, app)
    assert auth.response.status_code == 200
    assert b"Your email address" in auth.response.content
    path = auth.response.wsgi_request.get_full_path()
    allowed = browser.client.post(
        path, {"csrfmiddlewaretoken": browser.csrf_token(), "allow": "yes"}
    )
    assert "code=" in allowed["Location"]
    assert authorize(browser, app, prompt="none").params["error"] == "consent_required"
    # A first-party app skips it.
    assert "code" in authorize(browser, add_app(name="Mail")).params


Grant = get_grant_model()


def _authorization_form(app: App, **extra: str) -> tuple[str, dict[str, str]]:
    verifier, challenge = pkce()
    form = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email",
        "state": "st",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return verifier, form


def test_an_authorization_request_sent_as_a_form_post_is_answered_as_its_get(ada):
    # OpenID Connect Core §3.1.2.1: GET and POST. The app's page posts the form cross-site,
    # without Threshold's CSRF token (the browser enforces CSRF checks, as Chromium's would).
    app = add_app()
    browser = signed_in(ada)
    verifier, form = _authorization_form(app)
    posted = browser.client.post("/authorize", form)
    assert posted.status_code == 303
    assert dict(parse_qsl(urlsplit(posted["Location"]).query)) == form
    assert urlsplit(posted["Location"]).path == "/authorize"
    assert not Grant.objects.exists()  # the POST itself changes nothing
    answer = browser.get(posted["Location"])
    code = parse_qs(urlsplit(answer["Location"]).query)["code"][0]
    assert exchange(app, code, verifier).status_code == 200
    # Its prompt and max_age count as a GET's do.
    _, form = _authorization_form(app, prompt="none")
    silent = browser.get(browser.client.post("/authorize", form)["Location"])
    assert "code" in parse_qs(urlsplit(silent["Location"]).query)
    anonymous = Browser()
    refused = anonymous.get(anonymous.client.post("/authorize", form)["Location"])
    assert parse_qs(urlsplit(refused["Location"]).query)["error"] == ["login_required"]
    # A body that is no form carries no request: the GET it leads to is the catalog's page.
    grants = Grant.objects.count()
    posted = browser.client.post("/authorize", b'{"client_id": 1}', content_type="application/json")
    assert posted.status_code == 303
    answer = browser.get(posted["Location"])
    assert answer.status_code == 400
    assert b"App Sign-in Link Not Valid" in answer.content
    assert Grant.objects.count() == grants


def test_a_consent_answer_without_the_csrf_token_is_refused(ada):
    app = add_app(require_consent=True)
    browser = signed_in(ada)
    auth = authorize(browser, app)
    assert auth.response.status_code == 200
    path = auth.response.wsgi_request.get_full_path()
    # Another site's form that answers "Allow" for the person: Django's CSRF check refuses it.
    forged = browser.client.post(path, {"allow": "yes"})
    assert forged.status_code == 403
    assert not Grant.objects.exists()
    assert not AuditEvent.objects.filter(action=Action.SSO_AUTHORIZED).exists()


# --- Apps from the command line -----------------------------------------------------------------


def test_apps_add_json_prints_exactly_the_client_id_and_secret(db, capsys):

    assert main(["apps", "add", "Wiki", "--redirect-uri", REDIRECT_URI, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"client_id", "client_secret"}
    app = Application.objects.get(client_id=printed["client_id"])
    # Stored as SHA-256, never as given.
    assert app.client_secret == hashlib.sha256(printed["client_secret"].encode()).hexdigest()
    assert main(["apps", "add", "Spa", "--redirect-uri", REDIRECT_URI, "--public", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["client_secret"] is None


def test_apps_rotate_secret_assign_and_remove(ada, capsys):

    app = add_app()
    assert main(["apps", "rotate-secret", app.client_id, "--json"]) == 0
    secret = json.loads(capsys.readouterr().out)["client_secret"]
    auth = authorize(signed_in(ada), app)
    assert exchange(app, auth.params["code"], auth.verifier).status_code == 401
    app.client_secret = secret
    auth = authorize(signed_in(ada), app)
    assert exchange(app, auth.params["code"], auth.verifier).status_code == 200
    assert main(["apps", "assign", app.client_id]) == 2
    assert main(["apps", "assign", app.client_id, "--group", "Nobody"]) == 2
    do_add_group("Finance", Origin.cli())
    assert main(["apps", "assign", app.client_id, "--group", "finance"]) == 0
    listed = capsys.readouterr()
    assert main(["apps", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["assigned_to"] == ["Finance"]
    do_add_group("Ops", Origin.cli())
    assert main(["apps", "assign", app.client_id, "--group", "finance", "ops"]) == 0
    capsys.readouterr()
    assert main(["apps", "list", "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)[0]["assigned_to"]) == ["Finance", "Ops"]
    assert main(["apps", "assign", app.client_id, "--everyone"]) == 0
    capsys.readouterr()
    assert main(["apps", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["assigned_to"] == "everyone"
    assert main(["apps", "remove", app.client_id]) == 0
    assert not Application.objects.exists()
    assert listed


def test_cleanup_removes_expired_tokens_and_sends_due_logouts(ada, capsys):

    app = add_app()
    full_flow(signed_in(ada), app)
    get_access_token_model().objects.update(expires="2000-01-01T00:00:00Z")
    assert main(["cleanup"]) == 0
    assert not get_access_token_model().objects.exists()
    assert "back-channel logouts" in capsys.readouterr().out


def test_cleanup_keeps_what_apps_still_use_and_removes_what_no_one_can(ada, capsys):
    """What ``threshold cleanup`` does to each kind of row (DOT's clear_expired, then the
    sign-ins nothing refers to): an app active today keeps its session although its access
    token expired; a rotated refresh token is kept until the family expires, so that
    presenting it is still caught as reuse; a session idle for longer than a refresh token
    lives (30 days) and a code never exchanged are removed, with their sign-ins."""
    from datetime import timedelta  # noqa: PLC0415

    from django.utils import timezone  # noqa: PLC0415
    from oauth2_provider.models import get_refresh_token_model  # noqa: PLC0415

    from threshold.sso.models import AppSignIn  # noqa: PLC0415

    now, access_tokens = timezone.now(), get_access_token_model().objects
    app, browser = add_app(), signed_in(ada)
    active = full_flow(browser, app)
    rotated = full_flow(browser, app)
    stale = refresh(app, rotated["refresh_token"]).json()
    idle = full_flow(browser, app)
    assert authorize(browser, app).params["code"]  # never exchanged
    access_tokens.filter(token_checksum=checksum_of(active["access_token"])).update(
        expires=now - timedelta(hours=1)
    )
    access_tokens.filter(token_checksum=checksum_of(idle["access_token"])).update(
        expires=now - timedelta(days=31)
    )
    get_grant_model().objects.update(expires=now - timedelta(minutes=5))
    AppSignIn.objects.update(created_at=now - timedelta(days=2))
    sign_ins = AppSignIn.objects.count()

    assert main(["cleanup"]) == 0
    capsys.readouterr()

    assert not get_grant_model().objects.exists()
    assert not access_tokens.filter(token_checksum=checksum_of(idle["access_token"])).exists()
    assert refresh(app, idle["refresh_token"]).status_code == 400
    # The idle family's sign-in and the code's are gone; the active and rotated ones stay.
    assert AppSignIn.objects.count() == sign_ins - 2
    assert refresh(app, active["refresh_token"]).status_code == 200
    assert get_refresh_token_model().objects.filter(revoked__isnull=False).exists()
    before = AuditEvent.objects.count()
    assert refresh(app, rotated["refresh_token"]).status_code == 400
    [event] = AuditEvent.objects.order_by("id")[before:]
    assert event.reason == "refresh_token_reused"
    # Reuse revoked the family: the token that replaced the rotated one is dead too.
    assert refresh(app, stale["refresh_token"]).status_code == 400


def checksum_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- My apps and Settings ---------------------------------------------------------------------


def test_home_shows_the_apps_the_person_may_use_as_tiles(ada):
    add_app(name="Wiki", initiate_login_uri="https://wiki.example/login")
    finance = add_app(name="Ledger")
    do_add_group("Finance", Origin.cli())
    do_assign_app(finance.application, Origin.cli(), everyone=False, group_names=["Finance"])
    page = signed_in(ada).get("/").content.decode()
    assert '<a href="https://wiki.example/login?iss=http%3A%2F%2Flocalhost%3A8000">Wiki</a>' in page
    assert "Ledger" not in page


def test_settings_signs_the_person_out_of_one_app(ada):
    wiki, mail = add_app(name="Wiki"), add_app(name="Mail")
    browser = signed_in(ada)
    wiki_tokens, mail_tokens = full_flow(browser, wiki), full_flow(browser, mail)
    page = browser.get("/settings").content.decode()
    assert "Apps you're signed in to" in page
    assert "Wiki" in page
    response = browser.post_form(f"/settings/apps/{wiki.application.pk}/sign-out")
    assert response["Location"] == "/settings?done=signed-out-of-app"
    assert refresh(wiki, wiki_tokens["refresh_token"]).status_code == 400
    assert refresh(mail, mail_tokens["refresh_token"]).status_code == 200
    assert "Wiki" not in browser.get("/settings").content.decode().split("Apps you")[1]
    event = AuditEvent.objects.filter(action="sso.tokens_revoked").latest("id")
    assert event.reason == "signed_out_of_app"
    # Another person's app, or none: nothing happens, the same way.
    assert browser.post_form("/settings/apps/999999/sign-out").status_code == 303


def test_the_step_up_offers_only_passkeys_that_meet_the_acr(ada):
    app = add_app()
    browser = signed_in(ada)
    bound = Passkey.objects.get(user=ada.user)
    Passkey.objects.filter(pk=bound.pk).update(attestation_trusted=True)
    synced = Passkey.objects.get(pk=bound.pk)
    synced.pk = None
    synced.credential_id = b"another passkey, synced"
    synced.backup_eligible = True
    synced.save()
    auth = authorize(browser, app, acr_values="phrh")
    public_key, result = sign_in_again(browser, auth.location, ada.authenticator)
    offered = [descriptor["id"] for descriptor in public_key["allowCredentials"]]
    assert offered == [base64.urlsafe_b64encode(bytes(bound.credential_id)).rstrip(b"=").decode()]
    assert public_key["userVerification"] == "required"
    assert_ok(result)


def test_a_step_up_that_still_misses_the_acr_is_unmet(ada):
    app = add_app()
    browser = signed_in(ada)
    Passkey.objects.filter(user=ada.user).update(attestation_trusted=True)
    auth = authorize(browser, app, acr_values="phrh")

    class Downgraded:
        """The passkey loses what made it hardware-bound once offered, before the ceremony
        ends."""

        def get(self, public_key: dict[str, Any], origin: str) -> dict[str, Any]:
            Passkey.objects.filter(user=ada.user).update(attestation_trusted=False)
            return ada.authenticator.get(public_key, origin)

    _, result = sign_in_again(browser, auth.location, Downgraded())
    again = browser.get(assert_ok(result)["redirect"])
    assert "error=unmet_authentication_requirements" in again["Location"]


def test_sign_in_again_offers_no_passkey_when_none_meets_the_acr(ada):
    """None of the person's passkeys meets the acr asked for: the options refuse, rather than
    offer an empty list (which asks the browser for anyone's passkey, WebAuthn §5.5)."""
    app = add_app()
    browser = signed_in(ada)
    authorize(browser, app, acr_values="phrh")
    # (The page says so without a ceremony; a script asks for the options anyway.)
    options = browser.post_json(
        "/authorize/sign-in/options?acr=phrh",
        {},
        **{flow.META_KEY: flow.issue_flow_token(flow.Flow.STEP_UP)},
    )
    assert options.status_code == 400
    assert "publicKey" not in options.json()


def test_prompt_login_when_signed_out_needs_one_sign_in_only(ada):
    app = add_app()
    browser = Browser()
    auth = authorize(browser, app, prompt="login")
    assert auth.location.startswith("/sign-in?next=")
    back = parse_qs(urlsplit(auth.location).query)["next"][0]
    options = browser.post_json("/sign-in/options", {})
    result = browser.post_json(
        "/sign-in/result?" + urlencode({"next": back}),
        ada.authenticator.get(options.json()["publicKey"], ORIGIN),
    )
    again = browser.get(assert_ok(result)["redirect"])
    assert "code=" in again["Location"], again["Location"]


# --- Bad input: a clean OAuth error or a catalog page, never a 500 ------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "client_id=nobody&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A9000%2Fcallback",
        "client_id=%00&response_type=code",
        "client_id=" + "x" * 5000,
    ],
)
def test_authorize_without_a_known_app_is_a_page(ada, query):
    response = signed_in(ada).get("/authorize?" + query)
    assert response.status_code == 400
    assert b"App Sign-in Link Not Valid" in response.content


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        # Only the code flow exists here (discovery's response_types_supported), which
        # oauthlib's "unauthorized_client" did not say.
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "id_token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": "code token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"prompt": "none login"}, "invalid_request"),
    ],
)
def test_authorize_errors_go_back_to_the_app(ada, extra, error):
    app = add_app()
    auth = authorize(signed_in(ada), app, **extra)
    assert auth.response.status_code == 302
    assert auth.params["error"] == error, auth.params
    assert auth.params["iss"] == ISSUER
    assert "code" not in auth.params


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"grant_type": "password", "username": "ada@example.com", "password": "x"},
        {"grant_type": "client_credentials"},
        {"grant_type": "authorization_code", "code": "nope", "code_verifier": "x" * 43},
        {"grant_type": "refresh_token", "refresh_token": "nope"},
        {"grant_type": "authorization_code", "code": "\x00"},
    ],
)
def test_token_bad_input_is_a_clean_oauth_error(ada, data):
    app = add_app()
    data = {"client_id": app.client_id, "client_secret": app.client_secret, **data}
    response = Client().post("/token", data)
    assert response.status_code in (400, 401)
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]
    assert not get_access_token_model().objects.exists()


def test_token_refuses_a_wrong_secret_and_a_json_body(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app)
    wrong = Client().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": auth.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": auth.verifier,
            "client_id": app.client_id,
            "client_secret": "not-the-secret",
        },
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    as_json = Client().post(
        "/token", json.dumps({"grant_type": "authorization_code"}), content_type="application/json"
    )
    assert as_json.status_code in (400, 401)
    assert as_json.json()["error"]
    assert not get_access_token_model().objects.exists()


@pytest.mark.parametrize("with_session", [False, True])
def test_a_token_body_django_will_not_parse_is_an_oauth_error(ada, with_session):
    """Over DATA_UPLOAD_MAX_MEMORY_SIZE (64 KiB), or a broken multipart: RFC 6749 §5.2's JSON,
    which an app reads, not Threshold's page; audited, nothing issued."""
    app = add_app()
    browser = signed_in(ada)
    auth = authorize(browser, app)
    client = browser.client if with_session else Client()
    data = {
        "grant_type": "authorization_code",
        "code": auth.params["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": auth.verifier,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "padding": "x" * (64 * 1024),
    }
    oversize = client.post("/token", data)
    broken = client.post("/token", b"--nope\r\n", content_type="multipart/form-data; boundary=")
    for response in (oversize, broken):
        assert response.status_code == 400, response.content[:200]
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["error"] == "invalid_request"
        assert response["Cache-Control"] == "no-store"
    assert not get_access_token_model().objects.exists()
    assert (
        AuditEvent.objects.filter(action="sso.token_refused", reason="invalid_request").count() == 2
    )
    # The code was not used up: the app's next, well-formed request exchanges it.
    del data["padding"]
    assert Client().post("/token", data).status_code == 200


def test_userinfo_and_revoke_bad_input(ada):
    assert Client().get("/userinfo").status_code == 401
    assert Client().get("/userinfo", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert Client().get("/userinfo", HTTP_AUTHORIZATION="Basic \x00").status_code == 401
    app = add_app()
    unknown = Client().post(
        "/revoke",
        {"token": "nope", "client_id": app.client_id, "client_secret": app.client_secret},
    )
    # RFC 7009 §2.2: an unknown token is answered like a revoked one.
    assert unknown.status_code == 200
    assert Client().post("/revoke", {"token": "nope"}).status_code == 401


USERINFO_TOKEN_IN_QUERY = [
    pytest.param("GET", "?access_token={token}", {}, id="get"),
    pytest.param("GET", "?access_token={token}", {"bearer": True}, id="and-in-the-header"),
    pytest.param("POST", "?access_token={token}", {}, id="post"),
    pytest.param("POST", "?x=1&access%5Ftoken={token}", {"form": True}, id="encoded-and-in-a-form"),
    pytest.param("GET", "?access_token=", {}, id="empty"),
]


@pytest.mark.parametrize(("method", "query", "also"), USERINFO_TOKEN_IN_QUERY)
@pytest.mark.parametrize("stack", ["lean", "full"])
def test_userinfo_refuses_an_access_token_in_the_query(ada, stack, method, query, also, caplog):
    """RFC 9700 §4.3.2, RFC 6750 §2.3: a token in a URL ends up in logs and Referer headers.
    RFC 6750 §3.1's invalid_request (400) with its challenge, in JSON, on the lean path
    (threshold/sso/lean.py) and down the full stack; audited without the token, which is not
    even looked up. The header and a form body keep working."""
    from tests.integration.test_sso_speed import full_stack, shapes  # noqa: PLC0415

    app = add_app()
    token = full_flow(signed_in(ada), app)["access_token"]
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if also.get("bearer") else {}
    data = {"access_token": token} if also.get("form") else {}
    caplog.clear()
    with full_stack() if stack == "full" else contextlib.nullcontext():
        with CaptureQueriesContext(connection) as queries:
            url = "/userinfo" + query.format(token=token)
            if method == "GET":
                response = Client().get(url, **extra)
            else:
                response = Client().post(url, data, **extra)
        assert shapes(queries) == ["INSERT audit_auditevent"]
        assert response.status_code == 400, response.content
        assert response["Content-Type"] == "application/json"
        assert response["Cache-Control"] == "no-store"
        assert response.json()["error"] == "invalid_request"
        assert response["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
        bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        assert Client().get("/userinfo", **bearer).status_code == 200
        assert Client().post("/userinfo", {"access_token": token}).status_code == 200
    [refusal] = AuditEvent.objects.filter(action="sso.token_refused")
    assert (refusal.reason, refusal.detail) == ("token_in_query", {"endpoint": "userinfo"})
    stored = [list(row.values()) for row in AuditEvent.objects.values()]
    assert token not in repr(stored)
    assert token not in caplog.text


def test_end_session_with_a_garbage_hint_is_a_page(ada):
    response = signed_in(ada).get("/end-session?id_token_hint=garbage")
    assert response.status_code == 400
    assert b"App Sign-in Link Not Valid" in response.content


def test_removing_a_person_removes_their_tokens(ada):
    app = add_app()
    full_flow(signed_in(ada), app)
    assert get_access_token_model().objects.exists()
    ada.user.delete()
    assert not get_access_token_model().objects.exists()


def test_cleanup_ends_timed_out_sessions_and_tells_their_apps(
    ada, receiver, clock, django_capture_on_commit_callbacks
):
    app = add_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    claims = full_flow(browser, app)["claims"]
    clock.advance(2 * 3600)  # past the idle timeout; the browser never comes back
    with django_capture_on_commit_callbacks(execute=True):
        assert main(["cleanup"]) == 0
    assert not browser.is_signed_in()
    assert verify_logout_token(receiver.received[0], app)["sid"] == claims["sid"]


def test_keys_from_the_environment_must_be_a_document_of_keys(db, monkeypatch):
    monkeypatch.setenv(keys.ENV_VARIABLE, '{"keys": [{"alg": "RS256", "pem": "not a key"}]}')
    with pytest.raises(keys.KeysError):
        keys.all_keys()
    with pytest.raises(keys.KeysError):
        keys.rotate()
    monkeypatch.setenv(keys.ENV_VARIABLE, "not json")
    with pytest.raises(keys.KeysError):
        keys.all_keys()


def test_several_servers_sign_with_the_keys_of_the_environment(ada, monkeypatch):
    app = add_app()
    shared = keys.rotate().document
    monkeypatch.setenv(keys.ENV_VARIABLE, json.dumps(shared))
    tokens = full_flow(signed_in(ada), app)
    kid = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))["kid"]
    assert kid == shared["keys"][0]["kid"]
    rotation = keys.rotate()
    assert rotation.from_environment
    assert keys.active_key("RS256").kid == kid  # until the environment changes


def test_rp_initiated_logout_accepts_an_expired_hint_after_cleanup(ada, clock):
    post_logout = "http://127.0.0.1:9000/signed-out"
    app = add_app(post_logout_redirect_uris=[post_logout])
    browser = signed_in(ada)
    hint = full_flow(browser, app)["id_token"]
    clock.advance(1800)  # the ID token expired; cleanup ran; the session it was issued in goes on
    assert main(["cleanup"]) == 0
    response = browser.get(
        "/end-session?"
        + urlencode({"id_token_hint": hint, "post_logout_redirect_uri": post_logout})
    )
    assert response.status_code == 302, response.content[:300]
    assert response["Location"] == post_logout
    assert not browser.is_signed_in()


def test_end_session_for_an_unknown_client_is_a_page(ada):
    response = signed_in(ada).get("/end-session?client_id=nobody")
    assert response.status_code == 400


def test_signing_out_revokes_the_sessions_tokens_but_those_it_may_keep(ada):
    """Back-Channel Logout §2.7: a session's end revokes the refresh tokens it gave apps
    without offline_access; "Stay signed in to the app" keeps its own."""
    app = add_app()
    browser = signed_in(ada)
    plain = full_flow(browser, app)
    # Staying signed in is asked first, of every app (OpenID Connect Core §11).
    asked = authorize(browser, app, scope="openid offline_access")
    assert b"Stay signed in to the app" in asked.response.content
    allowed = browser.client.post(
        asked.response.wsgi_request.get_full_path(),
        {"csrfmiddlewaretoken": browser.csrf_token(), "allow": "yes"},
    )
    code = parse_qs(urlsplit(allowed["Location"]).query)["code"][0]
    kept = exchange(app, code, asked.verifier).json()
    other = full_flow(signed_in(ada), app)  # the person's other session is not signed out
    assert browser.post_form("/sign-out").status_code == 303
    assert refresh(app, plain["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(app, kept["refresh_token"]).status_code == 200
    assert refresh(app, other["refresh_token"]).status_code == 200


def test_a_refresh_after_the_session_timed_out_ends_it_without_waiting_for_cleanup(
    ada, receiver, clock, settings, django_capture_on_commit_callbacks
):
    """A refresh token without offline_access lives as long as the Threshold session: one past
    its idle timeout is refused at once and ends the session there (audited, the app told by
    back-channel logout), not an hour later when ``threshold cleanup`` runs; a refresh inside
    the timeouts works, and "Stay signed in to the app" keeps its own."""
    app = add_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    plain = full_flow(browser, app)
    asked = authorize(browser, app, scope="openid offline_access")
    allowed = browser.client.post(
        asked.response.wsgi_request.get_full_path(),
        {"csrfmiddlewaretoken": browser.csrf_token(), "allow": "yes"},
    )
    code = parse_qs(urlsplit(allowed["Location"]).query)["code"][0]
    kept = exchange(app, code, asked.verifier).json()
    clock.advance(settings.THRESHOLD_SESSION_IDLE_TIMEOUT - 60)
    inside = refresh(app, plain["refresh_token"])
    assert inside.status_code == 200, inside.content
    clock.advance(120)  # the browser never came back: past the idle timeout, no cleanup yet
    sessions = Session.objects.filter(user=ada.user).count()
    with django_capture_on_commit_callbacks(execute=True):
        refused = refresh(app, inside.json()["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert AuditEvent.objects.filter(action="sso.token_refused", reason="session_ended").exists()
    assert verify_logout_token(receiver.received[0], app)["sid"] == plain["claims"]["sid"]
    assert Session.objects.filter(user=ada.user).count() == sessions - 1
    assert not browser.is_signed_in()
    assert refresh(app, kept["refresh_token"]).status_code == 200


def test_a_recovery_revokes_every_apps_tokens_and_tells_them(
    ada, receiver, django_capture_on_commit_callbacks
):
    app = add_app(backchannel_logout_uri=receiver.url)
    tokens = full_flow(signed_in(ada), app)
    issued = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(enroll(Browser(), token_of(issued.link), SoftAuthenticator()))
    assert refresh(app, tokens["refresh_token"]).status_code == 400
    assert AuditEvent.objects.filter(action="sso.tokens_revoked", reason="recovered").exists()
    assert verify_logout_token(receiver.received[0], app)["sid"] == tokens["claims"]["sid"]


def test_prompt_consent_asks_even_a_first_party_app(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app, prompt="consent")
    assert auth.response.status_code == 200
    assert b"Allow" in auth.response.content


def test_a_person_taken_out_of_the_apps_group_cannot_refresh(ada):
    app = add_app()
    group = do_add_group("Finance", Origin.cli())
    do_add_member(group, ada.user, Origin.cli())
    do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])
    tokens = full_flow(signed_in(ada), app)
    assert tokens["claims"]["groups"] == ["Finance"]
    # Not through do_remove_member, which revokes the tokens at once (test_sso_assignment.py):
    # the refresh checks the assignment itself.
    Membership.objects.filter(group=group, user=ada.user).delete()
    refused = refresh(app, tokens["refresh_token"])
    assert refused.status_code == 400
    event = AuditEvent.objects.filter(action="sso.token_refused").exclude(reason="invalid_grant")
    assert event.latest("id").reason == "not_assigned"


@pytest.mark.parametrize("client_id", ["\x00", "a\x00b"])
def test_nul_in_a_client_id_is_refused_everywhere(ada, client_id):
    app = add_app()
    assert (
        signed_in(ada).get("/end-session?" + urlencode({"client_id": client_id})).status_code == 400
    )
    response = Client().post("/revoke", {"token": "x", "client_id": client_id})
    assert response.status_code == 401
    response = Client().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": "\x00", "client_id": app.client_id},
    )
    assert response.status_code in (400, 401)
    assert main(["apps", "remove", client_id]) == 2


def test_apps_need_https_uris_except_on_loopback(db, capsys):
    assert main(["apps", "add", "Wiki", "--redirect-uri", "http://wiki.example.com/cb"]) == 2
    assert "must be https" in capsys.readouterr().err
    assert main(["apps", "add", "Wiki", "--redirect-uri", "https://wiki.example.com/cb"]) == 0
    assert main(["apps", "add", "Cli", "--redirect-uri", "http://[::1]:8765/cb", "--public"]) == 0
    assert main(["apps", "add", "Bad", "--redirect-uri", "javascript:alert(1)"]) == 2
    assert main(["apps", "add", "Frag", "--redirect-uri", "https://a.example/cb#x"]) == 2


# --- Findings of the relying-party tests (/work/notes/rp-findings.md) ---------------------------


def test_a_lock_from_the_command_line_sends_its_logouts_before_it_exits(
    ada, django_capture_on_commit_callbacks
):
    server = LogoutReceiver()  # no THRESHOLD_SSO_DELIVER_INLINE: the command decides
    try:
        app = add_app(backchannel_logout_uri=server.url)
        claims = full_flow(signed_in(ada), app)["claims"]
        with django_capture_on_commit_callbacks(execute=True):
            assert main(["users", "lock", "ada@example.com"]) == 0
        assert verify_logout_token(server.received[0], app)["sid"] == claims["sid"]
    finally:
        server.close()
    sent = AuditEvent.objects.get(action="sso.backchannel_logout_sent")
    assert (sent.reason, sent.via) == ("locked", "cli")


def test_a_reused_refresh_token_is_audited_with_the_person(ada):
    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    assert refresh(app, tokens["refresh_token"]).status_code == 200
    before = AuditEvent.objects.count()
    assert refresh(app, tokens["refresh_token"]).status_code == 400
    [event] = AuditEvent.objects.order_by("id")[before:]
    assert (event.action, event.reason, event.subject_id) == (
        "sso.token_refused",
        "refresh_token_reused",
        ada.user.pk,
    )


def _lock(ada, app, here) -> None:
    do_lock_user(ada.user, Origin.cli())


def _recover(ada, app, here) -> None:
    issued = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    assert_ok(enroll(Browser(), token_of(issued.link), SoftAuthenticator()))


def _sign_out_others(ada, app, here) -> None:
    signed_in(ada).post_form("/settings/sessions/sign-out-others")


def _sign_out_of_app(ada, app, here) -> None:
    here.post_form(f"/settings/apps/{app.application.pk}/sign-out")


def _unassign(ada, app, here) -> None:
    do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])


@pytest.mark.parametrize(
    ("revoke", "reason"),
    [
        (_lock, "locked"),
        (_recover, "recovered"),
        (_sign_out_others, "other_sessions_ended"),
        (_sign_out_of_app, "signed_out_of_app"),
        (_unassign, "app_reassigned"),
    ],
)
def test_a_refresh_token_an_action_revoked_is_audited_as_revoked_not_reused(ada, revoke, reason):
    """The family's newest token, revoked by an action, is no theft signal; the token rotation
    replaced before it still is."""
    do_add_group("Finance", Origin.cli())
    app = add_app()
    here = signed_in(ada)
    first = full_flow(here, app)["refresh_token"]
    rotated = refresh(app, first)
    assert rotated.status_code == 200
    newest = rotated.json()["refresh_token"]
    revoke(ada, app, here)
    assert AuditEvent.objects.filter(action="sso.tokens_revoked", reason=reason).exists()

    before = AuditEvent.objects.count()
    refused = refresh(app, newest)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    [event] = AuditEvent.objects.order_by("id")[before:]
    assert (event.action, event.reason, event.subject_id) == (
        "sso.token_refused",
        "refresh_token_revoked",
        ada.user.pk,
    )

    before = AuditEvent.objects.count()
    refused = refresh(app, first)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    [event] = AuditEvent.objects.order_by("id")[before:]
    assert event.reason == "refresh_token_reused"


def test_a_reused_refresh_token_still_revokes_its_family_and_is_audited_as_reuse(ada):
    app = add_app()
    first = full_flow(signed_in(ada), app)["refresh_token"]
    second = refresh(app, first).json()["refresh_token"]
    third = refresh(app, second).json()["refresh_token"]
    before = AuditEvent.objects.count()
    refused = refresh(app, second)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    [event] = AuditEvent.objects.order_by("id")[before:]
    assert event.reason == "refresh_token_reused"
    # The family is revoked: the newest token no longer works.
    assert refresh(app, third).status_code == 400


def test_a_missing_code_challenge_is_audited_with_the_person(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app, code_challenge=None, code_challenge_method=None)
    assert auth.params["error"] == "invalid_request"
    event = AuditEvent.objects.filter(action="sso.refused").latest("id")
    assert (event.subject_id, event.reason) == (ada.user.pk, "pkce_missing")


def form_action(response) -> list[str]:
    policy = response["Content-Security-Policy"]
    directive = next(d for d in policy.split(";") if d.strip().startswith("form-action"))
    return directive.split()[1:]


def test_forms_on_the_way_to_an_app_may_end_at_that_app_only(ada):
    app = add_app(require_consent=True, post_logout_redirect_uris=["http://127.0.0.1:9000/bye"])
    browser = signed_in(ada)
    consent = authorize(browser, app).response
    assert form_action(consent) == ["'self'", "http://127.0.0.1:9000"]
    # Not for a redirect URI the app was not added with, nor for other pages.
    assert form_action(browser.get("/settings")) == ["'self'"]
    next_url = urlsplit(authorize(Browser(), app).location).query
    password_page = Browser().get("/sign-in/password?" + next_url)
    assert form_action(password_page) == ["'self'", "http://127.0.0.1:9000"]
    forged = "/sign-in/password?" + urlencode(
        {"next": f"/authorize?client_id={app.client_id}&redirect_uri=https://evil.example/cb"}
    )
    assert form_action(Browser().get(forged)) == ["'self'"]
    confirm = browser.get(
        "/end-session?"
        + urlencode(
            {"client_id": app.client_id, "post_logout_redirect_uri": "http://127.0.0.1:9000/bye"}
        )
    )
    assert confirm.status_code == 200
    assert form_action(confirm) == ["'self'", "http://127.0.0.1:9000"]


def test_prompt_login_for_someone_without_a_passkey_is_login_required(ada):
    app = add_app()
    browser = signed_in(ada)
    Passkey.objects.filter(user=ada.user).delete()
    auth = authorize(browser, app, prompt="login")
    assert auth.params["error"] == "login_required"


@pytest.mark.django_db(transaction=True)
def test_the_server_retries_failed_logouts_on_its_own(settings):
    settings.THRESHOLD_SSO_DELIVER_INLINE = True
    person = enrolled_person("ada@example.com", "Ada Lovelace")
    server = LogoutReceiver(status=503)
    stop = None
    try:
        app = add_app(backchannel_logout_uri=server.url)
        browser = signed_in(person)
        full_flow(browser, app)
        browser.post_form("/sign-out")
        assert LogoutDelivery.objects.get().attempts == 1
        server.status = 200
        LogoutDelivery.objects.update(next_attempt_at=LogoutDelivery.objects.get().created_at)
        stop = retry_logouts(interval=0.05)
        for _ in range(100):
            if LogoutDelivery.objects.get().delivered_at is not None:
                break
            time.sleep(0.05)
        assert LogoutDelivery.objects.get().delivered_at is not None
    finally:
        if stop is not None:
            stop.set()
        server.close()


def test_removing_a_person_tells_their_apps_once(ada, receiver, django_capture_on_commit_callbacks):
    app = add_app(backchannel_logout_uri=receiver.url)
    claims = full_flow(signed_in(ada), app)["claims"]
    with django_capture_on_commit_callbacks(execute=True):
        ada.user.delete()
    [token] = receiver.received
    logout = verify_logout_token(token, app)
    assert (logout["sid"], logout["sub"]) == (claims["sid"], claims["sub"])
    assert AuditEvent.objects.get(action="sso.backchannel_logout_sent").reason == "removed"


def test_an_id_token_tells_time_by_one_clock(ada, clock):
    clock.advance(7 * 24 * 3600)  # the browser tests move threshold.clock like this
    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    payload = tokens["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert abs(claims["iat"] - clock.now) < 5
    assert claims["exp"] == claims["iat"] + 600
    assert claims["iat"] >= claims["auth_time"]


def test_apps_change_replaces_only_the_settings_given(ada, capsys):
    app = add_app().application
    uris = app.redirect_uris
    assert main(["apps", "change", app.client_id, "--name", "Team wiki"]) == 0
    assert "Changed name of Team wiki." in capsys.readouterr().out
    app.refresh_from_db()
    assert (app.name, app.redirect_uris) == ("Team wiki", uris)
    assert (
        main(["apps", "change", app.client_id, "--redirect-uri", "http://wiki.example.com/cb"]) == 2
    )
    assert "must be https" in capsys.readouterr().err
    assert main(["apps", "change", app.client_id, "--require-consent"]) == 0
    app.refresh_from_db()
    assert (app.require_consent, app.skip_authorization, app.redirect_uris) == (True, False, uris)
    assert (
        main(["apps", "change", app.client_id, "--no-require-consent", "--name", "Team wiki"]) == 0
    )
    assert "Changed require_consent of Team wiki." in capsys.readouterr().out
    assert main(["apps", "change", app.client_id]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert last_event("app.changed").detail["changed"] == ["require_consent"]
    assert main(["apps", "change", "no-such-app", "--name", "X"]) == 2


# --- CORS for browser-based apps (threshold/sso/cors.py) ----------------------------------------


def test_a_browser_app_reads_token_userinfo_and_revoke_from_its_own_origin_only(ada):
    app = add_app(public=True)
    origin = "http://127.0.0.1:9000"  # REDIRECT_URI's
    auth = authorize(signed_in(ada), app)
    tokens = Client().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": auth.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": auth.verifier,
            "client_id": app.client_id,
        },
        HTTP_ORIGIN=origin,
    )
    assert tokens.status_code == 200, tokens.content
    assert tokens["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in tokens  # no cookie is ever read there
    assert "Origin" in tokens["Vary"]
    bearer = f"Bearer {tokens.json()['access_token']}"

    preflight = Client().options(
        "/userinfo",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    claims = Client().get("/userinfo", HTTP_AUTHORIZATION=bearer, HTTP_ORIGIN=origin)
    assert claims.status_code == 200
    assert claims["Access-Control-Allow-Origin"] == origin
    refused = Client().get("/userinfo", HTTP_AUTHORIZATION="Bearer nope", HTTP_ORIGIN=origin)
    assert refused.status_code == 401
    assert refused["Access-Control-Expose-Headers"] == "WWW-Authenticate"

    # Another site's page, and a page at the origin of a confidential app (whose secret is
    # no browser's to hold), read nothing.
    add_app(name="Payroll", redirect_uris=["https://payroll.example.com/cb"])
    for stranger in ("https://evil.example.net", "https://payroll.example.com"):
        answer = Client().get("/userinfo", HTTP_AUTHORIZATION=bearer, HTTP_ORIGIN=stranger)
        assert answer.status_code == 200
        assert "Access-Control-Allow-Origin" not in answer
        asked = Client().options(
            "/token", HTTP_ORIGIN=stranger, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
        assert "Access-Control-Allow-Origin" not in asked
    revoked = Client().post(
        "/revoke",
        {"token": tokens.json()["refresh_token"], "client_id": app.client_id},
        HTTP_ORIGIN=origin,
    )
    assert revoked.status_code == 200
    assert revoked["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    ("uri", "origin"),
    [
        ("https://App.Example.com:443/cb?x=1", "https://app.example.com"),
        ("https://app.example.com:8443/cb", "https://app.example.com:8443"),
        ("http://127.0.0.1:53682/cb", "http://127.0.0.1:53682"),
        ("http://[::1]/cb", "http://[::1]"),
        ("http://localhost:3000/cb", "http://localhost:3000"),
        ("http://app.example.com/cb", None),  # plain http off the loopback
        ("com.example.app:/oauth2redirect", None),  # a native app: no browser origin
        ("https://app.example.com:99999/cb", None),
    ],
)
def test_the_origin_of_a_redirect_uri(uri: str, origin: str | None) -> None:
    assert cors.origin_of(uri) == origin


def test_a_browser_app_reads_why_its_call_was_refused_or_failed(ada):
    add_app(public=True)
    origin = "http://127.0.0.1:9000"  # REDIRECT_URI's
    warm = Client().options("/token", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert warm["Access-Control-Allow-Origin"] == origin
    # A body refused before the view, and the database failing under it: the answers are
    # made around the view, with the origins this process read last.
    huge = Client().post(
        "/token",
        "grant_type=refresh_token&refresh_token=" + "x" * 70_000,
        content_type="application/x-www-form-urlencoded",
        HTTP_ORIGIN=origin,
    )
    assert huge.status_code in (400, 413), huge.status_code
    assert huge["Access-Control-Allow-Origin"] == origin
    with database_fails(at=0):
        down = Client(raise_request_exception=False).post(
            "/token",
            {"grant_type": "refresh_token", "refresh_token": "x"},
            HTTP_ORIGIN=origin,
        )
    assert down.status_code == 503
    assert down.json()["error"] == "temporarily_unavailable"
    assert down["Access-Control-Allow-Origin"] == origin


def test_a_code_exchanged_after_its_session_timed_out_gives_nothing(ada, clock, settings):
    """A code lives a minute; a session given one in its last seconds may time out before
    the app exchanges it: the exchange finds the session past its timeout, ends it there
    (session.expired) and is refused, as a refresh of such a session's token is."""
    app = add_app()
    browser = signed_in(ada)
    full_flow(browser, app)  # the session has its sid
    step = settings.THRESHOLD_SESSION_IDLE_TIMEOUT - 120
    for _ in range((settings.THRESHOLD_SESSION_MAX_AGE - 30) // step):
        clock.advance(step)
        assert browser.get("/settings").status_code == 200  # in use: never idle
    clock.advance((settings.THRESHOLD_SESSION_MAX_AGE - 30) % step)  # 30 s left
    auth = authorize(browser, app)
    assert "code" in auth.params, auth.location
    clock.advance(40)  # the code is still within its minute; the session is not

    response = exchange(app, auth.params["code"], auth.verifier)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    refused = AuditEvent.objects.filter(action="sso.token_refused").latest("id")
    assert refused.reason == "session_ended"
    assert AuditEvent.objects.filter(action="session.expired", subject=ada.user).exists()
    assert not Session.objects.filter(session_key=browser.session_key).exists()
    assert not get_access_token_model().objects.filter(user=ada.user).exists()
