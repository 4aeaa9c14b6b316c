"""Staff for the admin portal tests: a person with a role, signed in with a passkey just now."""

from __future__ import annotations

import re
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import Browser, Person, assert_ok, enrolled_person, sign_in
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import Role, User
from threshold.policy.access import get_policy
from threshold.portal.urls import urlpatterns


def staff(username: str, role: Role) -> tuple[Person, Browser]:
    """``username`` enrolled with ``role``, signed in with a passkey (a fresh step-up)."""
    person = enrolled_person(username, username.split("@", maxsplit=1)[0].title())
    person.user.role = role.value
    person.user.save(update_fields=["role"])
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return person, browser


def post(browser: Browser, path: str, data: dict[str, Any] | None = None, **extra: Any):
    """A form POST with the CSRF token, as the portal's forms send it."""
    return browser.client.post(
        path, {"csrfmiddlewaretoken": browser.csrf_token(), **(data or {})}, **extra
    )


def every_portal_path(
    user_id: int,
    passkey_id: int = 1,
    invite_id: int = 1,
    group_id: int = 1,
    device_id: str = "AAAAAAAAAAAAAAAAAAAAAA",
) -> list[str]:
    """Every /admin/ URL pattern, its arguments filled in."""
    paths = []
    for pattern in urlpatterns:
        route = str(pattern.pattern)
        route = route.replace("<int:user_id>", str(user_id))
        route = route.replace("<int:passkey_id>", str(passkey_id))
        route = route.replace("<str:device_id>", device_id)
        route = route.replace("<int:invite_id>", str(invite_id))
        route = route.replace("<slug:figure>", "people")
        route = route.replace("<int:group_id>", str(group_id))
        route = route.replace("<int:app_id>", "1")
        assert "<" not in route, route
        paths.append("/" + route)
    assert all(re.match(r"^/admin/", path) for path in paths)
    return paths


def query_plans(browser: Browser, path: str, needle: str) -> list[str]:
    """The plans the database chose for the queries ``path`` runs that contain ``needle``."""
    with CaptureQueriesContext(connection) as queries:
        response = browser.get(path)
    assert response.status_code == 200
    chosen = [query["sql"] for query in queries.captured_queries if needle in query["sql"]]
    assert chosen, [query["sql"] for query in queries.captured_queries]
    plans = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE audit_auditevent")
            # A test's table is a few pages, which PostgreSQL reads whole, or through a bitmap
            # and then sorts: forbid both, so that the plan shows whether an index can be used
            # at all and whether it gives the order.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
        verb = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        for sql in chosen:
            cursor.execute(verb + sql)
            plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
    return plans


def administrators_who_can_sign_in() -> list[str]:
    """The usernames of the administrators who can sign in under the policy in force."""
    policy = get_policy()
    return [
        user.username
        for user in User.objects.filter(
            role=Role.ADMINISTRATOR, is_active=True, locked_at=None
        ).order_by("username")
        if count_usable_sign_in_methods(user, policy) > 0
    ]
