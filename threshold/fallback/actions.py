"""The fallback sign-in and its set-up, as audited actions.

Failures are raised after their transaction commits, so the failure counters
and the audit rows stay even though the caller sees an exception.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import Q

from threshold import clock
from threshold.accounts.actions import lock_user
from threshold.accounts.models import User, normalize_username
from threshold.audit.actions import Action, Origin, record
from threshold.audit.models import AuditEvent
from threshold.core import errors, throttle, totp
from threshold.core.policy import Policy
from threshold.fallback.models import FailureCounter, PasskeyPrompt, RecoveryCode, TotpDevice

PASSWORD_AND_APP = "password+app"  # noqa: S105 - a method name, not a password
PASSWORD_AND_RECOVERY_CODE = "password+recovery_code"  # noqa: S105


def has_fallback(user: User) -> bool:
    return TotpDevice.objects.filter(user=user).exists()


def unused_recovery_codes(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at=None).count()


# --- Set-up ------------------------------------------------------------------------------------


@transaction.atomic
def do_set_up_fallback(
    user: User, password: str, secret: str, confirmed_step: int, origin: Origin
) -> list[str]:
    """Store the password and authenticator app; returns new recovery codes (shown once).

    The caller has validated the password and checked a code from the app: the
    code of ``confirmed_step``, used up with the set-up.
    """
    lock_user(user)
    if TotpDevice.objects.filter(user=user).exists():
        raise errors.MalformedRequest("the fallback is set up already")
    user.set_password(password)
    user.save(update_fields=["password"])
    TotpDevice.objects.create(
        user=user,
        secret=secret,
        created_at=clock.now_datetime(),
        last_used_step=confirmed_step,
    )
    codes = _replace_recovery_codes(user)
    record(Action.FALLBACK_SET_UP, origin, actor=user, subject=user)
    return codes


@transaction.atomic
def do_regenerate_recovery_codes(user: User, origin: Origin) -> list[str]:
    if not has_fallback(user):
        raise errors.SecurityMethodNotFound("no fallback set up")
    codes = _replace_recovery_codes(user)
    record(Action.RECOVERY_CODES_REPLACED, origin, actor=user, subject=user)
    return codes


def _replace_recovery_codes(user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = totp.new_recovery_codes()
    now = clock.now_datetime()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(
            user=user,
            code_hash=totp.recovery_code_hash(totp.normalize_code(code)),
            created_at=now,
        )
        for code in codes
    )
    return codes


def do_remove_fallback(user: User, origin: Origin) -> None:
    """Remove the password, app and recovery codes; never the person's last way to sign in."""
    from threshold.passkeys.actions import count_sign_in_methods  # noqa: PLC0415 - cycle

    with transaction.atomic():
        lock_user(user)
        if not has_fallback(user):
            raise errors.SecurityMethodNotFound("no fallback set up")
        if count_sign_in_methods(user) > 1:
            TotpDevice.objects.filter(user=user).delete()
            RecoveryCode.objects.filter(user=user).delete()
            user.set_unusable_password()
            user.save(update_fields=["password"])
            record(Action.FALLBACK_REMOVED, origin, actor=user, subject=user)
            return
        record(
            Action.FALLBACK_REMOVAL_REFUSED,
            origin,
            actor=user,
            subject=user,
            reason=errors.LastSignInMethod.code,
        )
    raise errors.LastSignInMethod()


# --- Sign-in -----------------------------------------------------------------------------------


def _username_key(username: str) -> str:
    return "user:" + hashlib.sha256(normalize_username(username).encode()).hexdigest()


def _address_key(origin: Origin) -> str:
    return f"ip:{origin.ip or 'unknown'}"


def _refuse_if_throttled(username: str, origin: Origin, step: str) -> None:
    now = clock.now_datetime()
    throttled = FailureCounter.objects.filter(
        key__in=[_username_key(username), _address_key(origin)], locked_until__gt=now
    ).exists()
    if throttled:
        record(
            Action.SIGN_IN_FAILED,
            origin,
            reason=errors.TooManyAttempts.code,
            method="fallback",
            step=step,
        )
        raise errors.TooManyAttempts()


def _count_failure(username: str, origin: Origin, policy: Policy) -> None:
    now = clock.now_datetime()
    for key in (_username_key(username), _address_key(origin)):
        counter, _ = FailureCounter.objects.select_for_update().get_or_create(
            key=key, defaults={"first_failure_at": now, "last_failure_at": now}
        )
        is_address = key.startswith("ip:")
        forget = throttle.ADDRESS_WINDOW_SECONDS if is_address else throttle.FORGET_AFTER_SECONDS
        since = counter.first_failure_at if is_address else counter.last_failure_at
        if (now - since).total_seconds() > forget:
            counter.failures = 0
            counter.first_failure_at = now
        counter.failures += 1
        counter.last_failure_at = now
        if is_address:
            elapsed = (now - counter.first_failure_at).total_seconds()
            wait = throttle.address_wait(counter.failures, elapsed)
        else:
            wait = throttle.username_wait(counter.failures, policy.password_lockout_threshold)
        counter.locked_until = now + timedelta(seconds=wait) if wait else None
        counter.save()


