"""Passkey ceremonies as audited state changes.

``do_begin_*`` hands the challenge to the browser in a signed token and stores
nothing (``threshold.passkeys.pending``); ``do_finish_*`` uses the token up and
runs the core's verification inside one transaction, writing the audit row in
the same transaction whether the ceremony succeeds or fails. A failure is raised
once that transaction has committed, so the used challenge and the failure's
audit row stay while nothing else is stored.

``do_finish_*`` take the browser's ``credential.toJSON()`` as the view decoded it
(``threshold.passkeys.http.read_credential``), never a request body; a body the
view could not decode arrives as ``Unreadable`` and fails like any bad response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from threshold import clock
from threshold.accounts.actions import lock_user
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import User, normalize_username
from threshold.audit import capped
from threshold.audit.actions import Action, Origin, record
from threshold.core import assurance, ceremony, errors
from threshold.core.names import NICKNAME_MAX_LENGTH, clean_name
from threshold.core.policy import Policy, evaluate
from threshold.core.vocabulary import AttestationConveyance, ResidentKey, UserVerification
from threshold.groups.access import rules_of
from threshold.passkeys import hotpath
from threshold.passkeys.access import access_own_passkey
from threshold.passkeys.decoys import decoy_for, verify_as_decoy
from threshold.passkeys.models import Passkey
from threshold.passkeys.notices import notify_method_added, notify_method_removed
from threshold.passkeys.pending import (
    Ceremonies,
    CeremonyKind,
    Purpose,
    TakenCeremony,
    open_pending,
    save_pending,
    take_pending,
)
from threshold.policy.access import get_policy
from threshold.policy.actions import lock_policy
from threshold.sessions.models import Session


def relying_party() -> ceremony.RelyingParty:
    return settings.THRESHOLD.rp


def _descriptors(
    user: User, passkeys: QuerySet[Passkey] | None = None
) -> list[ceremony.CredentialDescriptor]:
    chosen = user.passkeys.all() if passkeys is None else passkeys.filter(user=user)
    return [
        ceremony.CredentialDescriptor(bytes(credential_id), tuple(transports))
        for credential_id, transports in chosen.values_list("credential_id", "transports")
    ]


@dataclass(frozen=True)
class Unreadable:
    """In place of the browser's response: the view could not decode the request body.

    The ceremony is still used up and the failure audited, as for a response that
    decoded but does not verify: one attempt per challenge, whatever was sent.
    """

    error: errors.ThresholdError


def _readable(credential: object) -> object:
    if isinstance(credential, Unreadable):
        raise credential.error
    return credential


def passkey_assurance(passkey: Passkey, *, user_verified: bool) -> assurance.Assurance:
    """What a sign-in with ``passkey`` proves: hardware-bound when it cannot be
    copied off its authenticator (not backup-eligible) and its attestation is trusted."""
    return assurance.for_passkey(
        hardware_bound=not passkey.backup_eligible and passkey.attestation_trusted,
        user_verified=user_verified,
    )


def credential_label(credential_id: bytes) -> str:
    """A short, non-reversible tag for logs: never the whole credential ID."""
    return hashlib.sha256(credential_id).hexdigest()[:16]


# --- Sign-in ----------------------------------------------------------------------------------


def do_begin_sign_in(
    ceremonies: Ceremonies,
    *,
    username: str | None = None,
    user_verification: str | None = None,
    policy: Policy | None = None,
    reveal_unknown_users: bool = False,
    kind: CeremonyKind = CeremonyKind.AUTHENTICATION,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Options for a sign-in: discoverable without a username, else allowCredentials.

    A username without passkeys gets a decoy (``threshold.passkeys.decoys``), so
    the answer does not tell which accounts exist. ``reveal_unknown_users`` is for
    the conformance API only, whose test tool expects an unknown username to fail.
    ``kind`` and ``context``: a first-party app's sign-in (``CeremonyKind.APP_SIGN_IN``), whose
    token also carries the app's authorization request.
    """
    policy = policy or get_policy()
    allow: list[ceremony.CredentialDescriptor] | None = None
    user_handle = None
    if username is not None:
        name = normalize_username(username)
        # The same work whether or not the username has passkeys, so that the time
        # taken does not tell: one query of one shape, and the decoy computed either way.
        rows = list(
            Passkey.objects.filter(user__username=name, user__is_active=True)
            .order_by("created_at", "id")
            .values_list("credential_id", "transports", "user__user_handle")
        )
        decoy = decoy_for(name, policy.passkey_limit)
        if not rows and reveal_unknown_users:
            raise errors.CredentialUnknown("no passkeys for this username")
        if not rows:
            # The decoy goes through what a real row goes through (the transports
            # column's JSON decoding, the same conversions), so that building the
            # answer takes as long either way.
            rows = [
                (c.credential_id, json.loads(json.dumps(list(c.transports))), decoy.user_handle)
                for c in decoy.credentials
            ]
        allow = [ceremony.CredentialDescriptor(bytes(c), tuple(t)) for c, t, _ in rows]
        user_handle = bytes(rows[0][2])
    options, state = ceremony.begin_authentication(
        relying_party(),
        now=clock.now(),
        timeout_seconds=policy.ceremony_timeout_seconds,
        allow_credentials=allow,
        user_handle=user_handle,
        user_verification=user_verification or policy.user_verification,
    )
    save_pending(ceremonies, kind, state, context)
    return options


