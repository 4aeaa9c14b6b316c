"""Threshold Verify's audited changes: set-up codes, devices, push sign-ins, signed requests.

Each ``do_*`` runs in one transaction and writes its audit row there. Where a
refusal must leave a trace (a wrong returned code counts against the set-up, a wrong
number ends the push, a refused signed request is audited, its ``jti`` used up), the
action writes the trace, lets the transaction commit, and then raises
(docs/architecture.md, "Failures").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from threshold import clock
from threshold.accounts.actions import lock_user
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import User, normalize_username
from threshold.audit.actions import Action, Origin, record
from threshold.audit.capped import record_capped
from threshold.audit.models import AuditEvent
from threshold.core import assurance, device_requests, errors, throttle, tpm
from threshold.core.assurance import Assurance
from threshold.core.device_requests import DeviceRequest
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.core.names import NICKNAME_MAX_LENGTH, clean_name
from threshold.core.policy import GroupRules, Policy, turned_off_by
from threshold.devices import webpush
from threshold.devices.models import (
    Device,
    DeviceEnrollment,
    EnrollmentState,
    KeyProtection,
    PushPurpose,
    PushState,
    PushSubscription,
    SetupCodeFailure,
    SignInApproval,
    UsedDeviceRequest,
    is_public_id,
)
from threshold.devices.notices import (
    notify_device_added,
    notify_device_removed,
    notify_push_approved,
    notify_push_denied,
    notify_push_number_wrong,
)
from threshold.groups.access import rules_of
from threshold.policy.actions import lock_policy
from threshold.sessions.store import SignedInWith

# Setup codes: 12 characters of an alphabet without look-alikes (0/O, 1/I), 60 bits, for
# ten minutes, once; a guess costs a signed request (of any key, made for the purpose), and the
# limits below count guesses, not keys. The per-network limit slows a guesser; the length is
# what defeats one with many networks (at the overall limit, a year of guesses finds one of a
# thousand live codes with a chance of about one in ten million), so the overall limit is high:
# it bounds the rows a flood writes, and holding everyone's set-up up takes thousands of
# networks, not twenty.
SETUP_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
SETUP_CODE_LENGTH = 12
SETUP_CODE_LIFETIME = timedelta(minutes=10)
# Wrong setup codes: at most this many from one network (an address every client shares is not
# counted alone, core.throttle.tells_clients_apart), and from everywhere, per quarter of an hour.
SETUP_CODE_WINDOW = timedelta(minutes=15)
SETUP_CODE_NETWORK_FAILURES = 10
SETUP_CODE_FAILURES = 5000
RETURNED_CODE_DIGITS = 6
RETURNED_CODE_ATTEMPTS = 3
# Push sign-ins (issue 12): two minutes to answer, one waiting per person and network, three
# per person and network per ten minutes, and twenty minutes of silence after "I didn't do
# this". Pushes that signed someone in (or are about to) count against no limit.
PUSH_LIFETIME = timedelta(minutes=2)
# A push approved within its two minutes may still be finished this long after them: the browser
# asks every 2 s, then posts its form (the push cookie lasts the two minutes and this).
PUSH_FINISH_GRACE = timedelta(seconds=30)
PUSH_LIMIT = 3
# And at most this many per person from all networks together, against push bombing: a
# stranger who knows the username spends the person's allowance from their own network only
# (three pushes), and needs several networks to touch this one.
PUSH_PERSON_LIMIT = 10
PUSH_WINDOW = timedelta(minutes=10)
PUSH_MUTE = timedelta(minutes=20)
# And at most this many pushes that signed no one in from one network per PUSH_WINDOW, whatever
# the usernames: each push writes a row, and an office behind one address is not held to it.
# An address every client shares (loopback, unknown) is not counted, as the fallback's
# throttles do not count it (core.throttle.tells_clients_apart).
PUSH_NETWORK_LIMIT = 30
# Pushes and set-ups that are over are kept a day, then forgotten by ``threshold cleanup``.
STALE_AFTER = timedelta(days=1)
PLATFORMS = ("linux", "macos", "windows", "ios", "android", "web", "other")


class Decision(StrEnum):
    """A device's answer to a push."""

    APPROVE = "approve"
    DENY = "deny"


class PushStatus(StrEnum):
    """What the browser waiting on a push is told."""

    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"
    EXPIRED = "expired"


def _keyed_hash(purpose: str, value: str) -> str:
    """An HMAC under the server's key: a stolen table gives no setup or returned code."""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_public_id() -> str:
    return secrets.token_urlsafe(16)


def normalize_setup_code(text: str) -> str:
    """A setup code as typed ("abcd-efgh", "ABCD EFGH") or inside the QR code's link
    (``.../verify/#setup=ABCDEFGH``), in its canonical form."""
    if "#setup=" in text:
        text = text.rsplit("#setup=", 1)[1]
    return "".join(character for character in text.upper() if character.isalnum())[:32]


def format_setup_code(code: str) -> str:
    """ "ABCD-EFGH-JKLM": easier to read aloud and type."""
    return "-".join(code[start : start + 4] for start in range(0, len(code), 4))


# --- Signed requests --------------------------------------------------------------------------


def _use_jti(subject: str, request: DeviceRequest) -> None:
    """One INSERT, or DeviceRequestReplayed when the ``jti`` was used before."""
    table = connection.ops.quote_name(UsedDeviceRequest._meta.db_table)
    # Kept past the request's own expiry by the allowed skew: a replay is refused as
    # replayed, or as expired, never accepted.
    kept_until = datetime.fromtimestamp(request.expires_at + device_requests.MAX_SKEW, UTC)
    expiry = connection.ops.adapt_datetimefield_value(kept_until)
    with connection.cursor() as cursor:
        cursor.execute(
            # The table name comes from the model; the values are parameters.
            f"INSERT INTO {table} (jti_hash, expires_at) VALUES (%s, %s)"  # noqa: S608
            " ON CONFLICT DO NOTHING",
            [_sha256(f"{subject}:{request.jti}"), expiry],
        )
        if cursor.rowcount != 1:
            raise errors.DeviceRequestReplayed()