def do_check_password(username: str, password: str, origin: Origin, policy: Policy) -> User:
    """The first step: the person whose password this is, or PasswordIncorrect.

    Unknown usernames, accounts without the fallback and wrong passwords fail
    alike, after the same Argon2 work, and count against the same throttles.
    """
    if not policy.allow_password_fallback:
        raise errors.FallbackNotAllowed()
    _refuse_if_throttled(username, origin, "password")
    name = normalize_username(username)
    user = User.objects.filter(username=name).first()
    usable = user is not None and user.has_usable_password() and has_fallback(user)
    if usable and user is not None:
        correct = user.check_password(password)
    else:
        # The same hashing work as a real check (Django's ModelBackend does this too).
        make_password(password)
        correct = False
    if correct and user is not None:
        return user
    with transaction.atomic():
        _count_failure(name, origin, policy)
        record(
            Action.SIGN_IN_FAILED,
            origin,
            subject=user,
            reason=errors.PasswordIncorrect.code,
            method="fallback",
            why="wrong password" if usable else "unknown username or no fallback",
        )
    raise errors.PasswordIncorrect()


def do_finish_fallback_sign_in(user: User, code: object, origin: Origin, policy: Policy) -> str:
    """The second step: an authenticator-app or recovery code. Returns how the person signed in."""
    if not policy.allow_password_fallback:
        raise errors.FallbackNotAllowed()
    _refuse_if_throttled(user.username, origin, "code")
    typed = totp.normalize_code(code)
    error: errors.CeremonyError | None = None
    with transaction.atomic():
        method = _use_code(user, typed)
        if isinstance(method, errors.CeremonyError):
            error = method
            _count_failure(user.username, origin, policy)
            record(
                Action.SIGN_IN_FAILED,
                origin,
                subject=user,
                reason=error.code,
                method="fallback",
                step="code",
            )
    if error is not None:
        raise error
    assert isinstance(method, str)  # noqa: S101
    # Both factors are right: only now does the account's state show.
    if not user.is_active:
        _refuse(user, origin, errors.AccountDisabled())
    if getattr(user, "locked_at", None) is not None:
        _refuse(user, origin, errors.AccountLocked())
    with transaction.atomic():
        FailureCounter.objects.filter(key=_username_key(user.username)).delete()
        record(
            Action.SIGN_IN_SUCCEEDED,
            origin,
            actor=user,
            subject=user,
            method=method,
            phishing_resistant=False,
        )
    return method


def _refuse(user: User, origin: Origin, error: errors.CeremonyError) -> None:
    record(Action.SIGN_IN_FAILED, origin, subject=user, reason=error.code, method="fallback")
    raise error


def _use_code(user: User, typed: str) -> str | errors.CeremonyError:
    now = clock.now()
    if totp.is_app_code(typed):
        device = TotpDevice.objects.filter(user=user).first()
        step = totp.matching_step(device.secret, typed, now) if device else None
        if device is None or step is None:
            return errors.SecondFactorIncorrect()
        # Conditional: of two requests with the same code, one wins (RFC 6238 §5.2).
        used = (
            TotpDevice.objects.filter(pk=device.pk)
            .filter(Q(last_used_step__isnull=True) | Q(last_used_step__lt=step))
            .update(last_used_step=step)
        )
        return PASSWORD_AND_APP if used else errors.SecondFactorReused()
    if totp.is_recovery_code(typed):
        code_hash = totp.recovery_code_hash(typed)
        used = RecoveryCode.objects.filter(user=user, code_hash=code_hash, used_at=None).update(
            used_at=clock.now_datetime()
        )
        if used:
            return PASSWORD_AND_RECOVERY_CODE
        if RecoveryCode.objects.filter(user=user, code_hash=code_hash).exists():
            return errors.SecondFactorReused()
    return errors.SecondFactorIncorrect()


# --- "Set up a passkey" / "I'll do it later" -----------------------------------------------------


def passkey_prompt_due(user: User, policy: Policy) -> bool:
    """Show the prompt, unless snoozed and neither enough sign-ins nor days have passed since."""
    prompt = PasskeyPrompt.objects.filter(user=user).first()
    if prompt is None:
        return True
    if clock.now_datetime() - prompt.snoozed_at >= timedelta(
        days=policy.passkey_prompt_snooze_days
    ):
        return True
    # Counted from the audit log: the sign-in path writes nothing extra for it.
    sign_ins = AuditEvent.objects.filter(
        action=Action.SIGN_IN_SUCCEEDED, subject=user, at__gt=prompt.snoozed_at
    ).count()
    return sign_ins >= policy.passkey_prompt_snooze_sign_ins


@transaction.atomic
def do_snooze_passkey_prompt(user: User, origin: Origin) -> None:
    PasskeyPrompt.objects.update_or_create(user=user, defaults={"snoozed_at": clock.now_datetime()})
    record(Action.PASSKEY_PROMPT_SNOOZED, origin, actor=user, subject=user)