def do_begin_step_up(
    ceremonies: Ceremonies,
    user: User,
    *,
    policy: Policy | None = None,
    passkeys: QuerySet[Passkey] | None = None,
) -> dict[str, Any]:
    """Options to re-verify a signed-in person with one of their own passkeys, always with UV.

    ``passkeys``: only these of theirs (those that meet what an app asked for); the
    ceremony accepts exactly the passkeys it offers (§7.2 step 5). None to offer (no
    passkey yet, or none that would do) is CredentialUnknown: an empty list would ask the
    browser for anyone's passkey.

    A separate ceremony kind: a step-up challenge cannot finish a sign-in, nor
    the other way round.
    """
    policy = policy or get_policy()
    offered = _descriptors(user, passkeys)
    if not offered:
        raise errors.CredentialUnknown("no passkey of theirs to offer for the step-up")
    options, state = ceremony.begin_authentication(
        relying_party(),
        now=clock.now(),
        timeout_seconds=policy.ceremony_timeout_seconds,
        allow_credentials=offered,
        user_handle=bytes(user.user_handle),
        user_verification=UserVerification.REQUIRED,
    )
    save_pending(ceremonies, CeremonyKind.STEP_UP, state, {"user_id": user.pk})
    return options


@dataclass(frozen=True)
class SignedIn:
    """A verified sign-in or step-up: who, whether the authenticator verified them, and
    the ``amr``/``acr`` it earned."""

    user: User
    user_verified: bool
    assurance: assurance.Assurance
    # The session written with the sign-in (``do_finish_sign_in``'s ``session_for``).
    session: Session | None = None
    # The passkey that signed in, which the session records (``SIGN_IN_CREDENTIAL``).
    passkey_id: int | None = None


def _refused_today(
    in_force: Policy,
    passkey: Passkey,
    found: hotpath.Found,
    verified: ceremony.VerifiedAuthentication,
) -> errors.ThresholdError | None:
    """Why the policy in force refuses a verified sign-in with ``passkey`` (None: it does not):
    its rules and the person's groups', and user verification if it is required now and was
    not when the ceremony began (its options said "preferred")."""
    not_allowed = evaluate(in_force, passkey.policy_facts, found.group_rules).error()
    if (
        not_allowed is None
        and in_force.user_verification == UserVerification.REQUIRED
        and not verified.user_verified
    ):
        return errors.UserNotVerified("the policy in force requires it")
    return not_allowed