def delete_expired_requests() -> int:
    """Forget used request IDs whose requests have expired, and, a day on, pushes and set-ups
    that are over (the audit log keeps their story); ``threshold cleanup``."""
    now = clock.now_datetime()
    deleted, _ = UsedDeviceRequest.objects.filter(expires_at__lt=now).delete()
    SetupCodeFailure.objects.filter(at__lt=now - SETUP_CODE_WINDOW).delete()
    SignInApproval.objects.filter(expires_at__lt=now - STALE_AFTER).delete()
    stale = DeviceEnrollment.objects.filter(expires_at__lt=now - STALE_AFTER)
    # A device whose set-up never finished was never usable: it goes with its set-up.
    Device.objects.filter(enrollment__in=stale, is_active=False, revoked_at__isnull=True).delete()
    stale.delete()
    return deleted


def do_authenticate_request(
    compact: str, *, path: str, origin: Origin, allow_inactive: bool = False
) -> Device:
    """The device that signed ``compact`` for ``path``, its ``jti`` used up; or the error.

    Unknown, removed and wrongly signed alike are DEVICE_UNAUTHORIZED (401). A refusal of
    a request from a known device is audited and its ``jti`` used, once committed.
    """
    request = device_requests.read(compact)
    if request.kid is None:
        raise errors.DeviceRequestMalformed("this endpoint takes a kid")
    if not is_public_id(request.kid):
        raise errors.DeviceUnknown()
    refusal: errors.ThresholdError | None = None
    with transaction.atomic():
        device = Device.objects.select_related("user").filter(public_id=request.kid).first()
        if device is None:
            raise errors.DeviceUnknown()
        own = False  # the device's key signed it, for the first time
        try:
            device_requests.verify(request, device.public_key, path=path, now=clock.now())
            _use_jti(device.public_id, request)
            own = True
            if device.revoked_at is not None:
                raise errors.DeviceRemoved()
            if not device.is_active and not allow_inactive:
                raise errors.DeviceUnknown("its set-up is not finished")
            account = device.user.sign_in_refusal()
            if account is not None:
                raise account
        except errors.ThresholdError as error:
            refusal = error
            # A device's ID is no secret (Settings' pages, the audit log): a request it did
            # not sign, or a replay, can be sent by anyone as often as they like, so its
            # rows are capped per network; the device's own requests are always recorded.
            (record if own else record_capped)(
                Action.DEVICE_REQUEST_REFUSED,
                origin,
                subject=device.user,
                reason=error.code,
                device=device.public_id,
                path=path,
            )
        else:
            device.last_used_at = clock.now_datetime()
            device.save(update_fields=["last_used_at"])
    if refusal is not None:
        raise refusal
    return device


# --- Set-up codes and devices -------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedSetupCode:
    enrollment: DeviceEnrollment
    code: str  # the only time it exists in clear

    @property
    def formatted(self) -> str:
        return format_setup_code(self.code)


def usable_devices(
    user: User, policy: Policy, groups: Sequence[GroupRules] | None = None
) -> list[Device]:
    """The person's devices that may sign in today: none when a group of theirs turns the
    push off (the organisation's ``allow_device_app_sign_in`` its callers check). ``groups``:
    their groups' rules as they would be (the admin portal's preview), not as they are."""
    in_groups = rules_of(user) if groups is None else groups
    devices = Device.objects.filter(user=user, is_active=True, revoked_at__isnull=True)
    if policy.require_hardware_device_key:
        devices = devices.filter(key_protection=KeyProtection.TPM)
    # Read whatever the groups say: a push for a member of such a group runs the statements
    # anyone's does (``_undeliverable``), so its time tells no membership.
    found = list(devices)
    return [] if any(not rules.allow_device_app_sign_in for rules in in_groups) else found


def device_app_refusal(
    policy: Policy, groups: Sequence[GroupRules]
) -> errors.DeviceAppNotAllowed | None:
    """Why push sign-ins may not sign in a person in ``groups`` (None: they may): the
    organisation's ``allow_device_app_sign_in``, or a group of theirs that turns it off (named
    in the error's detail, for the audit log); ``fallback.actions.fallback_refusal``'s twin."""
    by = turned_off_by(policy, groups, "allow_device_app_sign_in")
    return None if by is None else errors.DeviceAppNotAllowed(by)


def _push_refused_to(device: Device, policy: Policy) -> None:
    """Why ``device`` may not sign in today, raised: push sign-ins turned off (by the
    organisation or a group of its person's, named in the detail), or its key not held as
    ``require_hardware_device_key`` requires."""
    groups = rules_of(device.user)
    refusal = device_app_refusal(policy, groups)
    if refusal is not None:
        raise refusal
    if device not in usable_devices(device.user, policy, groups):
        raise errors.DeviceKeyNotHardware("a device the policy no longer lets sign in")


def _check_vouching_device(device: Device, policy: Policy) -> None:
    """A device adding another ("Add Account to Another Device") must be one that may sign in
    today (docs/device-api.md)."""
    _push_refused_to(device, policy)


def _check_device_limit(user: User, policy: Policy) -> None:
    active = Device.objects.filter(user=user, is_active=True, revoked_at__isnull=True).count()
    if active >= policy.device_limit:
        raise errors.DeviceLimitReached(f"{active} of {policy.device_limit}")


@transaction.atomic
def do_issue_setup_code(
    user: User,
    origin: Origin,
    policy: Policy,
    *,
    session_key: str | None = None,
    created_by: Device | None = None,
    screen_lock_verified: bool = False,
) -> IssuedSetupCode:
    """A new setup code for ``user``, from Settings (bound to the browser's session) or from
    one of their devices ("Add Account to Another Device"). Their earlier open set-ups from
    the same place are canceled: one at a time.

    A device with screen lock confirmation proves the person only with the WebAuthn assertion
    the server checked (``screen_lock.finish_setup_code``, ``screen_lock_verified``): its key
    alone would let whoever holds it add a device of their own. Its returned code needs no
    second assertion: only the device that asked confirms the set-up it was issued."""
    lock_user(user)
    if created_by is not None:
        _check_vouching_device(created_by, policy)
        if created_by.has_screen_lock and not screen_lock_verified:
            raise errors.DeviceUserNotVerified("screen lock: no assertion checked")
    _check_device_limit(user, policy)
    binding = _sha256(session_key) if session_key else ""
    earlier = DeviceEnrollment.objects.filter(
        user=user, state__in=(EnrollmentState.WAITING, EnrollmentState.REDEEMED)
    )
    earlier = (
        earlier.filter(created_by=created_by)
        if created_by
        else earlier.filter(session_binding=binding)
    )
    earlier.update(state=EnrollmentState.CANCELED)
    code = "".join(secrets.choice(SETUP_CODE_ALPHABET) for _ in range(SETUP_CODE_LENGTH))
    enrollment = DeviceEnrollment.objects.create(
        public_id=new_public_id(),
        user=user,
        code_hash=_keyed_hash("setup", code),
        created_by=created_by,
        session_binding=binding,
        expires_at=clock.now_datetime() + SETUP_CODE_LIFETIME,
    )
    record(
        Action.DEVICE_SETUP_CODE_ISSUED,
        origin,
        actor=user,
        subject=user,
        enrollment=enrollment.public_id,
        from_device=created_by.public_id if created_by else "",
    )
    return IssuedSetupCode(enrollment, code)


