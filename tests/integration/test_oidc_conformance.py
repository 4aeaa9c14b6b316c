"""What the OpenID Foundation conformance suite checks of a code-flow OP, one test per module.

Each test is named after the suite's module it mirrors (openid-certification/conformance-suite,
``net.openid.conformance.openid``): the Basic OP plan (``oidcc-basic-certification-test-plan``),
Config OP (``oidcc-discovery-endpoint-verification``), RP-Initiated Logout
(``oidcc-rp-initiated-logout-certification-test-plan``) and Back-Channel Logout
(``oidcc-backchannel-rp-initiated-logout``). Only what Threshold answers as the suite expects,
and no existing test in test_sso*.py already shows, is here. The suite's own clients send no
PKCE except in ``oidcc-ensure-request-with-valid-pkce-succeeds``; these tests send it, since
Threshold requires it of every app (the README's "Single sign-on"), so they show the behaviour
each module looks for after its authorization request has been answered.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from tests.integration.conftest import Browser
from tests.integration.test_sso import (
    ISSUER,
    REDIRECT_URI,
    App,
    add_app,
    authorize,
    exchange,
    full_flow,
    refresh,
    signed_in,
    verify_id_token,
    verify_logout_token,
)

pytestmark = pytest.mark.django_db

POST_LOGOUT = "http://127.0.0.1:9000/post_logout_redirect"
# AbstractOIDCCRpInitiatedLogout asks for a 128-character state "to check OP doesn't corrupt it".
LONG_STATE = "s" * 128
BACKCHANNEL_LOGOUT = "http://schemas.openid.net/event/backchannel-logout"


def claims_of(app: App, auth: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token response and its verified ID token's claims, for a successful authorization."""
    assert auth.response.status_code == 302, auth.response.content[:300]
    assert auth.params.get("state") == auth.state
    assert "code" in auth.params, auth.params
    response = exchange(app, auth.params["code"], auth.verifier)
    assert response.status_code == 200, response.content
    tokens = response.json()
    return tokens, verify_id_token(tokens["id_token"], app)


def userinfo(access_token: str) -> Any:
    return Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")


def title_of(response: Any) -> str:
    found = re.search(rb"<title>(.*?)</title>", response.content)
    assert found is not None, response.content[:300]
    return found.group(1).decode()


# --- Config OP ---------------------------------------------------------------------------------


def test_oidcc_discovery_endpoint_verification(db):
    """OIDCCDiscoveryEndpointVerification's checks that test_sso's discovery test leaves out."""
    response = Client().get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    document = response.json()
    assert document["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert document["subject_types_supported"] == ["public"]
    assert "openid" in document["scopes_supported"]
    # CheckDiscEndpointScopesSupportedSyntax: RFC 6749 §3.3 scope tokens.
    assert all(re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", s) for s in document["scopes_supported"])
    assert isinstance(document["grant_types_supported"], list)
    assert "authorization_code" in document["grant_types_supported"]
    assert isinstance(document["code_challenge_methods_supported"], list)
    assert {"sub", "iss", "aud", "exp", "iat"} <= set(document["claims_supported"])
    assert document["claims_parameter_supported"] is False
    assert document["request_parameter_supported"] is False
    assert document["request_uri_parameter_supported"] is False
    # CheckDiscEndpointAllEndpointsAreHttps compares every *_endpoint with the issuer's scheme.
    endpoints = [v for k, v in document.items() if k.endswith(("_endpoint", "_uri"))]
    assert all(url.startswith(ISSUER + "/") for url in endpoints), endpoints
    # EnsureServerJwksDoesNotContainPrivateOrSymmetricKeys, CheckForKeyIdInServerJWKs.
    keys = Client().get(document["jwks_uri"].removeprefix(ISSUER)).json()["keys"]
    assert keys
    for key in keys:
        assert key["kty"] in {"RSA", "EC"}
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & key.keys()
        assert key["kid"]


@pytest.mark.parametrize(
    "module",
    [
        "oidcc-rp-initiated-logout-discovery-endpoint-verification",
        "oidcc-backchannel-logout-discovery-endpoint-verification",
    ],
)
def test_oidcc_logout_discovery_endpoint_verification(db, module):
    """The logout plans' discovery checks: end_session_endpoint on the issuer, and for
    back-channel logout both flags (certification requires the sid)."""
    document = Client().get("/.well-known/openid-configuration").json()
    assert document["end_session_endpoint"] == f"{ISSUER}/end-session"
    if module.startswith("oidcc-backchannel"):
        assert document["backchannel_logout_supported"] is True
        assert document["backchannel_logout_session_supported"] is True


# --- Basic OP: the authorization request --------------------------------------------------------


def test_oidcc_response_type_missing(ada):
    """No response_type: an error back to the app (invalid_request), with its state."""
    app = add_app()
    auth = authorize(signed_in(ada), app, response_type=None)
    assert auth.response.status_code == 302
    assert auth.location.startswith(REDIRECT_URI)
    assert auth.params["error"] == "invalid_request"
    assert auth.params["state"] == auth.state
    assert auth.params["iss"] == ISSUER
    assert "code" not in auth.params


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(ada):
    """A confidential app may leave out the nonce in the code flow (Core §3.1.2.1); the ID
    token then has none."""
    app = add_app()
    _, claims = claims_of(app, authorize(signed_in(ada), app, nonce=None))
    assert "nonce" not in claims


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"display": "page"}, id="oidcc-display-page"),
        pytest.param({"display": "popup"}, id="oidcc-display-popup"),
        pytest.param({"login_hint": "ada@example.com"}, id="oidcc-login-hint"),
        pytest.param({"ui_locales": "se"}, id="oidcc-ui-locales"),
        pytest.param({"claims_locales": "se"}, id="oidcc-claims-locales"),
        pytest.param(
            {"extra": "foobar"}, id="oidcc-ensure-request-with-unknown-parameter-succeeds"
        ),
    ],
)
def test_oidcc_optional_parameters_do_not_make_the_request_fail(ada, extra):
    """Parameters an OP may ignore (Core §3.1.2.1; RFC 6749 §3.1 for unknown ones) do not
    turn a signed-in person's authorization into an error."""
    app = add_app()
    _, claims = claims_of(app, authorize(signed_in(ada), app, **extra))
    assert claims["sub"]