def do_finish_sign_in(
    ceremonies: Ceremonies,
    credential: object,
    origin: Origin,
    *,
    step_up_user: User | None = None,
    policy: Policy | None = None,
    session_for: Callable[[SignedIn], Session] | None = None,
    kind: CeremonyKind = CeremonyKind.AUTHENTICATION,
) -> SignedIn:
    """Verify a sign-in (§7.2), or with ``step_up_user`` a re-verification of that person.

    ``credential``: the browser's ``credential.toJSON()``, decoded, or ``Unreadable``.
    ``policy`` (by default the one in force, read in the ceremony's transaction) must
    still allow the passkey. ``session_for`` gives the signed-in session to write with the
    sign-in, in the same transaction (the lean sign-in path's; ``SignedIn.session``); a
    ``ThresholdError`` it raises refuses the sign-in as any failed check does (a first-party
    app's: the person is not assigned the app). ``kind``: the sign-in's ceremony kind
    (``CeremonyKind.APP_SIGN_IN`` for a first-party app's).

    One transaction of at most four statements (``threshold.passkeys.hotpath``): use
    the challenge up and find the passkey, then move its counter on, write the audit row
    and the session (``record_sign_in``: on PostgreSQL, one statement).

    A failure raises its ``ThresholdError`` once the used challenge and the
    failure's audit row have committed. Its ``signal_unknown`` says whether the page may
    ask the browser to hide the credential (``_signals_unknown``).
    """
    kind, succeeded, failed = (
        (CeremonyKind.STEP_UP, Action.STEP_UP_SUCCEEDED, Action.STEP_UP_FAILED)
        if step_up_user is not None
        else (kind, Action.SIGN_IN_SUCCEEDED, Action.SIGN_IN_FAILED)
    )
    refusal: errors.ThresholdError
    with transaction.atomic():
        passkey: Passkey | None = None
        response: ceremony.AuthenticationResponse | None = None
        discoverable = signature_verified = False
        try:
            pending = open_pending(ceremonies, kind)
            discoverable = pending.is_discoverable
            response, found = _use_and_find(pending, credential)
            passkey = found.passkey
            if passkey is None:
                verify_as_decoy(
                    relying_party(),
                    pending.authentication_state(response.credential_id, b""),
                    response,
                    clock.now(),
                )
                raise errors.CredentialUnknown()
            stored = ceremony.StoredCredential(
                credential_id=bytes(passkey.credential_id),
                public_key=bytes(passkey.public_key),
                sign_count=passkey.sign_count,
                backup_eligible=passkey.backup_eligible,
                user_handle=bytes(passkey.user.user_handle),
            )
            verified = ceremony.finish_authentication(
                relying_party(),
                pending.authentication_state(response.credential_id, stored.user_handle),
                response,
                stored,
                now=clock.now(),
            )
            signature_verified = True
            # Account checks only now that the signature verified: before, the
            # response could claim anyone's credential.
            account_refusal = passkey.user.sign_in_refusal()
            if account_refusal is not None:
                raise account_refusal
            if step_up_user is not None and (
                passkey.user_id != step_up_user.pk
                or pending.context.get("user_id") != passkey.user_id
            ):
                # The offered allowCredentials already exclude other people's
                # passkeys; this keeps the rule if that ever changes.
                raise errors.CredentialNotAllowed("another person's passkey")
            # Today's rules, not those it was registered under. The signature
            # was right, so the counter moves on (§7.2 step 22); the sign-in does not.
            not_allowed = _refused_today(policy or found.policy, passkey, found, verified)
            if not_allowed is not None:
                hotpath.update_passkey(
                    passkey, sign_count=verified.sign_count, backup_state=verified.backup_state
                )
                raise not_allowed
            signed_in = SignedIn(
                passkey.user,
                verified.user_verified,
                passkey_assurance(passkey, user_verified=verified.user_verified),
                passkey_id=passkey.pk,
            )
            session = session_for(signed_in) if session_for is not None else None
            now = clock.now_datetime()
            if not hotpath.record_sign_in(
                passkey,
                sign_count=verified.sign_count,
                backup_state=verified.backup_state,
                last_used_at=now,
                last_used_user_agent=origin.user_agent[:512],
                audit=hotpath.AuditRow(
                    now,
                    succeeded,
                    origin,
                    actor=passkey.user,
                    subject=passkey.user,
                    detail={"passkey_id": passkey.pk, "user_verified": verified.user_verified},
                ),
                session=session,
            ):
                # Nothing was written: the passkey was removed since it was read, or another
                # sign-in with it moved its counter to or past this one's (PostgreSQL;
                # SQLite's transactions take turns). Only the second is a clone's sign.
                if not Passkey.objects.filter(pk=passkey.pk).exists():
                    raise errors.CredentialUnknown("removed while signing in")
                raise errors.SignCountRegressed(f"received {verified.sign_count}, moved meanwhile")
        except errors.SignCountRegressed as error:
            assert passkey is not None  # noqa: S101 - only raised after the lookup
            hotpath.flag_possibly_cloned(passkey)
            hotpath.insert_audit(
                [
                    hotpath.AuditRow(
                        clock.now_datetime(),
                        Action.PASSKEY_FLAGGED_CLONED,
                        origin,
                        subject=passkey.user,
                        reason=error.code,
                        detail={"passkey_id": passkey.pk, "detail": error.detail},
                    ),
                    _sign_in_failure(failed, error, origin, passkey, signed=True),
                ]
            )
            refusal = error
        except errors.ThresholdError as error:
            signed = signature_verified or (
                isinstance(error, errors.CeremonyError) and error.signed
            )
            if discoverable and response is not None:
                error.signal_unknown = _signals_unknown(response, passkey)
            _audit_failure(
                _sign_in_failure(failed, error, origin, passkey, signed=signed), step_up_user
            )
            refusal = error
        else:
            return replace(signed_in, session=session)
    # Committed: the used challenge and the failure's audit row stay.
    raise refusal