def _text(body: dict[str, Any], name: str, max_length: int) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > max_length:
        raise errors.DeviceRequestMalformed(f"{name} must be text of at most {max_length}")
    return value


@dataclass(frozen=True)
class RedeemedSetupCode:
    device: Device
    returned_code: str
    # For a device that sent TPM evidence: what its TPM must activate and certify.
    tpm_challenge: tpm.CredentialChallenge | None = None


def _begin_tpm(
    evidence: object, public_jwk: dict[str, str]
) -> tuple[tpm.CredentialChallenge | None, str]:
    """The credential for a device's TPM evidence, or None and why not ("" without evidence).

    Evidence that does not check out leaves the key "software"; it never stops the set-up
    (except under require_hardware_device_key)."""
    if evidence is None:
        return None, ""
    try:
        if not isinstance(evidence, dict):
            raise tpm.TpmEvidenceInvalid("not an object")
        parts = {
            name: b64url_decode(evidence.get(name))
            for name in ("ek_certificate", "ek_public", "ak_public", "key_public")
        }
        challenge = tpm.begin(
            tpm.TpmEvidence(**parts),
            public_jwk,
            settings.THRESHOLD.device_tpm_roots,
            clock.now_datetime(),
        )
    except (tpm.TpmEvidenceInvalid, ValueError, TypeError) as error:
        return None, str(error)[:200] or type(error).__name__
    return challenge, ""


def _stored_challenge(challenge: tpm.CredentialChallenge | None) -> dict[str, str] | None:
    if challenge is None:
        return None
    return {
        "secret_sha256": b64url_encode(challenge.secret_sha256),
        "ak_public": b64url_encode(challenge.ak_public),
        "key_name": b64url_encode(challenge.key_name),
    }


def do_finish_tpm_attestation(device: Device, body: dict[str, Any], origin: Origin) -> str:
    """The device's TPM activated the credential and certified its key: "tpm" if that checks
    out, else the key stays "software". Once per device, before or after its set-up ends."""
    with transaction.atomic():
        # The device's row only, not its person's: a returned code being confirmed holds the
        # person's row and then activates the device, so locking both (FOR UPDATE of the join)
        # made each wait for the other on PostgreSQL, which undid one. FOR NO KEY UPDATE: a
        # proof still takes turns with another proof and with every change of the device,
        # not with a row that names the device (a set-up code it asks for, its Web Push
        # subscription, a push it answers).
        device = (
            Device.objects.select_for_update(no_key=True, of=("self",))
            .select_related("user")
            .get(pk=device.pk)
        )
        stored = device.tpm_challenge
        if not stored:
            raise errors.DeviceRequestMalformed("no TPM challenge is waiting for this device")
        try:
            tpm.finish(
                b64url_decode(stored["secret_sha256"]),
                b64url_decode(stored["ak_public"]),
                b64url_decode(stored["key_name"]),
                secret=b64url_decode(body.get("secret")),
                certify_info=b64url_decode(body.get("certify_info")),
                certify_signature=b64url_decode(body.get("certify_signature")),
            )
        except (tpm.TpmEvidenceInvalid, ValueError, TypeError) as error:
            record(
                Action.DEVICE_KEY_NOT_ATTESTED,
                origin,
                subject=device.user,
                reason=errors.DeviceKeyNotHardware.code,
                device=device.public_id,
                why=str(error)[:200],
            )
        else:
            device.key_protection = KeyProtection.TPM
            record(Action.DEVICE_KEY_ATTESTED, origin, subject=device.user, device=device.public_id)
        device.tpm_challenge = None
        device.save(update_fields=["key_protection", "tpm_challenge"])
    return device.key_protection


def do_redeem_setup_code(
    compact: str, *, path: str, origin: Origin, policy: Policy
) -> RedeemedSetupCode:
    """A new device redeems a setup code with a request signed by its new key (``jwk``).

    The code is used up; the device is stored, inactive, and gets a 6-digit returned code
    to show, which the person types where the setup code came from."""
    request = device_requests.read(compact)
    if request.public_jwk is None:
        raise errors.DeviceRequestMalformed("a new device sends its key as jwk")
    public_jwk, thumbprint = device_requests.public_key(request.public_jwk)
    # Proof of possession first: a request not signed by that key changes nothing.
    device_requests.verify(request, public_jwk, path=path, now=clock.now())
    body = request.body
    code = normalize_setup_code(_text(body, "setup_code", 200))
    _check_setup_code(code, origin)
    platform = _text(body, "platform", 40).lower()
    if platform not in PLATFORMS:
        platform = "other"
    app_version = _text(body, "app_version", 40)
    reported = _text(body, "key_protection", 16)
    # Named by its system when the app sent no name ("Threshold Verify on Linux" in emails).
    name = clean_name(
        body.get("name", "") or Device(platform=platform).platform_label, NICKNAME_MAX_LENGTH
    )
    challenge, tpm_refusal = _begin_tpm(body.get("tpm"), public_jwk)
    refusal: errors.ThresholdError | None = None
    with transaction.atomic():
        _use_jti(thumbprint, request)
        enrollment = _lock_waiting_setup(code)
        user = enrollment.user
        try:
            if (refused := user.sign_in_refusal()) is not None:
                raise refused
            _check_device_limit(user, policy)
            if Device.objects.filter(key_thumbprint=thumbprint).exists():
                raise errors.DeviceRequestMalformed("this key belongs to a device already")
            # What the server verified, not what the device says: "software" until the
            # device finishes its TPM attestation (do_finish_tpm_attestation).
            protection = KeyProtection.SOFTWARE
            if policy.require_hardware_device_key and challenge is None:
                raise errors.DeviceKeyNotHardware(tpm_refusal or f"reported {reported}")
            device = _new_device(
                user=user,
                public_id=new_public_id(),
                public_key=public_jwk,
                key_thumbprint=thumbprint,
                name=name,
                platform=platform,
                app_version=app_version,
                key_protection=protection,
                reported_key_protection=reported,
                tpm_challenge=_stored_challenge(challenge),
            )
        except errors.ThresholdError as error:
            # The code is used up all the same: a set-up code works once.
            enrollment.state = EnrollmentState.CANCELED
            enrollment.save(update_fields=["state"])
            record(
                Action.DEVICE_ENROLLMENT_REFUSED,
                origin,
                subject=user,
                reason=error.code,
                enrollment=enrollment.public_id,
            )
            refusal = error
        else:
            returned = f"{secrets.randbelow(10**RETURNED_CODE_DIGITS):0{RETURNED_CODE_DIGITS}d}"
            enrollment.state = EnrollmentState.REDEEMED
            enrollment.device = device
            enrollment.returned_code_hash = _keyed_hash(
                f"returned:{enrollment.public_id}", returned
            )
            enrollment.save(update_fields=["state", "device", "returned_code_hash"])
            record(
                Action.DEVICE_SETUP_CODE_REDEEMED,
                origin,
                subject=user,
                enrollment=enrollment.public_id,
                device=device.public_id,
                platform=platform,
                key_protection=protection,
                reported_key_protection=reported,
                tpm_refused=tpm_refusal,
            )
    if refusal is not None:
        raise refusal
    return RedeemedSetupCode(device, returned, challenge)


