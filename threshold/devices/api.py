"""The device API, version 1 (docs/device-api.md): what Threshold Verify calls.

Every request is a POST whose body is one compact JWS signed by the device's key
(``threshold.core.device_requests``); every answer is JSON. A refusal is the
catalog's entry for its category with that category's status, as everywhere
else (401 for a device Threshold does not know, a removed one and a bad signature).
No cookies, no CSRF token: the signature is the credential.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from threshold.core import device_requests, errors
from threshold.core.catalog import Surface
from threshold.core.encoding import b64url_encode
from threshold.devices import webpush
from threshold.devices.actions import (
    do_answer_push,
    do_authenticate_request,
    do_confirm_returned_code,
    do_finish_tpm_attestation,
    do_issue_setup_code,
    do_redeem_setup_code,
    do_remove_this_device,
    enrollment_state,
    list_pending_pushes,
)
from threshold.devices.models import Device
from threshold.devices.screen_lock import (
    begin_approval,
    begin_screen_lock,
    begin_setup_code,
    do_enable_screen_lock,
    finish_approval,
    finish_setup_code,
)
from threshold.devices.views import setup_link
from threshold.policy.access import policy_for
from threshold.web.http import audit_origin, content_length, failed, ok, request_body
from threshold.web.qr import qr_data_uri

View = Callable[[HttpRequest], JsonResponse]


def _compact(request: HttpRequest) -> str:
    try:
        # Before reading: Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE, and fails
        # on a Content-Length that is not a number, with its own 400 page or a 500.
        too_large = content_length(request) > device_requests.MAX_LENGTH
        body = b"" if too_large else request_body(request)
    except errors.MalformedRequest as error:
        raise errors.DeviceRequestMalformed(error.detail) from None
    if too_large or len(body) > device_requests.MAX_LENGTH:
        raise errors.DeviceRequestMalformed("too large")
    if (request.content_type or "").lower() != "application/jose":
        # docs/device-api.md: a compact JWS, as RFC 7515 §9.2.1 registers its type.
        raise errors.DeviceRequestMalformed("not sent as application/jose")
    try:
        return body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise errors.DeviceRequestMalformed("not a compact JWS") from None


def device_endpoint(view: Callable[..., JsonResponse]) -> View:
    """A POST of a signed request; refusals in the catalog's words."""

    @csrf_exempt
    @require_POST
    @never_cache
    @wraps(view)
    def wrapped(request: HttpRequest) -> JsonResponse:
        try:
            return view(request, _compact(request))
        except errors.ThresholdError as error:
            return failed(error, Surface.AUTHENTICATION)

    return wrapped


def _device(request: HttpRequest, compact: str, *, allow_inactive: bool = False) -> Device:
    return do_authenticate_request(
        compact, path=request.path, origin=audit_origin(request), allow_inactive=allow_inactive
    )


def _body(compact: str) -> dict[str, Any]:
    # Verified by do_authenticate_request before this is read.
    return device_requests.read(compact).body


@device_endpoint
def enroll(request: HttpRequest, compact: str) -> JsonResponse:
    """A new device redeems a setup code; its request carries its key (``jwk``)."""
    redeemed = do_redeem_setup_code(
        compact, path=request.path, origin=audit_origin(request), policy=policy_for(request)
    )
    device = redeemed.device
    answer: dict[str, Any] = {
        "device_id": device.public_id,
        "returned_code": redeemed.returned_code,
        "key_protection": device.key_protection,
        "username": device.user.username,
        "state": "waiting",
    }
    if redeemed.tpm_challenge is not None:
        # TPM2_MakeCredential's output: the device's TPM activates it (docs/device-api.md).
        answer["tpm_challenge"] = {
            "credential_blob": b64url_encode(redeemed.tpm_challenge.credential_blob),
            "encrypted_secret": b64url_encode(redeemed.tpm_challenge.encrypted_secret),
        }
    return ok(answer)


@device_endpoint
def attest(request: HttpRequest, compact: str) -> JsonResponse:
    """The TPM's answer to the credential: the secret and its certify of the device key."""
    device = _device(request, compact, allow_inactive=True)
    protection = do_finish_tpm_attestation(device, _body(compact), audit_origin(request))
    return ok({"key_protection": protection})


@device_endpoint
def enrollment(request: HttpRequest, compact: str) -> JsonResponse:
    """A device waiting for its returned code to be typed: waiting, done or canceled."""
    device = _device(request, compact, allow_inactive=True)
    return ok({"state": enrollment_state(device)})


@device_endpoint
def setup_code_options(request: HttpRequest, compact: str) -> JsonResponse:
    """The assertion options for asking for a setup code with the screen lock."""
    device = _device(request, compact)
    return ok({"options": begin_setup_code(device)})