def _use_and_find(
    pending: TakenCeremony, credential: object
) -> tuple[ceremony.AuthenticationResponse, hotpath.Found]:
    """Use the ceremony's challenge up, whatever was sent (one attempt per challenge), and
    find the passkey the response names (None: no such passkey), with the policy in force
    and its person's groups' rules: one statement."""
    response: ceremony.AuthenticationResponse | None = None
    unreadable: errors.ThresholdError | None = None
    try:
        response = ceremony.parse_authentication_response(_readable(credential))
    except errors.ThresholdError as error:
        unreadable = error
    found = hotpath.use_challenge_and_find(
        pending.challenge_hash,
        pending.expires_at,
        response.credential_id if response is not None else None,
    )
    if not found.unused:
        raise errors.ChallengeMissing("used before")
    if unreadable is not None or response is None:
        raise unreadable or errors.MalformedRequest()
    return response, found


def _audit_failure(row: hotpath.AuditRow, step_up_user: User | None) -> None:
    """Write a refused sign-in's or step-up's audit row. A step-up has its signed-in person
    behind it, whatever the response claims: always recorded, with them as its actor (a stolen
    session's attempts too). A sign-in failure that names no one (no signature verified) can be
    sent by anyone, as often as they like: its rows at the capped rate per network."""
    if step_up_user is not None:
        row = replace(row, actor=step_up_user)
    anonymous = row.subject is None and row.actor is None
    extra = capped.admit(Action(row.action), row.origin) if anonymous else {}
    if extra is not None:
        hotpath.insert_audit([replace(row, detail={**(row.detail or {}), **extra})])


def _signals_unknown(response: ceremony.AuthenticationResponse, passkey: Passkey | None) -> bool:
    """Whether a refused discoverable sign-in may ask the browser to hide the credential it
    chose (signalUnknownCredential): the response's user handle names an account here (the
    passkey was made for it), and the credential is not one of that account's passkeys
    (removed, or never its).

    Decided the same way for a credential ID no passkey has and for another person's, so the
    answer says nothing about who has passkeys: a username-first decoy's ID and a real
    person's, sent by someone who holds neither, get the same answer. It tells only whether
    a user handle is an account's, and user handles are random (``new_user_handle``)."""
    handle = response.user_handle
    if handle is None:
        return False
    if passkey is not None and hmac.compare_digest(bytes(passkey.user.user_handle), handle):
        return False
    return User.objects.filter(user_handle=handle).exists()