def _new_device(**fields: Any) -> Device:
    """The new device's row, or DeviceRequestMalformed when its key became another device's
    meanwhile.

    The check before it reads what is committed: two set-ups redeeming one key for two
    people at once (each holding only its own person's row) both find it free, and the
    second INSERT meets the unique index on the thumbprint. On PostgreSQL it waits there
    for the first to commit; in a savepoint, its failure is then refused as the check
    would have refused it, rather than a 500. (SQLite's write transactions run one at a
    time: the second finds the first's device.)"""
    try:
        with transaction.atomic():
            return Device.objects.create(**fields)
    except IntegrityError:
        if not Device.objects.filter(key_thumbprint=fields["key_thumbprint"]).exists():
            raise
        raise errors.DeviceRequestMalformed("this key became a device meanwhile") from None


def _lock_waiting_setup(code: str) -> DeviceEnrollment:
    """The set-up waiting for ``code``, with its person, both rows locked until the
    transaction ends; or SetupCodeInvalid.

    The person's row first, then the set-up's, as a new setup code (which cancels this one)
    and a typed returned code take them. The set-up's first (and the person's in the same
    statement, FOR UPDATE of both), each waited for the other on PostgreSQL, which undid
    one. Read again once locked, with the person as they are now: still waiting, or used or
    canceled meanwhile.
    """
    waiting = DeviceEnrollment.objects.filter(
        code_hash=_keyed_hash("setup", code),
        state=EnrollmentState.WAITING,
        expires_at__gt=clock.now_datetime(),
    )
    enrollment = waiting.select_related("user").first()
    if enrollment is None:
        raise errors.SetupCodeInvalid()
    lock_user(enrollment.user)
    enrollment = waiting.select_for_update(of=("self",)).select_related("user").first()
    if enrollment is None:
        raise errors.SetupCodeInvalid("used or canceled meanwhile")
    return enrollment


def _setup_code_limit(network: str, now: datetime) -> str:
    """Which limit on wrong setup codes is reached ("" when none is)."""
    recent = SetupCodeFailure.objects.filter(at__gt=now - SETUP_CODE_WINDOW)
    if (
        throttle.tells_clients_apart(network)
        and recent.filter(network=network).count() >= SETUP_CODE_NETWORK_FAILURES
    ):
        return "network"
    if recent.count() >= SETUP_CODE_FAILURES:
        return "overall"
    return ""


def _check_setup_code(code: str, origin: Origin) -> None:
    """Guessing setup codes is slow: once a limit is reached, nothing is checked (and nothing
    written, so a flood costs no writes) until the quarter of an hour has passed; a wrong code
    counts and is audited, the one that reaches a limit saying so."""
    now = clock.now_datetime()
    network = throttle.network_of(origin.ip)
    limit = _setup_code_limit(network, now)
    if limit:
        raise errors.SetupCodeGuessesLimited(limit)
    waiting = DeviceEnrollment.objects.filter(
        code_hash=_keyed_hash("setup", code),
        state=EnrollmentState.WAITING,
        expires_at__gt=now,
    )
    if waiting.exists():
        return
    with transaction.atomic():
        SetupCodeFailure.objects.create(network=network, at=now)
        record(
            Action.DEVICE_SETUP_CODE_REFUSED,
            origin,
            reason=errors.SetupCodeInvalid.code,
            network=network,
            limit_reached=_setup_code_limit(network, now),
        )
    raise errors.SetupCodeInvalid()


def access_enrollment(
    user: User, public_id: str, *, session_key: str | None = None, device: Device | None = None
) -> DeviceEnrollment:
    """One of ``user``'s set-ups, started from this browser session or this device; another
    person's, a missing one and one from elsewhere fail alike."""
    if not is_public_id(public_id):
        raise errors.SetupCodeInvalid("not a set-up's ID")
    # Only the set-up's row is locked: PostgreSQL refuses FOR UPDATE on the nullable side of
    # the outer join to its device.
    enrollments = DeviceEnrollment.objects.select_for_update(of=("self",)).filter(
        user=user, public_id=public_id
    )
    if device is not None:
        enrollments = enrollments.filter(created_by=device)
    else:
        enrollments = enrollments.filter(session_binding=_sha256(session_key or ""))
    enrollment = enrollments.select_related("device").first()
    if enrollment is None:
        raise errors.SetupCodeInvalid("not this person's set-up from here")
    return enrollment


