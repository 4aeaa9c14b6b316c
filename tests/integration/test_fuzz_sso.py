"""An outside tester's pass over the OpenID Connect provider (threshold/sso/): values a fuzzer
sends to /authorize and to Settings' "Sign out of this app".

Each gets the protocol's own answer: ``invalid_request`` at the app's registered redirect URI,
with ``state`` and ``iss`` (RFC 6749 §4.1.2.1, RFC 9207), or the catalog's page when the
redirect URI cannot be trusted; never a 500, and nothing is stored for a refused request (no
grant, no sign-in's facts, no token, no ``sso.authorized`` row), on the lean /authorize
(threshold/sso/lean.py) and down the full stack alike.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from tests.integration.conftest import Browser, Person, assert_ok, sign_in
from tests.integration.test_sso import ISSUER, REDIRECT_URI, App, add_app, full_flow, pkce
from tests.integration.test_sso_speed import full_stack
from threshold.audit.actions import Action
from threshold.audit.models import AuditEvent
from threshold.sso.lean import LeanTokenMiddleware
from threshold.sso.models import AppSignIn
from threshold.sso.validator import Validator

pytestmark = pytest.mark.django_db


# --- Helpers -----------------------------------------------------------------------------------


def signed_in(person: Person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def query(app: App, **extra: str) -> str:
    _, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "the-state",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return "/authorize?" + urlencode(params)


def stored() -> dict[str, Any]:
    """What an authorization or a sign-out of an app writes."""
    return {
        "grants": get_grant_model().objects.count(),
        "sign-ins": AppSignIn.objects.count(),
        "access tokens": get_access_token_model().objects.count(),
        "live refresh tokens": get_refresh_token_model()
        .objects.filter(revoked__isnull=True)
        .count(),
        "authorized": AuditEvent.objects.filter(action=Action.SSO_AUTHORIZED).count(),
        "revoked": AuditEvent.objects.filter(action=Action.SSO_TOKENS_REVOKED).count(),
    }


def refused_to_app(response: Any, error: str = "invalid_request") -> dict[str, str]:
    """A redirect to the app's registered URI carrying ``error``, the request's state and
    ``iss``, and no code; its parameters."""
    assert response.status_code == 302, (response.status_code, response.content[:300])
    location = response["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["error"] == error, params
    assert params["state"] == "the-state", params
    assert params["iss"] == ISSUER, params
    assert "code" not in params, params
    return params


def last_refusal() -> str:
    event = AuditEvent.objects.filter(action=Action.SSO_REFUSED).latest("id")
    return str(event.reason)


@pytest.fixture
def lean_path_taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each /authorize was answered by the lean path (observed, not changed)."""
    taken: list[bool] = []
    authorize = LeanTokenMiddleware.authorize

    def observed(self: LeanTokenMiddleware, request: Any) -> Any:
        response = authorize(self, request)
        taken.append(response is not None)
        return response

    monkeypatch.setattr(LeanTokenMiddleware, "authorize", observed)
    return taken


# --- max_age: digits int() does not read -------------------------------------------------------


@pytest.mark.parametrize("max_age", ["\u00b2", "\u0661\u0662", "1\u00b2", "\uff11"])
@pytest.mark.parametrize("person_signed_in", [False, True])
def test_a_max_age_of_non_ascii_digits_is_invalid_request(ada, max_age, person_signed_in):
    """str.isdigit() is True for "²", Arabic-Indic and full-width digits: no number here,
    though int() reads some of them."""
    app = add_app()
    browser = signed_in(ada) if person_signed_in else Browser()
    before = stored()
    response = browser.get(query(app, max_age=max_age))
    refused_to_app(response)
    assert last_refusal() == "invalid_request"
    assert stored() == before


# --- claims: what oauthlib refuses without telling where to ------------------------------------


@pytest.mark.parametrize(
    "claims",
    ["x", "{", '{"id_token": ', "[" * 50_000, '{"a":' * 3000 + "1" + "}" * 3000],
    ids=["word", "brace", "cut", "deep-list", "deep-object"],
)
@pytest.mark.parametrize("person_signed_in", [False, True])
def test_a_malformed_claims_parameter_is_invalid_request_at_the_app(ada, claims, person_signed_in):
    """oauthlib's InvalidRequestError carries no redirect URI or state; the redirect URI was
    validated as the app's before, so the app gets the error, with its state."""
    app = add_app()
    browser = signed_in(ada) if person_signed_in else Browser()
    before = stored()
    params = refused_to_app(browser.get(query(app, claims=claims)))
    assert params["error_description"] == "Malformed claims parameter"
    assert last_refusal() == "invalid_request"
    assert stored() == before


@pytest.mark.parametrize("mode", ["fragment", "form_post"])
def test_a_malformed_claims_parameter_is_answered_in_the_response_mode(ada, mode):
    app = add_app()
    before = stored()
    response = signed_in(ada).get(query(app, claims="x", response_mode=mode))
    if mode == "fragment":
        assert response.status_code == 302
        location = response["Location"]
        assert location.startswith(REDIRECT_URI + "#"), location
        params = {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}
    else:
        assert response.status_code == 200
        html = response.content.decode()
        assert f'action="{REDIRECT_URI}"' in html
        params = {"error": "invalid_request", "state": "the-state"}
        for name, value in params.items():
            assert f'name="{name}" value="{value}"' in html, html
    assert (params["error"], params["state"]) == ("invalid_request", "the-state")
    assert stored() == before


