"""Creating people."""

from __future__ import annotations

from django.db import transaction

from threshold.accounts.models import User, normalize_username
from threshold.audit.actions import Action, Origin, record


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
    """The account for ``username``, created (and audited) when there is none."""
    user = User.objects.filter(username=normalize_username(username)).first()
    if user is not None:
        return user, False
    user = User.objects.create_user(
        username, email=email, full_name=full_name, is_administrator=is_administrator
    )
    record(Action.USER_CREATED, origin, actor=actor, subject=user)
    return user, True
