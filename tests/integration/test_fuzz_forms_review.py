"""An outside fuzzing review of the OAuth 2.0 / OpenID Connect endpoints and the HTML forms.

Every request goes to the production WSGI application (``threshold.wsgi.application``, through
``tests/support/wsgi.py``), as gunicorn hands it over: the lean paths of ``/token`` and
``/userinfo`` included. Hypothesis builds each request from a valid one (some fields replaced,
dropped, repeated or added; values empty, huge, with NUL and control characters, lone
surrogates, non-UTF-8 bytes, normalisation tricks, out-of-range and negative numbers; stray
bytes and garbled percent-encoding after the body or query; wrong Content-Types; garbled HTTP
Basic credentials) and checks, for each example:

- never a 5xx;
- ``/token``, ``/introspect``, ``/revoke``, ``/userinfo`` and ``/authorize-challenge`` answer
  RFC 6749 section 5.2's JSON (or RFC 6750's, or the first-party draft's codes), ``no-store``,
  a 401 with its ``WWW-Authenticate`` challenge; ``/revoke`` may answer 200 to an
  authenticated app (RFC 7009 section 2.2), ``/introspect`` only ``{"active": false}``;
- ``/authorize`` and ``/end-session`` redirect only to a URI the app registered (or to
  Threshold's own pages), with an error code of the protocol's, else answer a page;
- the forms (fallback sign-in, enrollment and recovery links, Settings, the admin portal, the
  consent page) answer the form again or a page with the product's words (4xx), and redirect
  only within the site; whatever they store is clean text (no control or format characters,
  NFC, no U+FFFD);
- nothing is stored (the rows of every model in ``apps.get_models()``, before and after) but
  what the docs say a refusal leaves: the audit rows (README, "Single sign-on": every
  authorization, token, refusal and logout is audited; docs/operations.md: a garbled link is
  ``invite_unusable``, a refused app sign-in ``sign_in.failed``), the fallback's failure
  counters (README's ``password_lockout_threshold``), the used-up challenge of a refused
  ``/authorize-challenge`` assertion (docs/operations.md: the ``auth_session`` works once),
  and for an answer that succeeds, what it issues.

The defects found are the strict xfails at the end, each with the input hypothesis found
pinned; the generators leave those inputs out (each says which test covers it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode, urlsplit

import pyotp
import pytest
from django.apps import apps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import ORIGIN, Browser, Person, enrolled_person, invite, sign_in
from tests.support.wsgi import wsgi
from threshold import clock
from threshold.accounts.actions import do_set_role
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.core import totp
from threshold.core.policy import SETTINGS
from threshold.enrollment.actions import do_issue_recovery
from threshold.fallback.actions import do_set_up_fallback
from threshold.fallback.models import FailureCounter
from threshold.groups.actions import do_add_group
from threshold.groups.models import Group
from threshold.passkeys.limits import SIGN_IN_OPTIONS_LIMIT
from threshold.passkeys.models import Passkey
from threshold.sso.actions import NewApp, do_add_app
from threshold.sso.models import Application

# No example database (reproducible in CI). Hypothesis 6.170's pytest plugin still caches the
# literals of local modules in .hypothesis/constants/ when it collects any @given test.
FUZZ = settings(
    database=None,
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

REDIRECT = "https://wiki.example.com/oidc/callback"
LOGGED_OUT = "https://wiki.example.com/bye"
NATIVE_REDIRECT = "com.example.app:/oauth2redirect"
LOOPBACK_REDIRECT = "http://127.0.0.1:8765/cb"
VERIFIER = "v" * 43
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)
FORM = "application/x-www-form-urlencoded"
AUDIT = "audit.AuditEvent"

# RFC 6749 sections 4.1.2.1 and 5.2, RFC 6750 section 3.1, RFC 7009 section 2.2.1, OpenID
# Connect Core section 3.1.2.6 and its request-object codes, the OpenID Extended
# Authentication Profile's, and draft-ietf-oauth-first-party-apps-04 section 5.2.2.
PROTOCOL_ERRORS = frozenset(
    {
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
        "unsupported_grant_type", "invalid_scope", "unsupported_token_type", "invalid_token",
        "insufficient_scope", "access_denied", "unsupported_response_type", "server_error",
        "temporarily_unavailable", "interaction_required", "login_required",
        "account_selection_required", "consent_required", "request_not_supported",
        "request_uri_not_supported", "registration_not_supported",
        "unmet_authentication_requirements", "invalid_session", "insufficient_authorization",
        "redirect_to_web", "slow_down",
    }
)  # fmt: skip


# --- Requests, as gunicorn hands them over ------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    content: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def location(self) -> str:
        return self.header("Location")

    def json(self) -> dict[str, Any]:
        data = json.loads(self.content)
        assert isinstance(data, dict), self.content
        return data

    def __repr__(self) -> str:
        return f"{self.status} {self.headers.get('Location', '')} {self.content[:300]!r}"


def send(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    cookies: dict[str, str] | None = None,
    **headers: Any,
) -> Answer:
    """One request to the production WSGI application; ``path`` and ``query`` as the server
    hands them over (bytes as latin-1 characters, the path percent-decoded)."""
    headers.setdefault("CONTENT_TYPE", FORM if body else None)
    return Answer(*wsgi(method, path, body, cookies, QUERY_STRING=query, **headers))


def row_counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def changed_since(before: dict[str, int]) -> dict[str, int]:
    after = row_counts()
    return {label: after[label] - before[label] for label in after if after[label] != before[label]}


def stray_percent(query: str) -> bool:
    """A ``%`` not followed by two hex digits, before the end: oauthlib's urldecode fails on
    it (``test_a_stray_percent_in_the_query_is_a_protocol_error``)."""
    return re.search(r"%[^0-9A-Fa-f]|%[0-9A-Fa-f][^0-9A-Fa-f]", query) is not None


# --- What is generated --------------------------------------------------------------------------

NASTY = [
    "", " ", "\x00", "a\x00b", "\x01", "\t", "\r\n", "\x7f", "\x85", "\u2028", "\ufeff",
    "\u202e", "\u200b", "\ufb01", "A\u030a", "\u00c5", "\uff19", "\u00b2", "\u0663", "-1", "0",
    "+5", " 5", "1_0", "1e3", "2147483648", "9223372036854775808", "9" * 40, "-99999", "%",
    "%zz", "%00", "%ff", "%ed%a0%80", "null", "[]", "{}", '{"a":1}', "<script>x</script>",
    "' OR 1=1 --", "\U0001d54f" * 5, "a" * 300, "b" * 5000, "openid", "openid offline_access",
    "code", "code id_token", "S256", "plain", "none", "login", "consent", "none login",
    "select_account", "phr", "phrh", "query", "fragment", "form_post", "//evil.example",
    "https://evil.example/", "javascript:alert(1)", "\\\\evil.example", REDIRECT + "/..",
    REDIRECT.upper(), REDIRECT + "?x=1", REDIRECT + "#f", "http://127.0.0.1:1/cb",
    "http://127.0.0.1:65536/cb", "https://user@wiki.example.com/oidc/callback",
]  # fmt: skip

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=30),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), _SURROGATES, st.text(max_size=4)),
)

# How a value is put in a form or query: percent-encoded UTF-8, raw UTF-8 bytes, latin-1
# bytes, or percent-encoded with every % doubled (a garbled encoding).
ENCODINGS: tuple[Callable[[str], bytes], ...] = (
    lambda text: quote(text, safe="", errors="surrogatepass").encode(),
    lambda text: text.encode("utf-8", "surrogatepass"),
    lambda text: text.encode("latin-1", "replace"),
    lambda text: quote(text, safe="", errors="surrogatepass").replace("%", "%%").encode(),
)
TRAILERS = [
    b"", b"%", b"%zz", b"&&", b"=", b"%ff%fe", b"%ed%a0%80", b"%c0%80", b"\xff\xfe", b"a=%",
    b";", b"==", b"&=&", b"%%", b"+", b"%2", b"\x00", b"%u0041",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, str], names: list[str]) -> bytes:
    """A form (or query) made from ``base``: fields replaced, dropped, repeated or added."""
    pairs = list(base.items())
    for _ in range(draw(st.integers(0, 3))):
        operation = draw(st.integers(0, 3))
        if operation == 0 and pairs:
            index = draw(st.integers(0, len(pairs) - 1))
            pairs[index] = (pairs[index][0], draw(TEXT))
        elif operation == 1 and pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif operation == 2 and pairs:
            pairs.append(pairs[draw(st.integers(0, len(pairs) - 1))])
        else:
            pairs.append((draw(st.one_of(st.sampled_from(names), TEXT)), draw(TEXT)))
    parts = [
        ENCODINGS[0](name) + b"=" + ENCODINGS[draw(st.sampled_from([0, 0, 0, 1, 2, 3]))](value)
        for name, value in pairs
    ]
    return b"&".join(parts) + draw(st.sampled_from(TRAILERS))


def mutated_query(base: dict[str, str], names: list[str]) -> st.SearchStrategy[str]:
    return mutated(base, names).map(lambda body: body.decode("latin-1"))


# --- The world: apps, people, browsers -----------------------------------------------------------


@dataclass
class World:
    wiki: NewApp  # a confidential web app
    mobile: NewApp  # the company's own app: public, first-party
    ada: Person  # an administrator, signed in with her passkey in ``cookies``
    bob: Person
    group: Group
    cookies: dict[str, str]

    @property
    def csrf(self) -> str:
        return self.cookies["threshold_csrf"]

    def jar(self) -> dict[str, str]:
        return dict(self.cookies)


@pytest.fixture
def world(db: Any) -> World:
    wiki = do_add_app(
        "Wiki", Origin.cli(), redirect_uris=[REDIRECT], post_logout_redirect_uris=[LOGGED_OUT]
    )
    mobile = do_add_app(
        "Company app",
        Origin.cli(),
        redirect_uris=[NATIVE_REDIRECT, LOOPBACK_REDIRECT],
        public=True,
        first_party=True,
    )
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    do_set_role(ada.user, Role.ADMINISTRATOR, Origin.cli())
    bob = enrolled_person("bob@example.com", "Bob Babbage")
    group = do_add_group("Engineering", Origin.cli())
    browser = Browser()
    assert sign_in(browser, ada.authenticator).status_code == 200
    browser.csrf_token()
    cookies = {name: morsel.value for name, morsel in browser.client.cookies.items()}
    return World(wiki, mobile, ada, bob, group, cookies)


def authorization(client_id: str, redirect_uri: str = REDIRECT) -> dict[str, str]:
    return {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "scope": "openid", "state": "st", "nonce": "n", "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }  # fmt: skip


def code_for(world: World) -> str:
    """A fresh code for the wiki, from Ada's signed-in browser."""
    answer = send(
        "GET", "/authorize", query=urlencode(authorization(world.wiki.application.client_id)),
        cookies=world.jar(),
    )  # fmt: skip
    return dict(parse_qsl(urlsplit(answer.location).query))["code"]


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def tokens_for(world: World) -> dict[str, Any]:
    body = urlencode(
        {"grant_type": "authorization_code", "code": code_for(world), "redirect_uri": REDIRECT,
         "code_verifier": VERIFIER}
    )  # fmt: skip
    answer = send(
        "POST", "/token", body.encode(),
        HTTP_AUTHORIZATION=basic(world.wiki.application.client_id, world.wiki.client_secret or ""),
    )  # fmt: skip
    assert answer.status == 200, answer
    return answer.json()


