"""Reading apps for a person: the ones they may use (Home's "My apps"), the ones they are
signed in to (Settings), and one of those by its ID, the same way whether it is missing or
not theirs."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from oauth2_provider.models import get_refresh_token_model

from threshold.accounts.models import User
from threshold.sso.models import Application


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


def access_signed_in_app(user: User, app_id: object) -> Application | None:
    """One of the person's signed-in apps; None alike for an unknown ID and another's app."""
    if not isinstance(app_id, str) or not app_id.isdigit() or len(app_id) > 18:  # noqa: PLR2004
        return None
    application: Application | None = list_signed_in_apps(user).filter(pk=int(app_id)).first()
    return application