def _sign_in_failure(
    action: Action,
    error: errors.ThresholdError,
    origin: Origin,
    passkey: Passkey | None,
    *,
    signed: bool,
) -> hotpath.AuditRow:
    # The subject is named only once the signature verified (``signed``): before that, the
    # response could claim any credential.
    return hotpath.AuditRow(
        clock.now_datetime(),
        action,
        origin,
        subject=passkey.user if signed and passkey else None,
        reason=error.code,
        detail={"passkey_id": passkey.pk if passkey else None, "detail": error.detail[:200]},
    )


# --- Registration -----------------------------------------------------------------------------


def do_begin_registration(
    ceremonies: Ceremonies,
    user: User,
    *,
    purpose: Purpose,
    context: dict[str, Any] | None = None,
    policy: Policy | None = None,
    user_verification: str | None = None,
    resident_key: str = ResidentKey.REQUIRED,
    attestation: str = AttestationConveyance.DIRECT,
    authenticator_attachment: str | None = None,
    hints: tuple[str, ...] = (),
    extensions: dict[str, Any] | None = None,
    beyond_limit: bool = False,
) -> dict[str, Any]:
    """Creation options for a new passkey of ``user``; refused at the passkey limit.

    ``beyond_limit`` allows one more than the limit (a recovery).
    """
    policy = policy or get_policy()
    existing = _descriptors(user)
    counted = _counted_passkeys(user, policy)
    limit = max(policy.passkey_limit, counted + 1) if beyond_limit else policy.passkey_limit
    if counted >= limit:
        raise errors.PasskeyLimitReached(f"{counted} of {limit}")
    options, state = ceremony.begin_registration(
        relying_party(),
        user_handle=bytes(user.user_handle),
        user_name=user.username,
        user_display_name=user.display_name,
        now=clock.now(),
        timeout_seconds=policy.ceremony_timeout_seconds,
        exclude_credentials=existing,
        user_verification=user_verification or policy.user_verification,
        resident_key=resident_key,
        attestation=attestation,
        authenticator_attachment=authenticator_attachment,
        hints=hints,
        algorithms=policy.allowed_algorithms,
        extensions=extensions,
    )
    save_pending(
        ceremonies,
        CeremonyKind.REGISTRATION,
        state,
        {
            "purpose": purpose,
            "user_id": user.pk,
            # Whether one beyond the limit is allowed; the limit itself is the policy's in
            # force when the passkey is saved (``_store_passkey``).
            "beyond_limit": beyond_limit,
            **(context or {}),
        },
    )
    return options


