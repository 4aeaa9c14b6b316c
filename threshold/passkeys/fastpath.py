"""The fast path: an anonymous browser's ordinary passkey sign-in, answered in plain WSGI.

``FastSignInApplication`` sits in front of the lean application
(``threshold.passkeys.lean.LeanSignInApplication``) in ``threshold.wsgi``, behind
``ForwardedHeaders``. It answers ``POST /sign-in/options`` and ``POST /sign-in/result``
only when everything about them is ordinary and the sign-in succeeds, without building a
Django request or response: issue 14 asks for a sign-in within 2.5 times the CPU of
``bench/floor.py``, and Django's request, response, middleware and ORM objects cost more
than that on their own (bench/README.md; docs/architecture.md, "The fast sign-in path").

**Success only.** Anything else is handed to the lean application, which answers and
audits it exactly as it does without this module:

- before any side effect, every request that is not ordinary (the list below), untouched
  but for its body, which was read and is handed on re-wrapped;
- once the result's transaction has begun, any refusal (a replayed or expired ceremony, an
  unknown passkey, a signature or check that fails, a locked account, the policy and the
  groups' rules, user verification required since the options, a counter that did not move
  forward) and any unforeseen error (logged): the transaction is rolled back and the request
  handed on, so the lean path runs the same checks again and writes the failure's rows.
  A refused result therefore costs twice; refusals are rare. A counter that went back (a
  clone's sign) is flagged by the lean path, the same way.
- A database failure (``django.db.Error``: SQLite locked past its busy timeout, a
  connection lost) is rolled back too, and answered with what the lean application answers
  the same exception (``response_for_exception``: 503 in the catalog's words), not handed
  on: the lean path would wait out the same lock a second time, and a transient failure
  would then answer differently than on a server without this path
  (tests/integration/test_fuzz_lean_paths.py pins the 503).
- One exception to "before any side effect": an options request whose network is over the
  rate limit (``passkeys.limits.options_wait``) was counted here, and is counted again by
  the lean path as it answers 429: a flooding network waits a little longer, nobody else.

Ordinary means: SQLite or PostgreSQL, ``THRESHOLD_FAST_SIGN_IN`` on, no session cookie,
``Content-Type`` exactly ``application/json`` (a parameter such as a charset goes to the lean
path), no query string (``?next=``), no ``SCRIPT_NAME``, a ``Host`` header, an ``Origin``
header, an ASCII Cookie header, a CSRF cookie holding an unmasked secret, and, for the
options, an empty or ``{}`` body (a username goes to the lean path: its decoys use the ORM).

**What it re-implements of Django, the property each carries, and where it is tested**
(all in tests/integration/test_fast_sign_in.py):

- Host validation (``HttpRequest.get_host``): only a ``Host`` in ``ALLOWED_HOSTS`` is
  answered (no Host-header poisoning of the origin check), with Django's own
  ``split_domain_port`` and ``validate_host`` (their verdict kept per host);
  ``USE_X_FORWARDED_HOST`` turns the path off. Tested: ``test_unusual_requests_are_handed_over``
  and the Hypothesis property ``test_the_fast_path_accepts_nothing_django_refuses``.
- The scheme (``HttpRequest.scheme``): ``SECURE_PROXY_SSL_HEADER``'s header when set (which
  ``ForwardedHeaders`` in front removes from an untrusted peer), else ``wsgi.url_scheme``;
  ``SECURE_SSL_REDIRECT`` for plain HTTP goes to the lean path (the redirect). Tested: the
  property, which compares it with ``WSGIRequest(environ).is_secure()``.
- The body: ``Content-Length`` digits only (``web.http.declared_length``), at most
  ``THRESHOLD_MAX_JSON_BODY``, read once and handed on re-wrapped (one the client stopped
  sending is handed on as it is: the lean path answers 400); JSON parsed by
  ``web.http.parse_json`` (the lean path's own). Tested: ``test_unusual_requests_...``.
- CsrfViewMiddleware's decision for a POST: the ``Origin`` must equal the request's own
  origin (scheme and validated host) or be one of ``CSRF_TRUSTED_ORIGINS`` (wildcards turn
  the path off; no ``Origin`` and so no Referer check: the lean path), and the
  ``X-CSRFToken`` header, in Django's token format, must match the cookie's secret after
  unmasking, compared in constant time (Django's own ``_check_token_format`` and
  ``_does_token_match``); at sign-in the token is rotated (a new secret, as ``login()``
  does), so a token seen before sign-in is worthless after. Tested: the property against
  ``CsrfViewMiddleware`` itself, ``test_unusual_requests_...`` and the equivalence test
  (the rotated cookie).
- SecurityMiddleware, XFrameOptionsMiddleware, django-csp and ``Vary: Cookie``: the headers
  are built once per scheme by those middlewares themselves on a sample response
  (``_headers``). Tested: ``test_the_fast_path_answers_as_the_lean_path`` (the equivalence
  test: status, body, every header and Set-Cookie, the session row and the audit row).
- The cookies SessionMiddleware, CsrfViewMiddleware, ``CeremonyCookieMiddleware`` and
  ``set_signed_in_cookie`` send, formatted as ``http.cookies.Morsel`` does (``_cookie``),
  expiry dates from ``django.utils.http.http_date`` kept per second. Tested: the
  equivalence test compares every Set-Cookie with the lean path's, attributes and values.
- The session (``new_signed_in_session``): Django's format (``SessionStore``'s salt and
  serializer, ``django.core.signing``'s TimestampSigner), stored uncompressed (Django reads
  both forms), the same data in the same order (``login()``'s keys with
  ``_auth_user_hash`` from ``User.get_session_auth_hash``, ``sign_in_details``, the
  ``sid``) and the columns ``SessionStore.create_model_instance`` derives; a key taken is
  retried with a fresh one. Tested: the equivalence test (decoded data, columns, and Django's
  full stack reading it: ``GET /`` signed in).
- Signing: the flow token (``sessions.flow.check_flow``) and the ceremony token
  (``pending.save_pending`` and ``open_pending``) are signed and checked by their own
  modules, with ``django.core.signing``; nothing is derived by hand (measured: hand-derived
  keys would save about 15 µs of a sign-in's 750). Tested: ``test_tokens_interoperate``,
  ``test_a_token_of_another_kind_or_key_is_handed_over`` (``SECRET_KEY_FALLBACKS``
  included) and the forged and expired tokens of ``test_unusual_requests_...``.
- Database errors: the transaction is rolled back and the answer is the lean application's
  to the same exception (503), the ceremony left usable. Tested:
  ``test_a_database_error_rolls_back_and_answers_as_the_lean_path`` (a failure at each of
  the statements, compared with the lean path failing the same way).
- The transaction: ``BEGIN IMMEDIATE`` (SQLite) or ``BEGIN`` (PostgreSQL) … ``COMMIT`` on the
  driver's connection (what ``transaction.atomic`` sends, with threshold.config's IMMEDIATE
  mode on SQLite), a savepoint inside a test's transaction. Tested:
  ``test_as_served_the_result_is_one_immediate_transaction``,
  ``test_as_served_a_counter_another_server_moved_rolls_back_whole`` and
  ``test_options_run_no_statement_and_the_result_in_one_savepoint``.
- PostgreSQL's connection checks: as the lean application, the ``request_started`` and
  ``request_finished`` signals (Django's ``close_old_connections``: CONN_MAX_AGE, a broken
  connection), and the result's transaction run by ``hotpath.without_health_check`` (no
  ``SELECT 1`` first; once more on a new connection when the first is found dead). Tested:
  the whole file runs on PostgreSQL too (``make test``), and tests/integration/test_scale_out.py
  serves sign-ins from two servers on one PostgreSQL.

**What it reuses, never forks.** The WebAuthn checks (``core.ceremony``), the policy and
the group rules and the user-verification re-check (``actions._refused_today``), the account
check (``User.sign_in_refusal``), the assurance (``actions.passkey_assurance``), the policy
facts (``Passkey.policy_facts``), all run on the row as ``hotpath``'s statement returns it
(``_PasskeyRow``, ``_PersonRow``: the fields those read, under the models' names); the
statements are ``hotpath``'s builders' (the challenge used up and the passkey, person, groups
and policy found in one INSERT; ``update_passkey``'s UPDATE with its counter rule;
``insert_audit``'s INSERT of an ``AuditRow``'s values, prepared by ``hotpath``'s preparers; the
session's INSERT): four statements in one transaction on SQLite; on PostgreSQL two, the
UPDATE and the INSERTs in ``record_sign_in``'s one statement of data-modifying CTEs, as the
lean path sends them (pinned by the tests), in two round trips with client-side binding
(Django's default; ``hotpath.sends_together``): BEGIN sent with the first and COMMIT with the
second (``_transaction``'s ``together``; the second then fails, SQLSTATE
``RECORD_REFUSED``, rather than write nothing and commit the challenge used up). The options are
``do_begin_sign_in`` itself, after ``check_flow``, ``hotpath.recent_policy`` and
``options_wait``; the session's data is ``new_signed_in_session``'s (``login()``'s keys,
``sign_in_details``, ``new_sid``), encoded by Django's signer with ``SessionStore``'s salt.
The one change to a shared module: ``core.ceremony`` keeps each stored ES256 key loaded
(``_verifier``), for every sign-in path.

``user_logged_in`` is not sent, as on the lean path (no receiver is connected).
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.core import signals, signing
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, DataError, connections, transaction
from django.db import Error as DatabaseFailure
from django.db.models import Model
from django.http import HttpRequest, JsonResponse
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import (  # type: ignore[attr-defined]  # not in django-stubs
    CSRF_ALLOWED_CHARS,
    CSRF_SECRET_LENGTH,
    InvalidTokenFormat,
    _check_token_format,
    _does_token_match,
)
from django.middleware.security import SecurityMiddleware
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import http_date

from threshold import clock
from threshold.accounts.models import User
from threshold.audit.actions import Action, Channel, Origin
from threshold.audit.models import AuditEvent
from threshold.core import ceremony, errors
from threshold.core.randomness import random_string
from threshold.passkeys import hotpath
from threshold.passkeys.actions import (
    _refused_today,
    do_begin_sign_in,
    passkey_assurance,
    relying_party,
)
from threshold.passkeys.decoys import verify_as_decoy

# hotpath's own statement builders, cursor and preparation: run as they are, never copied.
from threshold.passkeys.hotpath import (
    RECORD_REFUSED,
    _audit_statement,
    _converters,
    _cursor,
    _field,
    _fields,
    _group_rules,
    _prepare,
    _record_statement,
    _session_statement,
    _update_statement,
    sends_together,
)
from threshold.passkeys.http import CEREMONY_COOKIE
from threshold.passkeys.lean import send
from threshold.passkeys.limits import options_wait
from threshold.passkeys.models import Passkey
from threshold.passkeys.pending import Ceremonies, CeremonyKind, open_pending
from threshold.sessions.actions import SESSION_BACKEND, new_sid, sign_in_details
from threshold.sessions.flow import Flow, check_flow
from threshold.sessions.middleware import SIGNED_IN_COOKIE, session_cookie_max_age
from threshold.sessions.models import Session
from threshold.sessions.store import (
    LAST_SEEN,
    SID,
    SIGN_IN_IP,
    SIGN_IN_METHOD,
    SIGN_IN_USER_AGENT,
    SIGNED_IN_AT,
    SessionStore,
)
from threshold.web.http import declared_length, parse_json
from threshold.web.proxy import client_address

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_logger = logging.getLogger(__name__)

_CSRF_CHARS = frozenset(CSRF_ALLOWED_CHARS)
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"  # django's VALID_KEY_CHARS
_OPTIONS, _RESULT = "options", "result"
_AUTHENTICATION = CeremonyKind.AUTHENTICATION


class _HandOver(Exception):
    """Not answered here: the lean application answers (nothing was written)."""


@dataclass(frozen=True)
class _Setup:
    """What the fast path reads of Django's settings, once per process (again after a test's
    ``override_settings``: ``_forget``)."""

    routes: dict[str, str]
    home: str
    # PostgreSQL: the request_started and request_finished signals are sent, whose
    # receiver closes a connection past CONN_MAX_AGE or broken (SQLite's persists).
    postgresql: bool
    allowed_hosts: tuple[str, ...]
    trusted_origins: frozenset[str]
    proxy_ssl_header: tuple[str, str] | None
    ssl_redirect: bool
    max_body: int
    session_cookie: str
    csrf_cookie: str
    csrf_header: str
    csrf_age: int | None  # None: the CSRF cookie ends with the browser
    csrf_httponly: bool
    csrf_samesite: str | None  # None: no SameSite attribute, as Django writes it
    csrf_secure: bool
    cookie_secure: bool
    session_age: int
    session_cookie_age: int | None  # None: the session cookie ends with the browser
    session_samesite: str | None
    session_httponly: bool
    ceremony_cookie: str
    session_signer: signing.TimestampSigner
    session_serializer: type[Any]
    headers: dict[bool, tuple[tuple[str, str], ...]]


@lru_cache(maxsize=1)
def _setup() -> _Setup | None:
    """The fast path's settings, or None where it is off: turned off, a database other than
    SQLite and PostgreSQL, or a setting it does not re-implement or cannot read (it then
    answers nothing, and Django's stack answers as it would without it)."""
    try:
        return _read_setup()
    except Exception:
        _logger.exception("the fast sign-in path is off: a setting it reads is not as expected")
        return None


def _read_setup() -> _Setup | None:
    if not getattr(settings, "THRESHOLD_FAST_SIGN_IN", True):
        return None
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    if (
        vendor not in ("sqlite", "postgresql")
        or settings.USE_X_FORWARDED_HOST
        or settings.FORCE_SCRIPT_NAME
        or settings.CSRF_USE_SESSIONS
        or settings.SESSION_COOKIE_DOMAIN is not None
        or settings.CSRF_COOKIE_DOMAIN is not None
        or settings.SESSION_COOKIE_PATH != "/"
        or settings.CSRF_COOKIE_PATH != "/"
        or any("*" in origin for origin in settings.CSRF_TRUSTED_ORIGINS)
        # HttpResponse.set_cookie refuses any other (a 500 there): not to be written here.
        or any(
            value and str(value).lower() not in ("lax", "none", "strict")
            for value in (settings.SESSION_COOKIE_SAMESITE, settings.CSRF_COOKIE_SAMESITE)
        )
        or not settings.ALLOWED_HOSTS
    ):
        return None
    prefix = get_script_prefix()

    def path(name: str) -> str:
        return "/" + reverse(name).removeprefix(prefix)

    proxy = settings.SECURE_PROXY_SSL_HEADER
    store = SessionStore()
    return _Setup(
        routes={
            path("passkeys:sign-in-options"): _OPTIONS,
            path("passkeys:sign-in-result"): _RESULT,
        },
        home=path("selfservice:home"),
        postgresql=vendor == "postgresql",
        allowed_hosts=tuple(settings.ALLOWED_HOSTS),
        trusted_origins=frozenset(settings.CSRF_TRUSTED_ORIGINS),
        proxy_ssl_header=(str(proxy[0]), str(proxy[1])) if proxy else None,
        ssl_redirect=bool(settings.SECURE_SSL_REDIRECT),
        max_body=int(settings.THRESHOLD_MAX_JSON_BODY),
        session_cookie=settings.SESSION_COOKIE_NAME,
        csrf_cookie=settings.CSRF_COOKIE_NAME,
        csrf_header=settings.CSRF_HEADER_NAME,
        csrf_age=None if settings.CSRF_COOKIE_AGE is None else int(settings.CSRF_COOKIE_AGE),
        csrf_httponly=bool(settings.CSRF_COOKIE_HTTPONLY),
        csrf_samesite=settings.CSRF_COOKIE_SAMESITE or None,
        csrf_secure=bool(settings.CSRF_COOKIE_SECURE),
        cookie_secure=bool(settings.SESSION_COOKIE_SECURE),
        session_age=int(settings.SESSION_COOKIE_AGE),
        session_cookie_age=session_cookie_max_age(),
        session_samesite=settings.SESSION_COOKIE_SAMESITE or None,
        session_httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
        ceremony_cookie=CEREMONY_COOKIE.format(kind=_AUTHENTICATION),
        # SessionBase.encode's signer (signing.dumps), kept: its keys are the settings'.
        session_signer=signing.TimestampSigner(salt=store.key_salt),
        session_serializer=store.serializer,
        headers={secure: _headers(secure) for secure in (False, True)},
    )


def _forget(**kwargs: Any) -> None:
    _setup.cache_clear()


setting_changed.connect(_forget, dispatch_uid="threshold.passkeys.fastpath.forget")


def _unused(request: HttpRequest) -> Any:
    raise AssertionError("only process_response is called")


def _headers(secure: bool) -> tuple[tuple[str, str], ...]:
    """The headers the lean path's JSON answers get over ``secure`` or plain HTTP, by the
    same middlewares in the same order (``LeanSignInMiddleware.answer``), on a sample answer:
    none of them depends on the answer's content or on anything else of the request."""
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO()}
    environ["wsgi.url_scheme"] = "https" if secure else "http"
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        environ[proxy[0]] = proxy[1] if secure else "http"
    request = WSGIRequest(environ)
    response = JsonResponse({})
    patch_vary_headers(response, ("Cookie",))
    XFrameOptionsMiddleware(_unused).process_response(request, response)
    SecurityMiddleware(_unused).process_response(request, response)
    for header, value in (
        (HEADER, build_policy()),
        (HEADER_REPORT_ONLY, build_policy(report_only=True)),
    ):
        if value:
            response.headers.setdefault(header, value)
    return tuple((name, value) for name, value in response.items() if name != "Content-Length")


