"""Passkey sign-in inside the company's own apps: OAuth 2.0 for First-Party Applications
(draft-ietf-oauth-first-party-apps, the Authorization Challenge Endpoint) at
``POST /authorize-challenge`` (threshold/sso/firstparty.py).

The app here is the test: it asks for a challenge as an Android app does, signs it with the
software authenticator under the app's ``android:apk-key-hash:`` origin (configured as
test_mobile_apps_review.py configures it), sends the response back, and exchanges the code at
``/token`` with its PKCE verifier. Nothing is mocked but the clock.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

import threshold.clock
from tests.integration.conftest import CLIENT_IP, Person, enrolled_person, last_event
from tests.integration.portal_support import post, staff
from tests.integration.test_portal_apps import APP
from tests.integration.test_sso import ISSUER, pkce, signed_in, verify_id_token
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.config import load
from threshold.core import throttle
from threshold.core.encoding import b64url_encode
from threshold.groups.actions import do_add_group
from threshold.passkeys.limits import SIGN_IN_OPTIONS_LIMIT
from threshold.passkeys.models import UsedChallenge
from threshold.sessions.actions import do_end_sessions
from threshold.sessions.models import Session
from threshold.sessions.store import SID
from threshold.sso.actions import do_add_app, do_assign_app
from threshold.sso.models import Application, AppSignIn

pytestmark = pytest.mark.django_db

KEY = hashlib.sha256(b"the company's release signing certificate").digest()
# What Credential Manager puts in clientDataJSON.origin for the company's Android app.
APP_ORIGIN = "android:apk-key-hash:" + b64url_encode(KEY)
REDIRECT_URI = "com.example.app:/oauth2redirect"
CHALLENGE = "/authorize-challenge"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def android_app(settings, tmp_path):
    """THRESHOLD_ANDROID_APPS configured, as test_mobile_apps_review.py configures it."""
    loaded = load(
        {
            "THRESHOLD_VAR_DIR": str(tmp_path),
            "THRESHOLD_SECRET_KEY": "test-key-" * 5,
            "THRESHOLD_ANDROID_APPS": "com.example.app=" + KEY.hex(":").upper(),
        }
    )
    settings.THRESHOLD = dataclasses.replace(
        settings.THRESHOLD, rp=loaded.rp, android_apps=loaded.android_apps
    )


def company_app(*, first_party: bool = True, public: bool = True, **kwargs: Any):
    return do_add_app(
        kwargs.pop("name", "Company app"),
        Origin.cli(),
        redirect_uris=[REDIRECT_URI] if public else ["https://app.example.com/cb"],
        public=public,
        first_party=first_party,
        **kwargs,
    )


class AppClient(Client):
    """The app's HTTP client (OkHttp, URLSession): no Origin, no Referer, and a dict posted as
    a form (application/x-www-form-urlencoded, what the endpoint takes), not multipart."""

    def post(self, path: str, data: Any = None, content_type: str = FORM, **extra: Any):
        if isinstance(data, dict) and content_type == FORM:
            data = urlencode(data)
        return super().post(path, data, content_type=content_type, **extra)


def app_client() -> AppClient:
    return AppClient(enforce_csrf_checks=True, HTTP_USER_AGENT="okhttp/4.12.0")


def ask(client_id: str, **params: str):
    """The first request: the authorization request."""
    return app_client().post(CHALLENGE, {"client_id": client_id, **params})


@dataclasses.dataclass
class Challenge:
    verifier: str
    auth_session: str
    options: dict[str, Any]


def challenge(client_id: str, **params: str) -> Challenge:
    verifier, code_challenge = pkce()
    asked = {"scope": "openid profile email", "nonce": "n-0S6_WzA2Mj", **params}
    response = ask(client_id, code_challenge=code_challenge, code_challenge_method="S256", **asked)
    assert response.status_code == 403, response.content[:300]  # draft §5.2.2.1
    body = response.json()
    assert body["error"] == "insufficient_authorization", body
    return Challenge(verifier, body["auth_session"], body["passkey_options"])


def finish(client_id: str, auth_session: str, credential: Any, **extra: str):
    """The second request: the passkey's response (``credential.toJSON()``)."""
    response = credential if isinstance(credential, str) else json.dumps(credential)
    data = {"client_id": client_id, "auth_session": auth_session, "passkey_response": response}
    return app_client().post(CHALLENGE, {**data, **extra})