def do_finish_registration(
    ceremonies: Ceremonies,
    credential: object,
    origin: Origin,
    *,
    purpose: Purpose,
    before_save: Callable[[User, dict[str, Any]], None] | None = None,
    policy: Policy | None = None,
    notify: bool = True,
    refuse_failed_attestation: bool = False,
) -> Passkey:
    """Verify a registration and store the passkey (§7.1 steps 5-27).

    ``credential``: the browser's ``credential.toJSON()``, decoded, or ``Unreadable``.

    The organisation policy in force when the passkey is saved decides which
    authenticators are allowed (``policy`` overrides it, for the conformance API): its
    row is held from then on (``lock_policy``), so a policy or group change made
    meanwhile is waited for and applied, or waits and counts this passkey (a recovery
    removes the password and app in the same transaction).

    ``before_save`` runs in the same transaction once the response verified,
    for the purpose's own checks and changes (an enrollment uses up its invite);
    it raises a ThresholdError to refuse.

    ``notify`` emails the person that a method was added (once committed).

    ``refuse_failed_attestation``: refuse an attestation whose certificate chain failed
    validation (§7.1 step 27's SHOULD; the FIDO conformance tools expect it). Otherwise such
    a passkey is stored as untrusted, as one without attestation is, and
    ``require_trusted_attestation`` decides.

    A failure raises its ``ThresholdError`` once the used challenge and the
    failure's audit row have committed; nothing else is stored.
    """
    refusal: errors.ThresholdError
    with transaction.atomic():
        user: User | None = None
        try:
            pending = take_pending(ceremonies, CeremonyKind.REGISTRATION)
            context = pending.context
            if context.get("purpose") != purpose:
                raise errors.ChallengeMissing(f"pending ceremony is for {context.get('purpose')}")
            user = User.objects.filter(pk=context["user_id"]).first()
            if user is None:
                raise errors.ChallengeMissing("the person the ceremony was begun for is gone")
            response = ceremony.parse_registration_response(_readable(credential))
            verified = ceremony.finish_registration(
                relying_party(),
                ceremony.RegistrationState.from_json(pending.state),
                response,
                now=clock.now(),
                trust_anchors=settings.THRESHOLD.trust_anchors,
            )
            in_force = policy or lock_policy()
            if (
                in_force.user_verification == UserVerification.REQUIRED
                and not verified.user_verified
            ):
                # Required since the ceremony began under "preferred" (its options said so).
                raise errors.UserNotVerified("the policy in force requires it")
            in_force.check_registration(verified, rules_of(user))
            if refuse_failed_attestation and verified.attestation_path_failed:
                raise errors.AttestationUntrusted(verified.untrusted_reason[:200])
            # A savepoint: whatever the purpose's checks changed is undone
            # when a later step refuses, so a failed ceremony stores nothing.
            with transaction.atomic():
                passkey = _store_passkey(
                    user,
                    verified,
                    before_save,
                    context,
                    origin,
                    policy=in_force,
                )
        except errors.ThresholdError as error:
            record(
                Action.PASSKEY_REGISTRATION_FAILED,
                origin,
                subject=user,
                reason=error.code,
                purpose=purpose,
                detail=error.detail[:200],
            )
            refusal = error
        else:
            record(
                Action.PASSKEY_REGISTERED,
                origin,
                actor=user,
                subject=user,
                purpose=purpose,
                passkey_id=passkey.pk,
                aaguid=str(passkey.aaguid),
                authenticator=passkey.authenticator_name,
                attestation_format=passkey.attestation_format,
                attestation_trusted=passkey.attestation_trusted,
                trust_anchor=passkey.trust_anchor,
                backup_eligible=passkey.backup_eligible,
            )
            if notify:
                notify_method_added(passkey, origin)
            return passkey
    # Committed: the used challenge and the failure's audit row stay.
    raise refusal


def _counted_passkeys(user: User, policy: Policy) -> int:
    """How many of ``user``'s passkeys count toward the passkey limit: those ``policy`` (with
    their groups' rules) lets sign in. One it refuses is dead weight the person may replace
    without removing it first, which would need a passkey step-up they can no longer give."""
    groups = rules_of(user)
    return sum(
        1
        for passkey in user.passkeys.all()
        if evaluate(policy, passkey.policy_facts, groups).error() is None
    )


def _store_passkey(
    user: User,
    verified: ceremony.VerifiedRegistration,
    before_save: Callable[[User, dict[str, Any]], None] | None,
    context: dict[str, Any],
    origin: Origin,
    *,
    policy: Policy,
) -> Passkey:
    # §7.1 step 26: a credential ID may be registered once, across all accounts.
    if Passkey.objects.filter(credential_id=verified.credential_id).exists():
        raise errors.CredentialAlreadyRegistered()
    # Concurrent registrations of one person take turns from here, so the count
    # below stays true until this transaction ends (PostgreSQL: the row lock;
    # SQLite: transactions begin IMMEDIATE and hold the write lock already).
    lock_user(user)
    count = _counted_passkeys(user, policy)
    limit = (
        max(policy.passkey_limit, count + 1)
        if context.get("beyond_limit")
        else policy.passkey_limit
    )
    if count >= limit:
        raise errors.PasskeyLimitReached(f"limit {limit}")
    if before_save is not None:
        before_save(user, context)
    try:
        # A savepoint: a concurrent registration of the same ID fails the
        # unique index without spoiling the outer transaction.
        with transaction.atomic():
            return Passkey.objects.create(
                user=user,
                credential_id=verified.credential_id,
                public_key=verified.public_key,
                alg=verified.alg,
                sign_count=verified.sign_count,
                aaguid=uuid.UUID(bytes=verified.aaguid),
                transports=list(verified.transports),
                backup_eligible=verified.backup_eligible,
                backup_state=verified.backup_state,
                uv_initialized=verified.user_verified,
                attestation_format=verified.attestation_format,
                attestation_type=verified.attestation_type,
                attestation_trusted=verified.attestation_trusted,
                trust_anchor=verified.trust_anchor[:200],
                authenticator_name=verified.authenticator.name[:200],
                authenticator_attachment=verified.authenticator.attachment,
                is_security_key=verified.authenticator.is_security_key,
                is_discoverable=verified.is_discoverable,
                created_at=clock.now_datetime(),
                created_user_agent=origin.user_agent[:512],
            )
    except IntegrityError as exc:
        raise errors.CredentialAlreadyRegistered("lost a race on the unique index") from exc


