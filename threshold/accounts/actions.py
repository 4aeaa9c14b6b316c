"""Creating people, changing their own details, and an administrator's lock."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from threshold import clock
from threshold.accounts.models import Role, User, normalize_username
from threshold.accounts.signals import access_withdrawn, withdrawing
from threshold.audit.actions import Action, Origin, record
from threshold.core.names import DISPLAY_NAME_MAX_LENGTH, clean_name


@transaction.atomic
def do_get_or_create_user(
    username: str,
    origin: Origin,
    *,
    email: str = "",
    full_name: str = "",
    is_administrator: bool = False,
    actor: User | None = None,
) -> tuple[User, bool]:
    """The account for ``username``, created (and audited) when there is none. Two at once
    for one new username (two invites, an import run twice): one creates it, the other waits
    for that and gets it (the username's unique index decides, in a savepoint)."""
    key = normalize_username(username)
    user = User.objects.filter(username=key).first()
    if user is not None:
        return user, False
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                username, email=email, full_name=full_name, is_administrator=is_administrator
            )
    except IntegrityError:
        return User.objects.get(username=key), False
    # A role given at creation (`threshold invite --admin`, bootstrap) is in the trail too.
    given: dict[str, Any] = {"after": {"role": user.role}} if user.role else {}
    record(Action.USER_CREATED, origin, actor=actor, subject=user, **given)
    return user, True