def test_oidcc_ensure_request_with_acr_values_succeeds(ada):
    """The suite sends discovery's acr_values_supported; a person whose sign-in meets one of
    them is not asked again, and the ID token's acr is one of them (else a warning)."""
    app = add_app()
    supported = Client().get("/.well-known/openid-configuration").json()["acr_values_supported"]
    auth = authorize(signed_in(ada), app, acr_values=" ".join(supported))
    _, claims = claims_of(app, auth)
    assert claims["acr"] in supported


def test_oidcc_prompt_none_logged_in(ada):
    """prompt=none with a session: a code, for the same sign-in (sub, sid, auth_time)."""
    app = add_app()
    browser = signed_in(ada)
    first = full_flow(browser, app)["claims"]
    _, again = claims_of(app, authorize(browser, app, prompt="none"))
    assert (again["sub"], again["sid"], again["auth_time"]) == (
        first["sub"],
        first["sid"],
        first["auth_time"],
    )


def test_oidcc_max_age_10000(ada, clock):
    """A sign-in younger than max_age is not repeated, and the ID token carries auth_time
    (Core §3.1.2.1: REQUIRED when max_age was sent)."""
    app = add_app()
    browser = signed_in(ada)
    first = full_flow(browser, app)["claims"]
    clock.advance(60)
    auth = authorize(browser, app, max_age="10000")
    assert not auth.location.startswith("/authorize/sign-in"), auth.location
    _, claims = claims_of(app, auth)
    assert claims["auth_time"] == first["auth_time"]


def test_oidcc_id_token_hint(ada):
    """The suite's second request: prompt=none with the ID token it was given as the hint."""
    app = add_app()
    browser = signed_in(ada)
    first = full_flow(browser, app)
    auth = authorize(browser, app, prompt="none", id_token_hint=first["id_token"])
    _, claims = claims_of(app, auth)
    assert claims["sub"] == first["claims"]["sub"]


def test_oidcc_redirect_uri_query_ok(ada):
    """A redirect URI registered with a query: the code is added to it, the query kept."""
    registered = REDIRECT_URI + "?foo=bar"
    app = add_app(redirect_uris=[registered])
    auth = authorize(signed_in(ada), app, redirect_uri=registered)
    assert auth.response.status_code == 302
    assert auth.location.startswith(registered + "&")
    assert auth.params["foo"] == "bar"
    assert "code" in auth.params
    tokens = exchange(app, auth.params["code"], auth.verifier, redirect_uri=registered)
    assert tokens.status_code == 200, tokens.content


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(REDIRECT_URI + "?foo=baz", id="oidcc-redirect-uri-query-mismatch"),
        pytest.param(REDIRECT_URI + "?foo=bar&bar=foo", id="oidcc-redirect-uri-query-added"),
    ],
)
def test_oidcc_redirect_uri_query_not_registered_is_a_page(ada, sent):
    """Not the registered URI, query included (Core §3.1.2.1 simple string comparison): a
    page, never a redirect to it."""
    app = add_app(redirect_uris=[REDIRECT_URI + "?foo=bar"])
    auth = authorize(signed_in(ada), app, redirect_uri=sent)
    assert auth.response.status_code == 400
    assert not auth.response.has_header("Location")
    assert title_of(auth.response).startswith("App Sign-in Link Not Valid")