# --- The checks ---------------------------------------------------------------------------------


def assert_protocol_error(answer: Answer, *, ok: tuple[int, ...] = ()) -> None:
    """RFC 6749 section 5.2's JSON error, never cached; or a status in ``ok``."""
    assert answer.status < 500, answer
    if answer.status in ok:
        return
    assert 400 <= answer.status < 500, answer
    assert answer.header("Content-Type").startswith("application/json"), answer
    body = answer.json()
    assert body.get("error") in PROTOCOL_ERRORS, answer
    assert isinstance(body.get("error_description", ""), str), answer
    assert "no-store" in answer.header("Cache-Control"), answer
    if answer.status == 401:
        assert answer.header("WWW-Authenticate"), answer


def assert_page(answer: Answer) -> None:
    """A page of the product's for a 4xx; a redirect only within the site."""
    assert answer.status < 500, answer
    if 300 <= answer.status < 400:
        target = answer.location
        assert (target.startswith("/") and not target.startswith(("//", "/\\"))) or (
            target.startswith(ORIGIN + "/")
        ), answer
    if answer.status >= 400:
        assert answer.header("Content-Type").startswith("text/html"), answer
        assert b"<title>" in answer.content, answer
        assert b"Threshold" in answer.content, answer


def _registered(target: str, registered: list[str]) -> bool:
    parts = urlsplit(target)
    if "@" in parts.netloc or "\\" in target:
        return False
    bare = f"{parts.scheme}:{'//' + parts.netloc if parts.netloc else ''}{parts.path}"
    for uri in registered:
        allowed = urlsplit(uri)
        # RFC 8252 section 7.3: a loopback redirect URI with any port.
        loopback = allowed.hostname == "127.0.0.1" == parts.hostname
        if bare == uri or (loopback and (parts.scheme, parts.path) == ("http", allowed.path)):
            return True
    return False


