"""Adding and changing apps, and taking people's access to them away; each change audited.

Refusals raise ``AppError`` with a sentence for a person (the CLI prints it, the admin
portal shows it); nothing is stored when one is raised.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from threshold.accounts.actions import lock_user, lock_users
from threshold.accounts.models import User
from threshold.audit.actions import Action, Origin, record
from threshold.core import errors
from threshold.core.names import clean_name
from threshold.groups.access import get_group
from threshold.groups.models import Group
from threshold.sessions.models import Session
from threshold.sessions.store import SID
from threshold.sso.access import list_unassigned_holders
from threshold.sso.logout import enqueue
from threshold.sso.models import Algorithm, Application, AppSignIn, private_use_scheme
from threshold.sso.validator import hash_secret, lock_apps, revoke_tokens

APP_NAME_MAX_LENGTH = 100
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# 256 bits: a secret nobody guesses, which is why SHA-256 (not a slow hash) protects it at rest.
SECRET_BYTES = 32


class AppError(ValueError):
    """An app change that cannot be made, in words for the person who asked; ``field`` names
    the setting that is wrong, when one is (the admin portal marks its input)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class NewApp:
    application: Application
    # Shown once; only its SHA-256 is stored. None for a public app.
    client_secret: str | None


def _new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


# The longest URI an app's settings take: what its URI columns hold (``Application``).
URI_MAX_LENGTH = 2000


def _check_uri(uri: str, what: str, field: str, *, native: bool = False) -> str:
    """``uri``, or AppError. ``native``: a public app's redirect URI, which may also have a
    private-use scheme (RFC 8252 §7.1, a native app's ``com.example.app:/oauth2redirect``)."""
    from django.core.validators import URLValidator  # noqa: PLC0415

    # What a URL validator lets through: a NUL (which PostgreSQL cannot store), another
    # control character, a text-direction mark (a URL that reads as another), a lone
    # surrogate; and whitespace, which would split the app's list of URIs.
    if not uri.isprintable() or any(c.isspace() for c in uri):
        raise AppError(f"{what} {uri!r} is not an http(s) URL.", field)
    if len(uri) > URI_MAX_LENGTH:
        # URLValidator's own limit is 2,048: the columns hold 2,000 (PostgreSQL refuses more).
        raise AppError(f"{what} is longer than {URI_MAX_LENGTH:,} characters.", field)
    if native and private_use_scheme(uri) is not None:
        return _check_private_use_uri(uri, what, field)
    try:
        URLValidator(schemes=["https", "http"])(uri)
    except ValidationError:
        raise AppError(f"{what} {uri!r} is not an http(s) URL.", field) from None
    if "#" in uri:
        raise AppError(f"{what} {uri!r} must not have a fragment.", field)
    # https, except on the loopback interface (RFC 8252 §7.3: native apps; RFC 9700 §2.1).
    parts = urlsplit(uri)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise AppError(
            f"{what} {uri!r} must be https (http only for 127.0.0.1, [::1], localhost).", field
        )
    return uri


def _check_private_use_uri(uri: str, what: str, field: str) -> str:
    """RFC 8252 §7.1: ``scheme:/path`` (or ``scheme://host/path``), the complete URI
    registered (§8.4), nothing an exact match could be fooled by."""
    parts = urlsplit(uri)
    if "#" in uri or parts.query or "@" in parts.netloc or not (parts.path or parts.netloc):
        raise AppError(
            f"{what} {uri!r}: a native app's URI is scheme:/path, such as "
            "com.example.app:/oauth2redirect, with no query or fragment.",
            field,
        )
    return uri


@dataclass(frozen=True)
class AppSettings:
    """What an administrator sets on an app when adding or changing it, checked."""

    name: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str = ""
    initiate_login_uri: str = ""
    id_token_alg: str = Algorithm.RS256
    require_consent: bool = False
    # May sign people in inside the app (the Authorization Challenge Endpoint).
    first_party: bool = False


