"""Regression tests from the review of dd8a046..ab5ef1e (redirect_uri at the code's exchange,
private-use URI scheme redirects for native apps, the seeds' words, config and proxy fixes).

Each test marked "Was a defect" failed on the code as reviewed; each was fixed since.
"""

from __future__ import annotations

import pytest
from oauth2_provider.models import get_grant_model

from tests.integration.conftest import Browser
from tests.integration.test_sso import add_app, authorize, signed_in
from threshold.audit.actions import Action
from threshold.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

NATIVE = "com.example.app:/oauth2redirect"
Grant = get_grant_model()


# Was a defect: 346245a: an error oauthlib raises (invalid_scope, unsupported_response_type, a
# missing PKCE challenge) is answered by views._authorize's OAuthToolkitError branch, whose
# _error_redirect gets no application, so responses.respond allows only http/https:
# OAuth2ResponseRedirect raises DisallowedRedirect and the native app's browser shows a 400
# 'Session Expired' page instead of the app receiving its error (RFC 6749 §4.1.2.1)
@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"scope": "openid bogus"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ],
)
def test_oauthlibs_errors_go_back_to_a_native_app(ada, extra, error):
    app = add_app(redirect_uris=[NATIVE], public=True)
    auth = authorize(signed_in(ada), app, redirect_uri=NATIVE, **extra)
    assert auth.response.status_code == 302, auth.response.content[:200]
    assert auth.response["Location"].startswith(f"{NATIVE}?error={error}&")


# Was a defect: 346245a: response_mode=form_post with a private-use redirect URI issues a code
# (grant INSERTed, sso.authorized audited) and only then responses._form_post raises
# DisallowedRedirect: a 400 'Session Expired' page, a code that is never delivered, an audit row
# for a sign-in that did not happen; the app gets no error
def test_form_post_to_a_native_app_issues_no_code_and_tells_the_app(ada):
    app = add_app(redirect_uris=[NATIVE], public=True)
    auth = authorize(signed_in(ada), app, redirect_uri=NATIVE, response_mode="form_post")
    assert not Grant.objects.exists()
    assert not AuditEvent.objects.filter(action=Action.SSO_AUTHORIZED).exists()
    assert auth.response.status_code == 302, auth.response.content[:200]
    assert auth.response["Location"].startswith(f"{NATIVE}?error=invalid_request&")


# Was a defect: 346245a: a refusal in form_post mode to a private-use redirect URI (here
# prompt=none with no one signed in: login_required) goes through responses._form_post, which
# raises DisallowedRedirect: a 400 page instead of the app's error
def test_a_refusal_asked_in_form_post_reaches_a_native_app(db):
    app = add_app(redirect_uris=[NATIVE], public=True)
    auth = authorize(Browser(), app, redirect_uri=NATIVE, prompt="none", response_mode="form_post")
    assert auth.response.status_code == 302, auth.response.content[:200]
    assert auth.response["Location"].startswith(NATIVE + "?error=")
