"""The sign-in method registry: what each kind of sign-in method contributes.

Each app that gives people a way to sign in (passkeys, the password fallback, later
the device app) registers one ``SignInMethod`` in its ``AppConfig.ready()``. Whoever
needs to know about a person's methods asks here, never a method's model:

- the last-method rule (``count_usable_sign_in_methods``): nobody removes their last way in
  that today's policy allows;
- Settings' "Security Methods", one group per kind in registration order (the order
  of ``INSTALLED_APPS``), each drawn by its app's partial (``settings_groups``);
- whether a session's sign-in still stands under the policy in force (``still_signs_in``):
  an app is not signed in to with a passkey the organisation has since refused;
- later, the admin portal.

So a new kind of method is a new app that registers itself; no other app changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from threshold.accounts.models import User
from threshold.core.policy import Policy


class MethodKind(StrEnum):
    PASSKEY = "passkey"
    PASSWORD_AND_APP = "password_and_app"  # noqa: S105 - a kind of method, not a password
    DEVICE_APP = "device_app"


@dataclass(frozen=True)
class RecordedSignIn:
    """What a session recorded of the way it was signed in, for ``still_signs_in``."""

    # The passkey's or device's id, "" when the session recorded none (a password's sign-in,
    # a session older than the record).
    credential: str = ""
    # Whether the person was verified (PIN, biometrics; or "Verify it's you" since).
    user_verified: bool = False


@dataclass(frozen=True)
class SignInMethod:
    kind: MethodKind
    # Whether a sign-in with it resists phishing (bound to the site's origin).
    phishing_resistant: bool
    # How many methods of this kind the person has set up ...
    count: Callable[[User], int]
    # ... and how many of them the policy lets them sign in with today.
    usable: Callable[[User, Policy], int]
    # Settings: the template of this kind's group (it gets the context as ``group``) ...
    settings_template: str
    # ... and that context, for the person under the policy; None shows no group.
    settings_context: Callable[[User, Policy], Mapping[str, Any] | None]
    # Whether the policy in force (with the person's groups' rules) still lets the person sign
    # in as a session of theirs did with one of these (``RecordedSignIn``). It gets the
    # request's policy reader: a kind may read the policy in a statement of its own instead
    # (passkeys read it with the passkey).
    still_signs_in: Callable[[User, Callable[[], Policy], RecordedSignIn], bool]


@dataclass(frozen=True)
class SettingsGroup:
    """One kind's group on Settings: ``{% include template with group=context %}``."""

    kind: MethodKind
    template: str
    context: Mapping[str, Any]


_registry: dict[MethodKind, SignInMethod] = {}


def register(method: SignInMethod) -> None:
    """Add ``method`` after those registered before it; a kind is registered once."""
    registered = _registry.get(method.kind)
    if registered is not None and registered != method:
        raise ValueError(f"a sign-in method of kind {method.kind} is registered already")
    _registry[method.kind] = method


def unregister(kind: MethodKind) -> None:
    """Forget the method of ``kind`` (tests that register one of their own)."""
    del _registry[kind]


def sign_in_methods() -> tuple[SignInMethod, ...]:
    """Every registered kind of method, in registration order."""
    return tuple(_registry.values())


def count_sign_in_methods(user: User) -> int:
    """The ways ``user`` has set up to sign in, every kind, whether or not the policy allows
    them today (an invite is refused to someone who has any)."""
    return sum(method.count(user) for method in _registry.values())


def count_usable_of_kind(user: User, policy: Policy, kind: MethodKind) -> int:
    """How many of ``user``'s methods of ``kind`` ``policy`` (and their groups' rules) lets
    them sign in with today."""
    method = _registry.get(kind)
    return 0 if method is None else method.usable(user, policy)


def count_usable_sign_in_methods(user: User, policy: Policy) -> int:
    """The ways ``user`` can sign in today under ``policy``: what the last-method rule counts."""
    return sum(method.usable(user, policy) for method in _registry.values())


def settings_groups(user: User, policy: Policy) -> list[SettingsGroup]:
    """Settings' groups of methods for ``user``, in registration order."""
    groups = []
    for method in _registry.values():
        context = method.settings_context(user, policy)
        if context is not None:
            groups.append(SettingsGroup(method.kind, method.settings_template, context))
    return groups


def still_signs_in(
    user: User, policy: Callable[[], Policy], kind: MethodKind, recorded: RecordedSignIn
) -> bool:
    """Whether the policy in force (``policy()`` reads it) still lets ``user`` sign in as a
    session of theirs did: with the method of ``kind`` the session ``recorded``. A kind no
    app registers any longer signs nobody in."""
    method = _registry.get(kind)
    return method is not None and method.still_signs_in(user, policy, recorded)
