"""Threshold Verify as a kind of sign-in method (``threshold.accounts.methods``), registered
in ``DevicesConfig.ready()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threshold.accounts.methods import MethodKind, RecordedSignIn, SignInMethod
from threshold.accounts.models import User
from threshold.core.names import NICKNAME_MAX_LENGTH
from threshold.core.policy import Policy
from threshold.devices.actions import device_app_refusal, list_devices, usable_devices
from threshold.groups.access import rules_of


def count_devices(user: User) -> int:
    return len(list_devices(user))


def count_usable_devices(user: User, policy: Policy) -> int:
    """A device signs in only while the policy allows push sign-ins (and its key)."""
    if not policy.allow_device_app_sign_in:
        return 0
    return len(usable_devices(user, policy))


def settings_context(user: User, policy: Policy) -> dict[str, Any]:
    """The "Threshold Verify" group: always shown (a device also adds the account to others)."""
    devices = list_devices(user)
    groups = rules_of(user)
    usable = {device.pk for device in usable_devices(user, policy, groups)}
    return {
        "devices": devices,
        "not_usable": {device.pk for device in devices if device.pk not in usable},
        "sign_in_allowed": device_app_refusal(policy, groups) is None,
        "limit": policy.device_limit,
        "at_limit": len(devices) >= policy.device_limit,
        "nickname_max_length": NICKNAME_MAX_LENGTH,
    }


def device_still_signs_in(
    user: User, policy: Callable[[], Policy], recorded: RecordedSignIn
) -> bool:
    """Whether the device whose approved push signed a session in (its id, as recorded)
    still may: push sign-ins allowed (by the organisation and the person's groups), the device
    the person's, active, and its key as the policy requires. A session that recorded no
    device is judged by the first alone."""
    in_force = policy()
    groups = rules_of(user)
    if device_app_refusal(in_force, groups) is not None:
        return False
    return not recorded.credential or any(
        str(device.pk) == recorded.credential for device in usable_devices(user, in_force, groups)
    )


DEVICE_APP = SignInMethod(
    kind=MethodKind.DEVICE_APP,
    # A typed number defeats push fatigue, not a look-alike site: the person may approve a
    # sign-in that a phishing page relays (issue 12).
    phishing_resistant=False,
    count=count_devices,
    usable=count_usable_devices,
    settings_template="devices/_settings_group.html",
    settings_context=settings_context,
    still_signs_in=device_still_signs_in,
)
