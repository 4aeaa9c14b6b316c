"""Token introspection (RFC 7662) at /introspect (threshold/sso/introspection.py), by URL.

A company's API asks whether an access token an app sent it is active, authenticating as a
confidential app. The tokens come from the real code flow (test_sso.py's helpers); nothing
is mocked.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from tests.integration.test_sso import (
    ISSUER,
    App,
    add_app,
    authorize,
    exchange,
    full_flow,
    signed_in,
)
from tests.support.faults import database_fails
from tests.support.wsgi import wsgi
from threshold.accounts.actions import do_deactivate_user, do_lock_user
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.groups.actions import do_add_group, do_add_member, do_remove_member
from threshold.sso.actions import do_assign_app, do_remove_app

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
INACTIVE = {"active": False}
REFUSED = "sso.introspection_refused"


def basic(client_id: str, secret: str | None) -> str:
    """client_secret_basic (RFC 6749 §2.3.1: each part form-encoded first)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def introspect(
    caller: App | None,
    body: dict[str, str] | str | bytes,
    *,
    post: bool = False,
    client: Client | None = None,
    content_type: str = FORM,
    **extra: Any,
):
    """POST ``body`` to /introspect as ``caller`` (client_secret_basic, or client_secret_post)."""
    if isinstance(body, dict):
        body = dict(body)
        if caller is not None and post:
            body["client_id"] = caller.client_id
            body["client_secret"] = caller.client_secret or ""
        body = urlencode(body)
    if caller is not None and not post:
        extra.setdefault("HTTP_AUTHORIZATION", basic(caller.client_id, caller.client_secret))
    return (client or Client()).post("/introspect", body, content_type=content_type, **extra)


def assert_inactive(response) -> None:
    assert response.status_code == 200, response.content[:300]
    assert response.json() == INACTIVE
    assert response["Cache-Control"] == "no-store"


def assert_refused(response, error: str, status: int) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json()["error"] == error
    assert "active" not in response.json()


def assert_invalid_client(response) -> None:
    assert_refused(response, "invalid_client", 401)
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.fixture
def app(db) -> App:
    return add_app(name="Wiki")


@pytest.fixture
def tokens(ada, app) -> dict[str, Any]:
    return full_flow(signed_in(ada), app, scope="openid profile email")


# --- Discovery -------------------------------------------------------------------------------


def test_discovery_names_the_introspection_endpoint(db):
    document = Client().get("/.well-known/openid-configuration").json()
    assert document["introspection_endpoint"] == f"{ISSUER}/introspect"
    assert document["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]


# --- An active token -------------------------------------------------------------------------


@pytest.mark.parametrize("post", [False, True], ids=["client_secret_basic", "client_secret_post"])
def test_an_active_access_token_is_described_as_its_id_token_names_the_person(app, tokens, post):
    events = AuditEvent.objects.count()
    response = introspect(app, {"token": tokens["access_token"]}, post=post)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    answer = response.json()
    token = get_access_token_model().objects.get()
    assert answer == {
        "active": True,
        "scope": "openid profile email",
        "client_id": app.client_id,
        "token_type": "Bearer",
        "exp": int(token.expires.timestamp()),
        "iat": int(token.created.timestamp()),
        "iss": ISSUER,
        "sub": tokens["claims"]["sub"],
        "aud": app.client_id,
    }
    # ACCESS_TOKEN_EXPIRE_SECONDS. django-oauth-toolkit reads the time twice (the expiry, then
    # the row's creation a moment later): a whole second can begin between the two reads.
    assert answer["exp"] - answer["iat"] in (599, 600)
    # Never the username or the email (the username is the work address).
    assert "ada@example.com" not in response.content.decode()
    # A busy API asks about every request it serves: a success is not audited.
    assert AuditEvent.objects.count() == events


def test_an_introspection_is_one_select(app, tokens):
    """The caller's app is kept per process (sso/appcache.py); the token, its person and its
    app come in one SELECT; an app assigned to everyone needs no membership read."""
    introspect(app, {"token": tokens["access_token"]})
    with CaptureQueriesContext(connection) as queries:
        assert introspect(app, {"token": tokens["access_token"]}).json()["active"] is True
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]