def assert_authorization_answer(answer: Answer, registered: list[str]) -> bool:
    """An authorization endpoint's answer: the app's registered URI (with a code or an error
    of the protocol's), Threshold's own pages, or a page. True when it issued a code."""
    assert answer.status < 500, answer
    if 300 <= answer.status < 400:
        target = answer.location
        if target.startswith("/") and not target.startswith(("//", "/\\")):
            return False
        assert _registered(target, registered), answer
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query or parts.fragment))
        if "code" in params:
            return True
        assert params.get("error") in PROTOCOL_ERRORS, answer
        return False
    text = answer.content.decode()
    action = re.search(r'<form[^>]*action="([^"]*)"', text)
    if answer.status == 200 and action and not action.group(1).startswith("/"):
        # form_post: the form goes to a registered URI only.
        assert _registered(action.group(1).replace("&amp;", "&"), registered), answer
        return 'name="code"' in text
    assert_page(answer)
    return False


def assert_stored(changed: dict[str, int], allowed: set[str]) -> None:
    assert set(changed) <= allowed, changed


def stored_names_are_clean() -> None:
    """What people typed and the product stored: no control, format or private-use character,
    no U+FFFD, NFC (``threshold/core/names.py``'s rules)."""
    columns = {
        # Not the username and email: test_an_invite_to_an_address_mail_cannot_reach_is_refused.
        User: ("full_name", "locked_reason"),
        Group: ("name",),
        Passkey: ("nickname",),
        Application: (
            "name", "redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri",
            "initiate_login_uri",
        ),
    }  # fmt: skip
    for model, names in columns.items():
        for row in model.objects.values(*names):
            for name, value in row.items():
                text = value or ""
                assert unicodedata.normalize("NFC", text) == text, (model, name, text)
                assert "\ufffd" not in text, (model, name, text)
                assert not any(unicodedata.category(c)[0] == "C" for c in text), (name, text)


# --- /token, /introspect, /revoke, /userinfo ----------------------------------------------------

_TOKEN_NAMES = [
    "grant_type", "code", "redirect_uri", "client_id", "client_secret", "code_verifier",
    "refresh_token", "scope", "client_assertion", "client_assertion_type", "device_code",
    "username", "password", "audience", "resource",
]  # fmt: skip

_CONTENT_TYPES = [FORM] * 5 + [
    "application/json", "text/plain", "multipart/form-data", "multipart/form-data; boundary=x",
    f"{FORM}; charset=latin-1", f"{FORM}; charset=utf-16", f"{FORM}; charset=rot13", "",
]  # fmt: skip


