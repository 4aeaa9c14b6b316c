"""One error hierarchy, with stable reason codes and a category for what a person reads.

Every failure Threshold reports is a ``ThresholdError``: a class per reason, in a
family per concern (a WebAuthn check, the request's shape, the account, an
enrollment link, Settings, the password fallback, the organisation's policy).
``code`` is stable: it goes to the audit log and to the conformance API, so it
never changes once released. ``category`` chooses what a person is shown: the
error catalog (``threshold.core.catalog``) maps each ``Category`` to one HTTP
status and its entry, and most failures share one generic category so that a
response never tells an attacker which check failed.

fido2 reports every failure as a bare ``ValueError``; the core turns each failed
check into one of the ``CeremonyError`` classes.

Actions raise these errors (``docs/architecture.md``, "Failures"); views catch
``ThresholdError`` and answer with the catalog's words.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """What a failure reads as from the outside: one catalog entry per surface, one HTTP status.

    The values are the strings the catalog has always used; ``catalog.PRESENTATIONS``
    has exactly one row for each.
    """

    FAILED = "failed"  # the generic failure: which check failed is for the audit log only
    SESSION = "session"  # the ceremony or page is over, unknown or from another session
    NOT_VERIFIED = "not_verified"
    UNSUPPORTED = "unsupported"
    UNAVAILABLE = "unavailable"
    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    ALREADY_REGISTERED = "already_registered"
    LIMIT_REACHED = "limit_reached"
    INVITE_UNUSABLE = "invite_unusable"
    AUTHENTICATOR_REFUSED = "authenticator_refused"
    SYNCED_BLOCKED = "synced_blocked"
    # Changes to one's own sign-in methods (Settings).
    STEP_UP = "step_up"
    NOT_FOUND = "not_found"
    LAST_METHOD = "last_method"
    NAME_INVALID = "name_invalid"
    # The password fallback and the account's state.
    FALLBACK_OFF = "fallback_off"
    FALLBACK_INVALID = "fallback_invalid"
    CODE_INVALID = "code_invalid"
    THROTTLED = "throttled"
    LOCKED = "locked"
    # Too many requests from one network, whoever they are for (no account involved).
    BUSY = "busy"
    # The device app (Threshold Verify): its signed requests, set-up codes and push sign-ins.
    DEVICE_UNAUTHORIZED = "device_unauthorized"
    DEVICE_CLOCK = "device_clock"
    SETUP_CODE_INVALID = "setup_code_invalid"
    RETURNED_CODE_INVALID = "returned_code_invalid"
    DEVICE_LIMIT = "device_limit"
    DEVICE_KEY_REFUSED = "device_key_refused"
    DEVICE_APP_OFF = "device_app_off"
    PUSH_PENDING = "push_pending"
    PUSH_REFUSED = "push_refused"


class ThresholdError(Exception):
    """Something Threshold refused. Subclasses name the precise reason."""

    code = "threshold_error"
    category = Category.FAILED
    # A refused sign-in's answer asks the browser to hide the credential it chose (the
    # Signal API's signalUnknownCredential): set by ``passkeys.actions.do_finish_sign_in``,
    # only where saying so tells nothing about who has an account.
    signal_unknown = False

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__doc__ or self.code)
        self.detail = detail


# --- The families: one per concern; code catches a family, or ThresholdError for all ----------


class CeremonyError(ThresholdError):
    """A WebAuthn ceremony failed. Subclasses name the precise reason."""

    code = "ceremony_failed"
    # Raised about a response whose signature verified (``ceremony.finish_authentication``):
    # the credential's own, so its owner may be named. Before that, it could claim anyone's.
    signed = False


class InputError(ThresholdError):
    """The request is not what the endpoint takes: malformed, too large, a name not allowed,
    or one too many from its network."""

    code = "input_invalid"
    category = Category.BAD_REQUEST


class AccountError(ThresholdError):
    """The account may not sign in: deactivated or locked."""

    code = "account_refused"


class AppSignInError(ThresholdError):
    """A first-party app's sign-in (the Authorization Challenge Endpoint) verified the person,
    who may not use the app this way: refused before their session is written."""

    code = "app_sign_in_refused"


class AppNotAssigned(AppSignInError):
    """The person is not assigned the app (everyone, or one of its groups)."""

    code = "not_assigned"


class AcrUnmet(AppSignInError):
    """The passkey's sign-in does not meet the acr_values the app asked for."""

    code = "unmet_authentication_requirements"


class EnrollmentError(ThresholdError):
    """An enrollment or recovery link cannot be used for this person."""

    code = "enrollment_refused"
    category = Category.INVITE_UNUSABLE