def test_any_confidential_app_may_introspect_another_apps_token(app, tokens):
    api = add_app(name="Payroll API")
    answer = introspect(api, {"token": tokens["access_token"]}).json()
    assert answer["active"] is True
    # The app the token was issued to, not the caller.
    assert answer["client_id"] == app.client_id
    assert answer["aud"] == app.client_id
    assert answer["sub"] == tokens["claims"]["sub"]


def test_token_type_hint_is_accepted_and_ignored(app, tokens):
    for hint in ("refresh_token", "access_token", "nonsense"):
        answer = introspect(app, {"token": tokens["access_token"], "token_type_hint": hint})
        assert answer.json()["active"] is True, hint
    assert_inactive(
        introspect(app, {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"})
    )


def test_a_signed_in_browsers_cookies_change_nothing(ada, app, tokens):
    """The endpoint is server to server: CSRF-exempt, and a session cookie is no credential."""
    browser = signed_in(ada)
    with_cookies = introspect(app, {"token": tokens["access_token"]}, client=browser.client)
    assert with_cookies.json()["active"] is True
    assert_invalid_client(
        introspect(None, {"token": tokens["access_token"]}, client=browser.client)
    )


# --- Inactive: exactly {"active": false} ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"token": "unknown"}, {"token": ""}, {}, {"token_type_hint": "access_token"}],
    ids=["unknown", "empty", "missing", "hint-only"],
)
def test_unknown_empty_or_missing_tokens_are_inactive(app, body):
    assert_inactive(introspect(app, body))


def test_a_refresh_token_is_not_introspected(app, tokens):
    assert_inactive(introspect(app, {"token": tokens["refresh_token"]}))


def test_an_expired_access_token_is_inactive(app, tokens):
    get_access_token_model().objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


def test_a_revoked_access_token_is_inactive(app, tokens):
    revoked = Client().post(
        "/revoke",
        {
            "token": tokens["access_token"],
            "client_id": app.client_id,
            "client_secret": app.client_secret,
        },
    )
    assert revoked.status_code == 200
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


def test_signing_out_of_the_app_makes_its_token_inactive(ada, app):
    browser = signed_in(ada)
    tokens = full_flow(browser, app)
    assert introspect(app, {"token": tokens["access_token"]}).json()["active"] is True
    browser.post_form(f"/settings/apps/{app.application.pk}/sign-out")
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


def test_a_locked_persons_token_is_inactive(ada, app, tokens):
    do_lock_user(ada.user, Origin.cli())
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


@pytest.mark.parametrize(
    "change",
    [{"locked_at": timezone.now()}, {"is_active": False}],
    ids=["locked", "deactivated"],
)
def test_a_token_left_behind_by_a_lock_is_inactive_all_the_same(ada, app, tokens, change):
    """Locking revokes the person's tokens (access_withdrawn); were one left behind (a row
    changed by hand, an interrupted change), introspection still says no, as /token does."""
    User.objects.filter(pk=ada.user.pk).update(**change)
    assert get_access_token_model().objects.exists()
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


def test_a_deactivated_persons_token_is_inactive(ada, app, tokens):
    do_deactivate_user(ada.user, Origin.cli())
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


def test_a_removed_persons_token_is_inactive(ada, app, tokens):
    ada.user.delete()
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


def test_a_removed_apps_token_is_inactive(ada, app, tokens):
    api = add_app(name="Payroll API")
    do_remove_app(app.application, Origin.cli())
    assert_inactive(introspect(api, {"token": tokens["access_token"]}))


def test_a_person_taken_out_of_the_apps_group_has_no_active_token(ada, app):
    group = do_add_group("Finance", Origin.cli())
    do_add_member(group, ada.user, Origin.cli())
    do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])
    tokens = full_flow(signed_in(ada), app)
    assert introspect(app, {"token": tokens["access_token"]}).json()["active"] is True
    do_remove_member(group, ada.user, Origin.cli())
    # As a refresh would be refused (not_assigned).
    assert_inactive(introspect(app, {"token": tokens["access_token"]}))