@st.composite
def authorization_headers(draw: st.DrawFn, client_id: str, secret: str) -> str | None:
    if draw(st.booleans()):
        return None
    raw = draw(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [f"{client_id}:{secret}".encode(), f"{client_id}:".encode(), b":", b"", b"a:b",
                 b"\xff:\xfe", f"{client_id}:{secret}:x".encode(), f"%zz:{secret}".encode()]
            ),
        )
    )  # fmt: skip
    encoded = base64.b64encode(raw).decode()
    credentials = draw(
        st.sampled_from([encoded, encoded[:-1], encoded + "=", raw.decode("latin-1")])
    )
    scheme = draw(st.sampled_from(["Basic ", "basic ", "Basic  ", "Bearer ", "Basic", ""]))
    return scheme + credentials


@FUZZ
@given(data=st.data())
def test_token_endpoint_answers_oauth_errors(world: World, data: st.DataObject) -> None:
    client_id, secret = world.wiki.application.client_id, world.wiki.client_secret or ""
    base = {
        "grant_type": data.draw(st.sampled_from(["authorization_code", "refresh_token"])),
        "code": "x" * 30, "refresh_token": "r" * 30, "redirect_uri": REDIRECT,
        "client_id": client_id, "client_secret": secret, "code_verifier": VERIFIER,
    }  # fmt: skip
    body = data.draw(mutated(base, _TOKEN_NAMES))
    authorization_header = data.draw(authorization_headers(client_id, secret))
    content_type = data.draw(st.sampled_from(_CONTENT_TYPES))
    query = data.draw(st.sampled_from(["", "", "a=b", "code=x", "%", "a=%ff"]))
    before = row_counts()
    answer = send(
        "POST", "/token", body, query=query, CONTENT_TYPE=content_type or None,
        HTTP_AUTHORIZATION=authorization_header,
    )  # fmt: skip
    assert_protocol_error(answer)
    assert_stored(changed_since(before), {AUDIT})


@FUZZ
@given(data=st.data())
def test_introspection_and_revocation_answer_oauth_errors(
    world: World, data: st.DataObject
) -> None:
    client_id, secret = world.wiki.application.client_id, world.wiki.client_secret or ""
    path = data.draw(st.sampled_from(["/introspect", "/revoke"]))
    base = {"token": "t" * 30, "token_type_hint": "access_token", "client_id": client_id,
            "client_secret": secret}  # fmt: skip
    body = data.draw(mutated(base, [*base]))
    authorization_header = data.draw(authorization_headers(client_id, secret))
    content_type = data.draw(st.sampled_from(_CONTENT_TYPES))
    query = data.draw(st.sampled_from(["", "", "token=x", "a=b", "%", "a=%ff"]))
    before = row_counts()
    answer = send(
        "POST", path, body, query=query, CONTENT_TYPE=content_type or None,
        HTTP_AUTHORIZATION=authorization_header,
    )  # fmt: skip
    # RFC 7009 section 2.2: an unknown token is revoked "successfully"; RFC 7662 section
    # 2.2: an unknown token is inactive.
    assert_protocol_error(answer, ok=(200,))
    if answer.status == 200 and path == "/introspect":
        assert answer.json() == {"active": False}, answer
    assert_stored(changed_since(before), {AUDIT})


@FUZZ
@given(data=st.data())
def test_userinfo_answers_bearer_errors(world: World, data: st.DataObject) -> None:
    header = data.draw(
        st.one_of(
            st.builds(
                lambda scheme, token: scheme + token,
                st.sampled_from(["Bearer ", "bearer ", "Bearer  ", "Basic ", "", "Bearer"]),
                TEXT,
            ),
            st.binary(max_size=30).map(lambda raw: raw.decode("latin-1")),
        )
    )
    method = data.draw(st.sampled_from(["GET", "POST"]))
    body = (
        data.draw(mutated({"access_token": "x" * 20}, ["access_token"]))
        if method == "POST"
        else b""
    )
    query = data.draw(st.sampled_from(["", "access_token=x", "a=%ff", "access%5ftoken=1", "%"]))
    try:
        header.encode("latin-1")
    except UnicodeEncodeError:
        header = header.encode("utf-8", "surrogatepass").decode("latin-1")
    before = row_counts()
    answer = send(method, "/userinfo", body, query=query, HTTP_AUTHORIZATION=header)
    assert_protocol_error(answer)
    assert answer.header("WWW-Authenticate"), answer  # RFC 6750 section 3
    assert_stored(changed_since(before), {AUDIT})


# --- /authorize, the consent page, /end-session ---------------------------------------------------

_AUTHORIZATION_NAMES = [
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "prompt", "max_age",
    "acr_values", "id_token_hint", "code_challenge", "code_challenge_method", "request",
    "request_uri", "claims", "ui_locales", "response_mode", "login_hint", "registration",
    "display", "claims_locales", "threshold_reauth",
]  # fmt: skip
# What a code issued leaves: the grant and the facts of the sign-in.
_CODE_ROWS = {AUDIT, "oauth2_provider.Grant", "sso.AppSignIn"}


@FUZZ
@given(data=st.data())
def test_authorize_never_goes_anywhere_unregistered(world: World, data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["wiki", "mobile"]))
    application = world.wiki.application if which == "wiki" else world.mobile.application
    redirect_uri = REDIRECT if which == "wiki" else NATIVE_REDIRECT
    query = data.draw(
        mutated_query(authorization(application.client_id, redirect_uri), _AUTHORIZATION_NAMES)
    )
    signed_in = data.draw(st.booleans())
    method = data.draw(st.sampled_from(["GET", "GET", "POST"]))
    if stray_percent(query):  # test_a_stray_percent_in_the_query_is_a_protocol_error
        query = query.replace("%", "%25")
    before = row_counts()
    cookies = world.jar() if signed_in else {}
    if method == "GET":
        answer = send("GET", "/authorize", query=query, cookies=cookies)
    else:
        answer = send("POST", "/authorize", query.encode("latin-1"), cookies=cookies)
    issued = assert_authorization_answer(answer, application.redirect_uris.split())
    assert_stored(changed_since(before), _CODE_ROWS if issued else {AUDIT})