class SettingsError(ThresholdError):
    """A change to one's own sign-in methods is refused."""

    code = "settings_refused"


class FallbackError(ThresholdError):
    """Signing in with a password and a code failed."""

    code = "fallback_failed"


class PolicyError(ThresholdError):
    """The organisation's rules on passkeys refuse this one, at registration or at sign-in."""

    code = "policy_refused"
    category = Category.AUTHENTICATOR_REFUSED


# --- The request's shape --------------------------------------------------------------------------


class MalformedRequest(InputError):
    """The request body is not the JSON object this endpoint expects."""

    code = "malformed_request"


class RequestTooLarge(MalformedRequest):
    """The request body is over the size cap."""

    code = "request_too_large"
    category = Category.TOO_LARGE


class NameInvalid(InputError):
    """A nickname or display name is empty, too long, or has markup or control characters."""

    code = "name_invalid"
    category = Category.NAME_INVALID


# --- WebAuthn: the response's shape ------------------------------------------------------------


class MalformedResponse(CeremonyError):
    """The credential is not a well-formed PublicKeyCredential JSON object."""

    code = "malformed_response"


class CredentialTypeInvalid(CeremonyError):
    """The credential's type is not "public-key"."""

    code = "credential_type_invalid"


class CredentialIdMismatch(CeremonyError):
    """id, rawId and the credential ID in the authenticator data disagree."""

    code = "credential_id_mismatch"


# --- Challenge and ceremony state (§7.1 step 8, §7.2 step 11) -----------------


class ChallengeMissing(CeremonyError):
    """No ceremony of this kind is pending in this session (never begun, or already used)."""

    code = "challenge_missing"
    category = Category.SESSION


class ChallengeExpired(CeremonyError):
    """The ceremony timed out before the response arrived."""

    code = "challenge_expired"
    category = Category.SESSION


class ChallengeMismatch(CeremonyError):
    """clientDataJSON.challenge is not the challenge this session was given."""

    code = "challenge_mismatch"


class FlowExpired(CeremonyError):
    """The sign-in or enrollment page was left idle longer than the policy allows."""

    code = "flow_expired"
    category = Category.SESSION


# --- Client data (§7.1 steps 5-11, §7.2 steps 9-14) ---------------------------


class ClientDataTypeMismatch(CeremonyError):
    """clientDataJSON.type is not the one this ceremony expects."""

    code = "client_data_type_mismatch"


class OriginNotAllowed(CeremonyError):
    """clientDataJSON.origin is not in the configured allow-list."""

    code = "origin_not_allowed"


class CrossOriginNotAllowed(CeremonyError):
    """The ceremony ran in a cross-origin iframe, which is not configured."""

    code = "cross_origin_not_allowed"


class TopOriginNotAllowed(CeremonyError):
    """clientDataJSON.topOrigin is not an allowed top-level origin."""

    code = "top_origin_not_allowed"


# --- Authenticator data (§7.1 steps 14-20, §7.2 steps 15-18) ------------------


class RpIdHashMismatch(CeremonyError):
    """authenticatorData.rpIdHash is not SHA-256 of the configured RP ID."""

    code = "rp_id_hash_mismatch"


class UserNotPresent(CeremonyError):
    """The authenticator did not assert user presence (UP flag clear)."""

    code = "user_not_present"


class UserNotVerified(CeremonyError):
    """User verification was required but the UV flag is clear."""

    code = "user_not_verified"
    category = Category.NOT_VERIFIED


class BackupStateInvalid(CeremonyError):
    """BS is set while BE is clear: an impossible flag combination."""

    code = "backup_state_without_eligibility"


class BackupEligibilityChanged(CeremonyError):
    """BE differs from the value stored at registration; it may never change."""

    code = "backup_eligibility_changed"


class AttestedCredentialDataMissing(CeremonyError):
    """A registration response carried no attested credential data (AT flag clear)."""

    code = "attested_credential_data_missing"


class AlgorithmNotAllowed(CeremonyError):
    """The credential's public key algorithm is not one the server offered."""

    code = "algorithm_not_allowed"
    category = Category.UNSUPPORTED


class PublicKeyInvalid(CeremonyError):
    """The credential public key cannot be loaded for its algorithm."""

    code = "public_key_invalid"


class CredentialIdTooLong(CeremonyError):
    """The credential ID is longer than 1023 bytes (§7.1 step 25)."""

    code = "credential_id_too_long"


# --- Attestation (§7.1 steps 21-24) ----------------------------------------