def test_a_malformed_claims_parameter_with_a_foreign_redirect_uri_is_a_page(ada):
    app = add_app()
    response = signed_in(ada).get(query(app, claims="x", redirect_uri="https://evil.example/cb"))
    assert response.status_code == 400
    assert b"App Sign-in Link Not Valid" in response.content
    assert last_refusal() == "mismatching_redirect_uri"


def test_an_error_without_a_redirect_uri_before_it_was_validated_is_a_page(
    ada, monkeypatch: pytest.MonkeyPatch
):
    """Any oauthlib error raised without the request, before the redirect URI was checked
    (here from the client's check, which runs first): the redirect URI named in the request
    is not trusted, registered or not, and no redirect is sent."""

    def refuse(self: Validator, client_id: str, request: Any, *args: Any, **kwargs: Any) -> bool:
        raise oauth2_errors.InvalidRequestError(description="Refused before the redirect URI.")

    monkeypatch.setattr(Validator, "validate_client_id", refuse)
    app = add_app()
    response = signed_in(ada).get(query(app))
    assert response.status_code == 400
    assert b"App Sign-in Link Not Valid" in response.content
    assert "Location" not in response
    assert last_refusal() == "invalid_request"
    assert not get_grant_model().objects.exists()


def test_an_error_without_a_redirect_uri_after_it_was_validated_goes_to_the_app(
    ada, monkeypatch: pytest.MonkeyPatch
):
    """The same error raised after the redirect URI was validated (the response type's check
    follows it): the app gets it, with its state."""

    def refuse(self: Validator, *args: Any, **kwargs: Any) -> bool:
        raise oauth2_errors.InvalidRequestError(description="Refused after the redirect URI.")

    monkeypatch.setattr(Validator, "validate_response_type", refuse)
    app = add_app()
    params = refused_to_app(signed_in(ada).get(query(app)))
    assert params["error_description"] == "Refused after the redirect URI."
    assert not get_grant_model().objects.exists()


# --- nonce and code_challenge longer than the grant's columns ----------------------------------


_TOO_LONG_OR_MALFORMED = [
    ({"nonce": "n" * 256}, "nonce_too_long"),
    ({"nonce": "\u00e9" * 256}, "nonce_too_long"),
    ({"code_challenge": "c" * 129}, "pkce_challenge_invalid"),
    ({"code_challenge": "c" * 42}, "pkce_challenge_invalid"),
    ({"code_challenge": "+" * 43}, "pkce_challenge_invalid"),
    ({"code_challenge": "\u00e9" * 43}, "pkce_challenge_invalid"),
]


@pytest.mark.parametrize(("extra", "reason"), _TOO_LONG_OR_MALFORMED)
@pytest.mark.parametrize("stack", ["lean", "full"])
def test_an_overlong_nonce_or_a_malformed_code_challenge_is_invalid_request(
    ada, lean_path_taken, extra, reason, stack
):
    """Refused before the grant's INSERT, which PostgreSQL would fail (varchar(255) and
    varchar(128)): RFC 7636 §4.2's 43-128 unreserved characters; a nonce the column holds.
    The lean /authorize and the full stack answer alike."""
    app = add_app()
    browser = signed_in(ada)
    full_flow(browser, app)  # the session's sid; the app kept: the lean path can take it
    before = stored()
    if stack == "full":
        with full_stack(browser):
            response = browser.get(query(app, **extra))
    else:
        response = browser.get(query(app, **extra))
    assert lean_path_taken[-1] is (stack == "lean")
    refused_to_app(response)
    assert last_refusal() == reason
    assert stored() == before


@pytest.mark.parametrize("person_signed_in", [False, True])
def test_an_overlong_nonce_is_refused_before_the_sign_in(ada, person_signed_in):
    app = add_app()
    browser = signed_in(ada) if person_signed_in else Browser()
    before = stored()
    refused_to_app(browser.get(query(app, nonce="n" * 256, code_challenge="c" * 129)))
    assert stored() == before


def test_the_longest_nonce_and_code_challenge_are_stored(ada):
    """At the columns' limits the grant is written, on PostgreSQL too."""
    app = add_app()
    response = signed_in(ada).get(
        query(app, nonce="n" * 255, code_challenge="c-._~" * 25 + "c" * 3)
    )
    assert response.status_code == 302, response.content[:300]
    assert "code=" in response["Location"], response["Location"]
    grant = get_grant_model().objects.get()
    assert (len(grant.nonce), len(grant.code_challenge)) == (255, 128)


# --- Settings: "Sign out of this app" with an ID int() does not read ---------------------------


@pytest.mark.parametrize("app_id", ["%C2%B2", "%D9%A1", "%EF%BC%91", "1" * 19])
def test_signing_out_of_an_app_with_a_non_ascii_id_is_an_unknown_app(ada, app_id):
    """ "²" and other digits are no app's ID: the answer an unknown app's ID gets (the same
    for one that is not the person's), and no token of hers is revoked."""
    app = add_app()
    browser = signed_in(ada)
    full_flow(browser, app)
    before = stored()
    unknown = browser.post_form("/settings/apps/999999/sign-out")
    response = browser.post_form(f"/settings/apps/{app_id}/sign-out")
    assert response.status_code == unknown.status_code == 303
    assert response["Location"] == unknown["Location"] == "/settings?done=signed-out-of-app"
    assert stored() == before
    assert before["live refresh tokens"] == 1