@FUZZ
@given(data=st.data())
def test_consent_form_answers(world: World, data: st.DataObject) -> None:
    params = authorization(world.wiki.application.client_id)
    params["scope"] = "openid offline_access"  # always asked (OpenID Connect Core section 11)
    query = urlencode(params)
    if data.draw(st.booleans()):
        query = data.draw(mutated_query(params, _AUTHORIZATION_NAMES))
    body = data.draw(
        mutated(
            {"csrfmiddlewaretoken": world.csrf, "allow": "yes"}, ["allow", "csrfmiddlewaretoken"]
        )
    )
    if stray_percent(query):  # test_a_stray_percent_in_the_query_is_a_protocol_error
        query = query.replace("%", "%25")
    before = row_counts()
    answer = send("POST", "/authorize", body, query=query, cookies=world.jar())
    issued = assert_authorization_answer(answer, [REDIRECT])
    assert_stored(changed_since(before), _CODE_ROWS if issued else {AUDIT})


_LOGOUT_NAMES = [
    "id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales",
    "logout_hint", "allow", "csrfmiddlewaretoken",
]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_end_session_never_goes_anywhere_unregistered(world: World, data: st.DataObject) -> None:
    id_token = tokens_for(world)["id_token"]
    header, claims, _signature = id_token.split(".")
    hint = data.draw(
        st.sampled_from(
            [id_token, id_token[:-3], id_token + "x", f"{header}.{claims}.",
             f"eyJhbGciOiJub25lIn0.{claims}.", "", "x"]
        )
    )  # fmt: skip
    base = {"id_token_hint": hint, "client_id": world.wiki.application.client_id,
            "post_logout_redirect_uri": LOGGED_OUT, "state": "s"}  # fmt: skip
    query = data.draw(mutated_query(base, _LOGOUT_NAMES))
    method = data.draw(st.sampled_from(["GET", "POST"]))
    if stray_percent(query):  # test_a_stray_percent_in_the_query_is_a_protocol_error
        query = query.replace("%", "%25")
    before = row_counts()
    if method == "GET":
        answer = send("GET", "/end-session", query=query)
    else:
        answer = send("POST", "/end-session", query.encode("latin-1"))
    assert answer.status < 500, answer
    logged_out = answer.status == 200 or answer.location.startswith(LOGGED_OUT)
    if 300 <= answer.status < 400 and not answer.location.startswith("/"):
        assert _registered(answer.location, [LOGGED_OUT]), answer
        assert {name for name, _ in parse_qsl(urlsplit(answer.location).query)} <= {"state"}
    else:
        assert_page(answer)
    changed = changed_since(before)
    # A logout revokes the app's tokens of the session the hint names (RP-Initiated Logout).
    revoked = {"oauth2_provider.AccessToken", "oauth2_provider.RefreshToken"}
    assert_stored(changed, {AUDIT} | (revoked if logged_out else set()))
    assert all(changed[label] < 0 for label in revoked & set(changed)), changed


# --- /authorize-challenge -------------------------------------------------------------------------

_CHALLENGE_NAMES = [
    "client_id", "client_secret", "response_type", "scope", "code_challenge",
    "code_challenge_method", "acr_values", "nonce", "id_token_hint", "auth_session",
    "passkey_response", "prompt", "request", "request_uri", "registration", "redirect_uri",
]  # fmt: skip
_APP_SIGN_IN_ROWS = {
    AUDIT,
    "passkeys.UsedChallenge",
    "sessions.Session",
    "sso.AppSignIn",
    "oauth2_provider.Grant",
}


def _challenge_answer(answer: Answer, changed: dict[str, int]) -> None:
    assert answer.status < 500, answer
    if answer.status == 200 and "authorization_code" in answer.json():
        assert_stored(changed, _APP_SIGN_IN_ROWS)
        return
    assert_protocol_error(answer)
    # docs/operations.md: a passkey that does not verify is access_denied, audited
    # (sign_in.failed), and its auth_session is used up; nothing else is stored.
    used_up = {"passkeys.UsedChallenge"} if answer.json()["error"] == "access_denied" else set()
    assert_stored(changed, {AUDIT} | used_up)


@FUZZ
@given(data=st.data())
def test_authorize_challenge_first_call(world: World, data: st.DataObject) -> None:
    base = {"client_id": world.mobile.application.client_id, "response_type": "code",
            "scope": "openid profile", "code_challenge": CHALLENGE,
            "code_challenge_method": "S256", "nonce": "n"}  # fmt: skip
    body = data.draw(mutated(base, _CHALLENGE_NAMES))
    content_type = data.draw(st.sampled_from(_CONTENT_TYPES))
    SIGN_IN_OPTIONS_LIMIT.clear()
    before = row_counts()
    answer = send("POST", "/authorize-challenge", body, CONTENT_TYPE=content_type or None)
    _challenge_answer(answer, changed_since(before))


