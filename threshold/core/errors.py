"""Typed ceremony errors with stable reason codes.

fido2 reports every failure as a bare ``ValueError``; the core turns each failed
check into one of these classes. ``code`` is stable: it goes to the audit log
and to the conformance API. What a person sees comes from the error catalog
(``threshold.core.catalog``), chosen by ``public``: most failures share one
generic message so that a response never tells an attacker which check failed.
"""

from __future__ import annotations


class CeremonyError(Exception):
    """A WebAuthn ceremony failed. Subclasses name the precise reason."""

    code = "ceremony_failed"
    # Which catalog entry the person sees: "failed" (the generic failure),
    # "session" (the ceremony is over or unknown), "not_verified",
    # "already_registered", "limit_reached", "unavailable", "bad_request", ...
    public = "failed"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__doc__ or self.code)
        self.detail = detail


# --- Input shape -----------------------------------------------------------


class MalformedResponse(CeremonyError):
    """The credential is not a well-formed PublicKeyCredential JSON object."""

    code = "malformed_response"


class MalformedRequest(CeremonyError):
    """The request body is not the JSON object this endpoint expects."""

    code = "malformed_request"
    public = "bad_request"


class RequestTooLarge(MalformedRequest):
    """The request body is over the size cap."""

    code = "request_too_large"


class CredentialTypeInvalid(CeremonyError):
    """The credential's type is not "public-key"."""

    code = "credential_type_invalid"


class CredentialIdMismatch(CeremonyError):
    """id, rawId and the credential ID in the authenticator data disagree."""

    code = "credential_id_mismatch"


# --- Challenge and ceremony state (§7.1 step 8, §7.2 step 12) -----------------


class ChallengeMissing(CeremonyError):
    """No ceremony of this kind is pending in this session (never begun, or already used)."""

    code = "challenge_missing"
    public = "session"


class ChallengeExpired(CeremonyError):
    """The ceremony timed out before the response arrived."""

    code = "challenge_expired"
    public = "session"


class ChallengeMismatch(CeremonyError):
    """clientDataJSON.challenge is not the challenge this session was given."""

    code = "challenge_mismatch"


# --- Client data (§7.1 steps 5-10, §7.2 steps 9-14) ---------------------------


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


# --- Authenticator data (§7.1 steps 13-19, §7.2 steps 15-18) ------------------


class RpIdHashMismatch(CeremonyError):
    """authenticatorData.rpIdHash is not SHA-256 of the configured RP ID."""

    code = "rp_id_hash_mismatch"


class UserNotPresent(CeremonyError):
    """The authenticator did not assert user presence (UP flag clear)."""

    code = "user_not_present"


class UserNotVerified(CeremonyError):
    """User verification was required but the UV flag is clear."""

    code = "user_not_verified"
    public = "not_verified"


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
    public = "unsupported"


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
    public = "authenticator_refused"


# --- The organisation's rules on passkeys (core/policy.py evaluate), after verification ---------
# Registration and sign-in; at sign-in each reads "Passkey not allowed".


class AttestationUntrusted(CeremonyError):
    """The policy requires trusted attestation and this one traces to no anchor."""

    code = "attestation_untrusted"
    public = "authenticator_refused"


class AuthenticatorDenied(CeremonyError):
    """The authenticator's AAGUID is on the policy's deny-list."""

    code = "authenticator_denied"
    public = "authenticator_refused"


class AuthenticatorNotAllowed(CeremonyError):
    """The policy has an AAGUID allow-list and this (attested) authenticator is not on it."""

    code = "authenticator_not_allowed"
    public = "authenticator_refused"


class SyncedPasskeyBlocked(CeremonyError):
    """The policy blocks synced passkeys and this credential is backup eligible."""

    code = "synced_passkey_blocked"
    public = "synced_blocked"


class AlgorithmNoLongerAllowed(CeremonyError):
    """The policy's allowed_algorithms no longer include the passkey's algorithm."""

    code = "algorithm_no_longer_allowed"
    public = "authenticator_refused"


class U2fAuthenticatorRefused(CeremonyError):
    """A U2F-only (fido-u2f) authenticator cannot be used for passwordless sign-in."""

    code = "authenticator_u2f_only"
    public = "authenticator_refused"


# --- Credential lookup and ownership (§7.1 step 26, §7.2 steps 5-7) -----------


class CredentialAlreadyRegistered(CeremonyError):
    """The credential ID is already registered (to this or another account)."""

    code = "credential_already_registered"
    public = "already_registered"


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


# --- Account and policy (outside the WebAuthn algorithms) ----------------------


class AccountDisabled(CeremonyError):
    """The credential belongs to a deactivated account."""

    code = "account_disabled"


class PasskeyLimitReached(CeremonyError):
    """The account already has as many passkeys as the policy allows."""

    code = "passkey_limit_reached"
    public = "limit_reached"


class InviteUnusable(CeremonyError):
    """The enrollment link is garbled, unknown, used, revoked or expired."""

    code = "invite_unusable"
    public = "invite_unusable"


# --- Managing one's own sign-in methods (Settings → Security Methods) -------------


class StepUpRequired(CeremonyError):
    """No passkey verification with user verification within the policy's step-up window."""

    code = "step_up_required"
    public = "step_up"


class SecurityMethodNotFound(CeremonyError):
    """Not one of this person's methods: unknown, already removed, or another person's."""

    code = "method_not_found"
    public = "not_found"


class LastSignInMethod(CeremonyError):
    """Removing the method would leave the person no way to sign in."""

    code = "last_method"
    public = "last_method"


class NameInvalid(CeremonyError):
    """A nickname or display name is empty, too long, or has markup or control characters."""

    code = "name_invalid"
    public = "name_invalid"


# --- Fallback sign-in: password, authenticator app, recovery codes -------------------


class FallbackNotAllowed(CeremonyError):
    """The organisation policy does not allow signing in with a password and a code."""

    code = "fallback_not_allowed"
    public = "fallback_off"


class PasswordIncorrect(CeremonyError):
    """Unknown username, no password set, or the wrong password (one answer for all three)."""

    code = "password_incorrect"
    public = "fallback_invalid"


class SecondFactorIncorrect(CeremonyError):
    """The authenticator-app or recovery code is wrong or out of its time window."""

    code = "code_incorrect"
    public = "code_invalid"


class SecondFactorReused(CeremonyError):
    """The authenticator-app code or recovery code was used before."""

    code = "code_reused"
    public = "code_invalid"


class TooManyAttempts(CeremonyError):
    """Too many failures for this username or from this address: wait before trying again."""

    code = "too_many_attempts"
    public = "throttled"


class AccountLocked(CeremonyError):
    """An administrator locked the account: no way of signing in works until it is unlocked."""

    code = "account_locked"
    public = "locked"


class FlowExpired(CeremonyError):
    """The sign-in or enrollment page was left idle longer than the policy allows."""

    code = "flow_expired"
    public = "session"


class AlreadyEnrolled(CeremonyError):
    """The person already has a way to sign in: a lost one is recovered, not enrolled again."""

    code = "already_enrolled"
    public = "invite_unusable"