@device_endpoint
def setup_codes(request: HttpRequest, compact: str) -> JsonResponse:
    """Add Account to Another Device: a setup code, after the person's verification on it.

    Also what a phone shows: the link its QR code holds and the QR code itself (the desktop
    app draws its own in the terminal)."""
    device = _device(request, compact)
    body = _body(compact)
    screen_lock_verified = False
    if device.has_screen_lock:
        # Screen lock confirmation is on: the person's verification is the WebAuthn
        # assertion the server checks, never the device's word for it.
        finish_setup_code(device, body.get("assertion"), audit_origin(request))
        screen_lock_verified = True
    elif body.get("user_verified") is not True:
        raise errors.DeviceUserNotVerified()
    issued = do_issue_setup_code(
        device.user,
        audit_origin(request),
        policy_for(request),
        created_by=device,
        screen_lock_verified=screen_lock_verified,
    )
    link = setup_link(issued.code)
    return ok(
        {
            "enrollment_id": issued.enrollment.public_id,
            "setup_code": issued.formatted,
            "expires_at": issued.enrollment.expires_at.timestamp(),
            "setup_link": link,
            "qr_code": qr_data_uri(link),
        }
    )


@device_endpoint
def confirm(request: HttpRequest, compact: str) -> JsonResponse:
    """The returned code the new device shows, typed on this (already set up) device."""
    device = _device(request, compact)
    body = _body(compact)
    new_device = do_confirm_returned_code(
        device.user,
        str(body.get("enrollment_id", "")),
        body.get("returned_code", ""),
        audit_origin(request),
        policy_for(request),
        device=device,
    )
    return ok({"state": "done", "device_name": new_device.name})


@device_endpoint
def pending(request: HttpRequest, compact: str) -> JsonResponse:
    """The push waiting for this device's person, with where it comes from."""
    device = _device(request, compact)
    pushes = list_pending_pushes(device, policy_for(request))
    return ok(
        {
            "approvals": [
                {
                    "id": push.public_id,
                    "browser": push.client or "Unknown browser",
                    "ip": push.ip or "",
                    "created_at": push.created_at.timestamp(),
                    "expires_at": push.expires_at.timestamp(),
                    # sign_in, or step_up: "Verify it's you" in a signed-in browser.
                    "purpose": push.purpose,
                }
                for push in pushes
            ]
        }
    )


@device_endpoint
def answer(request: HttpRequest, compact: str) -> JsonResponse:
    """approve (with the typed number and the person's verification) or deny."""
    device = _device(request, compact)
    body = _body(compact)
    push_id = str(body.get("id", ""))
    user_verified = body.get("user_verified") is True
    if device.has_screen_lock and body.get("decision") == "approve":
        # Screen lock confirmation is on: the person's verification is the WebAuthn
        # assertion the server checks, never the device's word for it.
        finish_approval(device, push_id, body.get("assertion"), audit_origin(request))
        user_verified = True
    state = do_answer_push(
        device,
        push_id,
        decision=str(body.get("decision", "")),
        number=body.get("number"),
        user_verified=user_verified,
        origin=audit_origin(request),
        policy=policy_for(request),
    )
    return ok({"state": state})


@device_endpoint
def account(request: HttpRequest, compact: str) -> JsonResponse:
    """Who this device signs for: shown by ``threshold-verify accounts``."""
    device = _device(request, compact)
    return ok(
        {
            "username": device.user.username,
            "display_name": device.user.display_name,
            "device_name": device.name,
            "key_protection": device.key_protection,
            "screen_lock": device.has_screen_lock,
        }
    )


@device_endpoint
def remove(request: HttpRequest, compact: str) -> JsonResponse:
    """The app removes its account: the device is revoked."""
    device = _device(request, compact)
    do_remove_this_device(device, audit_origin(request))
    return ok({"state": "removed"})


@device_endpoint
def screen_lock_options(request: HttpRequest, compact: str) -> JsonResponse:
    """ "Enable screen lock confirmation": the options for the device's own WebAuthn credential."""
    device = _device(request, compact)
    return ok({"options": begin_screen_lock(device)})


@device_endpoint
def screen_lock(request: HttpRequest, compact: str) -> JsonResponse:
    """The credential the phone made (``credential``: its ``toJSON()``), checked and stored."""
    device = _device(request, compact)
    do_enable_screen_lock(device, _body(compact).get("credential"), audit_origin(request))
    return ok({"screen_lock": True})


@device_endpoint
def approval_options(request: HttpRequest, compact: str) -> JsonResponse:
    """The assertion options for approving push ``id`` with the screen lock."""
    device = _device(request, compact)
    return ok({"options": begin_approval(device, _body(compact).get("id", ""))})


@device_endpoint
def push_subscription(request: HttpRequest, compact: str) -> JsonResponse:
    """The phone's Web Push subscription (its ``PushSubscription.toJSON()``), stored for the
    device while the operator has Web Push on (docs/device-api.md)."""
    device = _device(request, compact)
    webpush.do_subscribe(device, _body(compact).get("subscription"), audit_origin(request))
    return ok({"web_push": True})