def do_confirm_returned_code(
    user: User,
    public_id: str,
    returned_code: object,
    origin: Origin,
    policy: Policy,
    *,
    session_key: str | None = None,
    device: Device | None = None,
) -> Device:
    """The person typed the code the new device shows: right, the device is added; wrong,
    the attempt counts, and the third wrong one cancels the set-up."""
    refusal: errors.ThresholdError | None = None
    new_device: Device | None = None
    with transaction.atomic():
        lock_user(user)
        if device is not None:
            _check_vouching_device(device, policy)
        enrollment = access_enrollment(user, public_id, session_key=session_key, device=device)
        if enrollment.expires_at <= clock.now_datetime() or enrollment.state not in (
            EnrollmentState.WAITING,
            EnrollmentState.REDEEMED,
        ):
            raise errors.SetupCodeInvalid(f"the set-up is {enrollment.state} or expired")
        typed = "".join(ch for ch in str(returned_code) if ch.isdigit())[:RETURNED_CODE_DIGITS]
        expected = enrollment.returned_code_hash
        right = (
            enrollment.state == EnrollmentState.REDEEMED
            and enrollment.device is not None
            and hmac.compare_digest(
                _keyed_hash(f"returned:{enrollment.public_id}", typed), expected
            )
        )
        if not right:
            enrollment.wrong_codes += 1
            canceled = enrollment.wrong_codes >= RETURNED_CODE_ATTEMPTS
            if canceled:
                enrollment.state = EnrollmentState.CANCELED
            enrollment.save(update_fields=["wrong_codes", "state"])
            record(
                Action.DEVICE_ENROLLMENT_CANCELED if canceled else Action.DEVICE_ENROLLMENT_REFUSED,
                origin,
                actor=user,
                subject=user,
                reason=errors.ReturnedCodeIncorrect.code,
                enrollment=enrollment.public_id,
                wrong_codes=enrollment.wrong_codes,
            )
            refusal = (
                errors.SetupCodeInvalid("canceled after three wrong returned codes")
                if canceled
                else errors.ReturnedCodeIncorrect(
                    f"{RETURNED_CODE_ATTEMPTS - enrollment.wrong_codes} attempts left"
                )
            )
        elif policy.require_hardware_device_key and not (
            enrollment.device is not None and enrollment.device.is_hardware_protected
        ):
            enrollment.state = EnrollmentState.CANCELED
            enrollment.save(update_fields=["state"])
            record(
                Action.DEVICE_ENROLLMENT_CANCELED,
                origin,
                actor=user,
                subject=user,
                reason=errors.DeviceKeyNotHardware.code,
                enrollment=enrollment.public_id,
            )
            refusal = errors.DeviceKeyNotHardware("the key was not attested in a TPM")
        else:
            new_device = enrollment.device
            assert new_device is not None  # noqa: S101 - checked in ``right``
            _check_device_limit(user, policy)
            new_device.is_active = True
            new_device.save(update_fields=["is_active"])
            enrollment.state = EnrollmentState.DONE
            enrollment.save(update_fields=["state"])
            record(
                Action.DEVICE_ADDED,
                origin,
                actor=user,
                subject=user,
                device=new_device.public_id,
                name=new_device.name,
                platform=new_device.platform,
                key_protection=new_device.key_protection,
                from_device=device.public_id if device else "",
            )
            notify_device_added(new_device, origin)
    if refusal is not None or new_device is None:
        raise refusal or errors.SetupCodeInvalid()
    return new_device


def enrollment_state(device: Device) -> str:
    """What a device that redeemed a setup code is told while it waits: waiting, done,
    canceled (expired included)."""
    enrollment = DeviceEnrollment.objects.filter(device=device).first()
    if enrollment is None or device.revoked_at is not None:
        return EnrollmentState.CANCELED
    if enrollment.state == EnrollmentState.REDEEMED:
        if enrollment.expires_at <= clock.now_datetime():
            return EnrollmentState.CANCELED
        return EnrollmentState.WAITING
    return enrollment.state


# --- Settings: rename and remove -------------------------------------------------------------


def access_own_device(user: User, public_id: str) -> Device:
    """One of ``user``'s devices; another person's and a missing one fail alike."""
    if not is_public_id(public_id):
        raise errors.SecurityMethodNotFound("not a device's ID")
    device = Device.objects.filter(
        user=user, public_id=public_id, is_active=True, revoked_at__isnull=True
    ).first()
    if device is None:
        raise errors.SecurityMethodNotFound("no such device")
    return device


def list_devices(user: User) -> list[Device]:
    return list(Device.objects.filter(user=user, is_active=True, revoked_at__isnull=True))


@transaction.atomic
def do_rename_device(user: User, public_id: str, name: object, origin: Origin) -> Device:
    lock_user(user)
    device = access_own_device(user, public_id)
    new_name = clean_name(name, NICKNAME_MAX_LENGTH)
    old, device.name = device.name, new_name
    device.save(update_fields=["name"])
    record(
        Action.DEVICE_RENAMED,
        origin,
        actor=user,
        subject=user,
        device=public_id,
        old=old,
        new=new_name,
    )
    return device


def is_last_usable_device(user: User, device: Device, policy: Policy) -> bool:
    usable = device in usable_devices(user, policy) and policy.allow_device_app_sign_in
    return usable and count_usable_sign_in_methods(user, policy) <= 1


def do_remove_device(
    user: User, public_id: str, origin: Origin, *, actor: User | None = None
) -> Device:
    """Remove one of ``user``'s devices (Settings, after a step-up), never their last usable
    way to sign in, by the policy in force when it is removed (its row held first, as
    ``passkeys.actions.do_remove_passkey`` holds it); its key is refused from its next
    request on (401).

    ``actor``: someone else removing it from the admin portal (a lost or stolen phone). The
    last-method rule is then not applied, as for a passkey: the person gets a recovery link."""
    actor = actor or user
    refusal: errors.ThresholdError | None = None
    with transaction.atomic():
        policy = lock_policy()
        lock_user(user)
        device = access_own_device(user, public_id)
        if actor.pk == user.pk and is_last_usable_device(user, device, policy):
            record(
                Action.DEVICE_REMOVAL_REFUSED,
                origin,
                actor=user,
                subject=user,
                reason=errors.LastSignInMethod.code,
                device=public_id,
            )
            refusal = errors.LastSignInMethod()
        else:
            _revoke(device, origin, actor=actor)
    if refusal is not None:
        raise refusal
    return device


@transaction.atomic
def do_remove_this_device(device: Device, origin: Origin) -> None:
    """The app removes its own account (``threshold-verify remove``): the key is being
    deleted on the device, so keeping it would protect nothing."""
    _revoke(device, origin, actor=device.user)


