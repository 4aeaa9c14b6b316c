""" "Enable screen lock confirmation": the device app's own WebAuthn credential (issue 12).

The phone web app at /verify/ cannot keep a PIN the way the desktop app does; instead it
registers a WebAuthn credential on the phone, bound to its device record, that only the
device app uses (never a passkey: it is not discoverable and signs nobody in). From then on
every approval, and every "Add Account to Another Device", carries a user-verified assertion
of it, checked by the same ceremony code the passkeys use (``threshold.core.ceremony``), in
addition to the device's signed request.

The ceremony's state waits on the device's row (``screen_lock_ceremony``) and is used once:
whatever the answer, it is cleared before it is checked.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from threshold import clock
from threshold.audit.actions import Action, Origin, record
from threshold.core import ceremony, errors
from threshold.core.vocabulary import AttestationConveyance, ResidentKey, UserVerification
from threshold.devices.models import Device, is_public_id

# As long as a push waits: the person has the time the push has.
TIMEOUT_SECONDS = 120
REGISTER = "register"
APPROVE = "approve"
# "Add Account to Another Device": a setup code for the person, confirmed with the screen lock.
SETUP_CODE = "setup_code"


def _rp() -> ceremony.RelyingParty:
    return settings.THRESHOLD.rp


def _take_ceremony(device: Device, kind: str) -> dict[str, Any]:
    """The waiting ceremony of ``kind``, cleared in the same transaction: it works once."""
    locked = Device.objects.select_for_update().get(pk=device.pk)
    waiting = locked.screen_lock_ceremony
    Device.objects.filter(pk=device.pk).update(screen_lock_ceremony=None)
    if not isinstance(waiting, dict) or waiting.get("kind") != kind:
        raise errors.ChallengeMissing(f"no {kind} ceremony is waiting for this device")
    return waiting


@transaction.atomic
def begin_screen_lock(device: Device) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptionsJSON for the device's screen lock credential.

    Once only: a credential, once set, is never replaced through the API, so that whoever
    gets hold of the device's key alone cannot swap in an authenticator of their own."""
    if device.has_screen_lock:
        raise errors.DeviceRequestMalformed("screen lock confirmation is already enabled")
    handle = ceremony.new_user_handle()
    options, state = ceremony.begin_registration(
        _rp(),
        user_handle=handle,
        user_name=device.user.username,
        user_display_name=f"{device.user.display_name} (Threshold Verify)",
        now=clock.now(),
        timeout_seconds=TIMEOUT_SECONDS,
        user_verification=UserVerification.REQUIRED,
        # Not discoverable: the sign-in page's passkey list never offers it.
        resident_key=ResidentKey.DISCOURAGED,
        attestation=AttestationConveyance.NONE,
        authenticator_attachment="platform",
    )
    device.screen_lock_ceremony = {"kind": REGISTER, "state": state.to_json()}
    device.save(update_fields=["screen_lock_ceremony"])
    return options


def do_enable_screen_lock(device: Device, credential: object, origin: Origin) -> None:
    """Store the credential the phone made, after §7.1's checks (user verification required)."""
    refusal: errors.ThresholdError | None = None
    with transaction.atomic():
        waiting = _take_ceremony(device, REGISTER)
        state = ceremony.RegistrationState.from_json(waiting["state"])
        try:
            response = ceremony.parse_registration_response(credential)
            # User verification REQUIRED: finish_registration refuses a credential without UV.
            verified = ceremony.finish_registration(_rp(), state, response, now=clock.now())
        except errors.ThresholdError as error:
            refusal = error
            record(
                Action.DEVICE_SCREEN_LOCK_REFUSED,
                origin,
                subject=device.user,
                reason=error.code,
                device=device.public_id,
            )
        else:
            Device.objects.filter(pk=device.pk).update(
                screen_lock_credential_id=verified.credential_id,
                screen_lock_public_key=verified.public_key,
                screen_lock_sign_count=verified.sign_count,
                screen_lock_backup_eligible=verified.backup_eligible,
                screen_lock_user_handle=state.user_handle,
            )
            record(
                Action.DEVICE_SCREEN_LOCK_ENABLED,
                origin,
                actor=device.user,
                subject=device.user,
                device=device.public_id,
            )
    if refusal is not None:
        raise refusal