def exchange(client_id: str, code: str, verifier: str, **extra: str):
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    return Client().post("/token", {"client_id": client_id, **data, **extra})


def signed_in_app(person: Person, client_id: str, **params: str) -> dict[str, Any]:
    """The three calls, to the tokens."""
    asked = challenge(client_id, **params)
    done = finish(
        client_id, asked.auth_session, person.authenticator.get(asked.options, APP_ORIGIN)
    )
    assert done.status_code == 200, done.content
    tokens = exchange(client_id, done.json()["authorization_code"], asked.verifier)
    assert tokens.status_code == 200, tokens.content
    return tokens.json()


def app_sessions():
    """The sessions apps hold (the enrollment left a browser's)."""
    return Session.objects.exclude(app_name="")


def stored() -> dict[str, int]:
    """What a refusal must not leave behind."""
    return {
        "sessions": app_sessions().count(),
        "used_challenges": UsedChallenge.objects.count(),
        "grants": get_grant_model().objects.count(),
        "sign_ins": AppSignIn.objects.count(),
        "tokens": get_access_token_model().objects.count(),
    }


# --- The app's setting: first-party -------------------------------------------------------------


def test_apps_add_and_change_mark_an_app_first_party(db, capsys):
    assert main(["apps", "add", "Company app", "--public", "--first-party",
                 "--redirect-uri", "com.example.app:/oauth2redirect", "--json"]) == 0  # fmt: skip
    client_id = json.loads(capsys.readouterr().out)["client_id"]
    app = Application.objects.get(client_id=client_id)
    assert app.first_party
    assert last_event("app.added").detail["first_party"] is True
    assert main(["apps", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["first_party"] is True

    assert main(["apps", "change", client_id, "--no-first-party"]) == 0
    assert "Changed first_party of Company app." in capsys.readouterr().out
    app.refresh_from_db()
    assert not app.first_party
    event = last_event("app.changed")
    assert (event.detail["before"], event.detail["after"]) == (
        {"first_party": True},
        {"first_party": False},
    )
    assert main(["apps", "change", client_id, "--first-party"]) == 0
    app.refresh_from_db()
    assert app.first_party

    # An app added without it is not one.
    assert main(["apps", "add", "Wiki", "--redirect-uri", "https://wiki.example.com/cb"]) == 0
    assert not Application.objects.get(name="Wiki").first_party


def test_the_admin_portal_shows_and_changes_first_party(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    post(browser, "/admin/apps", {**APP, "first_party": "1"})
    app = Application.objects.get(name="Wiki")
    assert app.first_party
    page = browser.get(f"/admin/apps/{app.pk}").content.decode()
    assert "<dt>First-party</dt><dd>Yes" in page
    assert 'name="first_party" value="1" checked' in page

    response = post(browser, f"/admin/apps/{app.pk}/change", APP)  # the box left unticked
    assert response.status_code == 303
    app.refresh_from_db()
    assert not app.first_party
    assert last_event("app.changed").detail["changed"] == ["first_party"]
    page = browser.get(f"/admin/apps/{app.pk}").content.decode()
    assert "<dt>First-party</dt><dd>No" in page


# --- The whole flow -----------------------------------------------------------------------------


def test_discovery_names_the_authorization_challenge_endpoint(db):
    document = Client().get("/.well-known/openid-configuration").json()
    assert document["authorization_challenge_endpoint"] == ISSUER + CHALLENGE


def test_an_app_signs_in_inside_itself_to_an_id_token(ada, clock):
    app = company_app().application
    asked = challenge(app.client_id)
    options = asked.options
    assert set(options) == {"challenge", "timeout", "rpId", "userVerification"}  # discoverable
    assert (options["rpId"], options["userVerification"]) == ("localhost", "required")  # policy
    assert options["timeout"] == 300_000

    credential = ada.authenticator.get(options, APP_ORIGIN)
    done = finish(app.client_id, asked.auth_session, credential)
    assert done.status_code == 200, done.content
    assert set(done.json()) == {"authorization_code"}
    assert done["Cache-Control"] == "no-store"
    assert not done.has_header("Access-Control-Allow-Origin")
    assert not done.cookies  # the session is the app's: no cookie

    # /token with the code_verifier, no redirect_uri (none was named).
    tokens = exchange(app.client_id, done.json()["authorization_code"], asked.verifier)
    assert tokens.status_code == 200, tokens.content
    claims = verify_id_token(
        tokens.json()["id_token"], type("App", (), {"client_id": app.client_id})
    )
    session = app_sessions().get(user=ada.user)
    assert claims["sid"] == session.get_decoded()[SID]
    assert claims["auth_time"] == int(clock.now)
    assert (claims["amr"], claims["acr"]) == (["pop", "swk", "mfa"], "phr")
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert ada.passkey.sign_count == 1

    # The session is the app's, listed in Settings by the app's name.
    assert session.app_name == "Company app"
    assert AppSignIn.objects.get().redirect_uri_named is False
    page = signed_in(ada).get("/settings").content.decode()
    assert "<strong>Company app (app)</strong>" in page
    assert last_event("sign_in.succeeded").subject == ada.user
    event = last_event("sso.authorized")
    assert event.detail["endpoint"] == "authorize_challenge"
    assert (event.detail["ceremony_origin"], event.detail["app_origin"]) == (APP_ORIGIN, True)


def test_a_browser_origin_is_accepted_and_said_in_the_audit(ada):
    app = company_app().application
    asked = challenge(app.client_id)
    credential = ada.authenticator.get(asked.options, "http://localhost:8000")
    assert finish(app.client_id, asked.auth_session, credential).status_code == 200
    event = last_event("sso.authorized")
    assert (event.detail["ceremony_origin"], event.detail["app_origin"]) == (
        "http://localhost:8000",
        False,
    )


def test_the_first_request_writes_nothing(ada):
    app = company_app().application
    before = AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as queries:
        challenge(app.client_id)
    writes = [
        q["sql"] for q in queries if q["sql"].split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}
    ]
    assert writes == []
    assert AuditEvent.objects.count() == before


def test_a_confidential_app_authenticates_with_its_secret(ada):
    new = company_app(public=False)
    client_id, secret = new.application.client_id, new.client_secret
    assert ask(client_id, scope="openid").status_code == 401
    assert ask(client_id, client_secret="wrong", scope="openid").json()["error"] == "invalid_client"
    asked = challenge(client_id, client_secret=secret)
    credential = ada.authenticator.get(asked.options, APP_ORIGIN)
    assert finish(client_id, asked.auth_session, credential).status_code == 401
    done = finish(client_id, asked.auth_session, credential, client_secret=secret)
    assert done.status_code == 200, done.content


def test_a_confidential_app_authenticates_once(ada):
    """RFC 6749 §2.3: "MUST NOT use more than one authentication method in each request", as
    /token refuses it: HTTP Basic and client_secret together are refused, whichever is right."""
    new = company_app(public=False)
    client_id, secret = new.application.client_id, new.client_secret
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    before = stored()
    response = app_client().post(
        CHALLENGE,
        {**_valid_first(client_id), "client_secret": "wrong"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == "invalid_request", response.json()
    assert "auth_session" not in response.json()
    assert stored() == before


def test_the_follow_up_may_leave_out_client_id_but_not_the_secret(ada):
    """The draft's §5.1: client_id is needed only without client authentication and without
    an auth_session, which names its client. A confidential app still sends its secret."""

    def without_client_id(auth_session: str, credential: Any, **extra: str):
        data = {"auth_session": auth_session, "passkey_response": json.dumps(credential)}
        return app_client().post(CHALLENGE, {**data, **extra})

    public = company_app().application
    asked = challenge(public.client_id)
    done = without_client_id(asked.auth_session, ada.authenticator.get(asked.options, APP_ORIGIN))
    assert done.status_code == 200, done.content
    tokens = exchange(public.client_id, done.json()["authorization_code"], asked.verifier)
    assert tokens.status_code == 200, tokens.content
    new = company_app(name="Confidential app", public=False)
    client_id, secret = new.application.client_id, new.client_secret
    asked = challenge(client_id, client_secret=secret)
    credential = ada.authenticator.get(asked.options, APP_ORIGIN)
    before = stored()
    refused = without_client_id(asked.auth_session, credential)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    garbled = without_client_id(asked.auth_session[:-2] + "xx", credential, client_secret=secret)
    assert (garbled.status_code, garbled.json()["error"]) == (400, "invalid_session")
    assert stored() == before
    done = without_client_id(asked.auth_session, credential, client_secret=secret)
    assert done.status_code == 200, done.content


# --- Refusals -----------------------------------------------------------------------------------


def test_an_app_not_marked_first_party_is_refused(ada):
    app = company_app(first_party=False).application
    before = stored()
    response = ask(app.client_id, scope="openid", code_challenge="x" * 43,
                   code_challenge_method="S256")  # fmt: skip
    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")
    assert last_event("sso.refused").reason == "not_first_party"
    assert stored() == before
    unknown = ask("no-such-app", scope="openid")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client")


def test_an_auth_session_is_the_clients_it_was_issued_to(ada):
    app = company_app().application
    other = company_app(name="Other app").application
    asked = challenge(app.client_id)
    before = stored()
    credential = ada.authenticator.get(asked.options, APP_ORIGIN)
    response = finish(other.client_id, asked.auth_session, credential)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_session")
    assert stored() == before
    # Still usable by its own client.
    assert finish(app.client_id, asked.auth_session, credential).status_code == 200


def test_a_replayed_auth_session_or_response_is_refused(ada):
    app = company_app().application
    asked = challenge(app.client_id)
    credential = ada.authenticator.get(asked.options, APP_ORIGIN)
    assert finish(app.client_id, asked.auth_session, credential).status_code == 200
    again = finish(
        app.client_id, asked.auth_session, ada.authenticator.get(asked.options, APP_ORIGIN)
    )
    assert (again.status_code, again.json()["error"]) == (400, "invalid_session")
    assert last_event("sign_in.failed").reason == "challenge_missing"
    # The same response for a new auth_session: its challenge is not the new one.
    fresh = challenge(app.client_id)
    replayed = finish(app.client_id, fresh.auth_session, credential)
    assert (replayed.status_code, replayed.json()["error"]) == (400, "access_denied")
    assert last_event("sign_in.failed").reason == "challenge_mismatch"
    assert app_sessions().count() == 1


def test_an_expired_or_garbled_auth_session_is_refused(ada, clock):
    app = company_app().application
    asked = challenge(app.client_id)
    credential = ada.authenticator.get(asked.options, APP_ORIGIN)
    before, audited = stored(), AuditEvent.objects.count()
    garbled = finish(app.client_id, asked.auth_session[:-2] + "xx", credential)
    assert (garbled.status_code, garbled.json()["error"]) == (400, "invalid_session")
    clock.advance(301)  # the policy's ceremony timeout, 300 s
    expired = finish(app.client_id, asked.auth_session, credential)
    assert (expired.status_code, expired.json()["error"]) == (400, "invalid_session")
    assert stored() == before
    assert AuditEvent.objects.count() == audited + 2  # sso.refused, capped; nothing else
    assert last_event("sso.refused").reason == "auth_session_expired"


def test_a_wrong_pkce_verifier_is_refused_at_token(ada):
    app = company_app().application
    asked = challenge(app.client_id)
    done = finish(
        app.client_id, asked.auth_session, ada.authenticator.get(asked.options, APP_ORIGIN)
    )
    code = done.json()["authorization_code"]
    wrong = exchange(app.client_id, code, pkce()[0])
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert last_event("sso.token_refused").reason == "code_verifier_mismatch"
    no_verifier = Client().post(
        "/token", {"grant_type": "authorization_code", "code": code, "client_id": app.client_id}
    )
    assert no_verifier.status_code == 400


def test_a_person_not_assigned_the_app_is_refused(ada):
    app = company_app().application
    do_add_group("Finance", Origin.cli())
    do_assign_app(app, Origin.cli(), everyone=False, group_names=["Finance"])
    asked = challenge(app.client_id)
    before = {**stored(), "used_challenges": UsedChallenge.objects.count() + 1}
    done = finish(
        app.client_id, asked.auth_session, ada.authenticator.get(asked.options, APP_ORIGIN)
    )
    assert (done.status_code, done.json()["error"]) == (400, "access_denied")
    assert "You don't have access to this app" in done.json()["error_description"]
    event = last_event("sign_in.failed")
    assert (event.reason, event.subject) == ("not_assigned", ada.user)
    assert stored() == before  # the used challenge only: no session, no code


def test_unmet_acr_values_are_refused(ada):
    app = company_app().application
    asked = challenge(app.client_id, acr_values="phrh")  # a passkey without trusted attestation
    done = finish(
        app.client_id, asked.auth_session, ada.authenticator.get(asked.options, APP_ORIGIN)
    )
    assert (done.status_code, done.json()["error"]) == (400, "unmet_authentication_requirements")
    assert last_event("sign_in.failed").reason == "unmet_authentication_requirements"
    assert not app_sessions().exists()
    met = challenge(app.client_id, acr_values="phr")
    credential = ada.authenticator.get(met.options, APP_ORIGIN)
    assert finish(app.client_id, met.auth_session, credential).status_code == 200


def test_a_refused_assertion_is_answered_generically_and_audited_with_its_reason(ada):
    app = company_app().application
    answers = []
    for case in ("signature", "origin"):
        asked = challenge(app.client_id)
        if case == "signature":
            credential = ada.authenticator.get(asked.options, APP_ORIGIN, tamper_signature=True)
        else:
            credential = ada.authenticator.get(asked.options, "android:apk-key-hash:someone-else")
        done = finish(app.client_id, asked.auth_session, credential)
        assert done.status_code == 400
        answers.append(done.json())
        assert last_event("sign_in.failed").reason == (
            "signature_invalid" if case == "signature" else "origin_not_allowed"
        )
    assert answers[0] == answers[1]
    assert answers[0] == {
        "error": "access_denied",
        "error_description": "Verification failed: We could not verify your identity. Use "
        "another sign-in method to access your account.",
    }
    assert not app_sessions().exists()
    assert ada.passkey.sign_count == 0


def _valid_first(client_id: str) -> dict[str, str]:
    return {"client_id": client_id, "scope": "openid", "code_challenge": pkce()[1],
            "code_challenge_method": "S256"}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["repeated", "json_body", "no_pkce", "plain_pkce", "control", "prompt_consent", "huge",
     "request_object"],
)  # fmt: skip
def test_a_bad_first_request_is_refused_with_nothing_stored(ada, case):
    app = company_app().application
    params = _valid_first(app.client_id)
    client = app_client()
    before = stored()
    if case == "repeated":
        body = "&".join(f"{k}={v}" for k, v in params.items()) + "&scope=email"
        response = client.post(CHALLENGE, body, content_type=FORM)
    elif case == "json_body":
        response = client.post(CHALLENGE, json.dumps(params), content_type="application/json")
    elif case == "huge":
        response = client.post(CHALLENGE, {**params, "nonce": "n" * 70_000})
    else:
        changed = {
            "no_pkce": {"code_challenge": ""},
            "plain_pkce": {"code_challenge_method": "plain"},
            "control": {"nonce": "a\x01b"},
            "prompt_consent": {"prompt": "consent"},
            "request_object": {"request": "eyJ..."},
        }[case]
        response = client.post(CHALLENGE, {**params, **changed})
    expected = {"prompt_consent": "redirect_to_web", "request_object": "request_not_supported"}
    # draft §5.2.2.1: redirect_to_web is answered 403.
    assert response.status_code == (403 if case == "prompt_consent" else 400), response.content[
        :200
    ]
    assert response.json()["error"] == expected.get(case, "invalid_request")
    assert response["Cache-Control"] == "no-store"
    assert "auth_session" not in response.json()
    assert stored() == before


@pytest.mark.parametrize("case", ["missing", "not_json", "array", "wrong_types", "repeated"])
def test_a_bad_passkey_response_is_refused(ada, case):
    app = company_app().application
    asked = challenge(app.client_id)
    credential = ada.authenticator.get(asked.options, APP_ORIGIN)
    if case == "repeated":
        body = "&".join(
            [f"client_id={app.client_id}", f"auth_session={asked.auth_session}",
             "passkey_response=%7B%7D", "passkey_response=%7B%7D"]
        )  # fmt: skip
        response = app_client().post(CHALLENGE, body, content_type=FORM)
    elif case == "missing":
        response = app_client().post(
            CHALLENGE, {"client_id": app.client_id, "auth_session": asked.auth_session}
        )
    else:
        sent = {
            "not_json": "{not json",
            "array": "[]",
            "wrong_types": json.dumps({**credential, "id": 5, "response": "abc"}),
        }[case]
        response = finish(app.client_id, asked.auth_session, sent)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error == ("access_denied" if case == "wrong_types" else "invalid_request")
    assert not app_sessions().exists()
    assert not get_grant_model().objects.exists()
    if case != "wrong_types":
        # Nothing used up: the app may still send the right response.
        assert finish(app.client_id, asked.auth_session, credential).status_code == 200


def test_other_methods_get_oauths_json(db):
    response = Client().get(CHALLENGE)
    assert (response.status_code, response.json()["error"]) == (405, "invalid_request")


# --- The app's session ends as a browser's does -------------------------------------------------


def _token_works(access_token: str) -> bool:
    answer = Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")
    return answer.status_code == 200


@pytest.mark.parametrize("ending", ["sign_out_others", "admin_ends_sessions"])
def test_ending_the_apps_session_revokes_its_tokens(ada, ending):
    app = company_app().application
    tokens = signed_in_app(ada, app.client_id)
    assert _token_works(tokens["access_token"])
    if ending == "sign_out_others":
        browser = signed_in(ada)
        assert browser.post_form("/settings/sessions/sign-out-others").status_code in (302, 303)
    else:
        admin = enrolled_person("root@example.com", "Root")
        do_end_sessions(ada.user, Origin.cli(), actor=admin.user)
    assert not Session.objects.filter(user=ada.user, app_name="Company app").exists()
    assert not _token_works(tokens["access_token"])
    refreshed = Client().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
         "client_id": app.client_id},
    )  # fmt: skip
    assert refreshed.status_code == 400
    assert not get_refresh_token_model().objects.filter(revoked__isnull=True).exists()


def test_a_timed_out_app_session_ends_its_tokens(ada, clock, settings):
    """The session an app holds has no idle timeout (the app's refreshes, its use, never reach
    it), only the absolute one (THRESHOLD_SESSION_MAX_AGE)."""
    app = company_app().application
    tokens = signed_in_app(ada, app.client_id)
    clock.advance(settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 1)
    assert main(["cleanup"]) == 0
    assert app_sessions().filter(user=ada.user).exists()
    refreshed = Client().post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
         "client_id": app.client_id},
    )  # fmt: skip
    assert refreshed.status_code == 200, refreshed.content
    assert _token_works(refreshed.json()["access_token"])
    clock.advance(settings.THRESHOLD_SESSION_MAX_AGE - settings.THRESHOLD_SESSION_IDLE_TIMEOUT)
    assert main(["cleanup"]) == 0
    assert not Session.objects.filter(user=ada.user).exists()
    assert not _token_works(refreshed.json()["access_token"])