def _revoke(device: Device, origin: Origin, *, actor: User) -> None:
    device.revoked_at = clock.now_datetime()
    device.is_active = False
    device.save(update_fields=["revoked_at", "is_active"])
    # Its Web Push endpoint is a capability of the phone's browser: not kept once it is gone.
    PushSubscription.objects.filter(device=device).delete()
    by_someone_else = actor.pk != device.user_id
    # Someone else's change names what it changed, before and after.
    change: dict[str, Any] = (
        {"before": {"device": device.name}, "after": None} if by_someone_else else {}
    )
    record(
        Action.DEVICE_REMOVED,
        origin,
        actor=actor,
        subject=device.user,
        device=device.public_id,
        name=device.name,
        **change,
    )
    notify_device_removed(device, origin, staff=actor if by_someone_else else None)


# --- Push sign-ins -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentPush:
    approval: SignInApproval
    browser_secret: str  # goes to the browser's cookie; only its hash is stored


def do_send_push(username: str, origin: Origin, policy: Policy) -> SentPush:
    """ "Send a push to Threshold Verify" for ``username``.

    The same answer and the same rows for an unknown username, a person without a device
    and a muted person: a push row that no device ever sees. The limits (one waiting,
    three per ten minutes) count pushes by the username as typed, whoever it is."""
    if not policy.allow_device_app_sign_in:
        raise errors.DeviceAppNotAllowed()
    name = normalize_username(username)
    with transaction.atomic():
        # Pushes for one username take turns whether or not anyone has it, so that two at
        # once are answered alike for both (the second finds the first waiting).
        _take_turns_for(_sha256(name))
        user = User.objects.filter(username=name).first() if name else None
        # The same statements for an unknown username (``_send_push``): an unsaved person
        # whose row no one has, so its lock holds nothing.
        lock_user(user or User(pk=0))
        return _send_push(name, user, origin, policy, PushPurpose.SIGN_IN)


