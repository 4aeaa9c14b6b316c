"""The fallback sign-in and its set-up, as audited actions.

Failures are raised after their transaction commits, so the failure counters
and the audit rows stay even though the caller sees an exception.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime, timedelta
from enum import StrEnum

from django.contrib.auth.hashers import make_password
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q

from threshold import clock
from threshold.accounts.actions import lock_user
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import User, normalize_username
from threshold.accounts.notices import MethodChange
from threshold.audit.actions import Action, Origin, as_given, record
from threshold.audit.capped import record_capped
from threshold.audit.models import AuditEvent
from threshold.core import errors, throttle, totp
from threshold.core.names import has_ascii_control, is_text
from threshold.core.policy import Policy, turned_off_by
from threshold.fallback.models import FailureCounter, PasskeyPrompt, RecoveryCode, TotpDevice
from threshold.fallback.notices import (
    notify_codes_shut,
    notify_fallback_changed,
    notify_recovery_codes_replaced,
)
from threshold.groups.access import rules_of
from threshold.policy.actions import lock_policy
from threshold.sessions.store import SignedInWith

# A failed fallback sign-in's audit rows say ``method=FALLBACK``; a successful one's, how.
FALLBACK = "fallback"


def has_fallback(user: User | None) -> bool:
    """Whether the person set up the fallback; asked for no one too (None: a username no one
    has), with the same statement, so that the password step reads alike for both."""
    return TotpDevice.objects.filter(user_id=user.pk if user is not None else 0).exists()


def unused_recovery_codes(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at=None).count()


# --- Set-up ------------------------------------------------------------------------------------


@transaction.atomic
def do_set_up_fallback(
    user: User, password: str, secret: str, confirmed_step: int, origin: Origin
) -> list[str]:
    """Store the password and authenticator app; returns new recovery codes (shown once).

    The caller has validated the password and checked a code from the app
    (``threshold.fallback.forms.SetUpForm``): the code of ``confirmed_step``, used
    up with the set-up. The person is emailed once it commits.
    """
    lock_user(user)
    if TotpDevice.objects.filter(user=user).exists():
        raise errors.MalformedRequest("the fallback is set up already")
    forget_wrong_codes(user)
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
    notify_fallback_changed(user, origin, MethodChange.ADDED)
    return codes


@transaction.atomic
def do_regenerate_recovery_codes(user: User, origin: Origin) -> list[str]:
    """Ten new recovery codes in place of the old. The person's row first, as every change of
    their methods takes it: two tabs asking at once get one set each in turn (the first's
    replaced), never twenty valid codes; a removal or recovery meanwhile is seen."""
    lock_user(user)
    if not has_fallback(user):
        raise errors.SecurityMethodNotFound("no fallback set up")
    codes = _replace_recovery_codes(user)
    record(Action.RECOVERY_CODES_REPLACED, origin, actor=user, subject=user)
    notify_recovery_codes_replaced(user, origin)
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
    """Remove the password, app and recovery codes; never the person's last usable way to
    sign in, by the policy in force when they are removed (its row held first, as
    ``passkeys.actions.do_remove_passkey`` holds it).

    The person is emailed once it commits.
    """
    with transaction.atomic():
        policy = lock_policy()
        lock_user(user)
        if not has_fallback(user):
            raise errors.SecurityMethodNotFound("no fallback set up")
        if not is_last_usable_fallback(user, policy):
            TotpDevice.objects.filter(user=user).delete()
            RecoveryCode.objects.filter(user=user).delete()
            user.set_unusable_password()
            user.save(update_fields=["password"])
            record(Action.FALLBACK_REMOVED, origin, actor=user, subject=user)
            notify_fallback_changed(user, origin, MethodChange.REMOVED)
            return
        record(
            Action.FALLBACK_REMOVAL_REFUSED,
            origin,
            actor=user,
            subject=user,
            reason=errors.LastSignInMethod.code,
        )
    raise errors.LastSignInMethod()


@transaction.atomic
def do_reset_fallback(user: User, origin: Origin, *, actor: User) -> None:
    """An administrator removes ``user``'s password, app and recovery codes (a lost phone, a
    leaked password): no last-method rule, a recovery link needs no other method. The person
    sets it up again themselves; they are emailed once it commits."""
    lock_user(user)
    had_password = user.has_usable_password()
    codes = RecoveryCode.objects.filter(user=user, used_at=None).count()
    if not has_fallback(user) and not had_password:
        raise errors.SecurityMethodNotFound("no fallback set up")
    remove_fallback_for_recovery(user)
    record(
        Action.FALLBACK_RESET,
        origin,
        actor=actor,
        subject=user,
        before={"password_and_app": True, "unused_recovery_codes": codes},
        after={"password_and_app": False, "unused_recovery_codes": 0},
    )
    notify_fallback_changed(user, origin, MethodChange.REMOVED, staff=actor)


def fallback_refusal(user: User, policy: Policy) -> errors.FallbackNotAllowed | None:
    """Why the password fallback may not sign ``user`` in (None: it may): the organisation's
    ``allow_password_fallback``, or the rules of a group of theirs that turns it off (named in
    the error's detail, for the audit log)."""
    by = turned_off_by(policy, rules_of(user), "allow_password_fallback")
    return None if by is None else errors.FallbackNotAllowed(by)


def is_last_usable_fallback(user: User, policy: Policy) -> bool:
    """Would removing ``user``'s fallback leave them no way to sign in that ``policy`` allows?

    While the policy (or a group of theirs) turns the fallback off it cannot sign in, so
    removing it changes nothing.
    """
    return (
        fallback_refusal(user, policy) is None and count_usable_sign_in_methods(user, policy) <= 1
    )


def recovery_removes(user: User) -> list[str]:
    """What of ``user``'s a recovery link deletes (``remove_fallback_for_recovery``), in
    Settings' words: their password, authenticator app and unused recovery codes, those
    they have."""
    return [
        name
        for name, present in (
            ("password", user.has_usable_password()),
            ("authenticator app", has_fallback(user)),
            ("recovery codes", unused_recovery_codes(user) > 0),
        )
        if present
    ]


def remove_fallback_for_recovery(user: User) -> list[str]:
    """A recovery link resets the phishable fallback too; what it removed, in Settings'
    words (``recovery_removes``).

    Whoever took the person's passkeys may have their password and codes as
    well; the person sets the fallback up again if they want it. Runs in the
    recovery's transaction, which audits it.
    """
    removed = recovery_removes(user)
    forget_wrong_codes(user)
    TotpDevice.objects.filter(user=user).delete()
    RecoveryCode.objects.filter(user=user).delete()
    if user.has_usable_password():
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return removed


def forget_wrong_codes(user: User) -> None:
    """The app's new secret (or none) makes earlier wrong codes moot: the code step, shut
    after ``throttle.MOST_CODE_FAILURES`` of them, opens again."""
    FailureCounter.objects.filter(key=_codes_key(user.username)).delete()


def delete_stale_counters() -> int:
    """Forget counters whose failures are old and that lock nothing (``threshold cleanup``);
    never a username's wrong codes (``_forgotten``: only a sign-in or a new set-up ends them)."""
    now = clock.now_datetime()
    stale = now - timedelta(seconds=throttle.FORGET_AFTER_SECONDS)
    old = (
        FailureCounter.objects.filter(last_failure_at__lt=stale)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .exclude(key__startswith=_CODES_PREFIX)
    )
    with transaction.atomic():
        # Not a counter an attempt holds (it is in use, not old; SKIP LOCKED, PostgreSQL), so
        # that this never waits: an attempt locks its counters one after another, in an order
        # of its own, and a DELETE meeting them in another order (its scan's) held one while
        # waiting for the next, which the attempt held while waiting for the first.
        deleted, _ = FailureCounter.objects.filter(
            pk__in=old.select_for_update(skip_locked=True).values("pk")
        ).delete()
    return deleted


# --- Sign-in -----------------------------------------------------------------------------------


class CounterKind(StrEnum):
    """The failure counters an attempt counts against (see threshold.core.throttle)."""

    USER_NETWORK = "user-network"  # this username from this network: both steps
    # This username's wrong passwords from anywhere: the password step, a doubling wait once
    # the policy's threshold is passed, never a lock (``throttle.anywhere_wait``).
    USER_ANYWHERE = "user-anywhere"
    # In its place, for a browser that signed in as the person before (``fallback.known``):
    # that browser's own wrong passwords, with the same wait.
    KNOWN_BROWSER = "known-browser"
    CODES = "codes"  # this username's wrong codes, from anywhere: the code step
    NETWORK = "network"  # this network, whatever the username: both steps
    # This username from an address every client shares (throttle.tells_clients_apart): the
    # doubling wait only, never a lock, and no network-wide counter, so that nobody can shut
    # the password path for its owner or for everyone.
    USER_SHARED = "user-shared"


class Purpose(StrEnum):
    """What the password and code are given for: signing in, or "Verify it's you" (step-up)
    in a signed-in browser. The same checks and throttles; the audit rows say which."""

    SIGN_IN = "sign_in"
    STEP_UP = "step_up"

    @property
    def failed(self) -> Action:
        return Action.SIGN_IN_FAILED if self == Purpose.SIGN_IN else Action.STEP_UP_FAILED

    @property
    def succeeded(self) -> Action:
        return Action.SIGN_IN_SUCCEEDED if self == Purpose.SIGN_IN else Action.STEP_UP_SUCCEEDED


class Step(StrEnum):
    """The two steps of a fallback sign-in (the audit rows' ``step``)."""

    PASSWORD = "password"  # noqa: S105 - a step's name, not a password
    CODE = "code"


def _keys(
    username: str, origin: Origin, step: Step, *, browser: str | None = None
) -> dict[CounterKind, str]:
    """The throttle counters an attempt at ``step`` for ``username`` from ``origin`` counts against.

    The password step's username-wide counter only slows: failures from many
    networks make every network wait (a guesser spread over a botnet or many IPv6
    /64s must not get unlimited guesses, and a right password would tell it so),
    but never lock the person's password from another network (a stranger could
    otherwise keep it shut for ever). The code step's shuts, as only someone who
    gave the right password reaches it. A browser that signed in as the person with
    the fallback before (``browser``: its key, ``fallback.known``) counts against a
    counter of its own in place of the username-wide one, so that the person's browser
    is not slowed by strangers, and a copied cookie is slowed as a stranger is (OWASP's
    "device cookies").
    """
    name = _sha256(normalize_username(username))
    network = throttle.network_of(origin.ip)
    if throttle.tells_clients_apart(network):
        keys = {
            CounterKind.USER_NETWORK: f"user-net:{_sha256(f'{name}|{network}')}",
            CounterKind.NETWORK: f"net:{network}",
        }
        if step == Step.PASSWORD and browser is not None:
            keys[CounterKind.KNOWN_BROWSER] = f"user-known:{_sha256(f'{name}|{browser}')}"
        elif step == Step.PASSWORD:
            keys[CounterKind.USER_ANYWHERE] = _anywhere_key(username)
    else:
        keys = {CounterKind.USER_SHARED: f"user-shared:{name}"}
    if step == Step.CODE:
        keys[CounterKind.CODES] = _codes_key(username)
    return keys


def _codes_key(username: str) -> str:
    return f"{_CODES_PREFIX}{_sha256(normalize_username(username))}"


_CODES_PREFIX = "user:"


def _anywhere_key(username: str) -> str:
    return f"user-any:{_sha256(normalize_username(username))}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _wait(kind: CounterKind, counter: FailureCounter, now: datetime, policy: Policy) -> float:
    if kind == CounterKind.USER_NETWORK:
        return max(
            throttle.username_wait(counter.failures),
            throttle.lockout_wait(counter.failures, policy.password_lockout_threshold),
        )
    if kind == CounterKind.CODES:
        return throttle.code_wait(counter.failures)
    if kind in (CounterKind.USER_ANYWHERE, CounterKind.KNOWN_BROWSER):
        return throttle.anywhere_wait(counter.failures, policy.password_lockout_threshold)
    if kind == CounterKind.USER_SHARED:
        return throttle.username_wait(counter.failures)
    return throttle.address_wait(counter.failures, (now - counter.first_failure_at).total_seconds())


def _counter(key: str, now: datetime) -> FailureCounter:
    """The counter row for ``key``, locked until the transaction ends (created if missing).

    Another request may create the row, or delete it (a sign-in that succeeded),
    between our read and our write: then read or create again.
    """
    for _ in range(3):
        counter = FailureCounter.objects.select_for_update().filter(key=key).first()
        if counter is not None:
            return counter
        try:
            with transaction.atomic():
                return FailureCounter.objects.create(
                    key=key, first_failure_at=now, last_failure_at=now
                )
        except IntegrityError:
            continue  # created by a concurrent attempt a moment ago: lock that one
    raise RuntimeError(f"failure counter {key} keeps changing under us")


def _reserve_attempt(
    username: str,
    origin: Origin,
    policy: Policy,
    step: Step,
    person: User | None = None,
    *,
    browser: str | None = None,
    purpose: Purpose = Purpose.SIGN_IN,
) -> dict[CounterKind, str]:
    """Count this attempt as a failure before it is checked, or refuse it.

    Counting first (in one transaction, the rows locked) means parallel
    requests cannot all slip in under the limit; a successful step gives its
    attempt back (``_release_attempt``).
    """
    keys = _keys(username, origin, step, browser=browser)
    now = clock.now_datetime()
    with transaction.atomic():
        counters = {kind: _counter(key, now) for kind, key in keys.items()}
        refused = any(c.locked_until and c.locked_until > now for c in counters.values()) or (
            # Shut for good, however long ago (``throttle.code_wait``).
            CounterKind.CODES in counters
            and counters[CounterKind.CODES].failures >= throttle.MOST_CODE_FAILURES
        )
        if not refused:
            for kind, counter in counters.items():
                if _forgotten(kind, counter, now):
                    counter.failures = 0
                if counter.failures == 0:
                    counter.first_failure_at = now
                counter.failures += 1
                counter.last_failure_at = now
                _set_lock(kind, counter, now, policy)
                counter.save()
        elif person is not None:
            # Only someone who gave the person's password reaches the code step: always
            # recorded, with the person as its subject (the shut code step's refusals too).
            record(
                purpose.failed,
                origin,
                subject=person,
                reason=errors.TooManyAttempts.code,
                method=FALLBACK,
                step=step,
            )
        else:
            # Names no one (the request may name anyone): at the capped rate per network.
            record_capped(
                purpose.failed,
                origin,
                reason=errors.TooManyAttempts.code,
                method=FALLBACK,
                step=step,
            )
    if refused:
        raise errors.TooManyAttempts()
    return keys


def _forgotten(kind: CounterKind, counter: FailureCounter, now: datetime) -> bool:
    """Whether ``counter``'s failures are old enough to start again from none. Never a
    username's wrong codes: "in a row" means with no right one between them, however long
    the pauses (else about 99 guesses every day or two, for ever)."""
    if not counter.failures or kind == CounterKind.CODES:
        return False
    if kind == CounterKind.NETWORK:
        return (now - counter.first_failure_at).total_seconds() > throttle.ADDRESS_WINDOW_SECONDS
    return (now - counter.last_failure_at).total_seconds() > throttle.FORGET_AFTER_SECONDS


def _set_lock(kind: CounterKind, counter: FailureCounter, now: datetime, policy: Policy) -> None:
    wait = _wait(kind, counter, now, policy)
    counter.locked_until = now + timedelta(seconds=wait) if wait else None


def _release_attempt(keys: dict[CounterKind, str], policy: Policy, *, signed_in: bool) -> None:
    """A step succeeded: give its attempt back; a full sign-in forgets the username's failures."""
    with transaction.atomic():
        for kind, key in keys.items():
            if signed_in and kind != CounterKind.NETWORK:
                FailureCounter.objects.filter(key=key).delete()
                continue
            counter = FailureCounter.objects.select_for_update().filter(key=key).first()
            if counter is not None and counter.failures:
                counter.failures -= 1
                # The attempt was let through, so nothing was locked before it counted: its
                # own lock goes with it (else a right password would leave the next step shut).
                counter.locked_until = None
                counter.save()


def do_check_password(
    username: str,
    password: str,
    origin: Origin,
    policy: Policy,
    *,
    browser: str | None = None,
    purpose: Purpose = Purpose.SIGN_IN,
) -> User:
    """The first step: the person whose password this is, or PasswordIncorrect.

    Unknown usernames, accounts without the fallback and wrong passwords fail
    alike, after the same Argon2 work, and count against the same throttles.
    ``browser``: this browser's own key, when it signed in as ``username`` with the
    fallback before (``fallback.known``, ``_keys``).
    """
    if not policy.allow_password_fallback:
        raise errors.FallbackNotAllowed()
    keys = _reserve_attempt(
        username, origin, policy, Step.PASSWORD, browser=browser, purpose=purpose
    )
    try:
        user, set_up = _look_up(username)
    except DatabaseError:
        # The database failed before the password was checked, not the person: the attempt
        # does not count, or a long outage would lock the right password out. Nothing was
        # learnt from it. (Once checked, it counts whatever fails after.)
        with contextlib.suppress(DatabaseError):  # still failing: it counts, as it would have
            _release_attempt(keys, policy, signed_in=False)
        raise
    return _check_password(
        user,
        set_up,
        password,
        username=username,
        origin=origin,
        policy=policy,
        keys=keys,
        purpose=purpose,
    )


# A username tried and found no one's is audited as given, at most this long (a username's).
_USERNAME_AUDITED = 150


def _look_up(username: str) -> tuple[User | None, bool]:
    """The person ``username`` names, if any, and whether they set the fallback up."""
    name = normalize_username(username)
    # Control characters and lone surrogates are in no username (and the database
    # drivers refuse them: PostgreSQL NUL, both of them surrogates).
    user = (
        None
        if has_ascii_control(name) or not is_text(name)
        else User.objects.filter(username=name).first()
    )
    return user, has_fallback(user)  # asked for an unknown username too: the same statements


def _check_password(
    user: User | None,
    set_up: bool,
    password: str,
    *,
    username: str,
    origin: Origin,
    policy: Policy,
    keys: dict[CounterKind, str],
    purpose: Purpose,
) -> User:
    usable = user is not None and user.has_usable_password() and set_up
    if usable and user is not None:
        correct = user.check_password(password)
    else:
        # The same hashing work as a real check (Django's ModelBackend does this too).
        make_password(password)
        correct = False
    if correct and user is not None:
        _release_attempt(keys, policy, signed_in=False)
        return user
    why = "wrong password" if usable else "unknown username or no fallback"
    if user is not None:
        # The person a wrong password was for is its subject, never its actor.
        record(
            purpose.failed,
            origin,
            subject=user,
            reason=errors.PasswordIncorrect.code,
            method=FALLBACK,
            why=why,
        )
    else:
        # A username no one has: at the capped rate per network (anyone can send those), with
        # the username tried, as typed (a spray against guessed or former accounts names them).
        record_capped(
            purpose.failed,
            origin,
            reason=errors.PasswordIncorrect.code,
            method=FALLBACK,
            why=why,
            username=as_given(username, _USERNAME_AUDITED),
        )
    raise errors.PasswordIncorrect()


def do_finish_fallback_sign_in(
    user: User,
    code: object,
    origin: Origin,
    policy: Policy,
    *,
    purpose: Purpose = Purpose.SIGN_IN,
) -> SignedInWith:
    """The second step: an authenticator-app or recovery code. Returns how the person signed in."""
    if not policy.allow_password_fallback:
        raise errors.FallbackNotAllowed()
    keys = _reserve_attempt(user.username, origin, policy, Step.CODE, person=user, purpose=purpose)
    wrong_code: errors.FallbackError | None = None
    refusal: errors.AccountError | errors.FallbackNotAllowed | None = None
    with transaction.atomic():
        try:
            with transaction.atomic():
                method = _use_code(user, totp.normalize_code(code))
                # Both factors are right: only now does the account's state show, nor
                # whether a group of theirs turns the password off. A refusal rolls the
                # code's use back: a locked or deactivated person's recovery code is not
                # burnt by a sign-in that could not happen.
                refusal = user.sign_in_refusal() or fallback_refusal(user, policy)
                if refusal is not None:
                    raise refusal
        except errors.FallbackNotAllowed:
            pass  # ``refusal``: a group's rule, not a wrong code
        except errors.FallbackError as error:
            record(
                purpose.failed,
                origin,
                subject=user,
                reason=error.code,
                method=FALLBACK,
                step=Step.CODE,
            )
            wrong_code = error
            if FailureCounter.objects.filter(
                key=_codes_key(user.username), failures=throttle.MOST_CODE_FAILURES
            ).exists():
                # This wrong code shut the code step (``throttle.code_wait``): whoever
                # sent it has the password.
                notify_codes_shut(user)
        except errors.AccountError:
            pass
    if wrong_code is not None:
        # Committed: the audit row stays, as the attempt counted against the throttles does.
        raise wrong_code
    if refusal is not None:
        _refuse(user, origin, refusal, purpose)
    _release_attempt(keys, policy, signed_in=True)
    # Signed in: the wrong passwords before were not in a row with the next ones.
    FailureCounter.objects.filter(key=_anywhere_key(user.username)).delete()
    record(
        purpose.succeeded,
        origin,
        actor=user,
        subject=user,
        method=method,
        phishing_resistant=False,
    )
    return method


def do_step_up_with_fallback(
    user: User, password: str, code: object, origin: Origin, policy: Policy, *, browser: str
) -> SignedInWith:
    """ "Verify it's you" with the password and an authenticator-app or recovery code, for a
    signed-in person without a passkey at hand (or with none yet): both steps of the
    fallback sign-in at once, with their throttles, audited as a step-up. ``browser``:
    the signed-in session's own key, whose wrong passwords count against a counter of
    their own, not strangers' (``_keys``). It counts as that sign-in does
    (``sessions.stepup``): enough to add a passkey, never to remove a method or for the
    admin portal."""
    do_check_password(
        user.username, password, origin, policy, browser=browser, purpose=Purpose.STEP_UP
    )
    return do_finish_fallback_sign_in(user, code, origin, policy, purpose=Purpose.STEP_UP)


def _refuse(
    user: User,
    origin: Origin,
    error: errors.AccountError | errors.FallbackNotAllowed,
    purpose: Purpose,
) -> None:
    detail = {"detail": error.detail} if error.detail else {}
    record(purpose.failed, origin, subject=user, reason=error.code, method=FALLBACK, **detail)
    raise error


def _use_code(user: User, typed: str) -> SignedInWith:
    """Use up ``typed``; how the person signed in, or SecondFactorIncorrect/SecondFactorReused.

    Writes nothing unless the code is right."""
    now = clock.now()
    if totp.is_app_code(typed):
        device = TotpDevice.objects.filter(user=user).first()
        step = totp.matching_step(device.secret, typed, now) if device else None
        if device is None or step is None:
            raise errors.SecondFactorIncorrect()
        # Conditional: of two requests with the same code, one wins (RFC 6238 §5.2).
        used = (
            TotpDevice.objects.filter(pk=device.pk)
            .filter(Q(last_used_step__isnull=True) | Q(last_used_step__lt=step))
            .update(last_used_step=step)
        )
        if not used:
            raise errors.SecondFactorReused()
        return SignedInWith.PASSWORD_AND_APP
    if totp.is_recovery_code(typed):
        code_hash = totp.recovery_code_hash(typed)
        used = RecoveryCode.objects.filter(user=user, code_hash=code_hash, used_at=None).update(
            used_at=clock.now_datetime()
        )
        if used:
            return SignedInWith.PASSWORD_AND_RECOVERY_CODE
        if RecoveryCode.objects.filter(user=user, code_hash=code_hash).exists():
            raise errors.SecondFactorReused()
    raise errors.SecondFactorIncorrect()


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