@lru_cache(maxsize=8)
def _date(at: int) -> str:
    """``http_date``, kept per whole second (it formats whole seconds anyway)."""
    return http_date(at)


def _cookie(
    name: str,
    value: str,
    max_age: int | None,
    *,
    httponly: bool,
    samesite: str | None,
    secure: bool,
) -> tuple[str, str]:
    """A Set-Cookie header as ``HttpResponse.set_cookie`` and ``Morsel.output`` write it
    (attributes sorted by name, path "/"), for values that need no quoting; without a
    ``max_age``, a cookie that ends with the browser (no Expires, no Max-Age)."""
    expires = "" if max_age is None else f" expires={_date(int(time.time() + max_age))};"
    lasts = "" if max_age is None else f" Max-Age={max_age};"
    return (
        "Set-Cookie",
        f" {name}={value};{expires}{' HttpOnly;' if httponly else ''}{lasts}"
        f" Path=/{f'; SameSite={samesite}' if samesite else ''}{'; Secure' if secure else ''}",
    )


@dataclass(frozen=True, slots=True)
class _PersonRow:
    """The person, as ``hotpath``'s statement returns them: the fields the sign-in reads, under
    ``User``'s names, so that ``User``'s own methods run on it."""

    id: int
    username: str
    password: str
    is_active: bool
    locked_at: object
    user_handle: bytes

    @property
    def pk(self) -> int:
        return self.id

    # The model's own checks, on this row.
    sign_in_refusal = User.sign_in_refusal
    get_session_auth_hash = User.get_session_auth_hash
    _get_session_auth_hash = User._get_session_auth_hash  # type: ignore[attr-defined]  # noqa: SLF001 - what get_session_auth_hash calls