class AttestationFormatUnsupported(CeremonyError):
    """The attestation statement format is unknown: fail closed."""

    code = "attestation_format_unsupported"


class AttestationInvalid(CeremonyError):
    """The attestation statement does not verify."""

    code = "attestation_invalid"


class AuthenticatorStatusRefused(CeremonyError):
    """FIDO metadata reports the authenticator revoked, compromised or bypassable."""

    code = "authenticator_status_refused"
    category = Category.AUTHENTICATOR_REFUSED


# --- Credential lookup and ownership (§7.1 step 26, §7.2 steps 5-6) -----------


class CredentialAlreadyRegistered(CeremonyError):
    """The credential ID is already registered (to this or another account)."""

    code = "credential_already_registered"
    category = Category.ALREADY_REGISTERED


class CredentialNotAllowed(CeremonyError):
    """The credential is not in the allowCredentials list this ceremony offered."""

    code = "credential_not_allowed"


class CredentialUnknown(CeremonyError):
    """No stored passkey has this credential ID."""

    code = "credential_unknown"


class UserHandleMissing(CeremonyError):
    """A discoverable sign-in response carried no user handle."""

    code = "user_handle_missing"


class UserHandleMismatch(CeremonyError):
    """The user handle is not the credential owner's."""

    code = "user_handle_mismatch"


# --- Signature and counter (§7.2 steps 21-22) --------------------------------


class SignatureInvalid(CeremonyError):
    """The assertion signature does not verify with the stored public key."""

    code = "signature_invalid"


class SignCountRegressed(CeremonyError):
    """A non-zero counter did not increase: possibly a cloned authenticator (§7.2 step 22)."""

    code = "sign_count_regressed"


# --- The organisation's rules on passkeys (core/policy.py evaluate), after verification ---------
# Registration and sign-in; at sign-in each reads "Passkey not allowed".


class AttestationUntrusted(PolicyError):
    """The policy requires trusted attestation and this one traces to no anchor."""

    code = "attestation_untrusted"


class AuthenticatorDenied(PolicyError):
    """The authenticator's AAGUID is on the policy's deny-list."""

    code = "authenticator_denied"


class AuthenticatorNotAllowed(PolicyError):
    """The policy has an AAGUID allow-list and this (attested) authenticator is not on it."""

    code = "authenticator_not_allowed"


class SyncedPasskeyBlocked(PolicyError):
    """The policy blocks synced passkeys and this credential is backup eligible."""

    code = "synced_passkey_blocked"
    category = Category.SYNCED_BLOCKED


class AlgorithmNoLongerAllowed(PolicyError):
    """The policy's allowed_algorithms no longer include the passkey's algorithm."""

    code = "algorithm_no_longer_allowed"


class U2fAuthenticatorRefused(PolicyError):
    """A U2F-only (fido-u2f) authenticator cannot be used for passwordless sign-in."""

    code = "authenticator_u2f_only"


# --- The account (outside the WebAuthn algorithms) ----------------------------------------------


class AccountDisabled(AccountError):
    """The credential belongs to a deactivated account."""

    code = "account_disabled"


class AccountLocked(AccountError):
    """An administrator locked the account: no way of signing in works until it is unlocked."""

    code = "account_locked"
    category = Category.LOCKED


# --- Enrollment and recovery links ------------------------------------------------------------


class InviteUnusable(EnrollmentError):
    """The enrollment link is garbled, unknown, used, revoked or expired."""

    code = "invite_unusable"


class AlreadyEnrolled(EnrollmentError):
    """The person already has a way to sign in: a lost one is recovered, not enrolled again."""

    code = "already_enrolled"


# --- Managing one's own sign-in methods (Settings → Security Methods) -------------


class StepUpRequired(SettingsError):
    """No passkey verification with user verification within the policy's step-up window."""

    code = "step_up_required"
    category = Category.STEP_UP


class SecurityMethodNotFound(SettingsError):
    """Not one of this person's methods: unknown, already removed, or another person's."""

    code = "method_not_found"
    category = Category.NOT_FOUND


class LastSignInMethod(SettingsError):
    """Removing the method would leave the person no way to sign in."""

    code = "last_method"
    category = Category.LAST_METHOD


class PasskeyLimitReached(SettingsError):
    """The account already has as many passkeys as the policy allows."""

    code = "passkey_limit_reached"
    category = Category.LIMIT_REACHED


# --- Fallback sign-in: password, authenticator app, recovery codes -------------------


class FallbackNotAllowed(FallbackError):
    """The organisation policy does not allow signing in with a password and a code."""

    code = "fallback_not_allowed"
    category = Category.FALLBACK_OFF