def _take_turns_for(username_hash: str) -> None:
    """Until the transaction ends, the requests for this username take turns: on PostgreSQL a
    transaction-level advisory lock on the username's hash (taken before the person's row,
    which the step-up push takes alone); SQLite's write transactions take turns already."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(bytes.fromhex(username_hash[:16]), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def do_send_step_up_push(user: User, origin: Origin, policy: Policy) -> SentPush:
    """ "Verify it's you" with a push, for a signed-in person with no passkey at hand.

    The sign-in's push in all but its purpose: the same number to type and PIN or screen
    lock on the device, the same limits (counted with the person's sign-in pushes), the
    same mute after "I didn't do this". Approved, it counts as the password and code do
    (``sessions.stepup``): enough to add a passkey, never to remove a method or for the
    admin portal. Only for someone with a device the policy lets sign in.

    A refusal (the policy, no such device, a push already waiting, the limits) is audited as
    a failed step-up (``step_up.failed``), as a passkey's is."""
    refusal: errors.ThresholdError
    with transaction.atomic():
        lock_user(user)
        try:
            groups = rules_of(user)
            turned_off = device_app_refusal(policy, groups)
            if turned_off is not None:
                raise turned_off
            if not usable_devices(user, policy, groups):
                raise errors.DeviceUnknown("no device that may sign in, for a step-up")
            return _send_push(user.username, user, origin, policy, PushPurpose.STEP_UP)
        except errors.ThresholdError as error:
            _step_up_push_failed(user, origin, error)
            refusal = error
    raise refusal


def _send_push(
    name: str, user: User | None, origin: Origin, policy: Policy, purpose: PushPurpose
) -> SentPush:
    """The push's row, once the limits allow it, and its audit row; in the caller's
    transaction, which holds the person's row."""
    username_hash = _sha256(name)
    now = clock.now_datetime()
    network = throttle.network_of(origin.ip)
    # What counts: the window's pushes that signed no one in (an approved one is about to).
    unused = SignInApproval.objects.filter(created_at__gt=now - PUSH_WINDOW).exclude(
        state__in=(PushState.APPROVED, PushState.USED)
    )
    persons = unused.filter(username_hash=username_hash)
    # An address every client shares (loopback, unknown) is one network for everyone.
    from_here = persons.filter(network=network)
    waiting = SignInApproval.objects.filter(
        username_hash=username_hash, network=network, state=PushState.PENDING, expires_at__gt=now
    )
    if waiting.exists():
        raise errors.PushPending()
    if from_here.count() >= PUSH_LIMIT:
        raise errors.PushLimitReached()
    if persons.count() >= PUSH_PERSON_LIMIT:
        raise errors.PushLimitReached("from all networks")
    if (
        throttle.tells_clients_apart(network)
        and unused.filter(network=network).count() >= PUSH_NETWORK_LIMIT
    ):
        raise errors.PushLimitReached("from this network")
    reason, devices = _undeliverable(user, policy, now)
    secret = secrets.token_urlsafe(32)
    approval = SignInApproval.objects.create(
        public_id=new_public_id(),
        created_at=now,  # the clock the limits count with
        username_hash=username_hash,
        user=user,
        is_delivered=not reason,
        number=10 + secrets.randbelow(90),
        browser_binding=_sha256(secret),
        purpose=purpose,
        expires_at=now + PUSH_LIFETIME,
        ip=origin.ip,
        network=network,
        user_agent=origin.user_agent[:512],
    )
    record(
        Action.PUSH_SENT,
        origin,
        subject=user,
        reason=reason,
        push=approval.public_id,
        delivered=not reason,
        purpose=purpose,
    )
    if webpush.is_enabled():
        # After the commit, from a thread: the browser's answer never waits for a
        # push service (threshold/devices/webpush.py). A push no device sees starts the
        # same thread, which finds no one's subscription: the answer's timing must not
        # tell a person with a phone from a username no one has.
        transaction.on_commit(partial(webpush.send_soon, [] if reason else devices, purpose))
    return SentPush(approval, secret)


def _undeliverable(user: User | None, policy: Policy, now: datetime) -> tuple[str, list[int]]:
    """Why no device sees this push ("" when one does: for the audit log only), and the
    devices that do.

    The same two queries whoever the username is, one who has no account included (they
    find nothing): the time a push takes tells people apart as well as its answer would."""
    person = user if user is not None else User(pk=0)
    devices = [device.pk for device in usable_devices(person, policy)]
    muted = SignInApproval.objects.filter(
        user_id=person.pk, state=PushState.DENIED, decided_at__gt=now - PUSH_MUTE
    ).exists()
    if user is None:
        return "unknown_username", []
    if not user.can_sign_in:
        return "account_refused", []
    if not devices:
        return "no_device", []
    return ("muted", []) if muted else ("", devices)


def _browser_push(public_id: str, browser_secret: str) -> SignInApproval | None:
    if not is_public_id(public_id):
        return None
    approval = SignInApproval.objects.filter(public_id=public_id).select_related("user").first()
    if approval is None or not hmac.compare_digest(
        approval.browser_binding, _sha256(browser_secret)
    ):
        return None
    return approval


def _push_ended(approval: SignInApproval) -> bool:
    """Past its two minutes, or, once approved in them, past the time to finish it too."""
    grace = PUSH_FINISH_GRACE if approval.state == PushState.APPROVED else timedelta(0)
    return approval.expires_at + grace <= clock.now_datetime()


def push_status(public_id: str, browser_secret: str) -> tuple[PushStatus, int | None]:
    """The browser's view of its push: its state, and the number to show while it waits."""
    approval = _browser_push(public_id, browser_secret)
    if approval is None:
        return PushStatus.EXPIRED, None
    if approval.state in (PushState.REFUSED, PushState.DENIED):
        return PushStatus.REFUSED, None
    if approval.state in (PushState.USED, PushState.CANCELED):
        return PushStatus.EXPIRED, None
    if _push_ended(approval):
        return PushStatus.EXPIRED, None
    if approval.state == PushState.APPROVED:
        return PushStatus.APPROVED, approval.number
    return PushStatus.PENDING, approval.number


@dataclass(frozen=True)
class FinishedPush:
    user: User
    assurance: Assurance
    # The device that approved it, which the session records (``SIGN_IN_CREDENTIAL``).
    device_id: int | None = None


def do_finish_push(
    public_id: str, browser_secret: str, origin: Origin, policy: Policy
) -> FinishedPush:
    """The browser signs in with its approved push, once; or the push's error.

    A refusal of this browser's push (denied, a wrong number, expired, used, the policy in
    force: the device app no longer allowed or its device's key not in hardware; the
    account: locked, deactivated) is audited as ``sign_in.failed`` with the error's code, as
    a passkey's and as the step-up push's (``step_up.failed``), once however often its finish
    is sent; a push unknown to this browser is not (nothing names a person)."""
    refused: errors.ThresholdError | None
    with transaction.atomic():
        approval = _browser_push(public_id, browser_secret)
        refused = _push_refusal(approval, PushPurpose.SIGN_IN, policy)
        user = approval.user if approval is not None else None
        if refused is None and user is None:
            refused = errors.PushExpired("a push for no one")
        if refused is None and user is not None:
            refused = user.sign_in_refusal()
        if refused is None:
            assert approval is not None  # noqa: S101 - refused otherwise
            assert user is not None  # noqa: S101 - refused otherwise
            _use_push(approval)
            _push_used(Action.SIGN_IN_SUCCEEDED, approval, user, origin)
            hardware_bound = approval.device is not None and approval.device.is_hardware_protected
            return FinishedPush(
                user,
                assurance.for_device_app(hardware_bound=hardware_bound),
                device_id=approval.device_id,
            )
        if (
            approval is not None
            and user is not None
            # Once per push: its finish sent again (the push's cookie kept) writes no more.
            and not AuditEvent.objects.filter(
                subject=user, action=Action.SIGN_IN_FAILED, detail__push=approval.public_id
            ).exists()
        ):
            record(
                Action.SIGN_IN_FAILED,
                origin,
                subject=user,
                reason=refused.code,
                method=SignedInWith.DEVICE_APP,
                push=approval.public_id,
                **({"detail": refused.detail} if refused.detail else {}),
            )
    raise refused


def do_finish_step_up_push(
    public_id: str, browser_secret: str, user: User, origin: Origin, policy: Policy
) -> None:
    """The signed-in browser's "Verify it's you" with its approved push, once; or the push's
    error. Audited as a step-up (``step_up.succeeded``, method ``device_app``, not
    phishing-resistant); the caller marks the session. A refusal (no push in this browser,
    denied, a wrong number, expired, used, the policy) is audited as ``step_up.failed``
    with the error's code, once the transaction has committed, then raised."""
    refusal: errors.ThresholdError
    with transaction.atomic():
        lock_user(user)
        approval = _browser_push(public_id, browser_secret)
        try:
            refused = _push_refusal(approval, PushPurpose.STEP_UP, policy, user=user)
            if refused is not None:
                raise refused
            assert approval is not None  # noqa: S101 - refused otherwise
            _use_push(approval)
        except errors.ThresholdError as error:
            _step_up_push_failed(user, origin, error, approval)
            refusal = error
        else:
            device = approval.device.public_id if approval.device else ""
            _push_used(Action.STEP_UP_SUCCEEDED, approval, user, origin, device=device)
            return
    raise refusal


def do_end_step_up_push(
    public_id: str, browser_secret: str, user: User, origin: Origin
) -> errors.ThresholdError:
    """The step-up push's waiting page found it over (denied, a wrong number, expired, used,
    canceled): why, audited as ``step_up.failed`` as at finish. The caller shows the error
    and forgets the push, so that the page tells it, and the audit log records it, once."""
    with transaction.atomic():
        approval = _browser_push(public_id, browser_secret)
        error = _push_refusal(approval, PushPurpose.STEP_UP, None, user=user) or errors.PushExpired(
            f"the push is {approval.state if approval else 'gone'}"
        )
        _step_up_push_failed(user, origin, error, approval)
    return error


def _push_refusal(
    approval: SignInApproval | None,
    purpose: PushPurpose,
    policy: Policy | None,
    *,
    user: User | None = None,
) -> errors.ThresholdError | None:
    """Why this browser's push cannot be used for ``purpose`` (None: it can, once approved);
    ``user``: the signed-in person whose push it must be; ``policy`` None: whatever the
    policy says."""
    if (
        approval is None
        or approval.purpose != purpose
        or (user is not None and approval.user_id != user.pk)
    ):
        return errors.PushExpired("unknown push, another browser's, purpose's or person's")
    if approval.state == PushState.REFUSED:
        return errors.PushNumberWrong()
    if approval.state == PushState.DENIED:
        return errors.PushDenied()
    approver = approval.device
    if _push_ended(approval) or (
        # Removed since it answered (the person's answer to an "approved" email they did
        # not expect): its approval signs no one in.
        approver is not None and (approver.revoked_at is not None or not approver.is_active)
    ):
        return errors.PushExpired("expired, or the device that approved it was removed")
    return None if policy is None else _policy_refusal(approval.user, approver, policy)


def _policy_refusal(
    person: User | None, approver: Device | None, policy: Policy
) -> errors.ThresholdError | None:
    """Why the policy in force (or a group of ``person``'s) refuses a push ``approver``
    answered (None: it does not)."""
    refusal = device_app_refusal(policy, rules_of(person) if person is not None else ())
    if refusal is not None:
        return refusal
    if policy.require_hardware_device_key and not (
        approver is not None and approver.is_hardware_protected
    ):
        # Required since it answered (usable_devices decides whom a push is sent to).
        return errors.DeviceKeyNotHardware("the device that approved it has no key in a TPM")
    return None


def _use_push(approval: SignInApproval) -> None:
    """Used once: of two requests racing with it, one updates the row."""
    used = SignInApproval.objects.filter(pk=approval.pk, state=PushState.APPROVED).update(
        state=PushState.USED
    )
    if not used:
        raise errors.PushExpired(f"the push is {approval.state}")


def _push_used(
    action: Action, approval: SignInApproval, user: User, origin: Origin, **detail: str
) -> None:
    """A sign-in or a step-up with a push: method ``device_app``, never phishing-resistant."""
    record(
        action,
        origin,
        actor=user,
        subject=user,
        method=SignedInWith.DEVICE_APP,
        phishing_resistant=False,
        push=approval.public_id,
        **detail,
    )


def _step_up_push_failed(
    user: User,
    origin: Origin,
    error: errors.ThresholdError,
    approval: SignInApproval | None = None,
) -> None:
    """A step-up push that did not verify ``user``: ``step_up.failed``, as a passkey's, with
    the method as the success row names it; the push and its device only when they are
    the person's own step-up push (never the number or the browser's secret)."""
    own = (
        approval is not None
        and approval.purpose == PushPurpose.STEP_UP
        and approval.user_id == user.pk
    )
    record(
        Action.STEP_UP_FAILED,
        origin,
        actor=user,
        subject=user,
        reason=error.code,
        method=SignedInWith.DEVICE_APP,
        push=approval.public_id if own and approval else "",
        device=approval.device.public_id if own and approval and approval.device else "",
        detail=error.detail[:200],
    )


# The audit reason of a push the browser that sent it ended (``push.canceled``).
CANCELED_IN_BROWSER = "canceled_in_browser"


def do_cancel_push(
    public_id: str, browser_secret: str, origin: Origin, *, actor: User | None = None
) -> None:
    """The browser that sent a push stops waiting ("Cancel"): a push still waiting ends, and
    no device shows it any longer; audited (``push.canceled``, with its purpose). It still
    counts against the limits (it was sent); a push already answered, used or over is left
    as it is, and nothing is audited. ``actor``: the signed-in person of a step-up's push."""
    with transaction.atomic():
        approval = _browser_push(public_id, browser_secret)
        if approval is None:
            return
        ended = SignInApproval.objects.filter(
            pk=approval.pk, state=PushState.PENDING, expires_at__gt=clock.now_datetime()
        ).update(state=PushState.CANCELED)
        if ended:
            record(
                Action.PUSH_CANCELED,
                origin,
                actor=actor,
                subject=approval.user,
                reason=CANCELED_IN_BROWSER,
                push=approval.public_id,
                purpose=approval.purpose,
                delivered=approval.is_delivered,
            )


def list_pending_pushes(device: Device, policy: Policy) -> list[SignInApproval]:
    """The pushes waiting for the device's person, newest first (at most one)."""
    if device not in usable_devices(device.user, policy) or not policy.allow_device_app_sign_in:
        return []
    return list(
        SignInApproval.objects.filter(
            user=device.user,
            is_delivered=True,
            state=PushState.PENDING,
            expires_at__gt=clock.now_datetime(),
        ).order_by("-created_at")
    )


def do_answer_push(
    device: Device,
    public_id: str,
    *,
    decision: str,
    number: object,
    user_verified: bool,
    origin: Origin,
    policy: Policy,
) -> PushState:
    """The device's answer: the typed number and the person's verification, or a denial."""
    if decision not in set(Decision):
        raise errors.DeviceRequestMalformed("decision must be approve or deny")
    if not is_public_id(public_id):
        raise errors.PushExpired("not a push's ID")
    refusal: errors.ThresholdError | None = None
    with transaction.atomic():
        approval = (
            SignInApproval.objects.select_for_update()
            .filter(public_id=public_id, user=device.user, is_delivered=True)
            .first()
        )
        now = clock.now_datetime()
        if approval is None or approval.state != PushState.PENDING or approval.expires_at <= now:
            raise errors.PushExpired("not waiting")
        _push_refused_to(device, policy)
        approval.device, approval.decided_at = device, now
        if decision == Decision.DENY:
            approval.state = PushState.DENIED
            approval.save(update_fields=["state", "device", "decided_at"])
            record(
                Action.PUSH_DENIED,
                origin,
                actor=device.user,
                subject=device.user,
                push=approval.public_id,
                device=device.public_id,
                ip=approval.ip or "",
            )
            notify_push_denied(approval, device, origin)
            return PushState.DENIED
        if not user_verified:
            raise errors.DeviceUserNotVerified()
        typed = str(number).strip() if isinstance(number, str | int) else ""
        if not hmac.compare_digest(typed.encode(), str(approval.number).encode()):
            approval.state = PushState.REFUSED
            refusal = errors.PushNumberWrong()
            record(
                Action.PUSH_REFUSED,
                origin,
                actor=device.user,
                subject=device.user,
                reason=refusal.code,
                push=approval.public_id,
                device=device.public_id,
            )
            notify_push_number_wrong(approval, device)
        else:
            approval.state = PushState.APPROVED
            record(
                Action.PUSH_APPROVED,
                origin,
                actor=device.user,
                subject=device.user,
                push=approval.public_id,
                device=device.public_id,
            )
            notify_push_approved(approval, device)
        approval.save(update_fields=["state", "device", "decided_at"])
    if refusal is not None:
        raise refusal
    return PushState.APPROVED