_CREDENTIAL_PARTS = [
    ("id",), ("rawId",), ("type",), ("response",), ("response", "clientDataJSON"),
    ("response", "authenticatorData"), ("response", "signature"), ("response", "userHandle"),
]  # fmt: skip
_JSON_VALUES = st.one_of(
    TEXT, st.integers(), st.none(), st.booleans(), st.floats(), st.just({}),
    st.lists(st.integers(), max_size=3),
)  # fmt: skip


@FUZZ
@given(data=st.data())
def test_authorize_challenge_second_call(world: World, data: st.DataObject) -> None:
    how = data.draw(st.integers(0, 3))
    part = data.draw(st.sampled_from(_CREDENTIAL_PARTS))
    value = data.draw(_JSON_VALUES)
    garbled_json = data.draw(st.integers(0, 8))
    garbled_session = data.draw(st.integers(0, 6))
    with_client_id = data.draw(st.booleans())
    SIGN_IN_OPTIONS_LIMIT.clear()
    mobile = world.mobile.application
    first = urlencode({"client_id": mobile.client_id, "scope": "openid",
                       "code_challenge": CHALLENGE, "code_challenge_method": "S256"})  # fmt: skip
    challenge = send("POST", "/authorize-challenge", first.encode()).json()
    credential = world.ada.authenticator.get(challenge["passkey_options"], ORIGIN)
    session = challenge["auth_session"]
    if how == 1:
        target = credential
        for key in part[:-1]:
            target = target[key]
        target[part[-1]] = value
    raw = json.dumps(credential)
    if how == 2:
        raw = ["", "null", "[]", "1", '"x"', raw[:-1], raw + "x", '{"id": "\\ud800"}', "[" * 5000][
            garbled_json
        ]
    if how == 3:
        session = [session[:-1], session + "A", session[::-1], session.replace(".", ":"), "", "x",
                   session.split(".")[0]][garbled_session]  # fmt: skip
    base = {"auth_session": session, "passkey_response": raw}
    if with_client_id:
        base["client_id"] = mobile.client_id
    body = data.draw(mutated(base, _CHALLENGE_NAMES))
    before = row_counts()
    answer = send("POST", "/authorize-challenge", body)
    _challenge_answer(answer, changed_since(before))


# --- The HTML forms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    path: str  # with {group}, {app}, {bob}, {passkey}
    fields: dict[str, str]
    stores: frozenset[str]  # the models a change may add rows to
    typed: str  # the field whose text is stored


_FORMS = {
    "invite": Form("/admin/people/invite", {"email": "carol@example.com", "name": "Carol"},
                   frozenset({"accounts.User", "enrollment.EnrollmentInvite", AUDIT}), "name"),
    "group": Form("/admin/groups", {"name": "Sales"}, frozenset({"groups.Group", AUDIT}), "name"),
    "member": Form("/admin/groups/{group}/members", {"email": "bob@example.com"},
                   frozenset({"groups.Membership", AUDIT}), "email"),
    "rules": Form("/admin/groups/{group}/rules",
                  {"block_synced_passkeys": "false", "require_trusted_attestation": "false",
                   "aaguid_allow_list": "", "aaguid_deny_list": ""},
                  frozenset({AUDIT}), "aaguid_deny_list"),
    "app": Form("/admin/apps",
                {"name": "Blog", "redirect_uris": "https://blog.example.com/cb",
                 "post_logout_uris": "", "backchannel_logout_uri": "", "initiate_login_uri": "",
                 "public": "", "id_token_alg": "RS256", "require_consent": "", "first_party": ""},
                frozenset({"sso.Application", AUDIT}), "name"),
    "app-change": Form("/admin/apps/{app}/change",
                       {"name": "Wiki", "redirect_uris": REDIRECT, "post_logout_uris": "",
                        "backchannel_logout_uri": "", "initiate_login_uri": "",
                        "id_token_alg": "RS256", "require_consent": "", "first_party": ""},
                       frozenset({AUDIT}), "redirect_uris"),
    "app-assign": Form("/admin/apps/{app}/assign", {"who": "everyone"},
                       frozenset({"sso.Application_groups", AUDIT}), "group"),
    "policy": Form("/admin/policy",
                   {"allow_password_fallback": "true", "step_up_max_age_seconds": "300"},
                   frozenset({AUDIT}), "step_up_max_age_seconds"),
    "role": Form("/admin/people/{bob}/role", {"role": "auditor"}, frozenset({AUDIT}), "role"),
    "lock": Form("/admin/people/{bob}/lock", {"reason": "lost laptop"},
                 frozenset({AUDIT, "sessions.Session"}), "reason"),
    "import": Form("/admin/people/import", {"csv_text": "email,name\ndan@example.com,Dan"},
                   frozenset({"accounts.User", "enrollment.EnrollmentInvite", AUDIT}), "csv_text"),
    "profile": Form("/settings/profile", {"full_name": "Ada King"}, frozenset({AUDIT}),
                    "full_name"),
    "rename": Form("/settings/security-methods/{passkey}/rename", {"nickname": "Laptop"},
                   frozenset({AUDIT}), "nickname"),
}  # fmt: skip
_IDS = ["0", "-1", "01", "1", "99999999999999999999", "9223372036854775807", "9223372036854775808"]


