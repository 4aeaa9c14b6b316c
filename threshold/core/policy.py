"""The organisation policy as the core reads it, and the rules for changing it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


class PolicyError(ValueError):
    """A policy value is out of range or of the wrong kind."""


@dataclass(frozen=True)
class Policy:
    ceremony_timeout_seconds: int = 60
    user_verification: str = "required"
    passkey_limit: int = 10
    invite_lifetime_hours: int = 168

    # Ranges each setting may take; the CLI and (later) the admin portal share them.
    LIMITS = {
        "ceremony_timeout_seconds": (15, 600),
        "passkey_limit": (1, 100),
        "invite_lifetime_hours": (1, 24 * 90),
    }
    USER_VERIFICATION = ("required", "preferred")

    def __post_init__(self) -> None:
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise PolicyError(f"{name} must be a whole number from {low} to {high}")
        if self.user_verification not in self.USER_VERIFICATION:
            raise PolicyError(
                f"user_verification must be one of {', '.join(self.USER_VERIFICATION)}"
            )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def with_text_changes(self, changes: dict[str, str]) -> Policy:
        """A copy with ``changes`` (name -> text, as typed on the command line) applied."""
        values = dataclasses.asdict(self)
        for name, text in changes.items():
            if name not in values:
                raise PolicyError(f"unknown policy setting {name!r}; settings: {', '.join(values)}")
            if isinstance(values[name], int):
                try:
                    values[name] = int(text)
                except ValueError:
                    raise PolicyError(f"{name} must be a whole number") from None
            else:
                values[name] = text
        return Policy(**values)
