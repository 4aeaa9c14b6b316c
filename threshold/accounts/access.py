"""Read-only fetches of accounts."""

from __future__ import annotations

from threshold.accounts.models import Role, User, normalize_username


def get_user(username: str) -> User | None:
    """The account whose username is ``username`` (compared case-insensitively), if any."""
    return User.objects.filter(username=normalize_username(username)).first()


def has_enrolled_administrator() -> bool:
    """An administrator who can sign in with a passkey (not deactivated, not locked)."""
    return User.objects.filter(
        role=Role.ADMINISTRATOR, is_active=True, locked_at=None, passkeys__isnull=False
    ).exists()


def first_administrator() -> User | None:
    """The longest-standing active administrator, locked or not (bootstrap says which)."""
    return User.objects.filter(role=Role.ADMINISTRATOR, is_active=True).order_by("pk").first()
