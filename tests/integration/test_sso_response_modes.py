"""The authorization response's modes (threshold/sso/responses.py): ``query`` (the code flow's
default), ``fragment`` and ``form_post`` (OAuth 2.0 Form Post Response Mode), for codes and for
every error the app's redirect URI receives; an unknown mode is refused, not answered in query.

The page a form_post answer is made of is read as a browser reads it (html.parser): the form,
its fields, its script, and the headers that keep it from caches and let it post to the app only.
tests/browser/test_sso_form_post.py shows Chromium sending it by itself under that policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import get_grant_model

from tests.integration.conftest import Browser, enrolled_person
from tests.integration.test_sso import (
    ISSUER,
    REDIRECT_URI,
    add_app,
    authorize,
    exchange,
    form_action,
    pkce,
    signed_in,
    verify_id_token,
)
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.groups.actions import do_add_group
from threshold.sso.actions import do_assign_app
from threshold.sso.models import AppSignIn

pytestmark = pytest.mark.django_db

APP_ORIGIN = "http://127.0.0.1:9000"


@pytest.fixture
def ada(db):
    return enrolled_person("ada@example.com", "Ada Lovelace")


@dataclass
class Form:
    """The forms, fields, buttons and scripts of a page, as a browser parses them."""

    forms: list[dict[str, Any]] = field(default_factory=list)
    scripts: list[dict[str, str]] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Form()
        self.inline_script = False
        self.in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.page.forms.append({**attributes, "fields": [], "buttons": []})
        elif tag == "input" and self.page.forms:
            self.page.forms[-1]["fields"].append((attributes.get("name"), attributes.get("value")))
        elif tag == "button" and self.page.forms:
            self.in_button = True
            self.page.forms[-1]["buttons"].append("")
        elif tag == "script":
            self.page.scripts.append(attributes)
            self.inline_script = "src" not in attributes

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self.in_button = False

    def handle_data(self, data: str) -> None:
        assert not (self.inline_script and data.strip()), "no inline script under our CSP"
        if self.in_button:
            self.page.forms[-1]["buttons"][-1] += data.strip()


def parse(html: bytes) -> Form:
    parser = _Parser()
    parser.feed(html.decode())
    return parser.page


def posted_to_app(response: Any) -> dict[str, str]:
    """A form_post answer, checked as a page that POSTs to the app: the fields it sends."""
    assert response.status_code == 200, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("text/html")
    # Kept by no cache (Form Post Response Mode §5), sent nowhere but the app.
    assert "no-store" in response["Cache-Control"]
    assert response["Pragma"] == "no-cache"
    assert response["Referrer-Policy"] == "same-origin"
    assert form_action(response) == ["'self'", APP_ORIGIN]
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    page = parse(response.content)
    to_app = [form for form in page.forms if form.get("action") == REDIRECT_URI]
    assert len(to_app) == 1, page.forms
    form = to_app[0]
    assert form["method"] == "post"
    assert form["buttons"] == ["Continue"], "a visible button for browsers without JavaScript"
    names = [name for name, _value in form["fields"]]
    assert len(names) == len(set(names)), names
    assert "csrfmiddlewaretoken" not in names, "Threshold's CSRF token never goes to an app"
    assert any(script.get("src", "").endswith(".js") and "form-post" in script["src"]
               for script in page.scripts), page.scripts  # fmt: skip
    return dict(form["fields"])


def fragment_of(response: Any) -> dict[str, str]:
    assert response.status_code == 302, response.status_code
    parts = urlsplit(response["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT_URI
    assert parts.query == "", "nothing in the query"
    return {k: v[0] for k, v in parse_qs(parts.fragment).items()}


def last_refusal() -> AuditEvent:
    return AuditEvent.objects.filter(action="sso.refused").latest("id")


# --- Discovery ------------------------------------------------------------------------------------


def test_discovery_lists_exactly_the_honoured_response_modes(db):
    document = Client().get("/.well-known/openid-configuration").json()
    assert document["response_modes_supported"] == ["query", "fragment", "form_post"]


# --- form_post ------------------------------------------------------------------------------------


def test_form_post_sends_the_code_in_a_form_the_page_submits_itself(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app, response_mode="form_post", state='"><b>&x')

    fields = posted_to_app(auth.response)

    assert set(fields) == {"code", "state", "iss"}
    assert fields["state"] == '"><b>&x', "escaped in the page, the same value posted"
    assert fields["iss"] == ISSUER
    assert b"Continue to Wiki" in auth.response.content
    tokens = exchange(app, fields["code"], auth.verifier)
    assert tokens.status_code == 200, tokens.content
    assert verify_id_token(tokens.json()["id_token"], app)["nonce"] == auth.nonce
    # The same event as a query response.
    event = AuditEvent.objects.filter(action="sso.authorized").latest("id")
    assert event.subject_id == ada.user.pk
    assert event.detail["app"] == app.client_id


def test_form_post_after_consent_sends_the_code_in_a_form(ada):
    app = add_app(require_consent=True)
    browser = signed_in(ada)
    consent = authorize(browser, app, response_mode="form_post")
    assert consent.response.status_code == 200
    assert b"Allow" in consent.response.content
    allowed = browser.client.post(
        consent.response.wsgi_request.get_full_path(),
        {"csrfmiddlewaretoken": browser.csrf_token(), "allow": "yes"},
    )
    fields = posted_to_app(allowed)
    assert set(fields) == {"code", "state", "iss"}
    assert exchange(app, fields["code"], consent.verifier).status_code == 200


def test_form_post_keeps_a_query_the_redirect_uri_was_registered_with(ada):
    with_query = "http://127.0.0.1:9000/callback?tenant=7"
    app = add_app(redirect_uris=[with_query])
    _verifier, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": with_query,
        "scope": "openid",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "response_mode": "form_post",
    }
    response = signed_in(ada).get("/authorize?" + urlencode(query))
    assert response.status_code == 200
    assert form_action(response) == ["'self'", APP_ORIGIN]
    (form,) = [f for f in parse(response.content).forms if f.get("action") == with_query]
    assert {name for name, _ in form["fields"]} == {"code", "state", "iss"}


def test_form_post_without_a_redirect_uri_posts_to_the_registered_one(ada):
    """No redirect_uri in a plain OAuth request (no ``openid`` scope; an OpenID request must
    name it, test_sso.py): the app's only registered one (RFC 6749 §3.1.2.3), and the page's
    form-action still names its origin."""
    app = add_app()
    auth = authorize(
        signed_in(ada), app, response_mode="form_post", redirect_uri=None, scope="profile"
    )
    fields = posted_to_app(auth.response)
    assert "code" in fields


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("signed_out_prompt_none", "login_required"),
        ("consent_prompt_none", "consent_required"),
        ("consent_refused", "access_denied"),
        ("not_assigned_prompt_none", "access_denied"),
        ("acr_unmet", "unmet_authentication_requirements"),
        ("invalid_scope", "invalid_scope"),
        ("no_pkce", "invalid_request"),
        ("unsupported_response_type", "unsupported_response_type"),
    ],
)
def test_form_post_sends_every_error_for_the_app_in_a_form_too(ada, case, error):
    app = add_app(require_consent=case.startswith("consent"))
    browser = Browser() if case == "signed_out_prompt_none" else signed_in(ada)
    extra: dict[str, Any] = {"response_mode": "form_post"}
    if case.endswith("prompt_none"):
        extra["prompt"] = "none"
    if case == "not_assigned_prompt_none":
        do_add_group("Finance", Origin.cli())
        do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])
    extra.update(
        {
            "acr_unmet": {"acr_values": "phrh"},
            "invalid_scope": {"scope": "openid admin"},
            "no_pkce": {"code_challenge": None, "code_challenge_method": None},
            "unsupported_response_type": {"response_type": "token"},
        }.get(case, {})
    )
    auth = authorize(browser, app, **extra)
    response = auth.response
    if case == "consent_refused":
        assert response.status_code == 200, "the consent page"
        path = response.wsgi_request.get_full_path()
        response = browser.client.post(
            path, {"csrfmiddlewaretoken": browser.csrf_token(), "allow": "no"}
        )

    fields = posted_to_app(response)

    assert fields["error"] == error, fields
    assert "error_description" in fields, "as in query (oauthlib gives some errors none)"
    assert fields["state"] == auth.state
    assert fields["iss"] == ISSUER
    assert "code" not in fields
    assert not get_grant_model().objects.exists()
    assert last_refusal().detail.get("app") == app.client_id


# --- query and fragment ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["query", ""])
def test_query_asked_for_or_sent_empty_is_the_default_redirect(ada, mode):
    app = add_app()
    auth = authorize(signed_in(ada), app, response_mode=mode)
    assert auth.response.status_code == 302
    assert auth.location.startswith(REDIRECT_URI + "?")
    assert set(auth.params) == {"code", "state", "iss"}
    assert exchange(app, auth.params["code"], auth.verifier).status_code == 200


def test_fragment_carries_the_code_and_errors_in_the_fragment(ada):
    app = add_app()
    auth = authorize(signed_in(ada), app, response_mode="fragment")
    fields = fragment_of(auth.response)
    assert set(fields) == {"code", "state", "iss"}
    assert fields["iss"] == ISSUER
    assert exchange(app, fields["code"], auth.verifier).status_code == 200

    refused = authorize(Browser(), app, response_mode="fragment", prompt="none")
    fields = fragment_of(refused.response)
    assert fields["error"] == "login_required"
    assert fields["state"] == refused.state
    assert fields["iss"] == ISSUER


# --- A mode this provider does not know -----------------------------------------------------------


@pytest.mark.parametrize(
    "modes",
    [
        ["web_message"],
        ["jwt"],
        ["query.jwt"],
        ["form_post.jwt"],
        ["FORM_POST"],
        ["query", "form_post"],
    ],
)
def test_an_unknown_or_repeated_response_mode_is_invalid_request_in_query(ada, modes):
    app = add_app()
    _verifier, challenge = pkce()
    query = [
        ("response_type", "code"),
        ("client_id", app.client_id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        *[("response_mode", mode) for mode in modes],
    ]
    response = signed_in(ada).get("/authorize?" + urlencode(query))

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["error"] == "invalid_request"
    assert params["state"] == "st"
    assert params["iss"] == ISSUER
    assert "code" not in params
    assert not get_grant_model().objects.exists()
    assert not AppSignIn.objects.exists()
    refusal = last_refusal()
    assert refusal.reason == "response_mode_unsupported"
    assert refusal.subject_id == ada.user.pk


def test_a_form_post_answer_costs_the_statements_of_a_query_answer(ada):
    """The page sets its own form-action: FormActionMiddleware does not look the app up again."""
    app = add_app()
    browser = signed_in(ada)
    authorize(browser, app)  # the first reads what later ones keep (the app, the session's sid)
    counts = {}
    for mode in ("query", "form_post"):
        with CaptureQueriesContext(connection) as queries:
            response = authorize(browser, app, response_mode=mode).response
        assert response.status_code in (200, 302)
        counts[mode] = len(queries)
    assert counts["form_post"] == counts["query"], counts