# --- Basic OP: token, userinfo, scopes, refresh ------------------------------------------------


def test_oidcc_server_client_secret_basic(ada):
    """oidcc-server in the plan's client_secret_basic variant: the credentials in the
    Authorization header (RFC 6749 §2.3.1, form-encoded), none in the body; RFC 6749 §5.1's
    answer."""
    app = add_app()
    auth = authorize(signed_in(ada), app)
    credentials = base64.b64encode(f"{app.client_id}:{app.client_secret}".encode()).decode()
    response = Client().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": auth.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": auth.verifier,
        },
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert isinstance(tokens["expires_in"], int)
    assert tokens["expires_in"] > 0
    claims = verify_id_token(tokens["id_token"], app)
    assert claims["nonce"] == auth.nonce
    assert claims["exp"] > claims["iat"]


@pytest.mark.parametrize(
    "method",
    ["oidcc-userinfo-get", "oidcc-userinfo-post-header", "oidcc-userinfo-post-body"],
)
def test_oidcc_userinfo(ada, method):
    """The access token in the header with GET or POST, or in a form body (RFC 6750 §2.1,
    §2.2): the same JSON, whose sub is the ID token's (Core §5.3.2)."""
    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}
    if method == "oidcc-userinfo-get":
        response = Client().get("/userinfo", **bearer)
    elif method == "oidcc-userinfo-post-header":
        response = Client().post("/userinfo", **bearer)
    else:
        response = Client().post("/userinfo", {"access_token": tokens["access_token"]})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["sub"] == tokens["claims"]["sub"]


def test_oidcc_scope_email(ada):
    """VerifyScopesReturnedInUserInfoClaims: the email scope's claims, all of them."""
    app = add_app()
    tokens, _ = claims_of(app, authorize(signed_in(ada), app, scope="openid email"))
    answer = userinfo(tokens["access_token"]).json()
    assert answer["email"] == "ada@example.com"
    # Her link was handed over, not emailed (tests/integration/test_sso.py has both).
    assert answer["email_verified"] is False


def test_oidcc_ensure_other_scope_order_succeeds(ada):
    """Scopes are a set (RFC 6749 §3.3): "email openid" is "openid email"."""
    app = add_app()
    tokens, claims = claims_of(app, authorize(signed_in(ada), app, scope="email openid"))
    assert set(tokens["scope"].split()) == {"openid", "email"}
    assert userinfo(tokens["access_token"]).json()["sub"] == claims["sub"]


def test_oidcc_refresh_token(ada):
    """A refresh token is bound to its app (RFC 6749 §6): another app's credentials get
    invalid_grant. The refreshed ID token names the same person, sign-in and app (Core §12.2)."""
    app = add_app()
    other = add_app(name="Other")
    first = full_flow(signed_in(ada), app)
    stolen = refresh(other, first["refresh_token"])
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    response = refresh(app, first["refresh_token"])
    assert response.status_code == 200, response.content
    refreshed = response.json()
    assert re.fullmatch(r"[\x20-\x7e]+", refreshed["refresh_token"])  # RFC 6749 A.17
    claims = verify_id_token(refreshed["id_token"], app)
    for name in ("iss", "sub", "aud", "auth_time", "sid"):
        assert claims[name] == first["claims"][name], name
    assert userinfo(refreshed["access_token"]).json()["sub"] == claims["sub"]


# --- RP-Initiated Logout ---------------------------------------------------------------------


def logout_app(**kwargs: Any) -> App:
    return add_app(post_logout_redirect_uris=[POST_LOGOUT], **kwargs)


def end_session(browser: Browser, **params: str) -> Any:
    return browser.get("/end-session" + ("?" + urlencode(params) if params else ""))