def test_a_first_party_app_keeps_offline_access_past_the_session_not_past_sign_out(
    ada, clock, settings
):
    """The administrator's first-party mark grants ``offline_access`` without the consent page
    (OpenID Connect Core §11's "other conditions"): the refresh token outlives the app's
    session's timeout, and "Sign out other sessions" still ends it."""
    app = company_app().application
    tokens = signed_in_app(ada, app.client_id, scope="openid offline_access")
    assert AppSignIn.objects.get(user=ada.user).offline
    clock.advance(settings.THRESHOLD_SESSION_MAX_AGE + 1)
    assert main(["cleanup"]) == 0
    assert not app_sessions().exists()
    refresh = {"grant_type": "refresh_token", "client_id": app.client_id}
    refreshed = Client().post("/token", {**refresh, "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.content
    browser = signed_in(ada)
    assert browser.post_form("/settings/sessions/sign-out-others").status_code in (302, 303)
    again = Client().post("/token", {**refresh, "refresh_token": refreshed.json()["refresh_token"]})
    assert again.status_code == 400


def test_challenges_share_the_sign_in_options_allowance_per_network(ada, clock):
    # The clock pinned: the bucket's 20 a second must not refill while the request runs.
    app = company_app().application
    network = throttle.network_of(CLIENT_IP)
    for _ in range(SIGN_IN_OPTIONS_LIMIT.burst):
        SIGN_IN_OPTIONS_LIMIT.take(network, threshold.clock.now())
    response = AppClient(REMOTE_ADDR=CLIENT_IP).post(CHALLENGE, _valid_first(app.client_id))
    assert (response.status_code, response.json()["error"]) == (429, "slow_down")
    assert int(response["Retry-After"]) >= 1
