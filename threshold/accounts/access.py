"""Read-only fetches of accounts."""

from __future__ import annotations

from threshold.accounts.models import Role, User, normalize_username


def get_user(username: str) -> User | None:
    """The account whose username is ``username`` (compared case-insensitively), if any.

    Looked up as it is stored (``normalize_username``), so that every check of who someone
    is finds the account ``do_get_or_create_user`` would: only a NUL, which no stored
    username holds and PostgreSQL refuses in a query, finds no one without asking."""
    key = normalize_username(username)
    if "\x00" in key:
        return None
    return User.objects.filter(username=key).first()


def has_enrolled_administrator() -> bool:
    """An administrator who can sign in with a passkey (not deactivated, not locked)."""
    return User.objects.filter(
        role=Role.ADMINISTRATOR, is_active=True, locked_at=None, passkeys__isnull=False
    ).exists()


def first_administrator() -> User | None:
    """The longest-standing active administrator, locked or not (bootstrap says which)."""
    return User.objects.filter(role=Role.ADMINISTRATOR, is_active=True).order_by("pk").first()


def staff_not_theirs(role: Role, actor: User, user: User) -> bool:
    """Is ``user`` a member of staff (someone with a role in the admin portal) whom ``actor``,
    of ``role``, may not change? Staff are an administrator's to change, invite or recover:
    a help desk's recovery link, new invite or lock for an administrator would be a way into,
    or out of, everything. Anyone may change themselves."""
    return bool(user.role) and role is not Role.ADMINISTRATOR and user.pk != actor.pk