def _require_screen_lock(device: Device) -> None:
    if not device.has_screen_lock:
        raise errors.ChallengeMissing("screen lock confirmation is not enabled")


def _begin_assertion(device: Device, kind: str, **bound: str) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptionsJSON for the device's screen lock credential, the
    ceremony waiting on the device as ``kind`` (and what it is for, ``bound``): a new one
    replaces whichever was waiting, so one device has one ceremony at a time."""
    descriptor = ceremony.CredentialDescriptor(bytes(device.screen_lock_credential_id or b""))
    options, state = ceremony.begin_authentication(
        _rp(),
        now=clock.now(),
        timeout_seconds=TIMEOUT_SECONDS,
        allow_credentials=[descriptor],
        user_handle=bytes(device.screen_lock_user_handle or b""),
        user_verification=UserVerification.REQUIRED,
    )
    device.screen_lock_ceremony = {"kind": kind, **bound, "state": state.to_json()}
    device.save(update_fields=["screen_lock_ceremony"])
    return options


def _finish_assertion(
    device: Device, kind: str, assertion: object, origin: Origin, *, path: str, **bound: str
) -> None:
    """The person confirmed the request the waiting ``kind`` ceremony was begun for (a UV
    assertion of the device's screen lock credential, for ``bound``), or DeviceUserNotVerified
    (the generic answer; the check that failed goes to the audit log, with the endpoint's
    ``path``). The ceremony is used up whatever the outcome, and a refusal is committed with
    its audit event before it is raised."""
    refusal: errors.ThresholdError | None = None
    with transaction.atomic():
        try:
            waiting = _take_ceremony(device, kind)
            for name, value in bound.items():
                if waiting.get(name) != value:
                    raise errors.ChallengeMissing(f"the ceremony was for another {name}")
            state = ceremony.AuthenticationState.from_json(waiting["state"])
            stored = ceremony.StoredCredential(
                credential_id=bytes(device.screen_lock_credential_id or b""),
                public_key=bytes(device.screen_lock_public_key or b""),
                sign_count=device.screen_lock_sign_count,
                backup_eligible=device.screen_lock_backup_eligible,
                user_handle=bytes(device.screen_lock_user_handle or b""),
            )
            response = ceremony.parse_authentication_response(assertion)
            verified = ceremony.finish_authentication(
                _rp(), state, response, stored, now=clock.now()
            )
        except errors.ThresholdError as error:
            refusal = errors.DeviceUserNotVerified(f"screen lock: {error.code}")
            record(
                Action.DEVICE_REQUEST_REFUSED,
                origin,
                subject=device.user,
                reason=error.code,
                device=device.public_id,
                path=path,
            )
        else:
            Device.objects.filter(pk=device.pk).update(screen_lock_sign_count=verified.sign_count)
    if refusal is not None:
        raise refusal


@transaction.atomic
def begin_approval(device: Device, push_id: str) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptionsJSON for approving push ``push_id`` on ``device``."""
    _require_screen_lock(device)
    if not is_public_id(push_id):
        raise errors.DeviceRequestMalformed("id must be a push's ID")
    return _begin_assertion(device, APPROVE, push=push_id)


def finish_approval(device: Device, push_id: str, assertion: object, origin: Origin) -> None:
    """The person confirmed approving ``push_id`` with the screen lock (a UV assertion), or
    DeviceUserNotVerified: the push keeps waiting, the ceremony is used up, the refusal audited."""
    _finish_assertion(device, APPROVE, assertion, origin, path="approvals/answer", push=push_id)


@transaction.atomic
def begin_setup_code(device: Device) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptionsJSON for "Add Account to Another Device" on ``device``:
    a setup code adds a device that approves sign-ins, so the person confirms it as they
    confirm an approval."""
    _require_screen_lock(device)
    return _begin_assertion(device, SETUP_CODE)


def finish_setup_code(device: Device, assertion: object, origin: Origin) -> None:
    """The person confirmed asking for a setup code with the screen lock, or
    DeviceUserNotVerified: nothing is issued, the ceremony is used up, the refusal audited."""
    _finish_assertion(device, SETUP_CODE, assertion, origin, path="setup-codes")