@dataclass(frozen=True, slots=True)
class _PasskeyRow:
    """The passkey, as ``hotpath``'s statement returns it, under ``Passkey``'s names, so that
    ``Passkey.policy_facts`` and ``passkey_assurance`` run on it."""

    id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    backup_eligible: bool
    attestation_trusted: bool
    aaguid: object
    trust_anchor: str
    attestation_format: str
    alg: int

    @property
    def pk(self) -> int:
        return self.id

    policy_facts = Passkey.policy_facts


Convert = Callable[[Any], Any]


def _converter(vendor: str, model: type[Model], index: int) -> Convert:
    """What the ORM makes of the statement's value of ``model``'s ``index``-th column: on SQLite
    a boolean's 0/1 and a UUID's hex (a BLOB comes as hex in the JSON array); on PostgreSQL,
    whose driver returns typed values, the ORM's own converters for the column."""
    if vendor != "sqlite":
        orm, column = _converters(vendor, model)[index]
        return _same if not orm else _applying(orm, column)
    field = _fields(model)[index]
    kind = field.get_internal_type()
    converters: dict[str, Convert] = {
        "BooleanField": bool,
        "UUIDField": field.to_python,
        "BinaryField": bytes.fromhex,
    }
    convert = converters.get(kind)
    if convert is None:
        return _same
    return lambda value: None if value is None else convert(value)