@FUZZ
@given(data=st.data())
def test_forms_answer_in_the_products_words(world: World, data: st.DataObject) -> None:
    """The admin portal's and Settings' forms, signed in as an administrator who just verified
    with her passkey: the form again (4xx) or a redirect within the site; a refusal stores
    nothing (the portal audits changes, not refusals); what is stored is clean."""
    name = data.draw(st.sampled_from(sorted(_FORMS)))
    form = _FORMS[name]
    garbled_ids = data.draw(st.integers(0, 9)) == 0
    passkey = Passkey.objects.filter(user=world.ada.user).values_list("pk", flat=True)[0]
    ids = {
        "group": str(world.group.pk),
        "app": str(world.wiki.application.pk),
        "bob": str(world.bob.user.pk),
        "passkey": str(passkey),
    }
    if garbled_ids:
        ids = {key: data.draw(st.sampled_from(_IDS)) for key in ids}
    fields = dict(form.fields)
    fields[form.typed] = data.draw(st.one_of(st.just(fields.get(form.typed, "")), TEXT))
    names = [*fields, "csrfmiddlewaretoken", "version", "group", *(s.name for s in SETTINGS)]
    body = data.draw(mutated(fields, names))
    before = row_counts()
    answer = send(
        "POST", form.path.format(**ids), body, cookies=world.jar(), HTTP_X_CSRFTOKEN=world.csrf
    )
    assert_page(answer)
    changed = changed_since(before)
    if answer.status >= 400:
        assert not changed, (changed, answer)
    else:
        assert_stored(changed, set(form.stores) | {"sessions.Session"})
    stored_names_are_clean()


_PAGES = [
    "/admin/people", "/admin/audit", "/admin/audit/export.csv", "/admin/audit/export.json",
    "/admin/readiness", "/admin/groups", "/admin/apps", "/settings", "/", "/sign-in",
    "/settings/verify", "/authorize/sign-in", "/admin/people/{bob}",
]  # fmt: skip
_PAGE_NAMES = [
    "q", "status", "after", "actor", "subject", "action", "before", "next", "done", "acr",
    "reason", "from", "to", "limit",
]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_pages_read_any_query(world: World, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_PAGES)).format(bob=world.bob.user.pk)
    query = data.draw(mutated_query({"q": "bob", "status": "active"}, _PAGE_NAMES))
    before = row_counts()
    answer = send("GET", path, query=query, cookies=world.jar())
    assert_page(answer)
    assert not changed_since(before)


# --- The fallback sign-in, and enrollment and recovery links ------------------------------------

PASSWORD = "correct horse battery staple 9"


@pytest.fixture
def fallback(world: World) -> str:
    """Bob's password and authenticator app: the app's secret."""
    secret = pyotp.random_base32()
    step = totp.matching_step(secret, pyotp.TOTP(secret).now(), clock.now())
    assert step is not None
    do_set_up_fallback(world.bob.user, PASSWORD, secret, step, Origin.cli())
    return secret


# A refused password or code: its audit row (sign_in.failed) and the throttle's counters
# (README, password_lockout_threshold).
_COUNTED = {AUDIT, "fallback.FailureCounter"}


@FUZZ
@given(data=st.data())
def test_password_form_answers(world: World, fallback: str, data: st.DataObject) -> None:
    base = {"username": "bob@example.com", "password": "not the password", "next": "/settings"}
    body = data.draw(mutated(base, ["username", "password", "next", "csrfmiddlewaretoken"]))
    query = data.draw(
        st.sampled_from(
            ["", "next=//evil.example", "next=https://evil.example/", "next=/%0d%0aX:y",
             "next=/\\evil.example", "next=%2F%2Fevil.example"]
        )
    )  # fmt: skip
    cookies: dict[str, str] = {}
    send("GET", "/sign-in/password", cookies=cookies)
    before = row_counts()
    answer = send(
        "POST", "/sign-in/password", body, query=query, cookies=cookies,
        HTTP_X_CSRFTOKEN=cookies["threshold_csrf"],
    )  # fmt: skip
    assert_page(answer)
    assert_stored(changed_since(before), _COUNTED)


@settings(FUZZ, max_examples=15)  # each example checks the password first (Argon2)
@given(data=st.data())
def test_code_form_answers(world: World, fallback: str, data: st.DataObject) -> None:
    code = data.draw(
        st.one_of(
            TEXT,
            st.sampled_from(
                ["123456", "12345", "1234567", " 123 456 ", "\uff11\uff12\uff13\uff14\uff15\uff16",
                 "\u0661\u0662\u0663\u0664\u0665\u0666", "aaaa-bbbb", "0" * 600]
            ),
        )
    )  # fmt: skip
    body = data.draw(mutated({"code": code}, ["code", "csrfmiddlewaretoken"]))
    FailureCounter.objects.all().delete()
    cookies: dict[str, str] = {}
    send("GET", "/sign-in/password", cookies=cookies)
    password = urlencode({"username": "bob@example.com", "password": PASSWORD}).encode()
    step = send("POST", "/sign-in/password", password, cookies=cookies,
                HTTP_X_CSRFTOKEN=cookies["threshold_csrf"])  # fmt: skip
    assert step.status == 303, step
    before = row_counts()
    answer = send("POST", "/sign-in/code", body, cookies=cookies,
                  HTTP_X_CSRFTOKEN=cookies["threshold_csrf"])  # fmt: skip
    assert_page(answer)
    signed_in = answer.status == 303 and "sessions.Session" in changed_since(before)
    assert_stored(changed_since(before), _COUNTED | ({"sessions.Session"} if signed_in else set()))


