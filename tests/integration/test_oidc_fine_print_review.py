"""Outside review: the OpenID Connect provider against the specifications' fine print.

What the OpenID Foundation's conformance suite (Basic and Config OP, with PKCE) and strict
relying parties check, driven in-process through /authorize, /token, /userinfo, /revoke,
/end-session, discovery and the JWKS: OpenID Connect Core 1.0 §3.1.2.1 (prompt and its
combinations, max_age/auth_time, id_token_hint, login_hint, ui_locales, acr_values, claims,
request/request_uri/registration), §3.1.2.6 errors with state and iss, §3.1.3.3/§3.1.3.7 the
token response and ID token (iss, aud, exp/iat, nonce echoed, at_hash, auth_time), §5.3 UserInfo
(header, body, query; bad, expired and revoked tokens), §5.4 scopes, §12 refresh; Discovery 1.0
§3/§4; RFC 6749 §4.1.2.1, §4.1.3 and §5.2; RFC 7636; RFC 7009; RFC 9207; response modes; and
RP-Initiated and Back-Channel Logout 1.0.

Each test under "Defects" is one the review found, fixed since; the last test pins a property
the suite checks and no other test shows (at_hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from jwcrypto import jwk, jwt

from tests.integration.conftest import Browser, Person, sign_in
from threshold.audit.actions import Origin
from threshold.sso.actions import NewApp, do_add_app

APP_URI = "https://app.example.com/cb"
SPA_ORIGIN = "https://spa.example.com"
SPA_URI = SPA_ORIGIN + "/callback"
FORM = "application/x-www-form-urlencoded"


# --- Set-up -------------------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    """A code_verifier (64 unreserved characters) and its S256 code_challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def app(db: Any) -> NewApp:
    """A confidential web app, as `threshold apps add "Wiki" --redirect-uri ...` adds it."""
    return do_add_app("Wiki", Origin.cli(), redirect_uris=[APP_URI])


@pytest.fixture
def signed_in(ada: Person) -> Browser:
    browser = Browser()
    response = sign_in(browser, ada.authenticator)
    assert response.status_code == 200, response.content
    return browser


def authorize(
    browser: Browser, client_id: str, redirect_uri: str = APP_URI, **params: str | None
) -> tuple[dict[str, str], str]:
    """The authorization response's parameters (query or fragment), and the code_verifier."""
    verifier, challenge = pkce()
    query: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile email",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    response = browser.get(
        "/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})
    )
    assert response.status_code == 302, (response.status_code, response.content[:300])
    location = urlsplit(response["Location"])
    answer = {k: v[0] for k, v in parse_qs(location.query or location.fragment).items()}
    return answer, verifier


def basic(app: NewApp, secret: str | None = None) -> str:
    raw = f"{app.application.client_id}:{app.client_secret if secret is None else secret}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def exchange(app: NewApp, code: str, verifier: str, **extra: str | None) -> Any:
    """The code's exchange at /token, the app authenticated with client_secret_basic."""
    data: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": APP_URI,
        "code_verifier": verifier,
        **extra,
    }
    body = urlencode({k: v for k, v in data.items() if v is not None})
    return Client().post("/token", body, content_type=FORM, HTTP_AUTHORIZATION=basic(app))


def code_of(browser: Browser, app: NewApp, **params: str | None) -> tuple[str, str]:
    answer, verifier = authorize(browser, app.application.client_id, **params)
    assert "code" in answer, answer
    return answer["code"], verifier


def verified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ID token's header and claims, its signature checked against the published JWKS."""
    keys = jwk.JWKSet.from_json(Client().get("/jwks").content)
    claims = json.loads(jwt.JWT(jwt=token, key=keys, check_claims={}).claims)
    header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    return header, claims


# --- Defects ------------------------------------------------------------------------------


