"""Outside review: passkeys from the company's Android and iOS apps, and related origins.

What a native app needs of the relying party (Android Credential Manager and Digital
Asset Links; iOS AuthenticationServices and ``webcredentials:``; WebAuthn L3 §5.11), checked
where the existing tests stop: the documents on the RP ID's own host, over TLS and behind the
proxy; app ceremonies shaped as the platforms shape them; and whether a native app, which holds
no browser cookies and sends no Origin, can sign anyone in at all.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from tests.integration.conftest import (
    CLIENT_IP,
    ORIGIN,
    VERIFICATION_FAILED,
    Browser,
    assert_failed,
    assert_ok,
    begin_sign_in,
    invite,
    last_event,
)
from threshold.audit.actions import Origin
from threshold.config import AndroidApp, Config, load
from threshold.core.encoding import b64url_encode
from threshold.passkeys.models import Passkey
from threshold.sso.actions import AppError, do_add_app

pytestmark = pytest.mark.django_db

KEY = hashlib.sha256(b"the company's release signing certificate").digest()
ANDROID_APPS = "com.example.app=" + KEY.hex(":").upper()
# What Credential Manager puts in clientDataJSON.origin for that app.
APP_ORIGIN = "android:apk-key-hash:" + b64url_encode(KEY)
IOS_APP = "ABCDE12345.com.example.app"
# The RP ID of these tests is localhost: an iOS app sends https://localhost.
IOS_ORIGIN = "https://localhost"
DOCUMENTS = [
    "/.well-known/assetlinks.json",
    "/.well-known/apple-app-site-association",
    "/.well-known/webauthn",
]
# A production layout: the RP ID is the company's domain, Threshold's pages on a subdomain.
PRODUCTION = {
    "THRESHOLD_RP_ID": "example.com",
    "THRESHOLD_ORIGINS": "https://login.example.com",
}
ALL_THREE = {
    "THRESHOLD_ANDROID_APPS": ANDROID_APPS,
    "THRESHOLD_IOS_APPS": IOS_APP,
    "THRESHOLD_RELATED_ORIGINS": "https://login.example.co.uk",
}

Configure = Callable[..., Config]


@pytest.fixture
def configure(settings, tmp_path) -> Configure:
    """Load a configuration from these variables and use what the documents and ceremonies
    read, and the hosts and proxy settings Django reads from it (threshold/settings.py)."""

    def apply(**variables: str) -> Config:
        env = {"THRESHOLD_VAR_DIR": str(tmp_path), "THRESHOLD_SECRET_KEY": "test-key-" * 5}
        loaded = load({**env, **variables})
        settings.THRESHOLD = dataclasses.replace(
            settings.THRESHOLD,
            rp=loaded.rp,
            android_apps=loaded.android_apps,
            ios_apps=loaded.ios_apps,
            related_origins=loaded.related_origins,
        )
        if "THRESHOLD_RP_ID" in variables:
            settings.ALLOWED_HOSTS = [*loaded.allowed_hosts, "testserver"]
            settings.SECURE_HSTS_SECONDS = 31536000 if loaded.https else 0
        if loaded.proxy_ssl_header:
            settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        return loaded

    return apply


def assert_document(response) -> None:
    """What Android's verifier, Apple's CDN and a browser (§5.11.1) accept: 200, JSON, no
    redirect, no cookie."""
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "public, max-age=3600"
    assert not response.has_header("Location")
    assert not response.cookies
    json.loads(response.content)


# --- The documents where the platforms fetch them: https://<RP ID>/.well-known/ -----------------


@pytest.mark.parametrize("path", DOCUMENTS)
def test_documents_are_served_on_the_rp_id_host_over_tls(configure, path):
    configure(**PRODUCTION, **ALL_THREE)
    response = Client().get(path, secure=True, HTTP_HOST="example.com")
    assert_document(response)
    assert response["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("path", DOCUMENTS)
def test_behind_the_tls_proxy_the_documents_are_served_and_never_redirected(configure, path):
    configure(**PRODUCTION, **ALL_THREE, THRESHOLD_BEHIND_TLS_PROXY="1")
    # The proxy on this machine says the request came over TLS.
    forwarded = Client(REMOTE_ADDR="127.0.0.1").get(
        path, HTTP_HOST="example.com", HTTP_X_FORWARDED_PROTO="https"
    )
    assert_document(forwarded)
    assert forwarded.has_header("Strict-Transport-Security")
    # A proxy that forgets the header still gets the document, not a redirect to https
    # (which Apple refuses outright; nginx's example in docs/operations.md sets it).
    plain = Client(REMOTE_ADDR="127.0.0.1").get(path, HTTP_HOST="example.com")
    assert_document(plain)
    assert not plain.has_header("Strict-Transport-Security")


def test_the_rp_id_host_is_answered_only_once_a_document_is_configured(configure):
    assert "example.com" not in configure(**PRODUCTION).allowed_hosts
    for name, value in ALL_THREE.items():
        assert "example.com" in configure(**PRODUCTION, **{name: value}).allowed_hosts
    # The related origins' hosts are served too (a sign-in page there), the RP ID's own
    # documents stay the same on every host.
    related = configure(**PRODUCTION, **ALL_THREE)
    assert set(related.allowed_hosts) == {"example.com", "login.example.com", "login.example.co.uk"}
    assert Client().get(DOCUMENTS[2], secure=True, HTTP_HOST="www.example.com").status_code == 400


@pytest.mark.parametrize("path", DOCUMENTS)
def test_a_trailing_slash_is_404_never_a_redirect(configure, path):
    configure(**PRODUCTION, **ALL_THREE)
    slash = Client().get(path + "/", secure=True, HTTP_HOST="example.com")
    assert slash.status_code == 404
    assert not slash.has_header("Location")


def test_an_ios_app_makes_the_rp_id_origin_an_app_origin_only(configure):
    loaded = configure(**PRODUCTION, THRESHOLD_IOS_APPS=IOS_APP)
    assert loaded.rp.app_origins == frozenset({"https://example.com"})
    assert loaded.rp.origins == frozenset({"https://login.example.com"})
    assert not loaded.rp.allow_cross_origin
    # assetlinks' fingerprint and the origin Credential Manager sends are the same 32 bytes.
    android = configure(**PRODUCTION, THRESHOLD_ANDROID_APPS=ANDROID_APPS)
    assert android.android_apps == (AndroidApp("com.example.app", (KEY,)),)
    assert android.rp.app_origins == frozenset({APP_ORIGIN})
    assert len(APP_ORIGIN.removeprefix("android:apk-key-hash:")) == 43


# --- App ceremonies, as the platforms shape them --------------------------------------------


def app_client_data(challenge: str, origin: str, **extra: object) -> bytes:
    """clientDataJSON as Credential Manager builds it in an app: no crossOrigin member, and
    androidPackageName (Google's samples show exactly these four members)."""
    data = {"type": "webauthn.get", "challenge": challenge, "origin": origin, **extra}
    return json.dumps(data, separators=(",", ":")).encode()


def test_an_android_apps_client_data_as_credential_manager_sends_it_signs_in(configure, ada):
    configure(THRESHOLD_ANDROID_APPS=ANDROID_APPS)
    browser = Browser()
    options = begin_sign_in(browser)
    client_data = app_client_data(
        options["challenge"], APP_ORIGIN, androidPackageName="com.example.app"
    )
    response = browser.post_json(
        "/sign-in/result", ada.authenticator.get(options, APP_ORIGIN, client_data=client_data)
    )
    assert_ok(response)
    assert browser.is_signed_in()
    assert ada.passkey.sign_count == 1


@pytest.mark.parametrize(
    ("variables", "origin", "extra"),
    [
        ({"THRESHOLD_ANDROID_APPS": ANDROID_APPS}, APP_ORIGIN, {"topOrigin": ORIGIN}),
        ({"THRESHOLD_IOS_APPS": IOS_APP}, IOS_ORIGIN, {"crossOrigin": True}),
        ({"THRESHOLD_IOS_APPS": IOS_APP}, IOS_ORIGIN, {"topOrigin": ORIGIN}),
    ],
    ids=["android-topOrigin", "ios-crossOrigin", "ios-topOrigin"],
)
def test_an_app_origin_claiming_to_be_embedded_is_refused(configure, ada, variables, origin, extra):
    configure(**variables, THRESHOLD_ALLOW_CROSS_ORIGIN="1", THRESHOLD_TOP_ORIGINS=ORIGIN)
    browser = Browser()
    options = begin_sign_in(browser)
    data = app_client_data(options["challenge"], origin, **extra)
    response = browser.post_json(
        "/sign-in/result", ada.authenticator.get(options, origin, client_data=data)
    )
    assert_failed(response, 400, VERIFICATION_FAILED)
    assert "cross_origin" not in response.content.decode()
    event = last_event("sign_in.failed")
    assert (event.reason, event.ip) == ("cross_origin_not_allowed", CLIENT_IP)
    assert not browser.is_signed_in()
    assert ada.passkey.sign_count == 0


@pytest.mark.parametrize(
    "spelling",
    [
        APP_ORIGIN + "=",  # padded
        "android:apk-key-hash:" + base64.b64encode(KEY).decode(),  # standard base64
        "android:apk-key-hash:" + KEY.hex(":").upper(),  # the fingerprint as keytool prints it
        # The FIDO AppID-and-facets spelling, a SHA-1 of the certificate.
        "android:apk-key-hash:" + b64url_encode(hashlib.sha1(KEY).digest()),  # noqa: S324
    ],
)
def test_only_the_exact_android_origin_is_accepted(configure, ada, spelling):
    configure(THRESHOLD_ANDROID_APPS=ANDROID_APPS)
    browser = Browser()
    options = begin_sign_in(browser)
    response = browser.post_json("/sign-in/result", ada.authenticator.get(options, spelling))
    assert_failed(response, 400, VERIFICATION_FAILED)
    assert last_event("sign_in.failed").reason == "origin_not_allowed"
    assert not browser.is_signed_in()


# --- Can the company's app sign anyone in? ---------------------------------------------------


def native_app(**defaults: str) -> Client:
    """An app's HTTP client (OkHttp, URLSession): a cookie jar at most, no Origin, no Referer,
    no page of Threshold's loaded."""
    return Client(enforce_csrf_checks=True, HTTP_USER_AGENT="okhttp/4.12.0", **defaults)


def test_a_native_app_can_ask_for_sign_in_options(configure, ada):
    """The in-app route (threshold/sso/firstparty.py, tests/integration/test_first_party_apps.py):
    a first-party app asks /authorize-challenge, with no page, cookie or CSRF token, and gets
    the passkey options to give Credential Manager or AuthenticationServices."""
    configure(THRESHOLD_ANDROID_APPS=ANDROID_APPS, THRESHOLD_IOS_APPS=IOS_APP)
    app = do_add_app(
        "Company app",
        Origin.cli(),
        redirect_uris=["com.example.app:/oauth2redirect"],
        public=True,
        first_party=True,
    ).application
    form = {
        "client_id": app.client_id,
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    response = native_app().post(
        "/authorize-challenge", urlencode(form), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 403, response.content[:200]  # draft §5.2.2.1
    body = response.json()
    assert body["error"] == "insufficient_authorization"
    assert body["passkey_options"]["rpId"] == "localhost"
    assert body["auth_session"]


def test_today_a_native_app_signs_in_only_by_posing_as_the_sign_in_page(configure, ada):
    """The whole path a Credential Manager app has today, none of it documented: scrape the
    sign-in page's flow token and CSRF token, keep its cookies, sign, then drive /authorize with
    the browser session it was given to get a code, and exchange it for tokens."""
    configure(THRESHOLD_ANDROID_APPS=ANDROID_APPS)
    app = do_add_app(
        "Company app", Origin.cli(), redirect_uris=["https://example.com/app/cb"], public=True
    ).application
    client = native_app()
    page = client.get("/sign-in").content.decode()
    headers = {
        "HTTP_X_THRESHOLD_FLOW": re.search(r'data-flow="([^"]+)"', page).group(1),
        "HTTP_X_CSRFTOKEN": re.search(r'data-csrf="([^"]+)"', page).group(1),
    }
    options = client.post(
        "/sign-in/options", b"{}", content_type="application/json", **headers
    ).json()["publicKey"]
    assertion = ada.authenticator.get(options, APP_ORIGIN)
    result = client.post(
        "/sign-in/result", json.dumps(assertion), content_type="application/json", **headers
    )
    assert_ok(result)  # a browser session cookie, which no app API accepts
    assert set(result.json()) == {"status", "errorMessage", "redirect"}
    verifier = secrets.token_urlsafe(48)
    challenge = b64url_encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": "https://example.com/app/cb",
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    redirect = client.get("/authorize?" + urlencode(query))
    assert redirect.status_code == 302
    code = parse_qs(urlsplit(redirect["Location"]).query)["code"][0]
    tokens = Client().post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://example.com/app/cb",
            "code_verifier": verifier,
            "client_id": app.client_id,
        },
    )
    assert tokens.status_code == 200
    assert {"access_token", "id_token"} <= set(tokens.json())


def test_over_tls_the_app_must_also_forge_an_origin_header(configure, ada):
    configure(THRESHOLD_ANDROID_APPS=ANDROID_APPS)
    client = native_app()
    page = client.get("/sign-in", secure=True).content.decode()
    headers = {
        "HTTP_X_THRESHOLD_FLOW": re.search(r'data-flow="([^"]+)"', page).group(1),
        "HTTP_X_CSRFTOKEN": re.search(r'data-csrf="([^"]+)"', page).group(1),
    }

    def options(**extra: str):
        return client.post(
            "/sign-in/options", b"{}", content_type="application/json", secure=True, **extra
        )

    # Token and cookie are not enough over HTTPS: Django wants an Origin or a Referer.
    assert options(**headers).status_code == 403
    assert options(**headers, HTTP_ORIGIN="https://testserver").status_code == 200


def test_a_mobile_app_signs_in_through_the_system_browser_with_a_claimed_https_uri(ada):
    """RFC 8252's way, what Okta, Auth0 and Keycloak document for native apps: the app opens
    /authorize in Custom Tabs / ASWebAuthenticationSession, the passkey ceremony runs in the
    browser at Threshold's web origin, and the code comes back on an App Link / Universal
    Link. That works: a public app, PKCE, an https redirect URI."""
    app = do_add_app(
        "Company app", Origin.cli(), redirect_uris=["https://example.com/app/cb"], public=True
    ).application
    system_browser = Browser()
    assert_ok(
        system_browser.post_json(
            "/sign-in/result", ada.authenticator.get(begin_sign_in(system_browser), ORIGIN)
        )
    )
    verifier = secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": "https://example.com/app/cb",
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": b64url_encode(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    redirect = system_browser.get("/authorize?" + urlencode(query))
    assert redirect.status_code == 302
    assert redirect["Location"].startswith("https://example.com/app/cb?code=")


# Was a defect: RFC 8252 §7: an authorization server MUST offer native apps private-use URI scheme
# redirects (§7.1, com.example.app:/oauth2redirect); Threshold takes only https and loopback http
# (threshold/sso/actions.py _check_uri), so an iOS app before 17.4 (ASWebAuthenticationSession
# callbackURLScheme) or an AppAuth app with a custom scheme cannot be added
def test_a_public_mobile_app_may_use_a_private_use_uri_scheme_redirect(db):
    try:
        do_add_app(
            "Company app",
            Origin.cli(),
            redirect_uris=["com.example.app:/oauth2redirect"],
            public=True,
        )
    except AppError as error:
        pytest.fail(f"refused: {error}")


def test_enrolling_from_a_native_app_hits_the_same_wall(configure):
    """An invite link opened in the app: the enrollment options also want the page's flow
    token and the CSRF cookie."""
    configure(THRESHOLD_ANDROID_APPS=ANDROID_APPS)
    created, token = invite()
    response = native_app().post(f"/enroll/{token}/options", b"{}", content_type="application/json")
    assert response.status_code == 403
    assert not Passkey.objects.filter(user=created.user).exists()
