"""Single sign-on: an adversarial review's findings (RFC 6749, 7636, 9700; OpenID Connect Core).

The first tests pin the defects the review confirmed, fixed since (500s from a device-code grant
and an out-of-range port, a code exchanged without its redirect_uri, a verifier outside RFC
7636's syntax, /userinfo for a person who may not sign in). The others pin attacks the provider
already refused that no other test covers. Nothing is mocked: real URLs through Django's test
client, a real database, real signatures.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from tests.integration.test_sso import (
    REDIRECT_URI,
    add_app,
    authorize,
    exchange,
    full_flow,
    pkce,
    refresh,
    signed_in,
)
from threshold.accounts.models import User

pytestmark = pytest.mark.django_db

WEB_REDIRECT_URI = "https://app.example.com/cb"


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def userinfo(access_token: str) -> int:
    return Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- Confirmed defects -----------------------------------------------------------------------


def test_a_code_exchange_without_the_redirect_uri_its_request_named_is_refused(ada):
    app = add_app(public=True)  # one registered redirect URI
    auth = authorize(signed_in(ada), app)  # an OpenID request: it must name its redirect_uri
    response = Client().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": auth.params["code"],
            "code_verifier": auth.verifier,
            "client_id": app.client_id,
        },
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}


@pytest.mark.parametrize("verifier", ["abc", "not unreserved: spaces and !" * 2])
def test_a_code_verifier_outside_rfc7636_syntax_is_refused(ada, verifier):
    app = add_app(public=True)
    auth = authorize(signed_in(ada), app, code_challenge=challenge_of(verifier))
    assert "code" in auth.params, auth.location
    response = exchange(app, auth.params["code"], verifier)
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}


@pytest.mark.parametrize("client_id", ["known", "unknown", None])
def test_the_device_code_grant_is_an_oauth_error_not_a_500(db, client_id):
    app = add_app(public=True)
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "x"}
    if client_id is not None:
        data["client_id"] = app.client_id if client_id == "known" else "no-such-app"
    response = Client(raise_request_exception=False).post("/token", data)
    assert response.status_code in (400, 401), response.content


@pytest.mark.parametrize(
    ("registered", "sent", "mode"),
    [
        (WEB_REDIRECT_URI, "https://app.example.com:99999/cb", "query"),
        (REDIRECT_URI, "http://127.0.0.1:99999/callback", "form_post"),
    ],
    ids=["web-app", "loopback-form-post"],
)
def test_a_redirect_uri_port_out_of_range_is_refused_not_a_500(ada, registered, sent, mode):
    app = add_app(public=True, redirect_uris=[registered])
    browser = signed_in(ada)
    browser.client.raise_request_exception = False
    auth = authorize(browser, app, redirect_uri=sent, response_mode=mode)
    # Not a URI the app registered, and never a code for one: the "not valid" page.
    assert auth.response.status_code == 400, auth.response.status_code


@pytest.mark.parametrize(
    "change", [{"locked_at": timezone.now()}, {"is_active": False}], ids=["locked", "deactivated"]
)
def test_userinfo_refuses_a_token_left_behind_for_a_person_who_cannot_sign_in(ada, change):
    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    User.objects.filter(pk=ada.user.pk).update(**change)
    assert userinfo(tokens["access_token"]) == 401


# --- Attacks that are refused (not covered elsewhere) ------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        "https://app.example.com/cb/",
        "https://app.example.com/CB",
        "https://app.example.com:443/cb",
        "https://app.example.com/x/../cb",
        "https://app.example.com/%63b",
        "https://app.example.com/cb;x",
        "https://app.example.com/cb?x=1",
        "https://app.example.com/cb?",
        "https://app.example.com/cb#",
        "https://evil@app.example.com/cb",
        "https://app.example.com@evil.example/cb",
        "https://app.example.com\\@evil.example/cb",
        "https://app.example.com./cb",
        "http://app.example.com/cb",
        "//app.example.com/cb",
    ],
)
def test_a_redirect_uri_that_is_not_exactly_the_registered_one_gets_a_page(ada, sent):
    app = add_app(public=True, redirect_uris=[WEB_REDIRECT_URI])
    auth = authorize(signed_in(ada), app, redirect_uri=sent)
    assert auth.response.status_code == 400
    assert not auth.response.has_header("Location")


@pytest.mark.parametrize(
    ("registered", "sent", "allowed"),
    [
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:51234/cb", True),  # RFC 8252 §7.3
        ("http://[::1]:8080/cb", "http://[::1]:51234/cb", True),
        ("http://localhost:8080/cb", "http://localhost:51234/cb", False),  # RFC 8252 §8.3
        ("http://127.0.0.1:8080/cb", "https://127.0.0.1:8080/cb", False),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.2:8080/cb", False),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:51234/other", False),
    ],
)
def test_loopback_redirect_uris_take_any_port_and_nothing_else(ada, registered, sent, allowed):
    app = add_app(public=True, redirect_uris=[registered])
    auth = authorize(signed_in(ada), app, redirect_uri=sent)
    if allowed:
        assert auth.response.status_code == 302
        assert auth.location.startswith(sent + "?code=")
        # The code is bound to the port it was sent to.
        other_port = sent.replace(":51234", ":51235")
        refused = exchange(app, auth.params["code"], auth.verifier, redirect_uri=other_port)
        assert refused.status_code == 400
    else:
        assert auth.response.status_code == 400


def test_a_code_is_redeemed_only_by_its_own_app(ada):
    owner = add_app(public=True, name="Owner")
    other_public = add_app(public=True, name="Other")
    other_confidential = add_app(name="Confidential")
    auth = authorize(signed_in(ada), owner)
    for thief in (other_public, other_confidential):
        response = exchange(thief, auth.params["code"], auth.verifier)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    # Neither attempt used the code up for its app.
    assert exchange(owner, auth.params["code"], auth.verifier).status_code == 200


def test_client_authentication_cannot_be_skipped_or_emptied(ada):
    confidential = add_app(name="Confidential")
    public = add_app(public=True, name="Public")
    browser = signed_in(ada)

    auth = authorize(browser, confidential)
    data = {
        "grant_type": "authorization_code",
        "code": auth.params["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": auth.verifier,
        "client_id": confidential.client_id,
    }
    assert Client().post("/token", data).status_code == 401
    assert Client().post("/token", {**data, "client_secret": ""}).status_code == 401
    empty_basic = basic(confidential.client_id, "")
    assert Client().post("/token", data, HTTP_AUTHORIZATION=empty_basic).status_code == 401

    # A public app has no secret: an empty one in Basic is no credential either.
    auth = authorize(browser, public)
    data = {
        "grant_type": "authorization_code",
        "code": auth.params["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": auth.verifier,
    }
    response = Client().post("/token", data, HTTP_AUTHORIZATION=basic(public.client_id, ""))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_a_refresh_cannot_widen_the_scope_and_needs_the_apps_secret(ada):
    app = add_app()
    tokens = full_flow(signed_in(ada), app, scope="openid")
    wider = Client().post(
        "/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "scope": "openid email groups profile",
        },
    )
    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
    unauthenticated = Client().post(
        "/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert unauthenticated.status_code == 401
    refreshed = refresh(app, tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert refreshed.json()["scope"] == "openid"


def test_an_app_cannot_revoke_or_refresh_another_apps_tokens(ada):
    owner = add_app(public=True, name="Owner")
    public = add_app(public=True, name="Public")
    confidential = add_app(name="Confidential")
    tokens = full_flow(signed_in(ada), owner)
    Client().post("/revoke", {"token": tokens["access_token"], "client_id": public.client_id})
    Client().post(
        "/revoke",
        {
            "token": tokens["refresh_token"],
            "client_id": confidential.client_id,
            "client_secret": confidential.client_secret,
        },
    )
    assert refresh(public, tokens["refresh_token"]).status_code == 400
    assert userinfo(tokens["access_token"]) == 200
    assert refresh(owner, tokens["refresh_token"]).status_code == 200


def test_a_replayed_code_ends_the_access_tokens_of_every_refresh_since(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app)
    first = exchange(app, auth.params["code"], auth.verifier).json()
    refreshed = refresh(app, first["refresh_token"]).json()
    assert userinfo(refreshed["access_token"]) == 200
    assert exchange(app, auth.params["code"], auth.verifier).status_code == 400
    assert userinfo(refreshed["access_token"]) == 401
    assert refresh(app, refreshed["refresh_token"]).status_code == 400


def test_token_parameters_in_the_url_are_refused(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app)
    query = urlencode({"client_secret": app.client_secret, "code": auth.params["code"]})
    response = Client().post(
        f"/token?{query}",
        {
            "grant_type": "authorization_code",
            "redirect_uri": REDIRECT_URI,
            "code_verifier": auth.verifier,
            "client_id": app.client_id,
        },
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_form_post_escapes_the_state_it_echoes(ada):
    app = add_app(public=True)
    state = '"><script>alert(1)</script>'
    auth = authorize(signed_in(ada), app, response_mode="form_post", state=state)
    html = auth.response.content.decode()
    assert "<script>alert(1)" not in html
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert "frame-ancestors 'none'" in auth.response["Content-Security-Policy"]
    assert auth.response["X-Frame-Options"] == "DENY"


def test_pkce_is_not_optional_at_the_token_endpoint(ada):
    app = add_app(public=True)
    auth = authorize(signed_in(ada), app)
    without = Client().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": auth.params["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": app.client_id,
        },
    )
    assert without.status_code == 400
    assert exchange(app, auth.params["code"], pkce()[0]).status_code == 400


def test_basic_credentials_with_another_client_id_in_the_body_are_refused_not_a_500(ada):
    """RFC 6749 §2.3.1: a client authenticates one way; a body naming another client than
    the Basic credentials is no client's request."""
    app, other = add_app(name="Wiki"), add_app(name="Chat")
    auth = authorize(signed_in(ada), app)
    data = {
        "grant_type": "authorization_code",
        "code": auth.params["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": auth.verifier,
        "client_id": other.client_id,
    }
    answer = Client().post(
        "/token", data, HTTP_AUTHORIZATION=basic(app.client_id, app.client_secret)
    )
    assert answer.status_code in (400, 401), answer.content[:300]
    assert answer.json()["error"] in ("invalid_client", "invalid_request")


def test_userinfo_answers_are_kept_by_no_cache(ada):
    tokens = full_flow(signed_in(ada), add_app())
    answer = Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert answer.status_code == 200
    assert answer["Cache-Control"] == "no-store"


@pytest.mark.parametrize("named", [False, True], ids=["named-none", "named-one"])
def test_a_plain_oauth_codes_exchange_names_the_redirect_uri_if_its_request_did(ada, named):
    """RFC 6749 §4.1.3: "redirect_uri: REQUIRED, if the redirect_uri parameter was included in
    the authorization request", for a plain OAuth request as for an OpenID one; one that named
    none (§3.1.2.3: the app's one registered URI) is exchanged without one."""
    app = add_app()
    extra = {} if named else {"redirect_uri": None}
    auth = authorize(signed_in(ada), app, scope="profile", **extra)
    assert auth.response.status_code == 302, auth.response.content[:300]
    data = {
        "grant_type": "authorization_code",
        "code": auth.params["code"],
        "code_verifier": auth.verifier,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
    }
    answer = Client().post("/token", data)
    if not named:
        assert answer.status_code == 200, answer.content[:300]
        return
    assert answer.status_code == 400, answer.content[:300]
    assert answer.json()["error"] in {"invalid_request", "invalid_grant"}