# --- Who may ask -----------------------------------------------------------------------------


def test_no_credentials_wrong_secret_or_unknown_app_is_invalid_client(app, tokens):
    token = {"token": tokens["access_token"]}
    wrong = App(app.client_id, "not-the-secret", app.application)
    unknown = App("no-such-app", "secret", app.application)
    for response in (
        introspect(None, token),
        introspect(wrong, token),
        introspect(wrong, token, post=True),
        introspect(unknown, token),
        introspect(None, token, HTTP_AUTHORIZATION="Basic \u00e9t\u00e9"),
        introspect(None, token, HTTP_AUTHORIZATION="Basic !!!"),
    ):
        assert_invalid_client(response)
    refusals = AuditEvent.objects.filter(action=REFUSED, reason="invalid_client")
    assert refusals.count() == 6
    assert {event.detail["credentials"] for event in refusals} == {"none", "basic", "post"}
    # The app whose secret was wrong is named; an unknown one is not (nothing a caller made up).
    assert sorted(event.detail["app"] for event in refusals) == [""] * 4 + [app.client_id] * 2


def test_a_public_app_may_not_introspect(app, tokens):
    spa = add_app(name="SPA", public=True)
    assert spa.client_secret is None
    token = {"token": tokens["access_token"]}
    assert_invalid_client(introspect(spa, token))
    assert_invalid_client(introspect(spa, token, post=True))
    assert_invalid_client(introspect(None, {**token, "client_id": spa.client_id}))
    refusals = AuditEvent.objects.filter(action=REFUSED, reason="invalid_client")
    assert [event.detail["app"] for event in refusals] == [spa.client_id] * 3


def test_a_bearer_token_cannot_stand_in_for_client_credentials(ada, app, tokens):
    """DOT's view lets an access token with an ``introspection`` scope call it; Threshold
    offers no such scope, and even a token that had it (written here by hand) is refused."""
    scoped = "an-introspection-token-written-by-hand"
    get_access_token_model().objects.create(
        user=ada.user,
        application=app.application,
        token=scoped,
        scope="introspection",
        expires=timezone.now() + timedelta(hours=1),
    )
    for bearer in (scoped, tokens["access_token"]):
        response = introspect(
            None, {"token": tokens["access_token"]}, HTTP_AUTHORIZATION=f"Bearer {bearer}"
        )
        assert_invalid_client(response)
    refusals = AuditEvent.objects.filter(action=REFUSED, reason="invalid_client")
    assert [event.detail["credentials"] for event in refusals] == ["bearer", "bearer"]


# --- How to ask ------------------------------------------------------------------------------


def test_get_is_refused_the_token_must_not_travel_in_a_url(app, tokens):
    query = urlencode({"token": tokens["access_token"]})
    response = Client().get(
        f"/introspect?{query}", HTTP_AUTHORIZATION=basic(app.client_id, app.client_secret)
    )
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"] == "invalid_request"
    assert "active" not in response.json()
    # Nor in the URL of a POST.
    in_url = Client().post(
        f"/introspect?{query}",
        "",
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(app.client_id, app.client_secret),
    )
    assert_refused(in_url, "invalid_request", 400)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"token": "x"}', "application/json"),
        (b"token=x", "text/plain"),
        (b"--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nx\r\n--b--\r\n",
         "multipart/form-data; boundary=b"),
        (b"--nope\r\n", "multipart/form-data; boundary="),
        (b"token=a%00b", FORM),
        (b"token=a\x00b", FORM),
        (b"tok%00en=x", FORM),
        (b"token=%FF%FE", FORM),
        (b"token=\xff\xfe", FORM),
        (b"token=x", f"{FORM}; charset=latin-1"),
        (b"token=x&token=y", FORM),
        (b"token=" + b"x" * (64 * 1024), FORM),
        (b"&".join(b"f%d=1" % i for i in range(2000)), FORM),
    ],
    ids=[
        "json", "text", "multipart", "broken-multipart", "nul-escaped", "nul-raw", "nul-name",
        "not-utf8-escaped", "not-utf8-raw", "latin-1", "repeated", "over-64-KiB",
        "too-many-fields",
    ],
)  # fmt: skip
@pytest.mark.parametrize("with_session", [False, True])
def test_bad_input_is_a_clean_oauth_error(ada, app, body, content_type, with_session):
    client = signed_in(ada).client if with_session else Client()
    tokens_before = get_access_token_model().objects.count()
    response = introspect(app, body, content_type=content_type, client=client)
    assert_refused(response, "invalid_request", 400)
    assert response.json()["error_description"]
    event = AuditEvent.objects.filter(action=REFUSED).latest("id")
    assert event.reason == "invalid_request"
    assert get_access_token_model().objects.count() == tokens_before