class PasswordIncorrect(FallbackError):
    """Unknown username, no password set, or the wrong password (one answer for all three)."""

    code = "password_incorrect"
    category = Category.FALLBACK_INVALID


class SecondFactorIncorrect(FallbackError):
    """The authenticator-app or recovery code is wrong or out of its time window."""

    code = "code_incorrect"
    category = Category.CODE_INVALID


class SecondFactorReused(FallbackError):
    """The authenticator-app code or recovery code was used before."""

    code = "code_reused"
    category = Category.CODE_INVALID


class TooManyRequests(InputError):
    """Too many sign-in requests from this network: wait a moment (passkey options' limit)."""

    code = "too_many_requests"
    category = Category.BUSY


class TooManyAttempts(FallbackError):
    """Too many failures for this username or from this address: wait before trying again."""

    code = "too_many_attempts"
    category = Category.THROTTLED


# --- The device app (Threshold Verify) -------------------------------------------------------


class DeviceError(ThresholdError):
    """A device app request, a device's set-up or a push sign-in is refused."""

    code = "device_refused"


class DeviceRequestMalformed(InputError):
    """The device request is not a compact JWS with the claims the device API requires."""

    code = "device_request_malformed"


class DeviceUnknown(DeviceError):
    """The request names no device Threshold knows (its ``kid``)."""

    code = "device_unknown"
    category = Category.DEVICE_UNAUTHORIZED


class DeviceRemoved(DeviceError):
    """The device was removed from the account: its key signs nothing any more."""

    code = "device_removed"
    category = Category.DEVICE_UNAUTHORIZED


class DeviceSignatureInvalid(DeviceError):
    """The request's signature does not verify with the device's public key."""

    code = "device_signature_invalid"
    category = Category.DEVICE_UNAUTHORIZED


class DeviceClockSkew(DeviceError):
    """The request's ``iat`` or ``exp`` is more than two minutes from the server's clock, or it
    has expired, or it claims to live longer than two minutes."""

    code = "device_clock_skew"
    category = Category.DEVICE_CLOCK


class DeviceRequestReplayed(DeviceError):
    """The request's ``jti`` was used before: a replayed request."""

    code = "device_request_replayed"
    category = Category.SESSION


class SetupCodeInvalid(DeviceError):
    """The setup code is unknown, used, expired, or its set-up was canceled."""

    code = "setup_code_invalid"
    category = Category.SETUP_CODE_INVALID


class ReturnedCodeIncorrect(DeviceError):
    """The code the new device shows was typed wrong (three wrong codes cancel the set-up)."""

    code = "returned_code_incorrect"
    category = Category.RETURNED_CODE_INVALID


class DeviceLimitReached(DeviceError):
    """The person already has as many devices as the policy allows."""

    code = "device_limit_reached"
    category = Category.DEVICE_LIMIT


class DeviceKeyNotHardware(DeviceError):
    """The policy requires a key the server verified is held in a TPM; this one is not."""

    code = "device_key_not_hardware"
    category = Category.DEVICE_KEY_REFUSED


class DeviceAppNotAllowed(DeviceError):
    """The organisation policy does not allow signing in with the device app."""

    code = "device_app_not_allowed"
    category = Category.DEVICE_APP_OFF


class DeviceUserNotVerified(DeviceError):
    """The device did not confirm that it verified the person (its PIN) for this request."""

    code = "device_user_not_verified"
    category = Category.NOT_VERIFIED


class PushPending(DeviceError):
    """A push for this person is already waiting for an answer: one at a time."""

    code = "push_pending"
    category = Category.PUSH_PENDING


class SetupCodeGuessesLimited(DeviceError):
    """Too many wrong setup codes from this network, or from everywhere, in a quarter of an
    hour: redeeming waits (the 40-bit codes are not to be guessed)."""

    code = "setup_code_throttled"
    category = Category.THROTTLED


class PushLimitReached(DeviceError):
    """Three pushes for this person in ten minutes: wait before sending another."""

    code = "push_limit_reached"
    category = Category.THROTTLED


class PushExpired(DeviceError):
    """The push was not answered within two minutes, or is already answered or used."""

    code = "push_expired"
    category = Category.SESSION


class PushNumberWrong(DeviceError):
    """The number typed on the device is not the one the browser shows: the push ends."""

    code = "push_number_wrong"
    category = Category.PUSH_REFUSED


class PushDenied(DeviceError):
    """The person chose \u201cI didn\u2019t do this\u201d on their device."""

    code = "push_denied"
    category = Category.PUSH_REFUSED
