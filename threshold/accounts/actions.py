"""Creating people and changing their own details."""

from __future__ import annotations

from django.db import transaction

from threshold.accounts.models import User, normalize_username
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
    """The account for ``username``, created (and audited) when there is none."""
    user = User.objects.filter(username=normalize_username(username)).first()
    if user is not None:
        return user, False
    user = User.objects.create_user(
        username, email=email, full_name=full_name, is_administrator=is_administrator
    )
    record(Action.USER_CREATED, origin, actor=actor, subject=user)
    return user, True


def lock_user(user: User) -> None:
    """Make changes to ``user``'s sign-in methods take turns until the transaction ends.

    PostgreSQL: a row lock (SELECT ... FOR UPDATE). SQLite ignores it and needs
    none: its transactions begin IMMEDIATE, holding the database's write lock.
    """
    list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk"))


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
