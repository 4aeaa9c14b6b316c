"""Read-only fetches of accounts."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from threshold.accounts.models import User


def list_users() -> QuerySet[User]:
    return User.objects.annotate(passkey_count=Count("passkeys")).order_by("username")


def has_enrolled_administrator() -> bool:
    return User.objects.filter(
        is_administrator=True, is_active=True, passkeys__isnull=False
    ).exists()


def first_administrator() -> User | None:
    return User.objects.filter(is_administrator=True, is_active=True).order_by("pk").first()
