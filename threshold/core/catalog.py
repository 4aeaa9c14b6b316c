"""The error catalog: what a person is told, what caused it, what to do next.

Titles and wording come from the help articles people already know (see
``shared/seeds``). A failure's precise reason code goes to the audit log; the
person gets the catalog entry for its ``public`` category, so every failed check
of the same kind reads the same from the outside.
"""

from __future__ import annotations

from dataclasses import dataclass

from threshold.core.errors import CeremonyError


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    title: str
    message: str
    # For support staff and the audit view: why this happens, what fixes it.
    cause: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.key, "title": self.title, "message": self.message}


_ENTRIES = [
    # Sign-in.
    CatalogEntry(
        "passkey_unavailable",
        "Passkey Unavailable",
        "Passkey login is temporarily unavailable. You can try again in a moment.",
        "The sign-in service could not be reached, or the page address was changed by hand.",
    ),
    CatalogEntry(
        "passkey_not_found_or_canceled",
        "Passkey Not Found or Canceled",
        "No passkey was detected for this device, or the operation was canceled. "
        "Try again, or use a passkey saved on another device such as your phone.",
        "No passkey for this site on the device or browser, or the person clicked Cancel. "
        "They can retry and pick another passkey, or sign in with a phone or security key.",
    ),
    CatalogEntry(
        "sign_in_timed_out",
        "Passkey Request Timed Out",
        "You did not respond to the passkey prompt in time. Please try again.",
        "The person did not answer the passkey prompt within the ceremony timeout.",
    ),
    CatalogEntry(
        "not_verified",
        "We could not verify you",
        "We were unable to verify your biometric input or PIN. "
        "Try again or use another method to log in.",
        "The authenticator did not perform user verification (fingerprint, face or PIN), "
        "which the organisation requires.",
    ),
    CatalogEntry(
        "verification_failed",
        "Verification failed",
        "We could not verify your identity. Use another sign-in method to access your account.",
        "The passkey response failed verification: a credential mismatch, tampering, a cloned "
        "authenticator or a corrupted credential. The audit log has the precise reason.",
    ),
    # Registration.
    CatalogEntry(
        "setup_unavailable",
        "Passkey Unavailable",
        "We could not complete the passkey setup right now. You can try again or set it up later.",
        "The registration service could not be reached, or the page address was changed by hand.",
    ),
    CatalogEntry(
        "setup_canceled",
        "Passkey Set Up Canceled",
        "Your passkey setup was canceled. Retry when you are ready.",
        "The person clicked Cancel in the browser's passkey dialog, or the browser refused.",
    ),
    CatalogEntry(
        "setup_timed_out",
        "Passkey Request Timed Out",
        "You did not respond to the passkey prompt in time. Try again or set it up later.",
        "The person did not answer the passkey prompt within the ceremony timeout.",
    ),
    CatalogEntry(
        "already_registered",
        "Passkey already registered for this device",
        "The passkey already exists for this device. You cannot register the same device twice.",
        "The authenticator already holds a credential registered with Threshold.",
    ),
    CatalogEntry(
        "registration_failed",
        "Failed to register the device for passkey",
        "We were unable to activate this device for passkeys. Try again, or use another device.",
        "The registration response failed verification. The audit log has the precise reason.",
    ),
    CatalogEntry(
        "authenticator_not_allowed",
        "Authenticator Not Allowed",
        "Your organisation does not allow this kind of passkey or security key. "
        "Use a different device or security key, or ask your IT team which ones are allowed.",
        "The organisation policy refused the authenticator: its attestation could not be traced "
        "to a trusted root while the policy requires it, its AAGUID is on the deny-list or not on "
        "the allow-list, it is a U2F-only key, or FIDO metadata reports it revoked or compromised.",
    ),
    CatalogEntry(
        "synced_not_allowed",
        "Synced Passkeys Not Allowed",
        "Your organisation requires a passkey that stays on one device, such as a security key or "
        "Windows Hello. Passkeys saved in iCloud Keychain, Google Password Manager or a password "
        "manager cannot be used here.",
        "The policy blocks synced (backup eligible) passkeys and the authenticator created one.",
    ),
    CatalogEntry(
        "limit_reached",
        "Passkey Limit Reached",
        "You have reached the maximum number of passkeys. "
        "Remove an existing passkey to add a new one.",
        "The account already has as many passkeys as the organisation policy allows.",
    ),
    # Both.
    CatalogEntry(
        "session_expired",
        "Session Expired",
        "Your session has expired; restart to continue.",
        "The page was left idle too long, the request was replayed, or it came from a different "
        "session.",
    ),
    CatalogEntry(
        "not_supported",
        "Passkeys Not Supported",
        "Your browser or device does not support passkeys. Use a different browser or device.",
        "The browser has no WebAuthn support, or the authenticator supports none of the "
        "algorithms the organisation allows.",
    ),
    CatalogEntry(
        "verification_incomplete",
        "Verification couldn\u2019t be completed",
        "Something went wrong with your passkey. Try again, or use another device.",
        "An authenticator hardware or firmware problem, or an error the browser did not explain.",
    ),
    CatalogEntry(
        "no_compatible_device",
        "No compatible device found",
        "We could not find a compatible device for this action. "
        "Connect a supported device or use another login method.",
        "No suitable authenticator was connected, or the person declined to use it.",
    ),
    CatalogEntry(
        "bad_request",
        "Session Expired",
        "This request could not be understood; restart to continue.",
        "The request was malformed, too large or of the wrong type: a modified URL, a "
        "corrupted page, or a client that is not a browser.",
    ),
    CatalogEntry(
        "not_found",
        "Page Not Found",
        "This address does not lead anywhere. Check the link, or go to the sign-in page.",
        "The URL was mistyped, truncated or changed by hand.",
    ),
    # Settings → Security Methods.
    CatalogEntry(
        "verification_required",
        "Verify it\u2019s you",
        "For your security, confirm it\u2019s you with one of your passkeys before you add or "
        "remove a sign-in method.",
        "Adding or removing a method needs a passkey sign-in with user verification (fingerprint, "
        "face or PIN) within the policy's step-up window, five minutes by default. The last one "
        "is older, or this session began without user verification.",
    ),
    CatalogEntry(
        "method_not_found",
        "Security Method Not Found",
        "This sign-in method does not exist or was already removed. "
        "Go back to Security Methods to see the ones you have.",
        "The method was removed already (a repeated request), or the address was changed by "
        "hand. Another person's methods read the same as ones that do not exist.",
    ),
    CatalogEntry(
        "last_method",
        "You Can\u2019t Remove Your Only Sign-in Method",
        "This is the only way you can sign in. Set up another passkey first, then remove this one.",
        "Removing the person's last sign-in method would lock them out of their account.",
    ),
    CatalogEntry(
        "name_invalid",
        "Name Not Saved",
        "Enter a name that is not empty and not too long, without the characters < and >.",
        "The name was empty, too long, or contained markup, control or text-direction characters.",
    ),
    # Fallback sign-in (password and code).
    CatalogEntry(
        "fallback_not_allowed",
        "Password Sign-in Not Available",
        "Your organisation signs in with passkeys only. Use a passkey on this device, your phone "
        "or a security key, or ask your IT team for a recovery link.",
        "The organisation policy turns the password and authenticator-app fallback off.",
    ),
    CatalogEntry(
        "fallback_invalid",
        "Incorrect username or password",
        "The username or password is incorrect. Try again, or sign in with a passkey.",
        "Unknown username, no password set up, or a wrong password: the three read alike, so "
        "that sign-in attempts cannot tell which accounts exist. The audit log has which.",
    ),
    CatalogEntry(
        "code_invalid",
        "Incorrect code",
        "That code is not right, or it was used already. Enter the current 6-digit code from "
        "your authenticator app, or one of your recovery codes.",
        "A wrong or expired authenticator-app code (codes last 30 seconds; the phone's clock may "
        "be off), or a code or recovery code that was used before.",
    ),
    CatalogEntry(
        "too_many_attempts",
        "Too Many Attempts",
        "There were too many unsuccessful attempts. Wait a few minutes and try again, or sign in "
        "with a passkey.",
        "Repeated wrong passwords or codes for this username, or many failed attempts from this "
        "network address. Passkey sign-in is not affected. An administrator can issue a "
        "recovery link.",
    ),
    CatalogEntry(
        "account_locked",
        "Account Locked",
        "Your account is locked. Contact your IT team to unlock it.",
        "An administrator locked the account (`threshold users lock`). No way of signing in "
        "works until it is unlocked.",
    ),
    # Enrollment links.
    CatalogEntry(
        "invite_unusable",
        "This link can\u2019t be used",
        "This enrollment link is not valid any more: it may have been used already, expired, "
        "or been copied incompletely. Ask your administrator for a new link.",
        "The invite token is unknown, garbled, already used, revoked or expired.",
    ),
]