def test_a_code_is_not_an_access_token(ada, app):
    auth = authorize(signed_in(ada), app)
    assert_inactive(introspect(app, {"token": auth.params["code"]}))
    # The code was not used up by the question.
    assert exchange(app, auth.params["code"], auth.verifier).status_code == 200
    assert not get_refresh_token_model().objects.filter(revoked__isnull=False).exists()


@pytest.mark.parametrize("with_session", [False, True])
def test_a_form_that_is_not_utf8_is_an_oauth_error_at_token_too(ada, app, with_session):
    """Django refuses to parse a form whose charset is not UTF-8 (BadRequest): the body check
    that /token and /introspect share (web/bodies.form_refusal) answers it, in OAuth's words."""
    client = signed_in(ada).client if with_session else Client()
    data = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": app.client_id}
    response = client.post("/token", urlencode(data), content_type=f"{FORM}; charset=latin-1")
    assert_refused(response, "invalid_request", 400)
    assert AuditEvent.objects.filter(action="sso.token_refused", reason="invalid_request").exists()


# --- Through the production WSGI application ------------------------------------------------


@pytest.mark.parametrize("content_type", [FORM, "application/json", None])
@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " 7"])
def test_a_content_length_that_is_not_a_number_is_an_oauth_error(app, length, content_type):
    status, headers, content = wsgi(
        "POST",
        "/introspect",
        b"token=x",
        CONTENT_TYPE=content_type,
        CONTENT_LENGTH=length,
        HTTP_AUTHORIZATION=basic(app.client_id, app.client_secret),
    )
    assert status == 400, content[:300]
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content)["error"] == "invalid_request"


@pytest.mark.parametrize("authorization", ["Basic \xff\xfe!!", "Basic \x00", "Bearer", "Basic"])
def test_credentials_that_cannot_be_read_are_an_invalid_client(app, tokens, authorization):
    status, headers, content = wsgi(
        "POST",
        "/introspect",
        urlencode({"token": tokens["access_token"]}).encode(),
        CONTENT_TYPE=FORM,
        HTTP_AUTHORIZATION=authorization,
    )
    assert status == 401, content[:300]
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert json.loads(content)["error"] == "invalid_client"


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_method_but_post_is_a_405(app, method):
    status, headers, _content = wsgi(
        method, "/introspect", HTTP_AUTHORIZATION=basic(app.client_id, app.client_secret)
    )
    assert status == 405
    assert headers["Allow"] == "POST"
    assert not AuditEvent.objects.filter(action=REFUSED).exists()


def test_the_database_failing_is_a_503_try_again_and_the_next_question_is_answered(app, tokens):
    body = urlencode({"token": tokens["access_token"]}).encode()
    credentials = {
        "CONTENT_TYPE": FORM,
        "HTTP_AUTHORIZATION": basic(app.client_id, app.client_secret),
    }
    with database_fails() as seen:
        status, headers, _content = wsgi("POST", "/introspect", body, **credentials)
    assert seen, "the token's SELECT was reached"
    assert status == 503
    assert headers["Retry-After"]
    status, _headers, content = wsgi("POST", "/introspect", body, **credentials)
    assert status == 200
    assert json.loads(content)["active"] is True