def check_settings(
    name: str,
    *,
    redirect_uris: Iterable[str],
    post_logout_redirect_uris: Iterable[str] = (),
    backchannel_logout_uri: str = "",
    initiate_login_uri: str = "",
    id_token_alg: str = Algorithm.RS256,
    require_consent: bool = False,
    first_party: bool = False,
    public: bool = False,
) -> AppSettings:
    """The settings, checked: AppError, in words for the person, for the first that is wrong.
    A ``public`` app (a native or browser app, no secret) may also register private-use
    redirect URIs (RFC 8252 §7.1); a confidential one, a web server's, may not."""
    try:
        cleaned = clean_name(name, APP_NAME_MAX_LENGTH)
    except errors.NameInvalid as exc:
        raise AppError(f"That app name can't be used ({exc.detail}).", "name") from None
    uris = tuple(
        _check_uri(uri, "The redirect URI", "redirect_uris", native=public) for uri in redirect_uris
    )
    if not uris:
        raise AppError("An app needs at least one redirect URI.", "redirect_uris")
    if id_token_alg not in Algorithm.values:
        raise AppError(
            f"The ID token signature must be one of {', '.join(Algorithm.values)}.", "id_token_alg"
        )
    logout_uris = tuple(
        _check_uri(uri, "The post-logout redirect URI", "post_logout_uris")
        for uri in post_logout_redirect_uris
    )
    if backchannel_logout_uri:
        _check_uri(backchannel_logout_uri, "The back-channel logout URI", "backchannel_logout_uri")
    if initiate_login_uri:
        _check_uri(initiate_login_uri, "The initiate-login URI", "initiate_login_uri")
    return AppSettings(
        name=cleaned,
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        backchannel_logout_uri=backchannel_logout_uri,
        initiate_login_uri=initiate_login_uri,
        id_token_alg=id_token_alg,
        require_consent=require_consent,
        first_party=bool(first_party),
    )


def current_settings(application: Application) -> AppSettings:
    """The app's settings as they are."""
    return AppSettings(
        name=application.name,
        redirect_uris=tuple(application.redirect_uris.split()),
        post_logout_redirect_uris=tuple(application.post_logout_redirect_uris.split()),
        backchannel_logout_uri=application.backchannel_logout_uri,
        initiate_login_uri=application.initiate_login_uri,
        id_token_alg=application.algorithm,
        require_consent=application.require_consent,
        first_party=application.first_party,
    )


def _apply(application: Application, settings: AppSettings) -> None:
    application.name = settings.name
    application.redirect_uris = " ".join(settings.redirect_uris)
    application.post_logout_redirect_uris = " ".join(settings.post_logout_redirect_uris)
    application.backchannel_logout_uri = settings.backchannel_logout_uri
    application.initiate_login_uri = settings.initiate_login_uri
    application.algorithm = settings.id_token_alg
    application.require_consent = settings.require_consent
    application.skip_authorization = not settings.require_consent
    application.first_party = settings.first_party


# The columns _apply sets, and what the audit row calls each.
_SETTING_COLUMNS = {
    "name": "name",
    "redirect_uris": "redirect_uris",
    "post_logout_redirect_uris": "post_logout_redirect_uris",
    "backchannel_logout_uri": "backchannel_logout_uri",
    "initiate_login_uri": "initiate_login_uri",
    "algorithm": "id_token_alg",
    "require_consent": "require_consent",
    "skip_authorization": "",
    "first_party": "first_party",
}


@transaction.atomic
def do_add_app(
    name: str,
    origin: Origin,
    *,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str] = (),  # type: ignore[assignment]
    backchannel_logout_uri: str = "",
    initiate_login_uri: str = "",
    public: bool = False,
    id_token_alg: str = Algorithm.RS256,
    require_consent: bool = False,
    first_party: bool = False,
    actor: User | None = None,
) -> NewApp:
    settings = check_settings(
        name,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout_redirect_uris,
        backchannel_logout_uri=backchannel_logout_uri,
        initiate_login_uri=initiate_login_uri,
        id_token_alg=id_token_alg,
        require_consent=require_consent,
        first_party=first_party,
        public=public,
    )
    secret = None if public else _new_secret()
    application = Application(
        client_type=Application.CLIENT_PUBLIC if public else Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        client_secret="" if secret is None else hash_secret(secret),
        # Stored as our SHA-256 already: DOT must not hash it again with the people's hasher.
        hash_client_secret=False,
    )
    _apply(application, settings)
    application.save()
    record(
        Action.APP_ADDED,
        origin,
        actor=actor,
        app=application.client_id,
        name=settings.name,
        public=public,
        id_token_alg=settings.id_token_alg,
        require_consent=settings.require_consent,
        first_party=settings.first_party,
        after=_audited_settings(settings),
    )
    return NewApp(application, secret)


class AppGone(AppError):
    """The app was removed while a change of it waited (``_held``): nothing changed."""

    def __init__(self) -> None:
        super().__init__("The app was removed meanwhile: nothing was changed.")


