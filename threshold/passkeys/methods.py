"""Passkeys as a kind of sign-in method (``threshold.accounts.methods``), registered in
``PasskeysConfig.ready()``."""

from __future__ import annotations

from typing import Any

from threshold.accounts.methods import MethodKind, SignInMethod
from threshold.accounts.models import User
from threshold.core.names import NICKNAME_MAX_LENGTH
from threshold.core.policy import Policy
from threshold.passkeys.access import list_passkeys


def count_passkeys(user: User) -> int:
    return user.passkeys.count()


def settings_context(user: User, policy: Policy) -> dict[str, Any]:
    """The "Security Key or Biometric Authenticator" group: the passkeys, oldest first."""
    passkeys = list(list_passkeys(user))
    return {
        "passkeys": passkeys,
        # Marked "Most recently added" (passkeys/_passkey.html) when there is more than one.
        "newest": max(passkeys, key=lambda p: (p.created_at, p.pk)) if len(passkeys) > 1 else None,
        "limit": policy.passkey_limit,
        "at_limit": len(passkeys) >= policy.passkey_limit,
        "nickname_max_length": NICKNAME_MAX_LENGTH,
    }


PASSKEYS = SignInMethod(
    kind=MethodKind.PASSKEY,
    phishing_resistant=True,
    count=count_passkeys,
    settings_template="passkeys/_settings_group.html",
    settings_context=settings_context,
)
