"""The authentication backend Django's session machinery needs.

Nobody authenticates through ``authenticate()``: a passkey ceremony proves who
someone is and then calls ``login()`` with this backend. It only reloads the
user for each request, and refuses deactivated accounts.
"""

from __future__ import annotations

from typing import Any

from threshold.accounts.models import User


class PasskeyBackend:
    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None

    def get_user(self, user_id: int) -> User | None:
        return User.objects.filter(pk=user_id, is_active=True).first()