CATALOG: dict[str, CatalogEntry] = {entry.key: entry for entry in _ENTRIES}

# Each ceremony's public categories, mapped to catalog keys.
_SIGN_IN = {
    "failed": "verification_failed",
    "session": "session_expired",
    "not_verified": "not_verified",
    "unsupported": "verification_failed",
    "unavailable": "passkey_unavailable",
    "bad_request": "bad_request",
    "fallback_off": "fallback_not_allowed",
    "fallback_invalid": "fallback_invalid",
    "code_invalid": "code_invalid",
    "throttled": "too_many_attempts",
    "locked": "account_locked",
}
_REGISTRATION = {
    "failed": "registration_failed",
    "session": "session_expired",
    "not_verified": "not_verified",
    "unsupported": "not_supported",
    "already_registered": "already_registered",
    "limit_reached": "limit_reached",
    "invite_unusable": "invite_unusable",
    "step_up": "verification_required",
    "authenticator_refused": "authenticator_not_allowed",
    "synced_blocked": "synced_not_allowed",
    "unavailable": "setup_unavailable",
    "bad_request": "bad_request",
}


_SETTINGS = {
    "failed": "verification_incomplete",
    "step_up": "verification_required",
    "not_found": "method_not_found",
    "last_method": "last_method",
    "name_invalid": "name_invalid",
    "bad_request": "bad_request",
}
_TABLES = {"authentication": _SIGN_IN, "registration": _REGISTRATION, "settings": _SETTINGS}


def explain(error: CeremonyError, ceremony: str) -> str:
    """For support staff: the precise reason, and what the person was shown."""
    reason = (type(error).__doc__ or error.code).strip().splitlines()[0].rstrip(".")
    detail = f" ({error.detail})" if error.detail else ""
    shown = entry_for(error, ceremony).title
    return f"{reason}{detail}. The person is shown \u201c{shown}\u201d."


def entry_for(error: CeremonyError, ceremony: str) -> CatalogEntry:
    """The catalog entry a person sees when ``error`` ends a ceremony.

    ``ceremony`` is "authentication", "registration" or "settings" (changes
    to one's own sign-in methods).
    """
    table = _TABLES[ceremony]
    return CATALOG[table.get(error.public, table["failed"])]
