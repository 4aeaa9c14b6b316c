"""The fallback's forms, checked: what the person typed, and whether it may be used as it is."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from threshold.accounts.models import User
from threshold.core import totp


def form_text(data: Mapping[str, str], name: str, max_length: int) -> str | None:
    """A form field as text, or None when missing or longer than any real value."""
    value = data.get(name)
    if value is None or len(value) > max_length:
        return None
    return value


class Problems(list[str]):
    """What to fix, in the order a page lists it, and which of the form's fields each is about
    (``fields``, by name): the page marks those fields invalid, and described by the list."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: set[str] = set()

    def add(self, message: str, *fields: str) -> None:
        self.append(message)
        self.fields.update(fields)

    def extend_for(self, messages: list[str], *fields: str) -> None:
        for message in messages:
            self.add(message, *fields)


class SetUpForm:
    """Setting up the password and authenticator app: a password the validators accept, typed
    twice, and the current code of the app that was just given ``secret``.

    ``problems`` says what to fix, in the order the page lists them, and the fields they are
    about; when there are none, ``password`` and ``confirmed_step`` (the code's time step, used
    up with the set-up) are what ``do_set_up_fallback`` stores.
    """

    def __init__(self, user: User, secret: str, data: Mapping[str, str], now: float) -> None:
        max_length = settings.THRESHOLD_MAX_PASSWORD_LENGTH
        password = form_text(data, "password", max_length)
        confirm = form_text(data, "confirm_password", max_length)
        self.problems = Problems()
        if not password:
            self.problems.add(f"Choose a password of at most {max_length} characters.", "password")
        elif password != confirm:
            # Both are typed again (neither comes back), the first one first.
            self.problems.add("The two passwords are not the same.", "password", "confirm_password")
        else:
            try:
                validate_password(password, user)
            except ValidationError as invalid:
                self.problems.extend_for(invalid.messages, "password")
        self.password = password or ""
        self.confirmed_step = totp.matching_step(secret, totp.normalize_code(data.get("code")), now)
        if self.confirmed_step is None:
            self.problems.add(
                "The code from your authenticator app is not right. Check that the app shows the "
                f"{settings.THRESHOLD.rp.name} account you just added, and enter its current code.",
                "code",
            )

    def is_valid(self) -> bool:
        return not self.problems