def assert_logged_out(browser: Browser, app: App) -> None:
    """The suite's last step in every logout module: prompt=none must now need a sign-in."""
    assert not browser.is_signed_in()
    auth = authorize(browser, app, prompt="none")
    assert auth.params["error"] == "login_required"
    assert auth.params["state"] == auth.state


def test_oidcc_rp_initiated_logout(ada):
    """The long state comes back unchanged, and the person is signed out."""
    app = logout_app()
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    response = end_session(
        browser,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri=POST_LOGOUT,
        state=LONG_STATE,
    )
    assert response.status_code == 302
    assert response["Location"] == f"{POST_LOGOUT}?state={LONG_STATE}"
    assert_logged_out(browser, app)


def test_oidcc_rp_initiated_logout_no_state(ada):
    """No state: the redirect adds none (CheckForUnexpectedParametersInPostLogoutRedirect)."""
    app = logout_app()
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    response = end_session(
        browser, id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT
    )
    assert response.status_code == 302
    assert response["Location"] == POST_LOGOUT
    assert_logged_out(browser, app)


def test_oidcc_rp_initiated_logout_no_post_logout_redirect_uri(ada):
    """A hint and a state but nowhere to go back to: the signed-out page."""
    app = logout_app()
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    response = end_session(browser, id_token_hint=tokens["id_token"], state=LONG_STATE)
    assert response.status_code == 200
    assert title_of(response).startswith("Signed out")
    assert_logged_out(browser, app)


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param("none", id="oidcc-rp-initiated-logout-no-id-token-hint"),
        pytest.param("alg-none", id="oidcc-rp-initiated-logout-modified-id-token-hint"),
    ],
)
def test_oidcc_rp_initiated_logout_without_a_valid_hint_never_redirects(ada, hint):
    """No hint, or one changed to alg "none": never the post-logout redirect (RP-Initiated
    Logout §3), an error page instead, and the person is still signed in."""
    app = logout_app()
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    params = {"post_logout_redirect_uri": POST_LOGOUT, "state": LONG_STATE}
    if hint == "alg-none":
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
        params["id_token_hint"] = f"{header.decode()}.{tokens['id_token'].split('.')[1]}."
    response = end_session(browser, **params)
    assert response.status_code == 400
    assert not response.has_header("Location")
    assert title_of(response).startswith("App Sign-in Link Not Valid")
    assert browser.is_signed_in()


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="oidcc-rp-initiated-logout-no-params"),
        pytest.param({"state": LONG_STATE}, id="oidcc-rp-initiated-logout-only-state"),
    ],
)
def test_oidcc_rp_initiated_logout_without_a_hint_asks_then_signs_out(ada, params):
    """Nothing that names the app: the person is asked (RP-Initiated Logout §2, "SHOULD ask
    the End-User"), and their answer signs them out to the signed-out page, never to an app."""
    app = logout_app()
    browser = signed_in(ada)
    full_flow(browser, app)
    asked = end_session(browser, **params)
    assert asked.status_code == 200
    assert title_of(asked).startswith("Sign out")
    assert browser.is_signed_in()
    answered = browser.client.post(
        asked.wsgi_request.get_full_path(),
        {"csrfmiddlewaretoken": browser.csrf_token(), "allow": "true", **params},
    )
    assert answered.status_code == 200, answered.get("Location")
    assert title_of(answered).startswith("Signed out")
    assert_logged_out(browser, app)


# --- Back-Channel Logout -----------------------------------------------------------------------


def test_oidcc_backchannel_rp_initiated_logout(ada, receiver, django_capture_on_commit_callbacks):
    """RP-initiated logout tells the app's back-channel endpoint, with a logout token the
    suite's ValidateLogoutTokenClaims accepts (Back-Channel Logout §2.4), and still sends the
    browser back with its state."""
    app = logout_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    with django_capture_on_commit_callbacks(execute=True):
        response = end_session(
            browser,
            id_token_hint=tokens["id_token"],
            post_logout_redirect_uri=POST_LOGOUT,
            state=LONG_STATE,
        )
    assert response["Location"] == f"{POST_LOGOUT}?state={LONG_STATE}"
    assert len(receiver.received) == 1
    logout = verify_logout_token(receiver.received[0], app)
    assert logout["events"] == {BACKCHANNEL_LOGOUT: {}}
    assert logout["jti"]
    assert logout["iat"] >= tokens["claims"]["iat"]
    assert logout["sid"] == tokens["claims"]["sid"]
    assert logout["sub"] == tokens["claims"]["sub"]
    assert_logged_out(browser, app)