@FUZZ
@given(data=st.data())
def test_garbled_links_are_refused(world: World, data: st.DataObject) -> None:
    """An enrollment or recovery link, garbled: "This link can't be used", audited as
    ``invite_unusable`` (docs/operations.md), nothing else stored."""
    kind = data.draw(st.sampled_from(["enrollment", "recovery"]))
    garble = data.draw(st.integers(0, 12))
    text = data.draw(TEXT)
    page = data.draw(st.sampled_from(["/enroll/{}", "/enroll/{}/options", "/enroll/{}/result"]))
    if kind == "enrollment":
        token = invite("eve@example.com", "Eve")[1]
    else:
        link = do_issue_recovery(world.bob.user, Origin.cli(), send_email=False).link
        token = link.rsplit("/", 1)[1]
    token = [
        token[:-1], token + "A", token[::-1], token.upper(), token + "/", "", ".", "%2e%2e",
        "%00", "%ff", token + "%00", "a" * 5000, quote(text, safe="", errors="surrogatepass"),
    ][garble]  # fmt: skip
    path = unquote_to_bytes(page.format(token)).decode("latin-1")
    cookies: dict[str, str] = {}
    send("GET", "/sign-in", cookies=cookies)
    before = row_counts()
    if page == "/enroll/{}":
        answer = send("GET", path, cookies=cookies)
        assert_page(answer)
    else:
        answer = send(
            "POST",
            path,
            b"{}",
            cookies=cookies,
            CONTENT_TYPE="application/json",
            HTTP_X_CSRFTOKEN=cookies["threshold_csrf"],
            HTTP_ACCEPT="application/json",
        )
        assert 400 <= answer.status < 500, answer
        assert answer.json()["status"] == "failed", answer
    assert answer.status != 200, answer
    assert_stored(changed_since(before), {AUDIT})


# --- Defects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["/authorize", "/token", "/userinfo", "/revoke"])
def test_a_stray_percent_in_the_query_is_a_protocol_error(world: World, endpoint: str) -> None:
    client_id, secret = world.wiki.application.client_id, world.wiki.client_secret or ""
    if endpoint == "/authorize":
        # An app that put a raw "%" in its state: Django reads it as it is.
        query = urlencode(authorization(client_id)) + "&state=50%off"
        answer = send("GET", endpoint, query=query, cookies=world.jar())
        assert_authorization_answer(answer, [REDIRECT])
        return
    body = {
        "/token": b"grant_type=authorization_code&code=x&code_verifier=" + VERIFIER.encode(),
        "/userinfo": b"",
        "/revoke": b"token=x",
    }[endpoint]
    answer = send(
        "GET" if endpoint == "/userinfo" else "POST", endpoint, body, query="x=50%off",
        HTTP_AUTHORIZATION="Bearer abc" if endpoint == "/userinfo" else basic(client_id, secret),
    )  # fmt: skip
    assert_protocol_error(answer)


@pytest.mark.parametrize("field", ["backchannel_logout_uri", "initiate_login_uri"])
def test_an_app_uri_longer_than_its_column_is_refused_in_words(world: World, field: str) -> None:
    fields = dict(_FORMS["app"].fields)
    fields[field] = "https://blog.example.com/" + "a" * 2015  # 2,040 characters
    answer = send(
        "POST", "/admin/apps", urlencode(fields).encode(), cookies=world.jar(),
        HTTP_X_CSRFTOKEN=world.csrf,
    )  # fmt: skip
    assert answer.status in (200, 400), answer
    added = Application.objects.filter(name="Blog").first()
    if answer.status == 400:
        assert added is None
        assert b"logout URI" in answer.content or b"initiate-login URI" in answer.content
    else:
        assert added is not None
        limit = Application._meta.get_field(field).max_length
        assert limit is not None
        assert len(getattr(added, field)) <= limit


@pytest.mark.parametrize("repeated", ["client_secret", "code_verifier", "redirect_uri"])
def test_token_refuses_a_repeated_parameter(world: World, repeated: str) -> None:
    first = {
        "client_secret": "not-the-secret",
        "code_verifier": "w" * 43,
        "redirect_uri": "https://evil.example/cb",
    }[repeated]
    pairs = [
        ("grant_type", "authorization_code"),
        ("code", code_for(world)),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", world.wiki.application.client_id),
        ("client_secret", world.wiki.client_secret or ""),
    ]
    pairs.insert(
        next(i for i, (name, _) in enumerate(pairs) if name == repeated), (repeated, first)
    )
    answer = send("POST", "/token", urlencode(pairs).encode())
    assert answer.status == 400, answer
    assert answer.json()["error"] == "invalid_request", answer


@pytest.mark.parametrize(
    "body",
    [
        # A look-alike of Ada, an administrator: a RIGHT-TO-LEFT OVERRIDE after her address.
        b"email=ada%40example.com%E2%80%AE&name=Ada",
        # A form that was not UTF-8 (hypothesis's find): the byte decodes to U+FFFD.
        b"email=carol%40example.com%FF&name=Carol",
    ],
    ids=["look-alike", "not-utf-8"],
)
def test_an_invite_to_an_address_mail_cannot_reach_is_refused(world: World, body: bytes) -> None:
    people = User.objects.count()
    answer = send(
        "POST", "/admin/people/invite", body, cookies=world.jar(), HTTP_X_CSRFTOKEN=world.csrf
    )
    assert answer.status == 400, answer
    assert b"is not an email address" in answer.content, answer
    assert User.objects.count() == people
