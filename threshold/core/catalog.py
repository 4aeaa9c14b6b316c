"""The error catalog: every message Threshold shows, why it appears, and what to do next.

Titles and wording come from the help articles people already know (see
``shared/seeds``). A failure's precise reason code goes to the audit log; the
person gets the catalog entry for its ``category`` (``PRESENTATIONS``: one HTTP
status and one entry per surface for each ``Category``), so every failed check of
the same kind reads the same from the outside.

Each entry has a message for the person, a cause and a solution for support
staff (the help page, /help/errors, lists them), and the next steps the page
offers under the message. The catalog also explains the messages that browsers
and operating systems show in their own dialogs, which people report in their
words rather than ours; those are never shown by Threshold.

Messages never say "sign in with your password": whether a password is allowed
is the organisation's choice, so the "password" next step says it, and only on
pages where it is allowed. Every message reads right without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from threshold.core.errors import Category, ThresholdError


class NextStep(StrEnum):
    """What a page offers under a message (the JSON's ``nextSteps``; web/_ceremony_notices.html)."""

    RETRY = "retry"
    ANOTHER_DEVICE = "another_device"
    PASSWORD = "password"  # noqa: S105 - a next step's name, not a password
    SET_UP_LATER = "set_up_later"
    CONTACT_SUPPORT = "contact_support"
    RESTART = "restart"


# The next steps in the words support staff see. The pages word them for the person.
NEXT_STEPS: dict[NextStep, str] = {
    NextStep.RETRY: "Try again",
    NextStep.ANOTHER_DEVICE: "Use a passkey on another device, such as a phone or security key",
    NextStep.PASSWORD: "Sign in with a password and code instead (only where the policy allows it)",
    # The seeds' words, and the pages': what is set up later may be a device, not a passkey.
    NextStep.SET_UP_LATER: "Set it up later",
    NextStep.CONTACT_SUPPORT: "Contact the IT team",
    NextStep.RESTART: "Start again from the beginning (reload the page)",
}


class Group(StrEnum):
    """The help page's sections."""

    SIGN_IN = "sign-in"
    SET_UP = "set-up"
    BOTH = "both"
    SETTINGS = "settings"
    FALLBACK = "fallback"
    BROWSER = "browser"
    DEVICE_APP = "device-app"


# The help page's headings, in its order.
GROUPS: dict[Group, str] = {
    Group.SIGN_IN: "Sign-in errors",
    Group.SET_UP: "Set-up errors",
    Group.BOTH: "Both",
    Group.SETTINGS: "Settings",
    Group.FALLBACK: "Password and code",
    Group.BROWSER: "Messages from the browser or device",
    Group.DEVICE_APP: "Threshold Verify (the device app)",
}


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    title: str
    message: str
    # For support staff and the audit view: why this happens, and what fixes it.
    cause: str
    solution: str
    next_steps: tuple[NextStep, ...]
    group: Group

    def __post_init__(self) -> None:
        unknown = set(self.next_steps) - set(NextStep)
        if unknown or not self.next_steps:
            raise ValueError(f"{self.key}: next steps must be some of {', '.join(NextStep)}")
        if self.group not in set(Group):
            raise ValueError(f"{self.key}: group must be one of {', '.join(Group)}")

    @property
    def is_browser_message(self) -> bool:
        """Shown by the browser or the operating system in its own words, never by Threshold."""
        return self.group == Group.BROWSER

    @property
    def next_step_labels(self) -> list[str]:
        """The next steps in support staff's words."""
        return [NEXT_STEPS[step] for step in self.next_steps]

    def as_json(self) -> dict[str, str | list[str]]:
        return {
            "code": self.key,
            "title": self.title,
            "message": self.message,
            "nextSteps": [str(step) for step in self.next_steps],
        }


_ENTRIES = [
    # --- Sign-in ---------------------------------------------------------------------------------
    CatalogEntry(
        "passkey_unavailable",
        "Passkey Unavailable",
        "Passkey login is temporarily unavailable. You can try again in a moment.",
        "Threshold could not be reached (a network problem or an outage), the page address was "
        "changed by hand, or the browser refused the request for this address (SecurityError: "
        "the page is not served from the address the passkeys belong to).",
        "Try again in a moment. If it persists, check that Threshold is up and that people "
        "open it at its configured address (THRESHOLD_RP_ID and THRESHOLD_ORIGINS), over HTTPS.",
        (NextStep.RETRY, NextStep.PASSWORD),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "passkey_not_found_or_canceled",
        "Passkey Not Found or Canceled",
        "No passkey was detected for this device, or the operation was canceled. "
        "Try again, or use a passkey saved on another device such as your phone.",
        "No passkey for this site on the device or in the browser, or the person clicked Cancel "
        "or closed the prompt. Browsers report both the same way, so Threshold cannot tell them "
        "apart. Also shown when the device could not verify the person's fingerprint, face or "
        "PIN: the browser ends the request before anything reaches Threshold.",
        "Retry and pick another passkey on the device, or use a phone or security key that has "
        "one. A person who has none at hand signs in another way, then sets up a passkey on "
        "this device under Settings \u2192 Security Methods.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE, NextStep.PASSWORD),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "username_required",
        "Username Required",
        "Enter your username or work email, or select Sign in with a passkey.",
        "The person selected Continue (or Send a push to Threshold Verify) with the username "
        "field empty. The page says so by the field and sends nothing; without JavaScript, "
        "the push's form (/sign-in/push) says so by its field, and no push is sent.",
        "Type the username or work email address, or use Sign in with a passkey, which needs "
        "no username.",
        (NextStep.RETRY,),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "sign_in_timed_out",
        "Passkey Request Timed Out",
        "You did not respond to the passkey prompt in time. Please try again.",
        "The person did not answer the passkey prompt within the ceremony timeout "
        "(the policy's ceremony_timeout_seconds, 300 seconds by default).",
        "Try again and answer the prompt right away. With a phone, keep Bluetooth on for both "
        "devices. If it happens often, raise ceremony_timeout_seconds.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "passkey_not_on_device",
        "Passkey is not found on this device",
        "No Passkey is set up for this device. Use a passkey on another device, such as your "
        "phone or a security key, or sign in another way and then set up a passkey for this "
        "device.",
        "The sign-in asked for the account's own passkeys (after a username) and the device "
        "holds none of them: no credentials found, or the passkey is no longer usable (deleted "
        "from the device or the password manager). Also shown when the person canceled that "
        "prompt. To someone verifying it's them, signed in already, a closed prompt reads "
        "\u201cPasskey Not Found or Canceled\u201d.",
        "Use a device that has one of the account's passkeys (Settings \u2192 Security Methods "
        "lists them). Once signed in, set up a passkey on this device with \u201cSet up "
        "another\u201d.",
        (NextStep.ANOTHER_DEVICE, NextStep.PASSWORD, NextStep.RETRY),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "not_verified",
        "We could not verify you",
        "We were unable to verify your biometric input. Try again or use another method to log in.",
        "The authenticator did not perform user verification (fingerprint, face or PIN), "
        "which the organisation requires. Shown at sign-in and at set-up.",
        "Try again and complete the fingerprint, face or PIN check on the device. A device "
        "without one (an old security key) cannot be used while the policy's "
        "user_verification is \u201crequired\u201d.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE, NextStep.PASSWORD),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "verification_failed",
        "Verification failed",
        "We could not verify your identity. Use another sign-in method to access your account.",
        "The passkey response failed verification: a credential mismatch, tampering, a cloned "
        "authenticator, a corrupted credential, or a passkey removed from the account. The "
        "audit log has the precise reason.",
        "Look up the person's sign_in.failed events in the audit log (`threshold audit`). A "
        "removed passkey needs a new one; sign_count_regressed may mean a cloned authenticator.",
        (NextStep.ANOTHER_DEVICE, NextStep.PASSWORD, NextStep.CONTACT_SUPPORT),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "passkey_not_allowed",
        "Passkey not allowed",
        "Your organisation no longer allows this passkey. Sign in with another passkey your "
        "organisation allows, or ask your IT team for a recovery link to set one up.",
        "The passkey's signature was right, but the organisation policy changed since it was set "
        "up and no longer allows it: its AAGUID is on the deny-list or not on the allow-list, it "
        "is synced while synced passkeys are blocked, its attestation is not trusted while "
        "trusted attestation is required, it is a U2F-only key, or its algorithm is no longer "
        "allowed. Settings shows it as \u201cNot allowed by your organisation\u201d.",
        "The audit log's sign_in.failed reason names the rule (`threshold audit`); `threshold "
        "policy check` lists everyone affected. Issue a recovery link (`threshold recover EMAIL`) "
        "so the person sets up an allowed passkey, or relax the rule.",
        (NextStep.ANOTHER_DEVICE, NextStep.PASSWORD, NextStep.CONTACT_SUPPORT),
        Group.SIGN_IN,
    ),
    # --- Set-up (registration) -------------------------------------------------------------------
    CatalogEntry(
        "setup_unavailable",
        "Passkey Unavailable",
        "We could not complete the passkey setup right now. You can try again or set it up later.",
        "Threshold could not be reached, the page address was changed by hand, or the browser "
        "refused the request for this address (SecurityError).",
        "Try again in a moment. If it persists, check that Threshold is up and opened at its "
        "configured address (THRESHOLD_RP_ID and THRESHOLD_ORIGINS), over HTTPS.",
        (NextStep.RETRY, NextStep.SET_UP_LATER),
        Group.SET_UP,
    ),
    CatalogEntry(
        "setup_canceled",
        "Passkey Set Up Canceled",
        "Your passkey setup was canceled. Retry when you are ready.",
        "The person clicked Cancel or closed the browser's passkey prompt, the browser refused, "
        "or the device could not verify their fingerprint, face or PIN.",
        "Retry and follow the prompt to the end. Choosing \u201cUse a different phone, tablet "
        "or security key\u201d saves the passkey on another device instead.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE, NextStep.SET_UP_LATER),
        Group.SET_UP,
    ),
    CatalogEntry(
        "setup_timed_out",
        "Passkey Request Timed Out",
        "You did not respond to the passkey prompt in time. Try again or set it up later.",
        "The person did not answer the passkey prompt within the ceremony timeout "
        "(the policy's ceremony_timeout_seconds, 300 seconds by default).",
        "Try again and answer the prompt right away. No passkey was created.",
        (NextStep.RETRY, NextStep.SET_UP_LATER),
        Group.SET_UP,
    ),
    CatalogEntry(
        "already_registered",
        "Passkey already registered for this device",
        "The passkey already exists for this device. You cannot register the same device twice.",
        "The authenticator already holds a passkey registered with Threshold (the browser "
        "matched it against the account's passkeys, or Threshold found its credential ID).",
        "Nothing to fix: the device can already sign in. It is listed under Settings \u2192 "
        "Security Methods. To add another, use a different device or security key.",
        (NextStep.ANOTHER_DEVICE, NextStep.SET_UP_LATER),
        Group.SET_UP,
    ),
    CatalogEntry(
        "registration_failed",
        "Failed to register the device for passkey",
        "We were unable to activate this device for passkeys. Try again, or use another device.",
        "The registration response failed verification. The audit log has the precise reason "
        "(passkey.registration_failed).",
        "Retry once; if it fails again, look up the reason with `threshold audit` and try a "
        "different device or security key.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.SET_UP,
    ),
    CatalogEntry(
        "authenticator_not_allowed",
        "Authenticator Not Allowed",
        "Your organisation does not allow this kind of passkey or security key. "
        "Use a different device or security key, or ask your IT team which ones are allowed.",
        "The organisation policy refused the authenticator: its attestation could not be traced "
        "to a trusted root while the policy requires it, its AAGUID is on the deny-list or not on "
        "the allow-list, it is a U2F-only key, or FIDO metadata reports it revoked or compromised.",
        "Give the person an allowed authenticator, or change the policy: `threshold policy "
        "show` lists its rules, `threshold policy set NAME=VALUE` changes one. The audit log "
        "names the AAGUID and the rule that refused it.",
        (NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.SET_UP,
    ),
    CatalogEntry(
        "synced_not_allowed",
        "Synced Passkeys Not Allowed",
        "Your organisation requires a passkey that stays on one device, such as a security key or "
        "Windows Hello. Passkeys saved in iCloud Keychain, Google Password Manager or a password "
        "manager cannot be used here.",
        "The policy blocks synced (backup eligible) passkeys and the authenticator created one.",
        "Use a security key or a device-bound passkey, or turn block_synced_passkeys off.",
        (NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.SET_UP,
    ),
    CatalogEntry(
        "limit_reached",
        "Passkey Limit Reached",
        "You have reached the maximum number of passkeys. "
        "Remove an existing passkey to add a new one.",
        "The account already has as many passkeys as the organisation policy allows "
        "(passkey_limit, 10 by default).",
        "Remove an unused passkey under Settings \u2192 Security Methods, or raise passkey_limit.",
        (NextStep.SET_UP_LATER, NextStep.CONTACT_SUPPORT),
        Group.SET_UP,
    ),
    CatalogEntry(
        "invite_unusable",
        "This link can\u2019t be used",
        "This link is not valid any more: it may have been used already, expired, or been "
        "copied incompletely. Ask your administrator for a new link. If you set up your "
        "passkey with it already, sign in with that passkey instead.",
        "The enrollment or recovery link is unknown, garbled, already used, revoked or expired, "
        "or the account is locked.",
        "Someone who enrolled with the link already signs in with their passkey, and adds "
        "devices under Settings \u2192 Security Methods (a new invite is refused for anyone "
        "who can sign in). Otherwise, send a new link with `threshold invite EMAIL` (or `threshold "
        "recover EMAIL` for someone who lost every passkey). Links work once, enrollment links for "
        "invite_lifetime_hours (seven days by default), recovery links for "
        "recovery_link_lifetime_minutes (an hour); the audit log says which of the reasons "
        "applied.",
        (NextStep.CONTACT_SUPPORT,),
        Group.SET_UP,
    ),
    # --- Both ------------------------------------------------------------------------------------
    CatalogEntry(
        "session_expired",
        "Session Expired",
        "Your session has expired; restart to continue.",
        "The sign-in or set-up page was left idle longer than the policy's "
        "flow_idle_timeout_minutes (10 by default), the passkey prompt's challenge expired, "
        "the request was replayed or came from a different session, or the page's security "
        "token (CSRF) was missing. Also covers clients that are not Threshold's own pages.",
        "Reload the page and start again. If it happens right away, check that the browser "
        "accepts cookies for Threshold's address.",
        (NextStep.RESTART,),
        Group.BOTH,
    ),
    CatalogEntry(
        "not_supported",
        "Passkeys Not Supported",
        "Your browser or device does not support passkeys. Use a different browser or device.",
        "The browser has no WebAuthn support (or not its JSON methods), or the authenticator "
        "supports none of the algorithms the organisation allows.",
        "Update the browser (current Chrome, Edge, Safari or Firefox), or use another device. "
        "The platform guides under Settings list what works.",
        (NextStep.ANOTHER_DEVICE, NextStep.PASSWORD),
        Group.BOTH,
    ),
    CatalogEntry(
        "verification_incomplete",
        "Verification couldn\u2019t be completed",
        "Something went wrong with your passkey. Try again, or use another device.",
        "An authenticator hardware or firmware problem, the browser or an extension ending the "
        "request (UnknownError, AbortError), or an error the browser did not explain.",
        "Try again; unplug and replug a security key, or restart the browser. If it persists, "
        "use another device and check the server log for a 500.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.BOTH,
    ),
    CatalogEntry(
        "no_compatible_device",
        "No compatible device found",
        "We could not find a compatible device for this action. "
        "Connect a supported device or use another login method.",
        "No suitable authenticator was connected (ConstraintError: none can do what the "
        "request needs, such as a fingerprint, face or PIN check, or storing the passkey), or "
        "the person declined to use it.",
        "Connect a FIDO2 security key with a PIN, or use a phone or a computer with Touch ID, "
        "Windows Hello or a screen lock.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE, NextStep.PASSWORD),
        Group.BOTH,
    ),
    CatalogEntry(
        "bad_request",
        "Session Expired",
        "Your session has expired; restart to continue.",
        "The request was malformed, too large or of the wrong type: a modified URL, a "
        "corrupted page, or a client that is not a browser.",
        "Reload the page and start again. Repeated from one address, it is a script, not a person.",
        (NextStep.RESTART,),
        Group.BOTH,
    ),
    CatalogEntry(
        "not_found",
        "Page Not Found",
        "This address does not lead anywhere. Check the link, or start again from the home page.",
        "The URL was mistyped, truncated or changed by hand.",
        "Open Threshold's address without a path and follow the links from there.",
        (NextStep.RESTART,),
        Group.BOTH,
    ),
    CatalogEntry(
        "form_answered",
        "Page No Longer Available",
        "This address is where a page sends what you entered: it has no page of its own to "
        "open again. Anything shown there once, such as a one-time link, is not shown again.",
        "An address that only a form sends to (an import, a recovery link, a rename) was "
        "reloaded, bookmarked or opened again from the browser's history. Nothing was sent "
        "again.",
        "Go back to the page the form was on and send it again if it is still needed: a "
        "one-time link can be issued again, which revokes the one shown before.",
        (NextStep.RESTART,),
        Group.BOTH,
    ),
    # --- Settings → Security Methods ------------------------------------------------------------
    CatalogEntry(
        "verification_required",
        "Verify it\u2019s you",
        "For your security, confirm it\u2019s you with one of your passkeys before you add or "
        "remove a sign-in method.",
        "Adding or removing a method needs a passkey sign-in with user verification (fingerprint, "
        "face or PIN) within the policy's step-up window, five minutes by default; adding a "
        "passkey also accepts a push approved in Threshold Verify or the password and a code. The "
        "last one is older, or this session began without user verification.",
        "Verify with one of the account's passkeys when asked, or, to add a passkey, with "
        "Threshold Verify or the password and a code. Someone with none of these at hand needs "
        "a recovery link from an administrator.",
        (NextStep.RESTART,),
        Group.SETTINGS,
    ),
    CatalogEntry(
        "method_not_found",
        "Security Method Not Found",
        "This sign-in method does not exist or was already removed. "
        "Go back to Security Methods to see the ones you have.",
        "The method was removed already (a repeated request), or the address was changed by "
        "hand. Another person's methods read the same as ones that do not exist.",
        "Nothing to fix: Security Methods shows the methods the account has.",
        (NextStep.RESTART,),
        Group.SETTINGS,
    ),
    CatalogEntry(
        "last_method",
        "You Can\u2019t Remove Your Only Sign-in Method",
        "This is the only way you can sign in. Set up another passkey first, then remove this one.",
        "Removing the person's last sign-in method would lock them out of their account.",
        "Set up another passkey (or a password and code, where allowed) first, then remove "
        "this one.",
        (NextStep.ANOTHER_DEVICE,),
        Group.SETTINGS,
    ),
    CatalogEntry(
        "name_invalid",
        "Name Not Saved",
        "Enter a name that is not empty and not too long, without the characters < and >.",
        "The name was empty, too long, or contained markup, control or text-direction characters.",
        "Type a plain name of ordinary letters, digits and punctuation.",
        (NextStep.RETRY,),
        Group.SETTINGS,
    ),
    # --- Fallback sign-in (password and code) ----------------------------------------------------
    CatalogEntry(
        "fallback_not_allowed",
        "Password Sign-in Not Available",
        "Your organisation signs in with passkeys only. Use a passkey on this device, your phone "
        "or a security key, or ask your IT team for a recovery link.",
        "The organisation policy turns the password and authenticator-app fallback off.",
        "Sign in with a passkey, or issue a recovery link. To allow the fallback, set "
        "allow_password_fallback to true.",
        (NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.FALLBACK,
    ),
    CatalogEntry(
        "fallback_invalid",
        "Incorrect username or password",
        "The username or password is incorrect. Try again, or sign in with a passkey.",
        "Unknown username, no password set up, or a wrong password: the three read alike, so "
        "that sign-in attempts cannot tell which accounts exist. The audit log has which.",
        "Check the username, and that the person set up a password under Settings. "
        "The audit log's reason tells the three apart.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE),
        Group.FALLBACK,
    ),
    CatalogEntry(
        "code_invalid",
        "Incorrect code",
        "That code is not right, or it was used already. Enter the current 6-digit code from "
        "your authenticator app, or one of your recovery codes.",
        "A wrong or expired authenticator-app code (codes last 30 seconds; the phone's clock may "
        "be off), or a code or recovery code that was used before.",
        "Wait for the next code and enter it at once; set the phone's clock to automatic. A "
        "recovery code works once.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE),
        Group.FALLBACK,
    ),
    CatalogEntry(
        "too_many_attempts",
        "Too Many Attempts",
        "There were too many unsuccessful attempts, so password sign-in is paused. Try again in "
        "an hour, or sign in with a passkey.",
        "Repeated wrong passwords or codes for this username, or many failed attempts from this "
        "network address. Passkey sign-in is not affected. An administrator can issue a "
        "recovery link.",
        "Wait, then try again, or sign in with a passkey. Many attempts from one address may be "
        "an attack: check `threshold audit`.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.FALLBACK,
    ),
    CatalogEntry(
        "too_many_requests",
        "Too Many Requests",
        "Too many sign-in requests came from your network just now. Wait a moment and try again.",
        "Many passkey sign-ins were started from this network address within seconds (each "
        "worker allows a burst, then a steady rate per network). People behind one office "
        "address share the allowance; an automated flood is the usual cause.",
        "Wait a few seconds and try again. If it keeps happening from an office network, check "
        "`threshold audit` and the access log for a client that repeats requests.",
        (NextStep.RETRY, NextStep.CONTACT_SUPPORT),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "account_locked",
        "Account Locked",
        "Your account is locked. Contact your IT team to unlock it.",
        "An administrator locked the account (`threshold users lock EMAIL`). No way of signing "
        "in works until it is unlocked.",
        "Confirm who the person is, then unlock the account (`threshold users unlock EMAIL`).",
        (NextStep.CONTACT_SUPPORT,),
        Group.BOTH,
    ),
    # --- Messages from the browser or the operating system ---------------------------------------
    # What people read in the browser's or the system's own dialogs and report
    # in those words. Threshold never shows these.
    CatalogEntry(
        "browser_no_passkeys",
        "No passkeys available",
        "There aren\u2019t any passkeys saved for \u2026 on this device.",
        "No passkey for Threshold's address exists on this device, or on this profile (Android "
        "work profile, another browser profile).",
        "Set up a passkey for the device: sign in with a passkey on another device or another "
        "way, then \u201cSet up another\u201d under Settings \u2192 Security Methods. On Android, "
        "switch to the profile that holds the passkey.",
        (NextStep.ANOTHER_DEVICE, NextStep.PASSWORD),
        Group.BROWSER,
    ),
    CatalogEntry(
        "browser_already_registered",
        "Authenticator already registered",
        "The user attempted to register an authenticator that contains one of the credentials "
        "already registered with the relying party.",
        "The device or security key already holds a passkey for this account. Threshold shows "
        "this as \u201cPasskey already registered for this device\u201d.",
        "Nothing to fix: set-up for that device is complete. It is listed under Security Methods.",
        (NextStep.ANOTHER_DEVICE,),
        Group.BROWSER,
    ),
    CatalogEntry(
        "browser_not_allowed",
        "The operation either timed out or was not allowed",
        "The operation either timed out or was not allowed.",
        "The browser's own words for a passkey request that timed out, was canceled, or found no "
        "passkey. No passkey was created. Threshold shows it as \u201cPasskey Request Timed "
        "Out\u201d, \u201cPasskey Set Up Canceled\u201d or \u201cPasskey Not Found or "
        "Canceled\u201d, depending on what happened.",
        "Restart the set-up or sign-in and answer the prompt right away.",
        (NextStep.RESTART,),
        Group.BROWSER,
    ),
    CatalogEntry(
        "browser_save_failed",
        "Something went wrong",
        "Something went wrong. There was a problem saving your passkey.",
        "Windows says this when a passkey for the chosen method already exists, and when "
        "saving a passkey on an Android phone from a Windows computer fails (the phone says "
        "\u201cDevices couldn\u2019t connect\u201d).",
        "Check Security Methods: the passkey may already exist. To set up an Android phone, do "
        "it on the phone itself; retrying from Windows often works after a few attempts.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE),
        Group.BROWSER,
    ),
    CatalogEntry(
        "browser_verification_timed_out",
        "Verification timed out",
        "Verification timed out. Please try again.",
        "Mostly Android, when the computer and the phone cannot connect over Bluetooth to use "
        "the phone's passkey.",
        "Turn Bluetooth on for both devices and try again; it usually connects after a few "
        "attempts.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE),
        Group.BROWSER,
    ),
    CatalogEntry(
        "browser_hsts_localhost",
        "This site can\u2019t provide a secure connection",
        "This site can\u2019t provide a secure connection. localhost sent an invalid response.",
        "Threshold runs on localhost (a trial or development server) over plain HTTP, and the "
        "browser remembers HTTPS-only (HSTS) for localhost from another program that once set "
        "it there.",
        "In Chrome, open chrome://net-internals/#hsts, enter localhost under \u201cDelete domain "
        "security policies\u201d and select Delete. Then reload.",
        (NextStep.RESTART,),
        Group.BROWSER,
    ),
    CatalogEntry(
        "browser_prompt_loop",
        "The authentication prompt is looping",
        "The passkey prompt keeps coming back after you answer it.",
        "An ad blocker or privacy extension blocks Threshold's script or requests, so the "
        "sign-in never completes and the page asks again.",
        "Turn the ad blocker off for Threshold's address (or allow it in the extension), then "
        "reload the page.",
        (NextStep.RESTART, NextStep.CONTACT_SUPPORT),
        Group.BROWSER,
    ),
    # --- Threshold Verify, the device app -------------------------------------------------------
    CatalogEntry(
        "device_not_recognized",
        "Device Not Recognized",
        "This device is no longer set up for your account. Add the account to Threshold Verify "
        "again from Settings \u2192 Security Methods, or from a device that has it.",
        "The device was removed from the account (Settings, an administrator, or the app's "
        "`remove`), or its request was not signed by the key Threshold knows for it.",
        "Set the device up again: Settings \u2192 Security Methods \u2192 Threshold Verify \u2192 "
        "Set up, or Add Account to Another Device on a device that has it. The audit log's "
        "device events say when and by whom it was removed.",
        (NextStep.RESTART, NextStep.CONTACT_SUPPORT),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_clock",
        "Check Your Device\u2019s Clock",
        "Threshold Verify\u2019s request arrived with the wrong time. Set the device\u2019s clock "
        "to automatic and try again.",
        "Each request the device app signs is valid for two minutes; the device's clock is more "
        "than two minutes from the server's, or the request took that long to arrive.",
        "Turn on automatic date and time on the device. If every device is refused, check the "
        "server's clock (NTP).",
        (NextStep.RETRY,),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "setup_code_invalid",
        "Setup Code Not Valid",
        "This setup code can\u2019t be used: it may have expired, been used already, or been "
        "canceled after three wrong codes. Start the set-up again to get a new one.",
        "Setup codes work once, for ten minutes, and three wrong returned codes cancel the "
        "set-up. Also shown for a code typed wrong.",
        "Start again: Settings \u2192 Security Methods \u2192 Threshold Verify \u2192 Set up, "
        "or Add Account to Another Device on a device that has the app, and enter the new code "
        "at once.",
        (NextStep.RESTART,),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "returned_code_invalid",
        "Incorrect code",
        "That is not the code Threshold Verify shows on the new device. Enter the code it shows; "
        "after three wrong codes the set-up is canceled.",
        "The code typed on the browser page (or on the device already set up) is not the one "
        "the new device displays after it redeemed the setup code.",
        "Read the code on the new device again. After three wrong codes, start the set-up again.",
        (NextStep.RETRY, NextStep.RESTART),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_limit_reached",
        "Device Limit Reached",
        "You have reached the maximum number of devices with Threshold Verify. Remove a device "
        "you no longer use to add a new one.",
        "The account already has as many devices as the organisation policy allows "
        "(device_limit, 5 by default).",
        "Remove an unused device under Settings \u2192 Security Methods \u2192 Threshold "
        "Verify, or raise device_limit.",
        (NextStep.SET_UP_LATER, NextStep.CONTACT_SUPPORT),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_key_refused",
        "Device Not Allowed",
        "Your organisation requires Threshold Verify to keep its key in the device\u2019s "
        "security chip (TPM). This device\u2019s key is not verified to be there.",
        "The policy's require_hardware_device_key is on and the device's key protection is "
        "\u201csoftware\u201d: no TPM, or Threshold could not verify the TPM's attestation.",
        "Use a device with a TPM 2.0, or turn require_hardware_device_key off.",
        (NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_app_not_allowed",
        "Device App Sign-in Not Available",
        "Your organisation does not allow signing in with Threshold Verify. Sign in with a "
        "passkey.",
        "The organisation policy's allow_device_app_sign_in is off.",
        "Sign in with a passkey. To allow push sign-ins, set allow_device_app_sign_in to true.",
        (NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "push_pending",
        "Push Already Sent",
        "A push to Threshold Verify is already waiting. Answer it on your device, or wait two "
        "minutes and try again.",
        "Only one push per person waits at a time; the earlier one has not been answered and "
        "has not expired (two minutes).",
        "Answer the waiting push in Threshold Verify (`threshold-verify run`), or wait for it to "
        "expire.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "push_refused",
        "Sign-in Not Approved",
        "The sign-in was not approved in Threshold Verify: the number did not match, or it was "
        "denied. If it was you, start again.",
        "The person typed a number on the device that is not the one the browser showed, which "
        "ends the push, or chose \u201cI didn\u2019t do this\u201d, which also mutes pushes "
        "for twenty minutes and emails them.",
        "Start again and type the number the browser shows. A denial the person did not make "
        "may be someone else's sign-in attempt: check `threshold audit`.",
        (NextStep.RESTART, NextStep.ANOTHER_DEVICE, NextStep.CONTACT_SUPPORT),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_qr_unrecognized",
        "Failed to scan QR code",
        "iOS: Failed to scan QR code. Android: Unrecognized QR code.",
        "The phone's camera app could not read the set-up QR code, or it was scanned with an "
        "app outside the work profile.",
        "On iOS use the native camera app; on Android the Pixel Camera, Google Camera or QR "
        "Scanner from the work profile. Or type the setup code shown under the QR code.",
        (NextStep.RETRY,),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_app_not_running",
        "Threshold Verify is not running",
        "No push arrives, or the app cannot be found.",
        "Threshold Verify only receives pushes while it runs (`threshold-verify run` on a "
        "computer, the /verify/ web app open on a phone).",
        "Start Threshold Verify (`threshold-verify run`) and keep it running; check that "
        "`threshold-verify accounts` lists the account.",
        (NextStep.RETRY, NextStep.CONTACT_SUPPORT),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_connection_issue",
        "Connection Issue when adding a device",
        "Error: Connection Issue when adding mobile device.",
        "The new device could not reach Threshold, or the device already set up could not.",
        "Set up the new device separately: sign in with a passkey on it and use Settings "
        "\u2192 Security Methods \u2192 Threshold Verify \u2192 Set up there.",
        (NextStep.RETRY, NextStep.ANOTHER_DEVICE),
        Group.DEVICE_APP,
    ),
    CatalogEntry(
        "device_pin_locked",
        "Device PIN locked",
        "Too many wrong PINs. Wait, then try again.",
        "Threshold Verify's device PIN was typed wrong repeatedly; each wrong PIN after the "
        "third doubles the wait. The PIN never leaves the device.",
        "Wait and try again. A forgotten PIN cannot be reset: remove the account from the "
        "device (`threshold-verify remove`) and add it again.",
        (NextStep.RETRY, NextStep.CONTACT_SUPPORT),
        Group.DEVICE_APP,
    ),
    # --- Apps (single sign-on) -----------------------------------------------------------------
    CatalogEntry(
        "app_not_allowed",
        "You don't have access to this app",
        "You don't have access to this app. If you need it for your work, ask your IT team to "
        "give you access.",
        "The app is assigned to groups (threshold apps assign) and the person is in none of "
        "them. The refusal is in the audit log (sso.refused, not_assigned).",
        "If the person should use the app, add them to one of its groups (threshold groups "
        "add-member) or assign the app to everyone.",
        (NextStep.CONTACT_SUPPORT,),
        Group.SIGN_IN,
    ),
    CatalogEntry(
        "app_link_invalid",
        "App Sign-in Link Not Valid",
        "The app that sent you here asked to sign you in in a way Threshold can't accept. Go "
        "back to the app and try again. If it happens again, contact your IT team.",
        "The app's request names no registered app (client ID), a redirect or post-logout URI "
        "the app was not added with, or is otherwise malformed, so Threshold cannot safely send "
        "the person back to it. The audit log has the OAuth error (sso.refused).",
        "Compare the app's configuration with `threshold apps list`: the client ID and every "
        "redirect URI must match exactly.",
        (NextStep.RESTART, NextStep.CONTACT_SUPPORT),
        Group.SIGN_IN,
    ),
]

CATALOG: dict[str, CatalogEntry] = {entry.key: entry for entry in _ENTRIES}


class Surface(StrEnum):
    """Where a failure ends, which decides the words: the same category reads differently
    while signing in, while setting a passkey up, and in Settings."""

    AUTHENTICATION = "authentication"  # signing in (passkey, password and code), verifying it's you
    REGISTRATION = "registration"  # setting a passkey up: enrollment, recovery, "Set up another"
    SETTINGS = "settings"  # changing one's own name and sign-in methods


@dataclass(frozen=True)
class Presentation:
    """How a category of failure answers: one HTTP status, and one catalog entry per surface."""

    status: int
    authentication: str
    registration: str
    settings: str

    def entry(self, surface: Surface) -> CatalogEntry:
        return CATALOG[getattr(self, Surface(surface).value)]


# The generic failure of each surface: a category that cannot happen there reads as it.
_GENERIC = ("verification_failed", "registration_failed", "verification_incomplete")
_V_FAILED, _R_FAILED, _S_FAILED = _GENERIC

# The one map from a category to what is shown: every Category has exactly one row.
PRESENTATIONS: dict[Category, Presentation] = {
    Category.FAILED: Presentation(400, *_GENERIC),
    Category.SESSION: Presentation(400, "session_expired", "session_expired", "session_expired"),
    Category.NOT_VERIFIED: Presentation(400, "not_verified", "not_verified", _S_FAILED),
    # At sign-in the device cannot be unsupported: it registered.
    Category.UNSUPPORTED: Presentation(400, _V_FAILED, "not_supported", _S_FAILED),
    Category.UNAVAILABLE: Presentation(503, "passkey_unavailable", "setup_unavailable", _S_FAILED),
    Category.BAD_REQUEST: Presentation(400, "bad_request", "bad_request", "bad_request"),
    Category.TOO_LARGE: Presentation(413, "bad_request", "bad_request", "bad_request"),
    Category.ALREADY_REGISTERED: Presentation(400, _V_FAILED, "already_registered", _S_FAILED),
    Category.LIMIT_REACHED: Presentation(400, _V_FAILED, "limit_reached", _S_FAILED),
    Category.INVITE_UNUSABLE: Presentation(400, _V_FAILED, "invite_unusable", _S_FAILED),
    # At sign-in: a passkey today's policy refuses (core/policy.py evaluate), signature right.
    Category.AUTHENTICATOR_REFUSED: Presentation(
        400, "passkey_not_allowed", "authenticator_not_allowed", _S_FAILED
    ),
    Category.SYNCED_BLOCKED: Presentation(
        400, "passkey_not_allowed", "synced_not_allowed", _S_FAILED
    ),
    Category.STEP_UP: Presentation(
        403, _V_FAILED, "verification_required", "verification_required"
    ),
    Category.NOT_FOUND: Presentation(404, _V_FAILED, _R_FAILED, "method_not_found"),
    Category.LAST_METHOD: Presentation(409, _V_FAILED, _R_FAILED, "last_method"),
    Category.NAME_INVALID: Presentation(400, _V_FAILED, _R_FAILED, "name_invalid"),
    Category.FALLBACK_OFF: Presentation(
        403, "fallback_not_allowed", _R_FAILED, "fallback_not_allowed"
    ),
    Category.FALLBACK_INVALID: Presentation(400, "fallback_invalid", _R_FAILED, _S_FAILED),
    Category.CODE_INVALID: Presentation(400, "code_invalid", _R_FAILED, _S_FAILED),
    Category.THROTTLED: Presentation(429, "too_many_attempts", _R_FAILED, _S_FAILED),
    Category.LOCKED: Presentation(403, "account_locked", _R_FAILED, _S_FAILED),
    Category.BUSY: Presentation(429, "too_many_requests", _R_FAILED, _S_FAILED),
    Category.DEVICE_UNAUTHORIZED: Presentation(
        401, "device_not_recognized", "device_not_recognized", "device_not_recognized"
    ),
    Category.DEVICE_CLOCK: Presentation(400, "device_clock", "device_clock", "device_clock"),
    Category.SETUP_CODE_INVALID: Presentation(
        400, "setup_code_invalid", "setup_code_invalid", "setup_code_invalid"
    ),
    Category.RETURNED_CODE_INVALID: Presentation(
        400, "returned_code_invalid", "returned_code_invalid", "returned_code_invalid"
    ),
    Category.DEVICE_LIMIT: Presentation(
        400, _V_FAILED, "device_limit_reached", "device_limit_reached"
    ),
    Category.DEVICE_KEY_REFUSED: Presentation(
        400, "device_key_refused", "device_key_refused", "device_key_refused"
    ),
    Category.DEVICE_APP_OFF: Presentation(
        403, "device_app_not_allowed", "device_app_not_allowed", "device_app_not_allowed"
    ),
    Category.PUSH_PENDING: Presentation(409, "push_pending", _R_FAILED, _S_FAILED),
    Category.PUSH_REFUSED: Presentation(400, "push_refused", _R_FAILED, _S_FAILED),
}


def _check_presentations() -> None:
    """At import, so that a category without its row, or a row naming no entry, cannot ship."""
    missing = set(Category) - PRESENTATIONS.keys()
    if missing:
        raise ValueError(f"categories without a presentation: {', '.join(sorted(missing))}")
    for category, presentation in PRESENTATIONS.items():
        for surface in Surface:
            key = getattr(presentation, surface.value)
            if key not in CATALOG or CATALOG[key].is_browser_message:
                raise ValueError(
                    f"{category} on {surface}: {key!r} is not an entry Threshold shows"
                )


_check_presentations()


def status_for(error: ThresholdError) -> int:
    """The HTTP status of a request that ``error`` refused."""
    return PRESENTATIONS[error.category].status


def entry_for(error: ThresholdError, surface: Surface | str) -> CatalogEntry:
    """The catalog entry a person sees when ``error`` ends what they were doing on ``surface``
    ("authentication", "registration" or "settings")."""
    return PRESENTATIONS[error.category].entry(Surface(surface))


def explain(error: ThresholdError, surface: Surface | str) -> str:
    """For support staff: the precise reason, and what the person was shown."""
    reason = (type(error).__doc__ or error.code).strip().splitlines()[0].rstrip(".")
    detail = f" ({error.detail})" if error.detail else ""
    shown = entry_for(error, surface).title
    return f"{reason}{detail}. The person is shown \u201c{shown}\u201d."


def entries_by_group() -> list[tuple[str, list[CatalogEntry]]]:
    """The help page's sections: (heading, entries), in the catalog's order."""
    return [
        (heading, [entry for entry in _ENTRIES if entry.group == group])
        for group, heading in GROUPS.items()
    ]