def test_a_single_page_app_can_read_the_token_and_userinfo_answers(signed_in: Browser) -> None:
    # OAuth 2.0 for Browser-Based Apps: the token endpoint must support CORS for a browser
    # app's origin (as Keycloak's web origins and Okta's trusted origins do). Discovery and the
    # JWKS already send Access-Control-Allow-Origin.
    spa = do_add_app("Board", Origin.cli(), redirect_uris=[SPA_URI], public=True)
    client_id = spa.application.client_id
    answer, verifier = authorize(signed_in, client_id, SPA_URI, scope="openid")
    # fetch(tokenEndpoint, {method: "POST", body: URLSearchParams}): a simple request, no
    # preflight; the browser hands the answer to the app only with Access-Control-Allow-Origin.
    token = Client().post(
        "/token",
        urlencode(
            {
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": SPA_URI,
                "code_verifier": verifier,
                "client_id": client_id,
            }
        ),
        content_type=FORM,
        HTTP_ORIGIN=SPA_ORIGIN,
    )
    assert token.status_code == 200, token.content
    assert token.get("Access-Control-Allow-Origin") in (SPA_ORIGIN, "*")
    # fetch(userinfoEndpoint, {headers: {Authorization: "Bearer ..."}}): preflighted.
    preflight = Client().options(
        "/userinfo",
        HTTP_ORIGIN=SPA_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert preflight.get("Access-Control-Allow-Origin") in (SPA_ORIGIN, "*")
    assert "authorization" in preflight.get("Access-Control-Allow-Headers", "").lower()


def test_a_public_app_using_pkce_without_a_nonce_gets_a_code(signed_in: Browser) -> None:
    # Core §3.1.2.1: nonce is OPTIONAL for the code flow (REQUIRED only for implicit/hybrid).
    # RFC 9700 §2.1.1: public clients use PKCE against code injection; nonce is the alternative
    # for confidential clients. node_modules/openid-client/README.md (6.9.1) builds the request
    # with code_challenge and no nonce (nor state) once serverMetadata().supportsPKCE().
    native = do_add_app("Desk", Origin.cli(), redirect_uris=["http://127.0.0.1/cb"], public=True)
    answer, _ = authorize(
        signed_in,
        native.application.client_id,
        "http://127.0.0.1:53682/cb",
        scope="openid",
        nonce=None,
        state=None,
    )
    assert "code" in answer, answer


def test_a_code_exchanged_with_the_wrong_redirect_uri_is_invalid_grant(
    app: NewApp, signed_in: Browser
) -> None:
    # RFC 6749 §5.2 invalid_grant: the authorization grant "does not match the redirection URI
    # used in the authorization request". README, Single sign-on: "a code exchanged without the
    # redirect_uri its request named [gets] invalid_grant".
    code, verifier = code_of(signed_in, app)
    other = exchange(app, code, verifier, redirect_uri="https://app.example.com/other")
    missing = exchange(app, code, verifier, redirect_uri=None)
    assert (other.status_code, other.json()["error"]) == (400, "invalid_grant")
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_grant")


def test_a_wrong_basic_secret_is_challenged_with_basic(app: NewApp) -> None:
    # RFC 6749 §5.2 invalid_client: "If the client attempted to authenticate via the
    # "Authorization" request header field, the authorization server MUST respond with an HTTP
    # 401 (Unauthorized) status code and include the WWW-Authenticate response header field
    # matching the authentication scheme used by the client." (/introspect already does.)
    wrong = basic(app, "not-the-secret")
    token = Client().post(
        "/token",
        urlencode({"grant_type": "refresh_token", "refresh_token": "x"}),
        content_type=FORM,
        HTTP_AUTHORIZATION=wrong,
    )
    revoke = Client().post(
        "/revoke", urlencode({"token": "x"}), content_type=FORM, HTTP_AUTHORIZATION=wrong
    )
    for response in (token, revoke):
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
        assert response["WWW-Authenticate"].startswith("Basic")


def test_userinfo_refuses_a_token_without_openid_as_insufficient_scope(
    app: NewApp, signed_in: Browser
) -> None:
    # Core §5.3: the UserInfo Endpoint takes an access token from an OpenID Connect request.
    # RFC 6750 §3.1: a valid token lacking the scope is insufficient_scope, 403; invalid_token
    # (401) tells the app its token is dead, and a refresh gives it the same scopes again.
    code, verifier = code_of(signed_in, app, scope="profile")
    tokens = exchange(app, code, verifier)
    assert tokens.status_code == 200, tokens.content
    assert "id_token" not in tokens.json()
    access_token = tokens.json()["access_token"]
    response = Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")
    assert response.status_code == 403, (response.status_code, response.content)
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]


# --- Pinned -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_at_hash_is_the_left_half_of_the_access_tokens_sha256(signed_in: Browser, alg: str) -> None:
    # Core §3.1.3.6: at_hash is the base64url of the left-most half of the hash of the access
    # token's ASCII octets, with the hash of the ID token's alg (SHA-256 for RS256 and ES256).
    # The conformance suite validates it whenever it is present (ValidateAtHash); a strict RP
    # (openid-client, oauth4webapi) fails the sign-in on a wrong one.
    app = do_add_app(f"App {alg}", Origin.cli(), redirect_uris=[APP_URI], id_token_alg=alg)
    code, verifier = code_of(signed_in, app)
    tokens = exchange(app, code, verifier).json()
    header, claims = verified(tokens["id_token"])
    digest = hashlib.sha256(tokens["access_token"].encode("ascii")).digest()
    assert header["alg"] == alg
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