# --- Managing one's own passkeys ----------------------------------------------------------------


@transaction.atomic
def do_rename_passkey(user: User, passkey_id: int, nickname: object, origin: Origin) -> Passkey:
    # Taking turns with a removal: the row read here is still there when saved.
    lock_user(user)
    passkey = access_own_passkey(user, passkey_id)
    name = clean_name(nickname, NICKNAME_MAX_LENGTH)
    old = passkey.name
    passkey.nickname = name
    passkey.save(update_fields=["nickname"])
    record(
        Action.PASSKEY_RENAMED,
        origin,
        actor=user,
        subject=user,
        passkey_id=passkey.pk,
        old=old,
        new=name,
    )
    return passkey


def do_remove_passkey(
    user: User, passkey_id: int, origin: Origin, *, actor: User | None = None
) -> Passkey:
    """Remove one of ``user``'s passkeys, never their last usable way to sign in.

    The caller has checked that the person re-verified recently (step-up). The
    policy in force when it is removed says which ways are usable: its row is held
    first (``lock_policy``, as every change that checks for lockouts takes it), so a
    change of the policy, of a group's rules or of a membership made meanwhile is
    waited for and counted, or waits and counts this removal.

    ``actor``: someone else removing it from the admin portal (a lost or
    stolen passkey). The last-method rule is then not applied: the person
    gets a recovery link, which needs no other method.
    """
    actor = actor or user
    by_someone_else = actor.pk != user.pk
    with transaction.atomic():
        policy = lock_policy()
        # Two removals of the last two passkeys must not both succeed.
        lock_user(user)
        passkey = access_own_passkey(user, passkey_id)
        if by_someone_else or not is_last_usable_passkey(user, passkey, policy):
            removed_id = passkey.pk
            passkey.delete()
            # Someone else's change names what it changed, before and after.
            change: dict[str, Any] = (
                {"before": {"passkey": passkey.name, "aaguid": str(passkey.aaguid)}, "after": None}
                if by_someone_else
                else {}
            )
            record(
                Action.PASSKEY_REMOVED,
                origin,
                actor=actor,
                subject=user,
                passkey_id=removed_id,
                name=passkey.name,
                aaguid=str(passkey.aaguid),
                **change,
            )
            notify_method_removed(passkey, origin, staff=actor)
            return passkey
        record(
            Action.PASSKEY_REMOVAL_REFUSED,
            origin,
            actor=user,
            subject=user,
            reason=errors.LastSignInMethod.code,
            passkey_id=passkey.pk,
        )
    raise errors.LastSignInMethod()


def is_last_usable_passkey(user: User, passkey: Passkey, policy: Policy) -> bool:
    """Would removing ``user``'s ``passkey`` leave them no way to sign in that ``policy`` allows?

    One the policy refuses can always go: it cannot sign in, so removing it
    changes nothing. It does not count for the others either: a person whose
    other passkeys are all refused keeps this one.
    """
    return (
        evaluate(policy, passkey.policy_facts, rules_of(user)).allowed
        and count_usable_sign_in_methods(user, policy) <= 1
    )