def _held(application: Application) -> Application:
    """The app's row as it is now, held until the transaction ends, so that a removal and a
    change of it take turns; ``AppGone`` when it was removed meanwhile. FOR NO KEY UPDATE (on
    PostgreSQL), what an UPDATE of its settings takes: the codes, tokens and logouts written
    meanwhile, which hold it FOR KEY SHARE (``validator.lock_apps``), do not wait for it."""
    locked: Application | None = (
        Application.objects.select_for_update(no_key=True).filter(pk=application.pk).first()
    )
    if locked is None:
        raise AppGone()
    return locked


@transaction.atomic
def do_change_app(
    application: Application, settings: AppSettings, origin: Origin, *, actor: User | None = None
) -> list[str]:
    """Replace the app's settings; returns the names of those that changed (none: nothing
    stored, nothing audited). Its client ID, kind, secret, tokens and assignment stay."""
    locked = _held(application)
    was = current_settings(locked)
    before = {column: getattr(locked, column) for column in _SETTING_COLUMNS}
    _apply(locked, settings)
    changed = [column for column in _SETTING_COLUMNS if getattr(locked, column) != before[column]]
    if not changed:
        return []
    locked.save(update_fields=[*changed, "updated"])
    _apply(application, settings)
    names = [_SETTING_COLUMNS[column] for column in changed if _SETTING_COLUMNS[column]]
    record(
        Action.APP_CHANGED,
        origin,
        actor=actor,
        app=locked.client_id,
        changed=names,
        before={name: _audited(getattr(was, name)) for name in names},
        after={name: _audited(getattr(settings, name)) for name in names},
    )
    return names


def _audited(value: object) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _audited_settings(settings: AppSettings) -> dict[str, Any]:
    """Every setting app.changed records, as it records them: an added app's (``after``), a
    removed one's (``before``), so that the trail says where any app could send codes and
    tokens, and when."""
    return {name: _audited(getattr(settings, name)) for name in _SETTING_COLUMNS.values() if name}


def find_app(client_id: str) -> Application:
    application: Application | None = (
        Application.objects.filter(client_id=client_id.strip()).first()
        if "\x00" not in client_id
        else None
    )
    if application is None:
        raise AppError(f"There is no app with the client ID {client_id!r}.")
    return application


@transaction.atomic
def do_remove_app(application: Application, origin: Origin, *, actor: User | None = None) -> None:
    """Remove the app; its codes and tokens go with it. Nothing is done when it was removed
    meanwhile.

    Its row is held first, FOR UPDATE (the lock order: ``validator.lock_apps``): tokens or a
    back-channel logout being written for it, which hold its row first, are committed before
    the cascade reads what goes, so they go too; those that come after wait, then find no app
    and write nothing. (A code /authorize writes meets the row at its COMMIT, the key's own
    check: after a removal, that COMMIT fails, answered as the app gone.)"""
    locked = Application.objects.select_for_update().filter(pk=application.pk).first()
    if locked is None:
        return
    record(
        Action.APP_REMOVED,
        origin,
        actor=actor,
        app=locked.client_id,
        name=locked.name,
        before=_audited_settings(current_settings(locked)),
    )
    locked.delete()


def hold_apps_of_group(sender: Any, instance: Group, **kwargs: Any) -> None:
    """A group is being removed (``pre_delete``, before its assignments go by cascade): the
    rows of the apps assigned to it are held first (the lock order: ``validator.lock_apps``),
    as the tokens its members lose then (``withdraw_unassigned``) would hold them. Else a
    removal of one of those apps at the same moment, waiting for an assignment this deletes,
    would be waited for in turn: a deadlock."""
    lock_apps(Application.objects.filter(groups=instance))


def check_has_secret(application: Application) -> None:
    """AppError for a public app: it has no secret to rotate."""
    if application.client_type == Application.CLIENT_PUBLIC:
        raise AppError(f"{application.name} is a public app: it has no secret.")


@transaction.atomic
def do_rotate_secret(application: Application, origin: Origin, *, actor: User | None = None) -> str:
    """A new secret (returned once); the old one stops working at once."""
    _held(application)
    check_has_secret(application)
    secret = _new_secret()
    application.client_secret = hash_secret(secret)
    application.save(update_fields=["client_secret", "updated"])
    record(Action.APP_SECRET_ROTATED, origin, actor=actor, app=application.client_id)
    return secret


@dataclass(frozen=True)
class Assignment:
    groups: list[Group]  # empty for everyone
    changed: bool


