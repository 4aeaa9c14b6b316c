"""Reading apps for a person: the ones they may use (Home's "My apps"), the ones they are
signed in to (Settings), and one of those by its ID, the same way whether it is missing or
not theirs; who holds what an app no longer assigned to them gave them; and what a group
gives its members (the admin portal's group page)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_refresh_token_model,
)

from threshold.accounts.models import User
from threshold.groups.models import Group, Membership
from threshold.sso.models import Application


def issuer() -> str:
    """This provider's issuer identifier (OpenID Connect Discovery 1.0 §3): what apps configure."""
    return str(settings.THRESHOLD.public_url)


def discovery_url() -> str:
    """Where an app reads this provider's endpoints and keys."""
    return issuer() + reverse("sso:discovery")


def list_my_apps(user: User) -> QuerySet[Application]:
    """The apps assigned to everyone or to one of the person's groups, by name."""
    apps: QuerySet[Application] = (
        Application.objects.filter(Q(for_everyone=True) | Q(groups__memberships__user=user))
        .distinct()
        .order_by("name")
    )
    return apps


def list_signed_in_apps(user: User) -> QuerySet[Application]:
    """The apps holding a live refresh token of the person's: what "Sign out of this app" ends."""
    live = get_refresh_token_model().objects.filter(user=user, revoked__isnull=True)
    apps: QuerySet[Application] = Application.objects.filter(
        pk__in=live.values("application_id")
    ).order_by("name")
    return apps


_APP_ID = re.compile(r"[0-9]{1,18}")


def access_signed_in_app(user: User, app_id: object) -> Application | None:
    """One of the person's signed-in apps; None alike for an unknown ID and another's app."""
    # Up to 18 ASCII digits: str.isdigit() is True for "²", which int() refuses.
    if not isinstance(app_id, str) or not _APP_ID.fullmatch(app_id):
        return None
    application: Application | None = list_signed_in_apps(user).filter(pk=int(app_id)).first()
    return application


def list_unassigned_holders(
    *, user_ids: Iterable[int] | None = None, application: Application | None = None
) -> list[tuple[int, int]]:
    """(person ID, app ID) for each person (of ``user_ids``, or anyone) who holds an access
    token, a live refresh token or an unused code of an app (``application``, or any) that is
    assigned to groups none of which they are in: what ``revoke_tokens`` must take back.
    Three SELECTs, whatever the number of people."""
    in_one_of_its_groups = Membership.objects.filter(
        user=OuterRef("user"), group__apps=OuterRef("application")
    )
    held: list[QuerySet[Any]] = [
        get_access_token_model().objects.all(),
        get_refresh_token_model().objects.filter(revoked__isnull=True),
        get_grant_model().objects.all(),
    ]
    found: set[tuple[int, int]] = set()
    for tokens in held:
        rows = tokens.filter(user__isnull=False, application__for_everyone=False)
        if user_ids is not None:
            rows = rows.filter(user_id__in=user_ids)
        if application is not None:
            rows = rows.filter(application=application)
        found.update(
            rows.exclude(Exists(in_one_of_its_groups))
            .values_list("user_id", "application_id")
            .distinct()
        )
    return sorted(found)


def list_group_apps(group: Group) -> QuerySet[Application]:
    """The apps assigned to ``group`` (not to everyone), by name: what its members lose when
    they leave it or it is removed, unless another of their groups gives them the app."""
    apps: QuerySet[Application] = Application.objects.filter(
        groups=group, for_everyone=False
    ).order_by("name")
    return apps


def count_members_losing_apps(group: Group) -> int:
    """How many of ``group``'s members would lose an app if it were removed: members in none
    of the other groups of one of its apps (``withdraw_unassigned`` then revokes what the app
    gave them). One SELECT."""
    through_another_group = Membership.objects.filter(
        user=OuterRef(OuterRef("user")), group__apps=OuterRef("pk")
    ).exclude(group=group)
    lost_app = list_group_apps(group).exclude(Exists(through_another_group))
    return Membership.objects.filter(group=group).filter(Exists(lost_app)).count()
