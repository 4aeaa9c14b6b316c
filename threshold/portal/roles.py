"""Who may read and change what in the admin portal, by role (``accounts.models.Role``).

Administrator: everything. Help desk: people and their sign-in methods, recovery links,
locks, sessions and invites; the audit log, the readiness dashboard and groups to read;
not the policy, the authenticators' lists, groups' members or rules, or roles. Auditor:
reads everything, changes nothing. A signed-in person without a role gets 404 for every
/admin/ URL (a signed-out visitor is sent to sign in: ``guard``); a role that may read an area
but not change it gets 403 for a change.
"""

from __future__ import annotations

from enum import StrEnum

from django.http import HttpRequest

from threshold.accounts.models import Role, User


class Area(StrEnum):
    PEOPLE = "people"
    AUDIT = "audit"
    READINESS = "readiness"
    POLICY = "policy"
    AUTHENTICATORS = "authenticators"
    ROLES = "roles"
    GROUPS = "groups"
    APPS = "apps"


_EVERY_AREA = frozenset(Area)
READS: dict[Role, frozenset[Area]] = {
    Role.ADMINISTRATOR: _EVERY_AREA,
    Role.HELP_DESK: frozenset({Area.PEOPLE, Area.AUDIT, Area.READINESS, Area.GROUPS}),
    Role.AUDITOR: _EVERY_AREA,
    Role.NONE: frozenset(),
}
CHANGES: dict[Role, frozenset[Area]] = {
    Role.ADMINISTRATOR: _EVERY_AREA,
    Role.HELP_DESK: frozenset({Area.PEOPLE}),
    Role.AUDITOR: frozenset(),
    Role.NONE: frozenset(),
}


def role_of(request: HttpRequest) -> Role:
    """The signed-in person's role; none when signed out, deactivated or locked."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated or not user.can_sign_in:
        return Role.NONE
    return user.portal_role


def can_read(role: Role, area: Area) -> bool:
    return area in READS[role]


def can_change(role: Role, area: Area) -> bool:
    return area in CHANGES[role]