def _hold_groups(groups: list[Group]) -> None:
    """The groups' rows, held until the transaction ends, in the order of their IDs (after the
    app's, ``_held``), so that a removal of one and this assignment take turns, as a member
    added to a group and its removal do (``groups.actions.do_add_member``): the removal
    deletes the assignment written before it, and an assignment after it is refused. Without
    it, on PostgreSQL, the assignment's key to a group removed meanwhile failed its COMMIT.
    FOR NO KEY UPDATE, as nothing of the group's row changes: enough to take turns with its
    removal (FOR UPDATE). ``AppError`` (``field`` "group") for a group removed meanwhile."""
    wanted = {group.pk: group for group in groups}
    there = set(
        Group.objects.select_for_update(no_key=True)
        .filter(pk__in=wanted)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk, group in wanted.items():
        if pk not in there:
            raise AppError(f"There is no group called {group.name!r}.", "group")


@transaction.atomic
def do_assign_app(
    application: Application,
    origin: Origin,
    *,
    everyone: bool,
    group_names: list[str] = (),  # type: ignore[assignment]
    actor: User | None = None,
) -> Assignment:
    """Who may use the app: everyone, or the members of these groups (replacing the list).
    Nothing is recorded when that is who may use it already."""
    if everyone == bool(group_names):
        raise AppError("Assign the app to --everyone or to one or more --group NAME.")
    _held(application)
    groups: list[Group] = []
    for name in group_names:
        group = get_group(name)
        if group is None:
            raise AppError(f"There is no group called {name!r}.", "group")
        groups.append(group)
    _hold_groups(groups)
    before = set(application.groups.values_list("pk", flat=True))
    if application.for_everyone == everyone and before == {group.pk for group in groups}:
        return Assignment(groups, changed=False)  # as it was: nothing to record or withdraw
    application.for_everyone = everyone
    application.save(update_fields=["for_everyone", "updated"])
    application.groups.set(groups)
    record(
        Action.APP_ASSIGNED,
        origin,
        actor=actor,
        app=application.client_id,
        everyone=everyone,
        groups=[group.name for group in groups],
    )
    # Whoever it is no longer assigned to loses it now, not when their tokens expire.
    withdraw_unassigned(origin, "app_reassigned", application=application, actor=actor)
    return Assignment(groups, changed=True)


@transaction.atomic
def do_sign_out_of_app(user: User, application: Application, origin: Origin) -> int:
    """The person's "Sign out of this app": that app's tokens are revoked (their row first,
    as every revocation of theirs takes it: ``accounts.actions.lock_user``), and the app is
    told of each session they signed in to it from (back-channel logout, after commit), so
    that its own session of the person ends too, as when they are no longer assigned it."""
    lock_user(user)
    count = revoke_tokens(user, application=application)
    _tell_app(user, application, "signed_out_of_app")
    # The Threshold sessions the app holds for them (signed in inside it) end with it.
    sessions = end_app_sessions(user, application)
    record(
        Action.SSO_TOKENS_REVOKED,
        origin,
        actor=user,
        subject=user,
        reason="signed_out_of_app",
        app=application.client_id,
        tokens=count,
        sessions=sessions,
    )
    return count


def end_app_sessions(
    user: User, application: Application, *, sids: Iterable[str] | None = None
) -> int:
    """End the Threshold sessions ``application`` holds for ``user`` (a first-party app's
    sign-in inside itself, ``firstparty.py``: ``Session.app_client_id``), or only those of
    them issued as ``sids``; never a browser's. How many there were. In the caller's
    transaction, which took the person's row first (``lock_user``) and audits why; each
    session's end tells its apps as any ending does (``apps.session_ended``).

    A session written before ``app_client_id`` existed names the app only by its name then:
    it is this app's if this app was signed in to from it (its ``sid``'s ``AppSignIn``)."""
    held = Session.objects.filter(user=user).filter(
        Q(app_client_id=application.client_id) | (Q(app_client_id="") & ~Q(app_name=""))
    )
    candidates = list(held.only("session_key", "session_data", "app_client_id"))
    if not candidates:
        return 0
    wanted = None if sids is None else set(sids)
    mine = set(
        AppSignIn.objects.filter(user=user, application=application).values_list("sid", flat=True)
    )
    keys = []
    for session in candidates:
        sid = session.get_decoded().get(SID)
        if session.app_client_id != application.client_id and sid not in mine:
            continue
        if wanted is not None and sid not in wanted:
            continue
        keys.append(session.session_key)
    if not keys:
        return 0
    count, _ = Session.objects.filter(user=user, session_key__in=keys).delete()
    return count


def _tell_app(user: User, application: Application, reason: str) -> None:
    """A back-channel logout to ``application`` for each session ``user`` signed in to it
    from."""
    sids = AppSignIn.objects.filter(user=user, application=application).values_list(
        "sid", flat=True
    )
    for sid in sorted(set(sids)):
        enqueue(user, sid, reason, application=application)


def end_session_tokens(user: User, sid: str) -> int:
    """The Threshold session ``sid`` ended (Sign out, a timeout, any other way): the codes and
    tokens its apps were given without ``offline_access`` are revoked, as OpenID Connect
    Back-Channel Logout §2.7 asks and Keycloak does; those the person let an app keep ("Stay
    signed in to the app") live on to their own expiry. In the transaction that ends it,
    which took the person's row first and whose own audit row (a sign-out, a timeout, a
    lock, ...) says why; the apps are told by back-channel logout."""
    if not AppSignIn.objects.filter(user=user, sid=sid, offline=False).exists():
        return 0
    return revoke_tokens(user, sids=[sid], keep_offline=True)


def revoke_all_tokens(
    user: Any,
    origin: Origin,
    reason: str,
    *,
    actor: User | None = None,
    sids: list[str] | None = None,
) -> int:
    """Every app's tokens for ``user`` (a lock, a recovery), or those of the sessions ``sids``
    ("Sign out other sessions"), in the caller's transaction, audited when there were any;
    ``actor``: whose action it was (None: the command line)."""
    count = revoke_tokens(user, sids=sids)
    if count:
        record(
            Action.SSO_TOKENS_REVOKED,
            origin,
            actor=actor,
            subject=user,
            reason=reason,
            tokens=count,
        )
    return count


def withdraw_unassigned(
    origin: Origin,
    reason: str,
    *,
    user_ids: Iterable[int] | None = None,
    application: Application | None = None,
    actor: User | None = None,
    **detail: Any,
) -> int:
    """The apps people are no longer assigned (``user_ids``' apps, or anyone's of
    ``application``), in the caller's transaction, right after the change: each person's
    tokens and codes of each such app revoked (``revoke_tokens``) and audited, and the app
    told of each session they signed in to it from (back-channel logout, after commit), as a
    lock tells it. A refresh, ``/introspect`` and ``/userinfo`` refuse an unassigned person
    anyway; without this their tokens would stay live rows, and the app's own session would
    go on until it next asked (Okta and Keycloak end such access at the change, too).
    Returns how many tokens were revoked."""
    pairs: list[tuple[int, int]] = []
    if user_ids is None:
        pairs = list_unassigned_holders(application=application)
    else:
        everyone = list(user_ids)
        # A few thousand at a time: PostgreSQL takes at most 65,535 parameters.
        for start in range(0, len(everyone), _IDS_PER_QUERY):
            batch = everyone[start : start + _IDS_PER_QUERY]
            pairs.extend(list_unassigned_holders(user_ids=batch, application=application))
    if not pairs:
        return 0
    # Their rows first, in the order of their IDs (``lock_users``), as every revocation of
    # a person's tokens or sessions takes them; and each person's apps one after the other.
    pairs.sort()
    for start in range(0, len(pairs), _IDS_PER_QUERY):
        lock_users({user_id for user_id, _ in pairs[start : start + _IDS_PER_QUERY]})
    people = User.objects.in_bulk({user_id for user_id, _ in pairs})
    apps = Application.objects.in_bulk({app_id for _, app_id in pairs})
    revoked = 0
    for user_id, app_id in pairs:
        user, app = people[user_id], apps[app_id]
        count = revoke_tokens(user, application=app)
        _tell_app(user, app, reason)
        record(
            Action.SSO_TOKENS_REVOKED,
            origin,
            actor=actor,
            subject=user,
            reason=reason,
            app=app.client_id,
            tokens=count,
            **detail,
        )
        revoked += count
    return revoked


_IDS_PER_QUERY = 5000


def delete_expired() -> int:
    """``threshold cleanup``: expired and revoked tokens, expired codes (DOT's clear_expired),
    then the sign-ins whose code expired unused or whose tokens are all gone."""
    from datetime import timedelta  # noqa: PLC0415

    from django.utils import timezone  # noqa: PLC0415
    from oauth2_provider.models import clear_expired, get_refresh_token_model  # noqa: PLC0415

    clear_expired()
    live_families = get_refresh_token_model().objects.values("token_family")
    stale = timezone.now() - timedelta(days=1)
    count, _ = (
        AppSignIn.objects.filter(created_at__lt=stale)
        .exclude(token_family__in=live_families)
        .delete()
    )
    return count
