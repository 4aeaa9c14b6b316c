"""A native app's sign-in through the system browser (RFC 8252): a public app may register a
private-use URI scheme redirect (§7.1, ``com.example.app:/oauth2redirect``), which the browser
hands back to the app; the code's exchange is the same PKCE exchange as any public app's."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.conftest import Browser
from tests.integration.test_sso import add_app, authorize, exchange, signed_in
from threshold.audit.actions import Origin
from threshold.sso.actions import AppError, check_settings, do_add_app

pytestmark = pytest.mark.django_db

NATIVE = "com.example.app:/oauth2redirect"


def test_a_native_app_signs_in_with_a_private_use_redirect(ada):
    app = add_app(redirect_uris=[NATIVE], public=True)
    auth = authorize(signed_in(ada), app, redirect_uri=NATIVE)
    assert auth.response.status_code == 302, auth.response.content[:300]
    location = urlsplit(auth.response["Location"])
    assert (location.scheme, location.path) == ("com.example.app", "/oauth2redirect")
    params = parse_qs(location.query)
    assert params["state"] == [auth.state]
    tokens = exchange(app, params["code"][0], auth.verifier, redirect_uri=NATIVE)
    assert tokens.status_code == 200, tokens.content[:300]
    assert "id_token" in tokens.json()


def test_an_error_goes_back_to_the_native_app_too(db):
    app = add_app(redirect_uris=[NATIVE], public=True)
    auth = authorize(Browser(), app, redirect_uri=NATIVE, prompt="none")  # no one signed in
    assert auth.response.status_code == 302, auth.response.content[:300]
    assert auth.response["Location"].startswith(f"{NATIVE}?error=login_required")


def test_another_apps_scheme_is_no_redirect_for_this_one(ada):
    """The scheme is the app's only through its exact registered URI."""
    add_app(name="Other", redirect_uris=["com.other.app:/cb"], public=True)
    app = add_app(redirect_uris=[NATIVE], public=True)
    auth = authorize(signed_in(ada), app, redirect_uri="com.other.app:/cb")
    # Not registered for this app: a page saying so, never a redirect (RFC 6749 §4.1.2.1).
    assert auth.response.status_code == 400, auth.response.content[:300]
    assert not auth.response.has_header("Location")
    assert app.application.get_allowed_schemes() == ["https", "http", "com.example.app"]


@pytest.mark.parametrize(
    ("uri", "public", "message"),
    [
        # A web server's app has a secret: its redirect URI is https (RFC 8252 §8.5).
        (NATIVE, False, "is not an http(s) URL"),
        # Not reverse domain name notation: any app could claim it (§7.1, §8.4).
        ("myapp:/callback", True, "is not an http(s) URL"),
        ("javascript:alert(1)", True, "is not an http(s) URL"),
        ("data:text/html,x", True, "is not an http(s) URL"),
        ("com.example.app:/cb?x=1", True, "with no query or fragment"),
        ("com.example.app:/cb#x", True, "with no query or fragment"),
        ("com.example.app://user@host/cb", True, "with no query or fragment"),
        ("com.example.app:", True, "with no query or fragment"),
        ("com.example.app:/a b", True, "is not an http(s) URL"),
    ],
)
def test_what_a_private_use_redirect_may_not_be(db, uri, public, message):
    with pytest.raises(AppError) as refused:
        check_settings("Company app", redirect_uris=[uri], public=public)
    assert message in str(refused.value)


def test_a_native_apps_redirect_stays_when_its_settings_change(db):
    new = do_add_app("Company app", Origin.cli(), redirect_uris=[NATIVE], public=True)
    assert check_settings(
        "Company app (renamed)", redirect_uris=[NATIVE, "com.example.app:/second"], public=True
    ).redirect_uris == (NATIVE, "com.example.app:/second")
    assert new.application.redirect_uris == NATIVE