def _same(value: Any) -> Any:
    return value


def _applying(converters: list[Any], column: Any) -> Convert:
    """The ORM's converters of ``column`` in turn (``SQLCompiler.apply_converters``)."""

    def convert(value: Any) -> Any:
        db = connections[DEFAULT_DB_ALIAS]
        for converter in converters:
            value = converter(value, column, db)
        return value

    return convert


@lru_cache(maxsize=2)
def _row_layout(vendor: str) -> tuple[tuple[tuple[int, Convert], ...], ...]:
    """Per field of ``_PasskeyRow`` and ``_PersonRow``, in order: where it is among the values
    of statement 1 (``hotpath``'s Passkey columns, then User's: SQLite's JSON array,
    PostgreSQL's columns after the first two), and its conversion."""

    def layout(model: type[Model], offset: int, names: Iterable[str]) -> Any:
        where = {
            f.attname: (offset + i, _converter(vendor, model, i))
            for i, f in enumerate(_fields(model))
        }
        return tuple(where[name] for name in names)

    return (
        layout(Passkey, 0, _PasskeyRow.__dataclass_fields__),
        layout(User, len(_fields(Passkey)), _PersonRow.__dataclass_fields__),
    )


_UPDATE = ("sign_count", "backup_state", "last_used_at", "last_used_user_agent")


