"""Staff for the admin portal tests: a person with a role, signed in with a passkey just now."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.conftest import Browser, Person, assert_ok, enrolled_person, sign_in
from threshold.accounts.models import Role
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
    user_id: int, passkey_id: int = 1, invite_id: int = 1, group_id: int = 1
) -> list[str]:
    """Every /admin/ URL pattern, its arguments filled in."""
    paths = []
    for pattern in urlpatterns:
        route = str(pattern.pattern)
        route = route.replace("<int:user_id>", str(user_id))
        route = route.replace("<int:passkey_id>", str(passkey_id))
        route = route.replace("<int:invite_id>", str(invite_id))
        route = route.replace("<slug:figure>", "people")
        route = route.replace("<int:group_id>", str(group_id))
        route = route.replace("<int:app_id>", "1")
        assert "<" not in route, route
        paths.append("/" + route)
    assert all(re.match(r"^/admin/", path) for path in paths)
    return paths
