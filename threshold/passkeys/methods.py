"""Passkeys as a kind of sign-in method (``threshold.accounts.methods``), registered in
``PasskeysConfig.ready()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threshold.accounts.methods import MethodKind, RecordedSignIn, SignInMethod
from threshold.accounts.models import User
from threshold.core.names import NICKNAME_MAX_LENGTH
from threshold.core.policy import Policy, evaluate
from threshold.core.vocabulary import UserVerification
from threshold.groups.access import rules_of
from threshold.passkeys import hotpath
from threshold.passkeys.access import list_passkeys, not_allowed_passkey_ids


def count_passkeys(user: User) -> int:
    return user.passkeys.count()


def count_usable_passkeys(user: User, policy: Policy) -> int:
    """The passkeys ``policy`` (and the person's groups' rules) still allows
    (``core.policy.evaluate``)."""
    groups = rules_of(user)
    return sum(
        evaluate(policy, passkey.policy_facts, groups).allowed for passkey in user.passkeys.all()
    )


def settings_context(user: User, policy: Policy) -> dict[str, Any]:
    """The "Security Key or Biometric Authenticator" group: the passkeys, oldest first."""
    passkeys = list(list_passkeys(user))
    return {
        "passkeys": passkeys,
        # Marked "Not allowed by your organisation" (web/_passkey.html).
        "not_allowed": not_allowed_passkey_ids(passkeys, policy),
        # Marked "Most recently added" (passkeys/_passkey.html) when there is more than one.
        "newest": max(passkeys, key=lambda p: (p.created_at, p.pk)) if len(passkeys) > 1 else None,
        "limit": policy.passkey_limit,
        "at_limit": len(passkeys) >= policy.passkey_limit,
        "nickname_max_length": NICKNAME_MAX_LENGTH,
    }


def passkey_still_signs_in(
    user: User, policy: Callable[[], Policy], recorded: RecordedSignIn
) -> bool:
    """Whether the passkey that signed a session in is still the person's and still allowed
    by the policy in force and their groups' rules, and the sign-in verified the person if
    the policy now requires it (as a new sign-in must: ``actions._refused_today``): one
    SELECT, which reads the policy too (``policy`` is not needed). A session that recorded
    no passkey (signed in before sessions recorded it) is not second-guessed."""
    credential = recorded.credential
    if not credential:
        return True
    if not credential.isdigit():
        return False
    standing = hotpath.passkey_standing(int(credential), user.pk)
    if standing is None:
        return False  # removed since
    in_force = standing.policy
    if in_force.user_verification == UserVerification.REQUIRED and not recorded.user_verified:
        return False
    return evaluate(in_force, standing.passkey.policy_facts, standing.group_rules).allowed


PASSKEYS = SignInMethod(
    kind=MethodKind.PASSKEY,
    phishing_resistant=True,
    count=count_passkeys,
    usable=count_usable_passkeys,
    settings_template="passkeys/_settings_group.html",
    settings_context=settings_context,
    still_signs_in=passkey_still_signs_in,
)