_SESSION_COLUMNS = (
    "session_key",
    "session_data",
    "expire_date",
    "user_id",
    "ip",
    "user_agent",
    "sign_in_method",
    "signed_in_at",
    "last_activity",
    "app_name",
    "app_client_id",
)


class FastSignInApplication:
    """The WSGI application in front of the lean one (``threshold.wsgi``): see the module."""

    def __init__(self, lean: WSGIApplication) -> None:
        self.lean = lean

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        setup = _setup()
        route = None if setup is None else setup.routes.get(environ.get("PATH_INFO", ""))
        if route is None or setup is None or environ.get("REQUEST_METHOD") != "POST":
            return self.lean(environ, start_response)
        if setup.postgresql:
            # As the lean application does (close_old_connections); sent again there should
            # the request be handed over, which checks the connection a second time only.
            signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            answer = self._answer(setup, route, environ)
        except _HandOver:
            answer = None
        except errors.ThresholdError:
            answer = None  # the lean path answers and audits it
        except DatabaseFailure as failure:
            # Rolled back already: answered as the lean path answers the same failure.
            return self._failed(environ, start_response, failure)
        except Exception:
            _logger.exception("the fast sign-in path handed a request over after an error")
            answer = None
        if answer is None:
            return self.lean(environ, start_response)
        status, headers, content = answer
        start_response(status, headers)
        if setup.postgresql:
            signals.request_finished.send(sender=self.__class__)
        return [content]

    def _failed(
        self, environ: WSGIEnvironment, start_response: StartResponse, failure: Exception
    ) -> Iterable[bytes]:
        """The database failed (locked past SQLite's busy timeout, a connection lost): what the
        lean application answers to the same exception (``response_for_exception``: 503 in the
        catalog's words, logged), and ``request_finished``, which closes a connection that is no
        longer usable. Not handed over: the lean path would wait out the same lock a second time
        and, the failure being transient, could answer differently from a lean-only server."""
        return send(
            response_for_exception(WSGIRequest(environ), failure),
            start_response,
            sender=self.__class__,
        )

    def _answer(
        self, setup: _Setup, route: str, environ: WSGIEnvironment
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        secure, cookies = _ordinary(setup, environ)
        body = _read_body(setup, environ)
        if route == _OPTIONS:
            payload, set_cookies = _options(setup, environ, body)
        else:
            answer = _result(setup, environ, cookies, body)
            if answer is None:
                return None
            payload, set_cookies = answer
        content = json.dumps({"status": "ok", "errorMessage": "", **payload}).encode()
        return (
            "200 OK",
            [*setup.headers[secure], ("Content-Length", str(len(content))), *set_cookies],
            content,
        )


def is_secure(setup: _Setup, environ: WSGIEnvironment) -> bool:
    """``HttpRequest.is_secure()``: the trusted proxy's header when configured (and sent),
    else the server's scheme."""
    if setup.proxy_ssl_header is not None:
        header, secure_value = setup.proxy_ssl_header
        value = environ.get(header)
        if value is not None:
            return bool(value.split(",", 1)[0].strip() == secure_value)
    return bool(environ.get("wsgi.url_scheme") == "https")


def accepted_host(setup: _Setup, environ: WSGIEnvironment) -> str | None:
    """``HttpRequest.get_host()`` when it is an allowed host, None otherwise (and without a
    Host header: the lean path)."""
    host = environ.get("HTTP_HOST")
    if not host or not _host_allowed(host, setup.allowed_hosts):
        return None
    return str(host)


@lru_cache(maxsize=64)
def _host_allowed(host: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Django's check of the host against ALLOWED_HOSTS, kept for the few hosts a server is
    reached by (a flood of others only turns the cache over)."""
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed_hosts)


def csrf_accepted(
    setup: _Setup, environ: WSGIEnvironment, cookies: dict[str, str], host: str, secure: bool
) -> bool:
    """CsrfViewMiddleware's decision for this POST, for the requests it takes: an unmasked
    secret in the cookie, an Origin (the request's own or a trusted one), a token in Django's
    format that matches the secret (constant time). Anything else: False (the lean path)."""
    secret = cookies.get(setup.csrf_cookie)
    if secret is None or len(secret) != CSRF_SECRET_LENGTH or not _CSRF_CHARS.issuperset(secret):
        return False  # missing, masked (Django re-sets it), or bad: the lean path
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return False  # the Referer check: the lean path
    if origin != f"{'https' if secure else 'http'}://{host}" and origin not in (
        setup.trusted_origins
    ):
        return False
    token = environ.get(setup.csrf_header, "")  # request.META[CSRF_HEADER_NAME], as Django
    try:
        _check_token_format(token)
    except InvalidTokenFormat:
        return False
    return bool(_does_token_match(token, secret))


def _ordinary(setup: _Setup, environ: WSGIEnvironment) -> tuple[bool, dict[str, str]]:
    """(secure, cookies) of a request the fast path may take; _HandOver otherwise."""
    if (
        environ.get("CONTENT_TYPE") != "application/json"
        or environ.get("QUERY_STRING")
        or environ.get("SCRIPT_NAME")
    ):
        raise _HandOver
    raw_cookie = environ.get("HTTP_COOKIE", "")
    if not raw_cookie.isascii():
        raise _HandOver  # Django re-decodes it (get_str_from_wsgi): the lean path
    cookies = parse_cookie(raw_cookie)
    if setup.session_cookie in cookies:
        raise _HandOver  # signing in again, a step-up: the full stack
    host = accepted_host(setup, environ)
    if host is None:
        raise _HandOver
    secure = is_secure(setup, environ)
    if setup.ssl_redirect and not secure:
        raise _HandOver  # SecurityMiddleware's redirect
    if not csrf_accepted(setup, environ, cookies, host, secure):
        raise _HandOver
    return secure, cookies


def _read_body(setup: _Setup, environ: WSGIEnvironment) -> bytes:
    """The body, within the cap; the environ then holds it re-wrapped, for the lean path."""
    try:
        size = declared_length(environ)
    except errors.MalformedRequest:
        raise _HandOver from None
    if size > setup.max_body:
        raise _HandOver
    try:
        body = environ["wsgi.input"].read(size) if size else b""
    except OSError:
        # The client stopped sending it (a connection reset): the lean path reads on and
        # answers as it answers a body that cannot be read (400).
        raise _HandOver from None
    environ["wsgi.input"] = io.BytesIO(body)
    if len(body) != size:
        raise _HandOver  # a body shorter than its Content-Length
    return bytes(body)


class _Meta:
    """What ``check_flow`` reads of a request (``META``), for an environ."""

    __slots__ = ("META",)

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.META = environ


def _options(
    setup: _Setup, environ: WSGIEnvironment, body: bytes
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    if body.strip() and body != b"{}":
        raise _HandOver  # a username (username-first: the decoys), or a body to refuse
    policy = hotpath.recent_policy()
    check_flow(cast(HttpRequest, _Meta(environ)), Flow.SIGN_IN, policy=policy)
    if options_wait(client_address(environ)):
        raise _HandOver  # counted here and again there (module docstring): 429
    ceremonies = Ceremonies({}, None)
    options = do_begin_sign_in(ceremonies, policy=policy)
    token, expires_at = ceremonies.issued[_AUTHENTICATION]
    cookie = _cookie(
        setup.ceremony_cookie,
        token,
        max(1, math.ceil(expires_at - clock.now())),
        httponly=True,
        samesite="Strict",
        secure=setup.cookie_secure,
    )
    return {"publicKey": options}, [cookie]


def _result(
    setup: _Setup, environ: WSGIEnvironment, cookies: dict[str, str], body: bytes
) -> tuple[dict[str, Any], list[tuple[str, str]]] | None:
    token = cookies.get(setup.ceremony_cookie)
    if not token:
        raise _HandOver
    # The token's signature, kind and (no) session binding; the credential's shape. A
    # failure here is the lean path's to audit.
    pending = open_pending(Ceremonies({_AUTHENTICATION.value: token}, None), _AUTHENTICATION)
    response = ceremony.parse_authentication_response(parse_json(body))
    origin = Origin(
        ip=client_address(environ),
        user_agent=environ.get("HTTP_USER_AGENT", ""),
        via=Channel.WEB,
    )
    # Drawn before the transaction: once it commits, nothing may fail and be handed over (the
    # lean path would then refuse a sign-in that happened).
    csrf_secret = random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS)  # rotate_token

    def sign_in() -> str:
        with _transaction() as transaction_:
            key = _sign_in(transaction_, pending, response, origin)
            transaction_.commit()
        return key

    # PostgreSQL: no health-check SELECT 1 first; on a connection found dead, once more on a
    # new one (a replay then, should the first COMMIT have reached the server). SQLite's
    # connection is checked once, when opened.
    try:
        key = hotpath.without_health_check(sign_in)
    except hotpath.PreparedStatementsLost:  # or stale
        raise _HandOver from None  # rolled back; the lean path prepares nothing
    return {"redirect": setup.home}, [
        _cookie(
            setup.session_cookie,
            key,
            setup.session_cookie_age,
            httponly=setup.session_httponly,
            samesite=setup.session_samesite,
            secure=setup.cookie_secure,
        ),
        _cookie(
            SIGNED_IN_COOKIE,
            "1",
            setup.session_cookie_age,
            httponly=True,
            samesite="Lax",
            secure=setup.cookie_secure,
        ),
        (
            "Set-Cookie",
            f' {setup.ceremony_cookie}=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0;'
            f" Path=/; SameSite=Strict{'; Secure' if _delete_secure(setup) else ''}",
        ),
        _cookie(
            setup.csrf_cookie,
            csrf_secret,
            setup.csrf_age,
            httponly=setup.csrf_httponly,
            samesite=setup.csrf_samesite,
            secure=setup.csrf_secure,
        ),
    ]


def _delete_secure(setup: _Setup) -> bool:
    # HttpResponse.delete_cookie: Secure for a __Host-/__Secure- name (or SameSite=None, which
    # the ceremony cookie never has).
    return setup.ceremony_cookie.startswith(("__Secure-", "__Host-"))


class _transaction:
    """One transaction for the result: ``BEGIN IMMEDIATE`` (SQLite) or ``BEGIN`` (PostgreSQL,
    READ COMMITTED) … ``COMMIT`` on the connection in autocommit (as ``transaction.atomic``
    begins one, with the IMMEDIATE mode of threshold.config on SQLite), a savepoint inside an
    open one (a test's), its statements all on one ``cursor`` (``hotpath._cursor``). On
    PostgreSQL (``together``), BEGIN goes with the first statement and COMMIT with the last, a
    round trip each (``hotpath.sends_together``). Left without ``commit()`` (a refusal, an
    error), it rolls back and the request is handed over."""

    def __init__(self) -> None:
        self.db: Any = connections[DEFAULT_DB_ALIAS]
        self.savepoint: str | None = None
        self.cursor: Any = None
        self.together = False
        self.begun = False
        self.committed = False

    def __enter__(self) -> _transaction:
        db = self.db
        if db.in_atomic_block:
            self.savepoint = transaction.savepoint()
        elif not db.get_autocommit():
            raise _HandOver
        else:
            db.ensure_connection()
        try:
            self.cursor = _cursor()
            if self.savepoint is None:
                self.together = sends_together(self.cursor)
                if not self.together:
                    begin = "BEGIN IMMEDIATE" if db.vendor == "sqlite" else "BEGIN"
                    self.cursor.execute(begin, [])
                self.begun = True  # or, together, with the first statement
        except BaseException:
            # SQLite locked past its busy timeout at BEGIN: nothing to roll back (a savepoint's
            # is rolled back).
            self.__exit__()
            raise
        return self

    def commit(self) -> None:
        if self.savepoint is not None:
            transaction.savepoint_commit(self.savepoint)
        elif not self.committed:
            self.cursor.execute("COMMIT", [])
        self.committed = True

    def __exit__(self, *exc: object) -> None:
        cursor, self.cursor = self.cursor, None
        rolled_back = True
        try:
            if not self.committed:
                rolled_back = self._roll_back(cursor)
        finally:
            if cursor is not None:
                with suppress(DatabaseFailure):
                    cursor.close()
            if not rolled_back and self.savepoint is None:
                # The connection may still be inside the transaction, and Django never finds
                # a SQLite connection unusable: closed (which abandons the transaction), so
                # that the next request, or the lean path this one is handed to, opens
                # another. A savepoint's failure is the enclosing atomic block's (a test's).
                with suppress(DatabaseFailure):
                    self.db.close()

    def _roll_back(self, cursor: Any) -> bool:
        """A refusal or an error: nothing stays. False when the rollback failed."""
        try:
            if self.savepoint is not None:
                transaction.savepoint_rollback(self.savepoint)
            # SQLite may have ended it already (on some errors it rolls back itself).
            elif (
                self.begun
                and self.db.connection is not None
                and (self.db.vendor != "sqlite" or self.db.connection.in_transaction)
            ):
                cursor.execute("ROLLBACK", [])
        except DatabaseFailure:
            return False
        return True


@lru_cache(maxsize=16)
def _prepare_audit(name: str) -> Convert:
    """``hotpath``'s preparation of an AuditEvent column, but for plain text and whole numbers,
    which it passes through as they are."""
    prepare = _prepare(AuditEvent, name)
    kind = _field(AuditEvent, name).get_internal_type()
    if kind in ("CharField", "TextField", "BigIntegerField", "ForeignKey"):
        return lambda value: value if type(value) in (str, int) or value is None else prepare(value)
    return prepare


def _sign_in(
    transaction_: _transaction,
    pending: Any,
    response: ceremony.AuthenticationResponse,
    origin: Origin,
) -> str:
    """The sign-in's statements, in ``transaction_``; the new session's key. _HandOver for any
    refusal."""
    db: Any = connections[DEFAULT_DB_ALIAS]
    cursor = transaction_.cursor
    row = hotpath.find_row(
        pending.challenge_hash,
        db.ops.adapt_datetimefield_value(pending.expires_at),
        response.credential_id,
        cursor,
        begin=transaction_.together,
    )
    if row is None:
        raise _HandOver  # the challenge was used before: a replay
    values, rules, document = row
    if values is None:
        # No such passkey (a decoy's ID, or none at all): the work a real one's refused
        # verification does here, before the lean path does its own (once for each), so that
        # the time a refusal takes tells no more than its answer (``decoys.verify_as_decoy``).
        verify_as_decoy(
            relying_party(),
            pending.authentication_state(response.credential_id, b""),
            response,
            clock.now(),
        )
        raise _HandOver
    group_rules = _group_rules(rules)
    passkey_layout, person_layout = _row_layout(db.vendor)
    passkey = _PasskeyRow(*[convert(values[i]) for i, convert in passkey_layout])
    person = _PersonRow(*[convert(values[i]) for i, convert in person_layout])
    verified = ceremony.finish_authentication(
        relying_party(),
        pending.authentication_state(response.credential_id, person.user_handle),
        response,
        ceremony.StoredCredential(
            credential_id=passkey.credential_id,
            public_key=passkey.public_key,
            sign_count=passkey.sign_count,
            backup_eligible=passkey.backup_eligible,
            user_handle=person.user_handle,
        ),
        now=clock.now(),
    )
    as_user, as_passkey = cast(User, person), cast(Passkey, passkey)
    if as_user.sign_in_refusal() is not None:
        raise _HandOver
    policy = hotpath.policy_from_document(document)
    found_row = hotpath.Found(unused=True, passkey=None, policy=policy, group_rules=group_rules)
    if _refused_today(policy, as_passkey, found_row, verified) is not None:
        raise _HandOver
    earned = passkey_assurance(as_passkey, user_verified=verified.user_verified)
    now = clock.now_datetime()
    at = db.ops.adapt_datetimefield_value(now)
    agent = origin.user_agent[:512]
    # hotpath.update_passkey's and insert_audit's statements, their values prepared as there
    # (the time once: the same aware datetime in both).
    audit = hotpath.AuditRow(
        now,
        Action.SIGN_IN_SUCCEEDED,
        origin,
        actor=as_user,
        subject=as_user,
        detail={"passkey_id": passkey.pk, "user_verified": verified.user_verified},
    ).values()
    names = tuple(audit)
    changes = [verified.sign_count, verified.backup_state, at, agent]
    counter = [passkey.pk, verified.sign_count, verified.sign_count]
    audit_values = [at if name == "at" else _prepare_audit(name)(audit[name]) for name in names]
    session = _session_columns(
        db,
        as_user,
        origin,
        earned=earned,
        user_verified=verified.user_verified,
        passkey_id=passkey.pk,
    )
    if db.vendor == "postgresql":
        pairs = zip(_UPDATE, changes, strict=True)
        values = [_prepare(Passkey, name)(value) for name, value in pairs]
        return _record_postgresql(transaction_, names, [*values, *counter, *audit_values], session)
    cursor.execute(_update_statement(_UPDATE), changes + counter)
    if cursor.rowcount != 1:
        raise _HandOver  # the counter did not move forward: the lean path flags it
    cursor.execute(_audit_statement(names, 1), audit_values)
    return _insert_session(cursor, session)


def _record_postgresql(
    transaction_: _transaction, names: tuple[str, ...], values: list[Any], session: dict[str, Any]
) -> str:
    """hotpath.record_sign_in's one statement (the INSERTs run only if the UPDATE did), with
    ``values`` (the UPDATE's and the audit row's) and the session under a fresh key: the key."""
    cursor = transaction_.cursor
    key = _new_session_key()
    parameters = [*values, *_session_parameters(session, key)]
    if transaction_.together:
        # With the COMMIT: a statement that wrote nothing fails instead, and the transaction
        # rolls back whole.
        statement = _record_statement(_UPDATE, names, True, refuse=True)
        try:
            hotpath.execute_prepared(cursor, "record", statement, parameters, after="; COMMIT")
        except DataError as error:
            if getattr(error.__cause__, "sqlstate", None) == RECORD_REFUSED:
                # The counter did not move forward (the lean path flags it), or the session's
                # key was taken (the lean path draws another).
                raise _HandOver from None
            raise
        transaction_.committed = True
        return key
    # With the session.
    hotpath.execute_prepared(cursor, "record", _record_statement(_UPDATE, names, True), parameters)
    moved, saved = cursor.fetchone()
    if not moved:
        raise _HandOver  # the counter did not move forward: the lean path flags it
    return key if saved else _insert_session(cursor, session)


def _new_session_key() -> str:
    return random_string(32, _KEY_CHARS)


def _session_parameters(columns: dict[str, Any], key: str) -> list[Any]:
    """The session's values in the INSERT's column order, under ``key``."""
    return [key if name == "session_key" else columns[name] for name in _session_column_names()]


def _insert_session(cursor: Any, columns: dict[str, Any]) -> str:
    """The session's row, INSERTed under a fresh key (another while one is taken)."""
    statement = _session_statement()
    while True:
        key = _new_session_key()
        cursor.execute(statement, _session_parameters(columns, key))
        if cursor.rowcount == 1:
            return key


def _session_columns(
    db: Any, user: User, origin: Origin, *, earned: Any, user_verified: bool, passkey_id: int
) -> dict[str, Any]:
    """``new_signed_in_session``'s row but for its key, its values prepared for ``db``."""
    setup = _setup()
    assert setup is not None  # noqa: S101 - only called on the fast path
    data: dict[str, Any] = {
        SESSION_KEY: User._meta.pk.value_to_string(user),
        BACKEND_SESSION_KEY: SESSION_BACKEND,
        HASH_SESSION_KEY: user.get_session_auth_hash(),
        **sign_in_details(origin, earned, user_verified=user_verified, credential=passkey_id),
        SID: new_sid(),
    }
    # SessionBase.encode, uncompressed (signing.loads reads either).
    session_data = setup.session_signer.sign_object(
        data, serializer=setup.session_serializer, compress=False
    )
    adapt = db.ops.adapt_datetimefield_value
    # SessionBase.get_expiry_date, and SessionStore.create_model_instance's columns (as
    # hotpath prepares them).
    expire = adapt(timezone.now() + timedelta(seconds=setup.session_age))
    signed_in_at = adapt(datetime.fromtimestamp(data[SIGNED_IN_AT], UTC))
    last_seen = (
        signed_in_at
        if data[LAST_SEEN] == data[SIGNED_IN_AT]
        else adapt(datetime.fromtimestamp(data[LAST_SEEN], UTC))
    )
    return {
        "session_data": session_data,
        "expire_date": expire,
        "user_id": user.pk,
        "ip": _prepare(Session, "ip")(data[SIGN_IN_IP]),
        "user_agent": data[SIGN_IN_USER_AGENT],
        "sign_in_method": str(data[SIGN_IN_METHOD]),
        "signed_in_at": signed_in_at,
        "last_activity": last_seen,
        "app_name": "",
        "app_client_id": "",
    }


@lru_cache(maxsize=1)
def _session_column_names() -> tuple[str, ...]:
    """The session's columns in the INSERT's order; a column this module does not fill fails
    here (and so every test of the fast path), not silently."""
    names = tuple(f.attname for f in _fields(Session))
    if set(names) != set(_SESSION_COLUMNS):
        raise RuntimeError(f"the session's columns changed: {names}")
    return names
