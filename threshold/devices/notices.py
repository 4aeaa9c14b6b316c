"""Emails about a person's Threshold Verify devices and push sign-ins, sent after commit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from threshold import clock
from threshold.accounts.models import User
from threshold.accounts.notices import (
    MethodChange,
    email_after_commit,
    notify_method_changed,
    product,
)
from threshold.audit.actions import Origin
from threshold.devices.models import Device, PushPurpose, SignInApproval


def _method(device: Device) -> str:
    # A name the app gave before it left the words to Threshold is not said twice.
    name = device.name.removeprefix("Threshold Verify on ")
    return f"Threshold Verify on {name} ({device.platform_label})"


def notify_device_added(device: Device, origin: Origin) -> None:
    subject = f"Threshold Verify was set up for your {product()} account"
    notify_method_changed(device.user, _method(device), origin, MethodChange.ADDED, subject)


def notify_device_removed(device: Device, origin: Origin, *, staff: User | None = None) -> None:
    subject = f"A device was removed from your {product()} account"
    notify_method_changed(
        device.user, _method(device), origin, MethodChange.REMOVED, subject, staff=staff
    )


# What a push asked for, in the emails' words.
_ASKED = {
    PushPurpose.SIGN_IN: "a sign-in to your {product} account",
    PushPurpose.STEP_UP: "\u201cVerify it\u2019s you\u201d for your {product} account",
}


def _context(approval: SignInApproval, device: Device) -> dict[str, Any]:
    return {
        "at": clock.now_datetime(),
        "asked": _ASKED[PushPurpose(approval.purpose)].format(product=product()),
        "step_up": approval.purpose == PushPurpose.STEP_UP,
        "client": approval.client,
        "ip": approval.ip or "",
        "device": device.name,
        "settings_url": settings.THRESHOLD.public_url + reverse("selfservice:settings"),
    }


def notify_push_denied(approval: SignInApproval, device: Device, origin: Origin) -> None:
    """ "I didn't do this": tell the person what was denied, and that pushes are muted."""
    context = _context(approval, device)
    email_after_commit(
        device.user,
        f"{context['asked'][0].upper()}{context['asked'][1:]} was denied",
        "devices/push_denied_email.txt",
        context,
    )


def notify_push_approved(approval: SignInApproval, device: Device) -> None:
    """A push approved: the person hears of every sign-in (and every "Verify it's you")
    their device let through."""
    context = _context(approval, device)
    email_after_commit(
        device.user,
        f"{context['asked'][0].upper()}{context['asked'][1:]} was approved in Threshold Verify",
        "devices/push_approved_email.txt",
        context,
    )


def notify_push_number_wrong(approval: SignInApproval, device: Device) -> None:
    """A push approved with the wrong number: a typing slip, or someone sending pushes in the
    hope that one is approved (push bombing). The person hears of it either way."""
    context = _context(approval, device)
    email_after_commit(
        device.user,
        f"{context['asked'][0].upper()}{context['asked'][1:]} was refused: wrong number",
        "devices/push_number_wrong_email.txt",
        context,
    )