def lock_user(user: User) -> None:
    """Make changes to ``user``'s sign-in methods take turns until the transaction ends.

    A lock for the length of a transaction, not the administrator's account
    lock (``do_lock_user``). PostgreSQL: a row lock (SELECT ... FOR NO KEY UPDATE),
    which a row naming the person (a session, a token: its foreign key's check takes
    FOR KEY SHARE) does not wait for. FOR UPDATE made such an insert wait, and a
    lock whose revocations then waited for that insert's transaction (a refresh
    holding its refresh token) was undone as a deadlock. SQLite ignores it and
    needs none: its transactions begin IMMEDIATE, holding the database's write lock.
    """
    list(User.objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk"))


def lock_users(user_ids: Iterable[int]) -> None:
    """``lock_user`` for several people at once (ending many people's sessions or app
    access), in the order of their IDs: two such changes take the rows in one order, so
    neither holds a row the other waits for while waiting for one the other holds."""
    list(
        User.objects.select_for_update(no_key=True)
        .filter(pk__in=list(user_ids))
        .order_by("pk")
        .values_list("pk")
    )


@transaction.atomic
def do_change_display_name(user: User, new_name: object, origin: Origin) -> bool:
    """Set the name people and password managers show; False when it did not change."""
    name = clean_name(new_name, DISPLAY_NAME_MAX_LENGTH)
    if name == user.full_name:
        return False
    old = user.full_name
    user.full_name = name
    user.save(update_fields=["full_name"])
    record(Action.DISPLAY_NAME_CHANGED, origin, actor=user, subject=user, old=old, new=name)
    return True


# --- An administrator's lock ---------------------------------------------------------------------

LOCK_REASON_MAX_LENGTH = 200


def clean_lock_reason(value: str) -> str:
    """The reason as stored: one line of at most 200 characters; ValueError otherwise."""
    reason = " ".join(unicodedata.normalize("NFC", value).split())
    if len(reason) > LOCK_REASON_MAX_LENGTH:
        raise ValueError(f"the reason is {len(reason)} characters, at most 200")
    if any(unicodedata.category(character)[0] == "C" for character in reason):
        raise ValueError("the reason must not contain control or format characters")
    return reason


@transaction.atomic
def do_lock_user(
    user: User, origin: Origin, reason: str = "", *, actor: User | None = None
) -> bool:
    """Lock ``user`` out of every way of signing in; False when they were locked already.

    Their sessions end now (each browser is signed out at its next request)
    and their unused enrollment and recovery links stop working, so an
    attacker who holds either loses it. Their passkeys stay: unlocking lets
    them sign in again; the links stay revoked.
    """
    reason = clean_lock_reason(reason)
    lock_user(user)
    user.refresh_from_db(fields=["is_active", "locked_at", "locked_reason"])
    if user.locked_at is not None:
        return False
    now = clock.now_datetime()
    user.locked_at = now
    user.locked_reason = reason
    user.save(update_fields=["locked_at", "locked_reason"])
    with withdrawing():
        sessions, _ = user.sessions.all().delete()
    links = user.invites.filter(used_at=None, revoked_at=None).update(revoked_at=now)
    record(
        Action.USER_LOCKED,
        origin,
        actor=actor,
        subject=user,
        lock_reason=reason,
        sessions_ended=sessions,
        links_revoked=links,
        before={"locked": False},
        after={"locked": True, "reason": reason},
    )
    access_withdrawn.send(
        User, user=user, origin=origin, reason="locked", keep_session_key=None, actor=actor
    )
    return True


@transaction.atomic
def do_unlock_user(user: User, origin: Origin, *, actor: User | None = None) -> bool:
    """Let ``user`` sign in again with their passkeys; False when they were not locked."""
    lock_user(user)
    user.refresh_from_db(fields=["is_active", "locked_at", "locked_reason"])
    if user.locked_at is None:
        return False
    locked_at, reason = user.locked_at, user.locked_reason
    user.locked_at = None
    user.locked_reason = ""
    user.save(update_fields=["locked_at", "locked_reason"])
    record(
        Action.USER_UNLOCKED,
        origin,
        actor=actor,
        subject=user,
        locked_at=locked_at.isoformat(),
        lock_reason=reason,
        before={"locked": True, "reason": reason},
        after={"locked": False},
    )
    return True


# --- Roles and deactivation (the admin portal, ``threshold users role``) --------------------------


@transaction.atomic
def do_set_role(user: User, role: Role, origin: Origin, *, actor: User | None = None) -> bool:
    """Give ``user`` the admin portal ``role`` (``Role.NONE``: none); False when unchanged."""
    role = Role(role)
    lock_user(user)
    user.refresh_from_db(fields=["role"])
    before = user.role
    if before == role:
        return False
    user.role = role.value
    user.save(update_fields=["role"])
    record(
        Action.USER_ROLE_CHANGED,
        origin,
        actor=actor,
        subject=user,
        before={"role": before},
        after={"role": role.value},
    )
    return True


@transaction.atomic
def do_deactivate_user(user: User, origin: Origin, *, actor: User | None = None) -> bool:
    """Deactivate ``user``: no way of signing in works, their sessions end and their unused
    links stop working; their passkeys and history stay. False when they were already."""
    lock_user(user)
    user.refresh_from_db(fields=["is_active", "locked_at", "locked_reason"])
    if not user.is_active:
        return False
    now = clock.now_datetime()
    user.is_active = False
    user.save(update_fields=["is_active"])
    with withdrawing():
        sessions, _ = user.sessions.all().delete()
    links = user.invites.filter(used_at=None, revoked_at=None).update(revoked_at=now)
    record(
        Action.USER_DEACTIVATED,
        origin,
        actor=actor,
        subject=user,
        before={"active": True},
        after={"active": False},
        sessions_ended=sessions,
        links_revoked=links,
    )
    access_withdrawn.send(
        User, user=user, origin=origin, reason="deactivated", keep_session_key=None, actor=actor
    )
    return True


@transaction.atomic
def do_reactivate_user(user: User, origin: Origin, *, actor: User | None = None) -> bool:
    """Let a deactivated ``user`` sign in again (a lock, if any, stays); False when active."""
    lock_user(user)
    user.refresh_from_db(fields=["is_active"])
    if user.is_active:
        return False
    user.is_active = True
    user.save(update_fields=["is_active"])
    record(
        Action.USER_REACTIVATED,
        origin,
        actor=actor,
        subject=user,
        before={"active": False},
        after={"active": True},
    )
    return True
