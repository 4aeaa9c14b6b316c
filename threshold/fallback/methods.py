"""The password and authenticator app as a kind of sign-in method
(``threshold.accounts.methods``), registered in ``FallbackConfig.ready()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threshold.accounts.methods import MethodKind, RecordedSignIn, SignInMethod
from threshold.accounts.models import User
from threshold.core.policy import Policy
from threshold.fallback.actions import fallback_refusal, has_fallback, unused_recovery_codes


def count_fallbacks(user: User) -> int:
    """One method: the password with its second factor (app or recovery codes), or none."""
    return int(has_fallback(user))


def count_usable_fallbacks(user: User, policy: Policy) -> int:
    """The fallback signs in only while the policy and the person's groups' rules allow it."""
    return int(
        policy.allow_password_fallback
        and has_fallback(user)
        and fallback_refusal(user, policy) is None
    )


def settings_context(user: User, policy: Policy) -> dict[str, Any] | None:
    """The "Password and authenticator app" group, where the policy allows it or it is set up."""
    enabled = has_fallback(user)
    allowed = fallback_refusal(user, policy) is None
    if not (allowed or enabled):
        return None
    return {
        "allowed": allowed,
        "enabled": enabled,
        "recovery_codes_left": unused_recovery_codes(user) if enabled else 0,
    }


def fallback_still_signs_in(
    user: User, policy: Callable[[], Policy], recorded: RecordedSignIn
) -> bool:
    """A password's session still stands while the policy allows the fallback and the person
    still has it set up."""
    return count_usable_fallbacks(user, policy()) > 0


PASSWORD_AND_APP = SignInMethod(
    kind=MethodKind.PASSWORD_AND_APP,
    phishing_resistant=False,
    count=count_fallbacks,
    usable=count_usable_fallbacks,
    settings_template="fallback/_settings_group.html",
    settings_context=settings_context,
    still_signs_in=fallback_still_signs_in,
)
