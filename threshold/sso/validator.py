"""django-oauth-toolkit's request validator, with what Threshold adds to it.

DOT and oauthlib run the protocol (codes, PKCE, token rotation, reuse detection). This class
changes what DOT gets wrong or leaves out for an identity provider:

- client secrets are SHA-256 digests (high-entropy random strings need no slow hash; the
  people's Argon2id would cost 25-38 ms per token request), compared in constant time;
- ``auth_time``, ``amr``, ``acr`` and ``sid`` come from the Threshold session the code was
  issued in (``AppSignIn``), never from ``user.last_login``, and a refresh repeats them;
- ID tokens are signed with Threshold's keys (``keys.py``), RS256 or ES256, with a ``kid``;
- a person no longer assigned the app (everyone, or one of its groups) has their codes,
  refresh tokens and access tokens refused (``/userinfo``: ``validate_bearer_token``),
  whatever made the change (the groups' and apps' actions revoke them as well): ``may_use``;
- a refresh token given without ``offline_access`` works only while the Threshold session it
  came from is signed in, and while the way it signed in still stands: one past its timeouts
  is ended at the refresh (``live_session``, ``stands``);
- a locked or deactivated person's codes and refresh tokens are refused; a replayed code
  revokes what it was exchanged for (RFC 6749 §4.1.2), and a code is used up as the
  transaction that writes its tokens begins (right after the app's row is held), so that two
  exchanges at the same moment cannot both be answered (``save_bearer_token``); a refresh
  there locks its refresh token first and finds it still live, so that a revocation since
  it was read is not undone by the new tokens;
- an app removed while its codes and tokens are written or revoked is no 500: its row is
  held first, by the removal and by them (``lock_apps``);
- every token issued, and every code refused, is audited.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from functools import lru_cache
from typing import Any, ClassVar

from django.db import connection, router, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from jwcrypto import jws, jwt
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import UNICODE_ASCII_CHARACTER_SET
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256
from oauthlib.oauth2.rfc6749.utils import scope_to_list

from threshold import clock
from threshold.accounts.models import User
from threshold.audit.actions import Action, Origin, record
from threshold.audit.capped import record_refusal
from threshold.core.randomness import random_string
from threshold.passkeys.hotpath import AuditRow, insert_audit
from threshold.policy.access import get_policy
from threshold.sso import appcache, hotpath, keys
from threshold.sso.models import OFFLINE_ACCESS, Application, AppSignIn
from threshold.sso.sessions import live_session, stands, subject_of
from threshold.web.proxy import client_address

# An attribute DOT's authorize view sets on oauthlib's request (the "credentials").
FACTS = "threshold_facts"
SIGN_IN = "threshold_sign_in"
# oauthlib.common.generate_token's default length.
_TOKEN_LENGTH = 30
# RFC 7636 §4.1 and §4.2: code_verifier and code_challenge = 43*128unreserved.
PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


# What one HTTP request has read already: oauthlib asks the validator for the same application
# and grant several times per request (DOT's answer is a query each time). The views open it
# (``per_request``); without it, nothing is kept.
_CACHE: ContextVar[dict[tuple[str, str], Any] | None] = ContextVar("threshold_sso", default=None)


@contextmanager
def per_request() -> Iterator[None]:
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def _cached(kind: str, key: str) -> Any:
    cache = _CACHE.get()
    return None if cache is None else cache.get((kind, key))


def _verifier_refusal(verifier: str | None, challenge: str) -> str:
    """Why the exchange's code_verifier does not answer the code's challenge ("" when it does,
    or when there is none to check). oauthlib checks PKCE after ``validate_code`` and answers
    invalid_grant the same way, but without telling us: here the refusal is audited with the
    person and the app (only S256 challenges are stored: views._authorize refuses "plain").
    oauthlib does not check the verifier's syntax (RFC 7636 §4.1), so a client's weak
    verifier ("abc") would pass."""
    if not challenge or not verifier:
        return ""
    if not PKCE_VALUE.fullmatch(verifier):
        return "code_verifier_malformed"
    if not code_challenge_method_s256(verifier, challenge):
        return "code_verifier_mismatch"
    return ""


def _keep(kind: str, key: str, value: Any) -> Any:
    cache = _CACHE.get()
    if cache is not None and value is not None:
        cache[(kind, key)] = value
    return value


def storable(value: object) -> bool:
    """Can ``value`` be looked up at all? PostgreSQL refuses NUL in text (psycopg raises
    DataError, which DOT, written for psycopg2's ValueError, lets through as a 500)."""
    return isinstance(value, str) and "\x00" not in value


def validated_redirect_uri() -> str | None:
    """The redirect URI this request's authorization validated as one its app registered
    (``Validator.validate_redirect_uri``, or the app's one registered URI that oauthlib falls
    back to), if it got that far: where an error oauthlib raised without one may go."""
    uri = _cached("redirect_uri", "validated")
    return uri if isinstance(uri, str) else None


def validated_application(client_id: str) -> Application | None:
    """The app ``client_id`` named, as this request's validation loaded it (None when it got
    no further): whose redirect URI an error oauthlib raised goes to, in its schemes."""
    application = _cached("application", client_id) if storable(client_id) else None
    return application if isinstance(application, Application) else None


def refusal_recorded() -> bool:
    """Did the validator audit why this request's token was refused (with the person)?"""
    return bool(_cached("refused", "token"))


def hash_secret(secret: str) -> str:
    """What is stored for a client secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


# --- An app's row, held while what names it is written -------------------------------------------
#
# The lock order: an app's row before any row that names it (its codes, tokens, sign-ins,
# back-channel logouts, group assignments). Removing an app (``actions.do_remove_app``) takes
# its row FOR UPDATE first, then deletes what names it. Every transaction that writes such a
# row, or locks one and may write one after (a revocation, which may queue a back-channel
# logout), takes the app's row first FOR KEY SHARE and finds it still there (``hold_app``,
# ``lock_apps``): it waits for a removal under way, then finds no app and writes nothing
# (``/token``: invalid_client); a removal that comes after it waits for it to commit, then
# deletes what it wrote too. Without it, PostgreSQL checks the new row's key to the app only
# at COMMIT (Django's foreign keys are DEFERRABLE INITIALLY DEFERRED): a row written after the
# removal read what goes failed the removal's COMMIT, or its own (a 500 either way); and one
# whose transaction held a row the removal was deleting waited for it at that COMMIT, while
# the removal waited for that row: a deadlock. FOR KEY SHARE conflicts only with FOR UPDATE
# (a removal, or a change of the app's key, which nothing makes): changes of an app's settings
# hold it FOR NO KEY UPDATE (``actions._held``), and many writers hold one app at once.
#
# /authorize (and a first-party app's /authorize-challenge) writes a code holding no row that
# names the app: there the foreign key's own check at COMMIT waits for a removal, which then
# makes that COMMIT fail (an IntegrityError the views answer as the app gone), without a
# statement of its own on the sign-in's path. On SQLite, whose write transactions run one at a
# time, these only read whether the app is still there.


@lru_cache(maxsize=2)
def _hold_app_statement() -> str:
    meta, quote = Application._meta, connection.ops.quote_name
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    # Names from the model, no value: the ID is a parameter.
    return f"SELECT 1 FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s{lock}"  # noqa: S608


def hold_app(application_id: int) -> bool:
    """Is the app still there? Its row held FOR KEY SHARE until the transaction ends (the lock
    order above), in one statement built once: /token's."""
    with connection.cursor() as cursor:
        cursor.execute(_hold_app_statement(), [application_id])
        return cursor.fetchone() is not None


def lock_apps(applications: QuerySet[Application]) -> list[int]:
    """The IDs of ``applications`` still there, in order, their rows held FOR KEY SHARE until
    the transaction ends (the lock order above)."""
    query = applications.order_by("pk").values_list("pk", flat=True).query
    sql, params = query.sql_with_params()
    if connection.vendor == "postgresql":
        # Of the apps' table only, not of a table joined to it.
        sql += f" FOR KEY SHARE OF {connection.ops.quote_name(Application._meta.db_table)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [int(row[0]) for row in cursor.fetchall()]


def generate_token(request: Any) -> str:
    """An access or refresh token (DOT's ``ACCESS_TOKEN_GENERATOR``): what oauthlib's
    ``generate_token`` returns — 30 characters of its alphabet, uniformly at random, about
    178 bits — from one draw of the CSPRNG instead of one per character."""
    return random_string(_TOKEN_LENGTH, UNICODE_ASCII_CHARACTER_SET)


def may_use(application: Application, user: Any) -> bool:
    """Is ``user`` assigned ``application`` (everyone, or a member of one of its groups)?

    The one answer for /authorize, a code's exchange and a refresh at /token, /userinfo and
    /introspect. No statement of its own where the person's groups came with the statement
    that read the person in this request (the code's, ``_code``; the access token's,
    ``_load_access_token``): they are compared with the app's group names, which each process
    keeps (``appcache``; read in one SELECT once per ``appcache.MAX_AGE``). Else one SELECT."""
    if application.for_everyone:
        return True
    groups = _cached("groups", str(user.pk))
    if groups is None:  # not read with the person (outside ``per_request``, or a refresh)
        return hotpath.is_member_of_app_groups(application.pk, user.pk)
    names = appcache.group_names(application.pk)
    if names is None:
        stamp = appcache.stamp()
        names = hotpath.app_group_names(application.pk)
        appcache.keep_group_names(application.pk, names, stamp)
    return not names.isdisjoint(groups)


def email_claims(user: User) -> dict[str, Any]:
    """``email`` and ``email_verified`` (OpenID Connect Core §5.1): the person's address, or
    their username when that is one (``User.address_for_apps``), and whether they proved they
    read it by using a link emailed there (``User.has_verified_email``; the admin portal shows
    both on their page). An app that links accounts by a verified address must not be told an
    address is verified because an administrator typed it. Neither claim when the person has
    no address."""
    address = user.address_for_apps
    if not address:
        return {}
    return {"email": address, "email_verified": user.has_verified_email}


def _exchange_refusal(request: Any, client: Any, sign_in: AppSignIn | None, grant: Any) -> str:
    """Why a live code of ``client``'s may not be exchanged ("" when it may): ``request.user``
    is the code's person."""
    if sign_in is None or not request.user.can_sign_in:
        return "account_cannot_sign_in"
    if not may_use(client, request.user):
        # The change deleted the person's codes of the app (actions.withdraw_unassigned);
        # this refuses one it did not reach: a change made otherwise, or a code issued
        # while it was being made. No statement: the groups came with the code's SELECT.
        return "not_assigned"
    refusal = _verifier_refusal(getattr(request, "code_verifier", None), grant.code_challenge)
    if refusal:
        return refusal
    if live_session(request.user, sign_in.sid, _origin(request), app=client.client_id) is None:
        # The session the code was given in has ended: a sign-out revokes its codes, but not
        # one /authorize wrote after reading the session and before the sign-out committed;
        # nor one given as the session timed out. One SELECT (the person's sessions); a
        # sign-out from here on revokes the code (it deletes the grant this exchange uses up).
        return "session_ended"
    return ""


class Validator(OAuth2Validator):
    oidc_claim_scope: ClassVar = {**OAuth2Validator.oidc_claim_scope, "groups": "groups"}

    # --- Clients -----------------------------------------------------------------------------

    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        if not provided_secret or not stored_secret:
            return False
        return constant_time_compare(hash_secret(provided_secret), stored_secret)

    def _authenticate_basic_auth(self, request: Any) -> bool:
        # DOT catches binascii.Error but not the ValueError b64decode raises for credentials
        # that are not ASCII (a 500): such a client is not authenticated (invalid_client).
        try:
            authenticated = bool(super()._authenticate_basic_auth(request))
        except ValueError:
            return False
        if authenticated and request.client_id and request.client_id != request.client.client_id:
            # A body naming another client than the credentials (RFC 6749 §2.3.1: one way of
            # authenticating per request) is no client's request: invalid_client, where
            # oauthlib would answer server_error ("Discrepency found").
            request.client = None
            return False
        return authenticated

    def _load_application(self, client_id: str, request: Any) -> Any:
        if not storable(client_id):
            return None
        if not request.client:
            cached = _cached("application", client_id) or appcache.get(client_id)
            if cached is not None and cached.is_usable(request):
                request.client = cached
                return _keep("application", client_id, cached)
        stamp = appcache.stamp()
        application = super()._load_application(client_id, request)
        if application is not None:
            appcache.keep(client_id, application, stamp)
        return _keep("application", client_id, application)

    # --- Silent sign-in: the authorize view decides (threshold/sso/views.py) --------------------

    def validate_silent_login(self, request: Any) -> bool:
        return True

    def validate_silent_authorization(self, request: Any) -> bool:
        return True

    def validate_user_match(
        self, id_token_hint: Any, scopes: Any, claims: Any, request: Any
    ) -> bool:
        return True

    # --- Codes -------------------------------------------------------------------------------

    def _code(self, code: str) -> tuple[AppSignIn | None, Any]:
        """The sign-in ``code`` was issued in and its grant (None once exchanged), read once
        per request (``hotpath.find_code``: one SELECT, the person and their groups with
        them)."""
        found = _cached("code", code)
        if found is None:
            sign_in, grant, groups = hotpath.find_code(code, hash_code(code))
            if sign_in is not None and groups is not None:
                _keep("groups", str(sign_in.user_id), groups)
            found = _keep("code", code, (sign_in, grant))
        return found  # type: ignore[no-any-return]

    def _grant(self, code: str, client: Any) -> Any:
        """The grant of ``code``, if it is ``client``'s (any client's before it is known)."""
        if not storable(code):
            return None
        _sign_in, grant = self._code(code)
        if grant is None or (client is not None and grant.application_id != client.pk):
            return None
        return grant

    def get_code_challenge(self, code: str, request: Any) -> str | None:
        grant = self._grant(code, request.client)
        return (grant.code_challenge or None) if grant is not None else None

    def get_code_challenge_method(self, code: str, request: Any) -> str | None:
        grant = self._grant(code, request.client)
        return (grant.code_challenge_method or None) if grant is not None else None

    def get_default_redirect_uri(
        self, client_id: str, request: Any, *args: Any, **kwargs: Any
    ) -> str | None:
        # At /token (a code's exchange naming no redirect_uri): a code whose authorization
        # request named none (``AppSignIn.redirect_uri_named`` False: a first-party app's
        # /authorize-challenge, or a plain OAuth request) needs none, whatever the app's URIs
        # are now; the grant's own is what it was issued for. A code whose request named one
        # gets today's answer (confirm_redirect_uri: RFC 6749 §4.1.3).
        exchanged = _exchanged_unnamed(self, request)
        if exchanged is not None:
            return exchanged
        # OpenID Connect Core §3.1.2.1: an OpenID request must name its redirect_uri; only a
        # plain OAuth one falls back to the app's one registered URI (RFC 6749 §3.1.2.3).
        # None: oauthlib's MissingRedirectURIError, the "not valid" page (views._authorize).
        if "openid" in (scope_to_list(request.scope) or []):
            return None
        uri: str | None = super().get_default_redirect_uri(client_id, request, *args, **kwargs)
        _keep("redirect_uri", "validated", uri)  # the app's own: kept as validate_redirect_uri's
        return uri

    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        # Kept for an error oauthlib raises later without the request (views._authorize).
        allowed = bool(super().validate_redirect_uri(client_id, redirect_uri, request))
        if allowed:
            _keep("redirect_uri", "validated", redirect_uri)
        return allowed

    def confirm_redirect_uri(
        self, client_id: str, code: str, redirect_uri: str, client: Any, *args: Any, **kwargs: Any
    ) -> bool:
        # RFC 6749 §4.1.3: the code's exchange names the redirect_uri its request named (an
        # OpenID request always names one: get_default_redirect_uri). oauthlib fills in the
        # app's one registered URI when the exchange names none (``using_default_redirect_uri``),
        # which is right only for a plain OAuth request that named none either (§3.1.2.3):
        # the sign-in recorded which (``AppSignIn.redirect_uri_named``).
        request = kwargs.get("request") or (args[0] if args else None)
        grant = self._grant(code, client)
        if grant is None:
            return False
        sign_in, _grant = self._code(code)
        named = sign_in is None or sign_in.redirect_uri_named
        using_default = getattr(request, "using_default_redirect_uri", False)
        if not named and using_default:
            # None was named, none is: the grant's own (get_default_redirect_uri).
            return True
        if (using_default and named) or not grant.redirect_uri_allowed(redirect_uri):
            # RFC 6749 §5.2: a grant that "does not match the redirection URI used in the
            # authorization request" is invalid_grant (oauthlib's own refusal would say
            # invalid_request).
            raise oauth_errors.InvalidGrantError(
                description="The redirect_uri is not the one the authorization request named.",
                request=request,
            )
        return True

    def get_authorization_code_nonce(
        self, client_id: str, code: str, redirect_uri: str, request: Any
    ) -> str | None:
        grant = self._grant(code, request.client)
        return (grant.nonce or None) if grant is not None else None

    def get_authorization_code_scopes(
        self, client_id: str, code: str, redirect_uri: str, request: Any
    ) -> list[str]:
        grant = self._grant(code, request.client)
        return grant.scope.split() if grant is not None and grant.scope else []

    def _create_authorization_code(
        self, request: Any, code: dict[str, str], expires: Any = None
    ) -> Any:
        """DOT's grant, and the sign-in's facts with it, each written with the INSERT
        ``save()`` would run (threshold/sso/hotpath.py insert)."""
        if request.code_challenge_method != "S256":
            # The authorize view refuses any other first; DOT would refuse "plain" here.
            raise oauth_errors.InvalidRequestError(
                description="PKCE with S256 is required.", request=request
            )
        grant_model = get_grant_model()
        grant = grant_model(
            # The fields DOT 3.4's _create_authorization_code gives Grant.objects.create().
            application=request.client,
            user=request.user,
            code=code["code"],
            expires=expires
            or timezone.now()
            + timedelta(seconds=oauth2_settings.AUTHORIZATION_CODE_EXPIRE_SECONDS),
            redirect_uri=request.redirect_uri,
            scope=" ".join(request.scopes),
            code_challenge=request.code_challenge or "",
            code_challenge_method=request.code_challenge_method or "",
            nonce=request.nonce or "",
            claims=json.dumps(request.claims or {}),
            resource=getattr(request, "resource", []),
        )
        hotpath.insert(grant)
        facts = getattr(request, FACTS)
        hotpath.insert(
            AppSignIn(
                application=request.client,
                user=request.user,
                sid=facts.sid,
                auth_time=facts.auth_time,
                amr=facts.amr,
                acr=facts.acr,
                code_hash=hash_code(code["code"]),
                token_family=uuid.uuid4(),
                redirect_uri_named=not getattr(request, "using_default_redirect_uri", False),
                offline=OFFLINE_ACCESS in request.scopes,
            )
        )
        return grant

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        sign_in, _grant = self._code(code) if storable(code) else (None, None)
        if sign_in is not None and sign_in.application_id != client.pk:
            sign_in = None
        grant = self._grant(code, client)
        if grant is None and sign_in is not None:
            # The code was exchanged already (its grant is gone): whoever replays it may have
            # stolen it, so what it was exchanged for is revoked (RFC 6749 §4.1.2, RFC 9700
            # §4.5). Or an action revoked it before its exchange (``revoke_tokens``).
            get_refresh_token_model().revoke_family(sign_in.token_family)
            reason = "code_revoked" if sign_in.code_revoked else "code_replayed"
            _refused(request, reason, sign_in.user)
            return False
        if grant is None or grant.is_expired():
            return False
        request.scopes = grant.scope.split(" ")
        request.user = grant.user
        if grant.nonce:
            request.nonce = grant.nonce
        if grant.claims:
            request.claims = json.loads(grant.claims)
        reason = _exchange_refusal(request, client, sign_in, grant)
        if reason:
            _refused(request, reason, request.user)
            return False
        setattr(request, SIGN_IN, sign_in)
        return True

    # --- Tokens ------------------------------------------------------------------------------

    def _create_refresh_token(
        self, request: Any, refresh_token_code: str, access_token: Any, previous_refresh_token: Any
    ) -> Any:
        sign_in = getattr(request, SIGN_IN, None)
        if previous_refresh_token is not None or sign_in is None:
            return super()._create_refresh_token(
                request, refresh_token_code, access_token, previous_refresh_token
            )
        # A new family: the one the sign-in was given with its code, so that nothing is updated.
        refresh_token = get_refresh_token_model()(
            user=request.user,
            application=request.client,
            access_token=access_token,
            token_family=sign_in.token_family,
            resource=getattr(request, "resource", []),
        )
        self._set_token_value(refresh_token, refresh_token_code)
        hotpath.insert(refresh_token)
        return refresh_token

    def _load_access_token(self, token: str) -> Any:
        # DOT's query, in one SELECT built once, the person's groups with it
        # (threshold/sso/hotpath.py).
        access_token, groups = hotpath.find_access_token(
            hashlib.sha256(token.encode("utf-8")).hexdigest()
        )
        if access_token is not None and groups is not None:
            _keep("groups", str(access_token.user_id), groups)
        return access_token

    def validate_bearer_token(self, token: str, scopes: Any, request: Any) -> bool:
        """DOT's check of an access token (``/userinfo``), the person still able to sign in and
        still assigned its app: a token whose person was taken out of the app's groups is refused as
        a revoked one is (RFC 6750 §3.1 ``invalid_token``). The groups' and apps' actions revoke
        such tokens at the change (``actions.withdraw_unassigned``); this refuses the ones a change
        made otherwise left (a bulk delete sends no signal) and one a refresh issued while the
        change was being made. No statement of its own: the person's groups came with the token's
        SELECT, the app's are kept per process (``_assigned``, ``appcache``).

        The token is checked here without ``scopes``: oauthlib then refuses a live token that
        lacks ``openid`` itself, as RFC 6750 §3.1's ``insufficient_scope`` (403), not as a
        dead one (DOT's check would say ``invalid_token``, and the app would throw away a
        token a refresh gives back with the same scopes)."""
        if not super().validate_bearer_token(token, [], request):
            return False
        access_token = request.access_token
        # A person who may not sign in (locked, deactivated) has no tokens left: the lock and
        # the deactivation revoke them (``access_withdrawn``). One a change made otherwise
        # left is refused here, as /token and /introspect refuse it.
        reason = "" if access_token.user.can_sign_in else "account_cannot_sign_in"
        if not reason and not _assigned(access_token):
            reason = "not_assigned"
        if not reason:
            return True
        request.oauth2_error = {
            "error": "invalid_token",
            "error_description": "The access token is invalid.",
        }
        request.access_token = None
        record(
            Action.SSO_TOKEN_REFUSED,
            _origin(request),
            actor=access_token.user,
            subject=access_token.user,
            reason=reason,
            app=getattr(access_token.application, "client_id", ""),
            endpoint="userinfo",
        )
        return False

    def _check_and_set_request_resource(self, request: Any) -> None:
        # Threshold does not offer resource indicators (RFC 8707): its tokens are for the app
        # and /userinfo. DOT would read the grant again to look for them.
        if getattr(request, "resource", None):
            raise oauth_errors.CustomOAuth2Error(
                error="invalid_target", description="Resource indicators are not supported."
            )
        request.resource = []

    def _create_access_token(
        self, expires: Any, request: Any, token: dict[str, Any], source_refresh_token: Any = None
    ) -> Any:
        # DOT would re-parse the ID token it just signed and SELECT its row.
        access_token = get_access_token_model()(
            user=request.user,
            scope=token["scope"],
            expires=expires,
            # No ID token row: Threshold reads an ID token back from its signature only.
            id_token=None,
            application=request.client,
            source_refresh_token=source_refresh_token,
            resource=getattr(request, "resource", []),
        )
        self._set_token_value(access_token, token["access_token"])
        hotpath.insert(access_token)
        return access_token

    def revoke_token(
        self, token: str, token_type_hint: Any, request: Any, *args: Any, **kwargs: Any
    ) -> None:
        """DOT's revocation (RFC 7009: only the requesting app's own tokens, and an access
        token's refresh token with it), audited: ``sso.tokens_revoked`` (``app_revoked``) for
        the person whose live token it was. An unknown, foreign or dead token changes nothing
        and is answered the same 200 (§2.2), with no row."""
        application = getattr(request, "client", None)
        owners: set[int] = set()
        if isinstance(application, Application) and storable(token):
            lookup = {
                "token_checksum": hashlib.sha256(token.encode()).hexdigest(),
                "application_id": application.pk,
            }
            owners.update(
                get_access_token_model().objects.filter(**lookup).values_list("user_id", flat=True)
            )
            owners.update(
                get_refresh_token_model()
                .objects.filter(**lookup, revoked__isnull=True)
                .values_list("user_id", flat=True)
            )
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        for user in User.objects.filter(pk__in=owners):
            record(
                Action.SSO_TOKENS_REVOKED,
                _origin(request),
                subject=user,
                reason="app_revoked",
                app=getattr(application, "client_id", ""),
            )

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            # Whose token it was, and whether it was one rotation had replaced: a reuse is
            # the theft signal (RFC 9700 §4.14.2), and DOT has just revoked its family.
            known = (
                get_refresh_token_model()
                .objects.filter(token_checksum=hashlib.sha256(refresh_token.encode()).hexdigest())
                .select_related("user")
                .order_by(F("revoked").desc(nulls_first=True))
                .first()
                if storable(refresh_token)
                else None
            )
            if known is None:
                _refused(request, "refresh_token_unknown", None)
            elif known.revoked is not None and _superseded(known):
                _refused(request, "refresh_token_reused", known.user)
            elif known.revoked is not None:
                _refused(request, "refresh_token_revoked", known.user)
            else:
                _refused(request, "refresh_token_invalid", known.user)
            return False
        family = request.refresh_token_instance.token_family
        sign_in = AppSignIn.objects.filter(token_family=family).first() if family else None
        user = request.user
        reason = ""
        if sign_in is None:
            reason = "sign_in_unknown"
        elif not user.can_sign_in:
            reason = "account_cannot_sign_in"
        elif not may_use(client, user):
            reason = "not_assigned"
        elif not sign_in.offline:
            # Without offline_access the app stays signed in as long as the Threshold session
            # (OpenID Connect Core §11): one timed out ends now, not at the next cleanup; and
            # only while the way it signed in still stands, as /authorize asks.
            session = live_session(user, sign_in.sid, _origin(request), app=client.client_id)
            if session is None:
                reason = "session_ended"
            elif not stands(session, user, get_policy):
                reason = "sign_in_no_longer_allowed"
        if reason:
            get_refresh_token_model().revoke_family(family)
            _refused(request, reason, user)
            return False
        setattr(request, SIGN_IN, sign_in)
        return True

    def save_bearer_token(
        self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any
    ) -> None:
        """DOT's, with a code's grant used up first, in the same transaction as the tokens.

        DOT deletes the grant after writing the tokens (``invalidate_authorization_code``):
        two exchanges of one code at the same moment could both read it and both be
        answered. Here the transaction's first statement holds the app's row (``hold_app``:
        an app removed meanwhile is refused as invalid_client, the lock order above), and
        its next deletes the grant (``hotpath.use_grant``): only one exchange deletes it, and
        the other, refused, writes nothing but the replay's consequences (as for any replayed
        code: what the code gave is revoked). A refresh's next statement locks its refresh
        token and finds it still live (``hotpath.lock_live_refresh_token``): one revoked
        since ``validate_refresh_token`` read it (an app no longer assigned, a lock, a
        sign-out, another refresh of it) is refused, as it would be had it come a moment
        later.
        """
        grant = self._grant(request.code, request.client) if request.code else None
        # Set by DOT's validate_refresh_token.
        refreshed = getattr(request, "refresh_token_instance", None)
        with transaction.atomic(using=router.db_for_write(get_access_token_model())):
            # The app's row before the grant or the refresh token (the lock order above).
            there = hold_app(request.client.pk)
            used = not there or grant is None or hotpath.use_grant(grant.pk)
            live = not there or refreshed is None or hotpath.lock_live_refresh_token(refreshed.pk)
            if there and used and live:
                self._save_bearer_token(token, request, *args, **kwargs)
        if not there:
            # Removed since it was read: its codes and tokens went with it.
            _refused(request, "app_removed", request.user)
            raise oauth_errors.InvalidClientError(request=request)
        if not live:
            # What validate_refresh_token would have said and done: the change that revoked
            # it is audited with its own reason (sso.tokens_revoked); a refresh of the same
            # token that came first is reuse, and revokes the family it just renewed, as
            # DOT does when the reuse comes later (RFC 9700 §4.14.2: the server cannot tell
            # the app from a thief).
            assert refreshed is not None  # noqa: S101 - only a refresh finds its token dead
            superseded = _superseded(refreshed)
            if superseded:
                get_refresh_token_model().revoke_family(refreshed.token_family)
            reason = "refresh_token_reused" if superseded else "refresh_token_revoked"
            _refused(request, reason, request.user)
            raise oauth_errors.InvalidGrantError(request=request)
        if not used:
            sign_in = getattr(request, SIGN_IN)
            get_refresh_token_model().revoke_family(sign_in.token_family)
            # Revoked since it was read (a sign-out, a lock), or exchanged by another request.
            revoked = AppSignIn.objects.filter(pk=sign_in.pk, code_revoked=True).exists()
            _refused(request, "code_revoked" if revoked else "code_replayed", sign_in.user)
            raise oauth_errors.InvalidGrantError(request=request)
        if grant is not None:
            _keep("used", request.code, True)

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Any, *args: Any, **kwargs: Any
    ) -> None:
        if _cached("used", code):
            return  # deleted with the tokens' INSERTs (save_bearer_token)
        super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)

    def _save_bearer_token(
        self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any
    ) -> None:
        super()._save_bearer_token(token, request, *args, **kwargs)
        # What record() stores, in one INSERT built once (threshold/sso/hotpath.py).
        insert_audit(
            [
                AuditRow(
                    at=clock.now_datetime(),
                    action=Action.SSO_TOKEN_ISSUED,
                    origin=_origin(request),
                    actor=request.user,
                    subject=request.user,
                    detail={"app": request.client.client_id, "grant_type": request.grant_type},
                )
            ]
        )

    # --- Claims ------------------------------------------------------------------------------

    def get_claim_dict(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "sub": subject_of(user),
            **email_claims(user),
            "name": user.display_name,
            "preferred_username": user.username,
            "groups": lambda r: _group_names_of(r.user.pk),
        }

    def get_discovery_claims(self, request: Any) -> list[str]:
        return [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "amr", "acr",
            "email", "email_verified", "name", "preferred_username", "groups",
        ]  # fmt: skip

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: Any) -> Any:
        claims = self.get_oidc_claims(token, token_handler, request)
        # Threshold's one clock (threshold/clock.py), as auth_time's: not Django's or oauthlib's.
        now = int(clock.now())
        expiration_time = clock.now_datetime() + timedelta(
            seconds=oauth2_settings.ID_TOKEN_EXPIRE_SECONDS
        )
        sign_in: AppSignIn = getattr(request, SIGN_IN)
        claims.update(
            iss=self.get_oidc_issuer_endpoint(request),
            iat=now,
            exp=now + int(oauth2_settings.ID_TOKEN_EXPIRE_SECONDS),
            # When the person last proved who they are, in the session the code came
            # from: a refresh never moves it (OpenID Connect Core §2).
            auth_time=sign_in.auth_time,
            jti=str(uuid.uuid4()),
            sid=sign_in.sid,
            amr=list(sign_in.amr),
        )
        if sign_in.acr:
            claims["acr"] = sign_in.acr
        return claims, expiration_time

    def finalize_id_token(
        self, id_token: dict[str, Any], token: Any, token_handler: Any, request: Any
    ) -> str:
        claims, _ = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(**claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        if request.grant_type == "refresh_token":
            # A refreshed ID token answers no authentication request: no nonce.
            id_token.pop("nonce", None)
        key = keys.active_key(request.client.algorithm)
        signed = jwt.JWT(
            header={"typ": "JWT", "alg": key.alg, "kid": key.kid},
            claims=json.dumps(id_token, default=str),
        )
        signed.make_signed_token(key.key)
        # No IDToken row (DOT keeps one per token): an id_token_hint is read back from its
        # signature (keys.verified_claims), which works after the token expires, too.
        return str(signed.serialize())

    def _get_key_for_token(self, token: str) -> Any:
        """The key an ID token names (``kid``), active or retired but still published."""
        unverified = jws.JWS()
        unverified.deserialize(token)
        header = unverified.jose_header
        kid = header.get("kid") if isinstance(header, dict) else None
        key = keys.key_by_kid(kid) if isinstance(kid, str) else None
        return None if key is None else key.key


# What get_default_redirect_uri answers for a code exchanged without a redirect_uri whose
# grant holds none (an app registered without one signing in inside itself): oauthlib refuses
# an empty default, and nothing reads it once confirm_redirect_uri accepted it.
_NONE_NAMED = "urn:threshold:redirect-uri:none-named"


def _exchanged_unnamed(validator: Validator, request: Any) -> str | None:
    """At /token, for a code whose authorization request named no redirect_uri: the grant's
    (or ``_NONE_NAMED``). None otherwise (not a code's exchange, an unknown code, or one whose
    request named a redirect_uri)."""
    code = getattr(request, "code", None)
    if getattr(request, "grant_type", None) != "authorization_code" or not isinstance(code, str):
        return None
    if not storable(code):
        return None
    grant = validator._grant(code, getattr(request, "client", None))  # noqa: SLF001
    sign_in, _grant = validator._code(code)  # noqa: SLF001
    if grant is None or sign_in is None or sign_in.redirect_uri_named:
        return None
    return str(grant.redirect_uri or _NONE_NAMED)


def _assigned(access_token: Any) -> bool:
    """``may_use`` for an access token read by ``_load_access_token`` (with the person's
    groups); DOT's tokens may have no person or no app, which nobody is assigned."""
    application, user = access_token.application, access_token.user
    if application is None or user is None:
        return False
    return may_use(application, user)


def _group_names_of(user_id: int) -> list[str]:
    """The person's group names for the ``groups`` claim: as read with the person in this
    request (``_code``, ``_load_access_token``), else in their own SELECT."""
    kept = _cached("groups", str(user_id))
    return list(kept) if kept is not None else hotpath.group_names(user_id)


def _origin(request: Any) -> Origin:
    headers = getattr(request, "headers", {}) or {}
    if not hasattr(headers, "get"):
        return Origin(ip=None, user_agent="")
    # DOT's headers are the request's META: behind the proxy, the client's address is the one
    # it forwarded, as for every other audit row.
    return Origin(ip=client_address(headers), user_agent=str(headers.get("HTTP_USER_AGENT") or ""))


def _superseded(refresh_token: Any) -> bool:
    """Whether rotation replaced this revoked refresh token: its family has a token issued
    after it. Presenting one is reuse, the theft signal (RFC 9700 §4.14.2). DOT writes the
    same ``revoked`` column when anything else revokes a token (``revoke_tokens``: a lock, a
    recovery, signing out, an app no longer assigned; the app's own /revoke): the family's
    newest token has no successor, and an app that kept it is no thief. (A reuse revokes the
    family too: its newest token then reads as revoked, the reuse having been audited.) The
    id breaks a tie of ``created``, as under a frozen clock."""
    if refresh_token.token_family is None:
        return False
    return bool(
        get_refresh_token_model()
        .objects.filter(token_family=refresh_token.token_family)
        .filter(
            Q(created__gt=refresh_token.created)
            | Q(created=refresh_token.created, pk__gt=refresh_token.pk)
        )
        .exists()
    )


def _refused(request: Any, reason: str, user: Any) -> None:
    _keep("refused", "token", True)
    client = getattr(request, "client", None)
    fields: dict[str, Any] = {
        "reason": reason,
        "app": getattr(client, "client_id", ""),
        "grant_type": str(getattr(request, "grant_type", "") or ""),
    }
    # No person (an unknown refresh token): a public app's client_id is all anyone needs to
    # send these, so they are audited up to the network's rate (audit/capped.py).
    record_refusal(Action.SSO_TOKEN_REFUSED, _origin(request), user, **fields)


def _revoke_codes(grants: Any, sign_ins: Any) -> None:
    """Delete the codes among ``grants`` not exchanged yet (of the ``sign_ins`` only, when
    given: the sessions that ended) and mark their sign-ins revoked. The grants are locked
    first on PostgreSQL: an exchange in flight commits before they are read."""
    if connection.features.has_select_for_update:
        grants = grants.select_for_update()
    codes = {hash_code(code): pk for pk, code in grants.values_list("pk", "code")}
    if sign_ins is not None:
        ended = set(sign_ins.filter(code_hash__in=codes).values_list("code_hash", flat=True))
        codes = {code_hash: pk for code_hash, pk in codes.items() if code_hash in ended}
    if codes:
        get_grant_model().objects.filter(pk__in=codes.values()).delete()
        AppSignIn.objects.filter(code_hash__in=codes).update(code_revoked=True)


def _apps_of(user: Any, application: Any) -> QuerySet[Application]:
    """``application``, or every app ``user`` has a code, a token or a sign-in of."""
    apps: QuerySet[Application]
    if application is not None:
        apps = Application.objects.filter(pk=application.pk)
        return apps
    apps = Application.objects.filter(
        Q(pk__in=AppSignIn.objects.filter(user=user).values("application_id"))
        | Q(pk__in=get_grant_model().objects.filter(user=user).values("application_id"))
        | Q(pk__in=get_refresh_token_model().objects.filter(user=user).values("application_id"))
        | Q(pk__in=get_access_token_model().objects.filter(user=user).values("application_id"))
    )
    return apps


def revoke_tokens(
    user: Any,
    *,
    application: Any = None,
    sids: list[str] | None = None,
    keep_offline: bool = False,
) -> int:
    """Revoke ``user``'s refresh and access tokens (of one app, or of some sessions, and then
    only those issued without ``offline_access`` if ``keep_offline``); how many.

    Its first statement holds the apps' rows (``lock_apps``), as everything that writes what
    names an app does first. Its next ones take the rows a code's exchange or a refresh in
    flight holds: the codes (deleted; ``hotpath.use_grant`` deleted its own) and the live
    refresh tokens (locked; a refresh locks its own, ``hotpath.lock_live_refresh_token``). On
    PostgreSQL they wait for that exchange or refresh to commit, so that the statements after
    them, each reading what is committed when it starts, find the tokens it wrote and revoke
    them; read first, those tokens would have been missed and left live. (SQLite's write
    transactions run one at a time: the exchange or refresh commits before this begins, or after
    it ends and then finds its code gone or its refresh token revoked.)"""
    refresh_tokens = get_refresh_token_model().objects.filter(user=user, revoked__isnull=True)
    sign_ins = AppSignIn.objects.filter(user=user)
    if application is not None:
        refresh_tokens = refresh_tokens.filter(application=application)
        sign_ins = sign_ins.filter(application=application)
    if sids is not None:
        sign_ins = sign_ins.filter(sid__in=sids)
        if keep_offline:
            sign_ins = sign_ins.filter(offline=False)
        families = sign_ins.exclude(token_family=None)
        refresh_tokens = refresh_tokens.filter(
            token_family__in=families.values_list("token_family", flat=True)
        )
    access_tokens = get_access_token_model().objects.filter(user=user)
    if application is not None:
        access_tokens = access_tokens.filter(application=application)
    if sids is not None:
        access_tokens = access_tokens.filter(
            Q(refresh_token__in=refresh_tokens) | Q(source_refresh_token__in=refresh_tokens)
        )
    grants = get_grant_model().objects.filter(user=user)
    if application is not None:
        grants = grants.filter(application=application)
    # In the caller's transaction, or one of its own (RP-Initiated Logout calls it outside one).
    with transaction.atomic(savepoint=False):
        # The apps' rows before the codes and tokens (the lock order above): the caller may
        # queue back-channel logouts to them next. A removed app's went with it.
        if not lock_apps(_apps_of(user, application)) and application is not None:
            return 0
        _revoke_codes(grants, sign_ins if sids is not None else None)
        if connection.features.has_select_for_update:
            list(refresh_tokens.select_for_update().values_list("pk", flat=True))
        now = timezone.now()
        access_ids = list(access_tokens.values_list("pk", flat=True))
        count = refresh_tokens.update(revoked=now, updated=now)
        get_access_token_model().objects.filter(pk__in=access_ids).delete()
    return int(count) + len(access_ids)
