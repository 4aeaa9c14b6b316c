"""The "Set up a passkey on your devices" guide: one page per platform, the visitor's preselected.

The steps and the troubleshooting come from the help articles people already know
(``shared/seeds``), rewritten for this product: passkeys are managed at Settings →
“Security Methods” and added with “Set up another”. The content is data, here;
``help/guide.html`` lays out any platform the same way (``threshold.help.views``).

Text may name ``$site_name`` and ``$rp_id`` (the address passkeys are saved for, which
browsers quote in their messages); :func:`localize` fills them in when a page is shown.

The guide is public, like ``/help/errors``: someone on a new laptop or a loaner reads it
before they can sign in there. Only the way to Settings depends on being signed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from string import Template

from django.conf import settings

from threshold.core.catalog import CATALOG


@dataclass(frozen=True)
class Link:
    text: str
    url: str = ""  # an address outside this site ...
    guide: str = ""  # ... or another page of this guide, by its platform key


@dataclass(frozen=True)
class Trouble:
    """What a person sees (often a message, quoted) and what to do about it."""

    symptom: str
    fix: str
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Steps:
    """One numbered procedure, under its own heading."""

    title: str
    items: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class Platform:
    key: str  # in the address, and what useragent.Client.platform returns
    name: str  # in the navigation
    title: str  # the page's heading
    summary: str  # one line on the index
    intro: str  # what kind of passkey this platform makes, and where it is kept
    steps: tuple[Steps, ...]
    troubleshooting: tuple[Trouble, ...]


# --- Steps every platform shares ---------------------------------------------------------------


def _open_settings(where: str) -> str:
    return (
        where + ", sign in to $site_name and open Settings: select your name at the top of the "
        "page, then “Settings”. Your passkeys are listed under “Security Methods”."
    )


_VERIFY = (
    "Select “Set up another”. $site_name first asks you to verify it’s you: select “Verify” and "
    "confirm with a passkey you already have."
)


def _choose(*choices: str) -> str:
    return "When asked where to keep the new passkey, choose {}.".format(
        " or ".join(f"“{choice}”" for choice in choices)
    )


def _set_up_another(where: str, *choices: str) -> tuple[str, ...]:
    """Settings → Security Methods → “Set up another”, verified, then one of ``choices``."""
    return (_open_settings(where), _VERIFY, _choose(*choices))


_NICKNAME = (
    "Back on Security Methods, give the new passkey a nickname you will recognise later, "
    "such as the device it is on. The newest passkey is marked as the most recently added."
)
_UPDATE_CHROME = (
    "If you use Chrome, open chrome://settings/help to install any update, then select "
    "“Relaunch” if it asks."
)
_BLUETOOTH = (
    "Turn on Bluetooth on the computer and on the phone or tablet; they don’t need to be paired. "
    "On a Mac, also allow your browser under System Settings → Privacy & Security → Bluetooth."
)
_OTHER_DEVICE = (
    "The browser shows a QR code. If it offers to save the passkey on the computer instead, pick "
    "the other option: “Use a different phone, tablet or security key” in Chrome, or “Other "
    "options”, then “iPhone, iPad or Android device” in Safari."
)


# --- Troubleshooting several platforms share ---------------------------------------------------


def _quoted(catalog_key: str) -> str:
    """A title people see on $site_name's own pages, as the catalog words it."""
    return f"“{CATALOG[catalog_key].title}”"


_ALREADY_REGISTERED = Trouble(
    _quoted("already_registered"),
    "This device or security key already holds a passkey for your account, so there is nothing "
    "left to do: you will find it on your Security Methods list.",
)
_TIMED_OUT = Trouble(
    f"{_quoted('setup_timed_out')}, {_quoted('setup_canceled')}, or “The operation either timed "
    "out or was not allowed”",
    "No passkey was created: too much time passed between starting the set-up and answering the "
    "prompt, or the prompt was closed. Start again from “Set up another” and answer the prompt "
    "right away.",
)
_NO_PASSKEYS = Trouble(
    "“No passkeys available. There aren’t any passkeys saved for $rp_id on this device.”",
    "This device has no passkey for $site_name yet. To sign in now, choose “Use a different "
    "phone, tablet or security key” (the wording varies between browsers) and use your phone or "
    "security key. Then set up a passkey on this device with the steps above.",
)
_LIMIT_REACHED = Trouble(
    _quoted("limit_reached"),
    "Your account already has as many passkeys as your organisation allows. On Security Methods, "
    "remove one you no longer use, then set up the new one.",
)
_SYNCED_NOT_ALLOWED = Trouble(
    _quoted("synced_not_allowed"),
    "Your organisation accepts only passkeys that stay on one device. Start again and keep the "
    "passkey on a security key, in Windows Hello, or in your Chrome profile on a Mac, rather than "
    "in iCloud Keychain, Google Password Manager or another password manager.",
    (Link("Set up a security key", guide="security-key"),),
)
_CONNECT = Trouble(
    "The QR code scans, but the phone and the computer don’t connect",
    "The phone uses Bluetooth to prove it is near the computer. Turn on Bluetooth on both (no "
    "pairing needed); on a Mac, allow your browser under System Settings → Privacy & Security → "
    "Bluetooth. Keep the phone close to the computer and try again: connecting can take a few "
    "seconds, and sometimes a couple of attempts.",
)
_PASSWORD_MANAGER = Trouble(
    "A password manager’s window (1Password, Bitwarden or similar) opens instead of your "
    "browser’s or system’s",
    "Password manager extensions can offer to keep passkeys themselves. Save it there if that is "
    "what you want. Otherwise close the extension’s window, or choose its option to use another "
    "device or a security key, and the browser’s own prompt appears.",
)
_LOOP = Trouble(
    "The passkey prompt keeps coming back, or the page reloads in a loop",
    "An ad blocker or privacy extension is probably interfering. Turn it off for $site_name, or "
    "allow the site in it, and try again.",
)
_HSTS = Trouble(
    "“This site can’t provide a secure connection” or “localhost sent an invalid response” "
    "when $site_name runs on your own computer",
    "The browser remembers an HTTPS-only rule (HSTS) for localhost, set by another program. In "
    "Chrome, open chrome://net-internals/#hsts, type localhost under “Delete domain security "
    "policies” and select “Delete”.",
)
_KEY_UNREACHABLE = Trouble(
    "On Linux, nothing happens when you touch the security key",
    "The browser may not be allowed to use the key. Current distributions allow it out of the "
    "box; on older or minimal systems, install the package with the security key device rules "
    "(libu2f-udev on Debian and Ubuntu), then unplug the key and plug it in again.",
)
_KEY_STOPPED_WORKING = Trouble(
    "A security key that worked before now fails, with “The operation either timed out or was "
    f"not allowed” or {_quoted('passkey_not_found_or_canceled')}",
    "Reset the key and add it again. A reset erases every passkey on the key, for every site, so "
    "make sure you can sign in another way first. In Chrome, open Settings → Privacy and security "
    "→ Security → Manage security keys → “Reset your security key”, create a new PIN, add the key "
    "again with “Set up another”, and remove its old entry from Security Methods.",
)


# --- The platforms -----------------------------------------------------------------------------

MACOS = Platform(
    key="macos",
    name="macOS",
    title="Set up a passkey on your Mac",
    summary="Touch ID, with the passkey in iCloud Keychain or in Chrome.",
    intro=(
        "On a Mac you confirm each sign-in with Touch ID or your Mac’s password, and you choose "
        "where the passkey is kept. iCloud Keychain syncs it to your Apple devices signed in to "
        "the same Apple Account. In Chrome you can instead keep it in your Chrome profile, on "
        "this Mac only, or in Google Password Manager, which syncs it to Chrome wherever you use "
        "your Google Account. If you already saved a passkey for $site_name in iCloud Keychain on "
        "your iPhone, this Mac has it too and there is nothing to set up."
    ),
    steps=(
        Steps(
            "Set up the passkey",
            (
                "Check that your Mac runs macOS Ventura 13 or later: choose Apple menu → "
                "About This Mac. Earlier versions cannot save passkeys in iCloud Keychain.",
                _UPDATE_CHROME,
                "To keep the passkey in iCloud Keychain, open System Settings, select your name, "
                "then iCloud, and check that Passwords & Keychain (just “Passwords” on newer "
                "versions) is turned on.",
                *_set_up_another("On your Mac", "This device"),
                "In Safari, macOS offers to save the passkey in iCloud Keychain: select "
                "“Continue” and confirm with Touch ID or your Mac’s password.",
                "In Chrome, choose where to save it: iCloud Keychain, or Chrome’s own store, shown "
                "as “Your Chrome profile” or as Google Password Manager depending on your "
                "version. Select “Continue” and confirm with Touch ID.",
                _NICKNAME,
            ),
        ),
    ),
    troubleshooting=(
        Trouble(
            "iCloud Keychain is not offered",
            "iCloud Keychain needs macOS Ventura 13 or later and an Apple Account with two-factor "
            "authentication. In System Settings, select your name, then Sign-In & Security, and "
            "turn on two-factor authentication. Then, under iCloud, turn on Passwords & Keychain "
            "and “Sync this Mac”. Do the same on your iPhone so the passkey reaches it too.",
            (
                Link(
                    "Find out which macOS your Mac is using (Apple Support)",
                    url="https://support.apple.com/en-us/109033",
                ),
            ),
        ),
        Trouble(
            "The browser asks you to insert a security key and never offers Touch ID",
            "That browser cannot use Touch ID or iCloud Keychain for passkeys. Use Safari or an "
            "up-to-date Chrome, or set up a security key instead.",
            (Link("Set up a security key", guide="security-key"),),
        ),
        _PASSWORD_MANAGER,
        _CONNECT,
        _ALREADY_REGISTERED,
        _TIMED_OUT,
        _NO_PASSKEYS,
        _SYNCED_NOT_ALLOWED,
        _LIMIT_REACHED,
        _LOOP,
        _HSTS,
    ),
)

WINDOWS = Platform(
    key="windows",
    name="Windows",
    title="Set up a passkey on Windows",
    summary="Windows Hello: your face, fingerprint or PIN.",
    intro=(
        "On Windows, Windows Hello keeps the passkey on this computer and you confirm with your "
        "face, your fingerprint or your Windows Hello PIN. It does not sync, so set one up on each "
        "computer you use, and one on your phone or a security key as a backup. In Chrome you can "
        "choose Google Password Manager instead, which syncs the passkey to Chrome wherever you "
        "use your Google Account."
    ),
    steps=(
        Steps(
            "Set up the passkey",
            (
                "Make sure Windows Hello is set up: open Settings → Accounts → Sign-in options "
                "and set up a PIN, and face or fingerprint recognition if your computer has them.",
                _UPDATE_CHROME,
                *_set_up_another("On your computer", "This device"),
                "If Chrome first asks where to save the passkey, choose Windows Hello to keep it "
                "on this computer, or Google Password Manager to sync it.",
                "A Windows Security window opens, titled “Create a passkey” or “Choose where to "
                "save this passkey” depending on your version of Windows; the steps are the same. "
                "Save the passkey on this Windows device and confirm with your face, fingerprint "
                "or PIN.",
                _NICKNAME,
            ),
        ),
    ),
    troubleshooting=(
        Trouble(
            "“Something went wrong. There was a problem saving your passkey.”",
            "Windows says this when the computer already holds a passkey for your account. If it "
            "is on your Security Methods list, you are done. If it is not, remove the old passkey "
            "for $rp_id from Windows (on Windows 11, Settings → Accounts → Passkeys) and start "
            "again.",
        ),
        Trouble(
            "Setting up an Android phone from this computer: the phone says “Devices couldn’t "
            "connect” and Windows says “Something went wrong”",
            "The Bluetooth link between the computer and the phone failed. Try again, as it often "
            "works after a couple of attempts, or skip the computer and set up the passkey on the "
            "phone itself.",
            (Link("Set up a passkey on Android", guide="android"),),
        ),
        _CONNECT,
        _PASSWORD_MANAGER,
        _ALREADY_REGISTERED,
        _TIMED_OUT,
        _NO_PASSKEYS,
        _SYNCED_NOT_ALLOWED,
        _LIMIT_REACHED,
        _LOOP,
        _HSTS,
    ),
)

IOS = Platform(
    key="ios",
    name="iOS (iPhone and iPad)",
    title="Set up a passkey on your iPhone or iPad",
    summary="Face ID or Touch ID, with the passkey in iCloud Keychain.",
    intro=(
        "On an iPhone or iPad, passkeys are saved in iCloud Keychain and you confirm with Face "
        "ID, Touch ID or your passcode. iCloud Keychain syncs them to your Apple devices signed in "
        "to the same Apple Account, so a passkey you saved in iCloud Keychain on your Mac is "
        "already here. You need iOS or iPadOS 16 or later. Set one up even if you rarely sign in "
        "on your phone: with it, you can sign in on a new computer by scanning a QR code, and get "
        "back in if a computer’s passkey is lost."
    ),
    steps=(
        Steps(
            "On the iPhone or iPad",
            (
                "Check the version under Settings → General → About. If it is older than 16, "
                "update under Settings → General → Software Update.",
                "Turn on iCloud Keychain: open Settings, tap your name, then iCloud, and turn on "
                "Passwords and Keychain (just “Passwords” on newer versions).",
                *_set_up_another("On the iPhone or iPad", "This device"),
                "iOS offers to save a passkey for $rp_id in iCloud Keychain. Tap “Continue” and "
                "confirm with Face ID, Touch ID or your passcode.",
                _NICKNAME,
            ),
        ),
        Steps(
            "From a computer, with the phone’s camera",
            (
                _BLUETOOTH,
                _UPDATE_CHROME,
                *_set_up_another("On the computer", "A phone or tablet"),
                _OTHER_DEVICE,
                "On the iPhone or iPad, open the Camera app, point it at the QR code and tap the "
                "passkey button that appears. Connecting can take a few seconds.",
                "Save the passkey in iCloud Keychain when asked, and confirm with Face ID, Touch "
                "ID or your passcode.",
                _NICKNAME,
                "To check that it works, open $site_name on the iPhone or iPad and sign in with "
                "the new passkey.",
            ),
            note="Handy when you are already signed in on your computer.",
        ),
    ),
    troubleshooting=(
        Trouble(
            "An error mentions a developer or Xcode, or no passkey prompt appears",
            "The device runs a version older than iOS 16, which cannot save passkeys. Update it "
            "under Settings → General → Software Update.",
        ),
        Trouble(
            "Saving the passkey in iCloud Keychain fails",
            "Check that Passwords and Keychain is turned on under Settings → your name → iCloud. "
            "If it still fails, force restart the device; if that does not help either, sign out "
            "of iCloud on the device, sign back in and try again.",
            (
                Link(
                    "How to force restart an iPhone (Apple Support)",
                    url="https://support.apple.com/guide/iphone/force-restart-iphone-iph8903c3ee6/ios",
                ),
            ),
        ),
        Trouble(
            "iOS sends you to its password settings, or “AutoFill Passwords and Passkeys” is off",
            "Open Settings → General → AutoFill & Passwords (on older versions, Settings → "
            "Passwords → Password Options) and turn on AutoFill Passwords and Passkeys.",
        ),
        Trouble(
            "iCloud Keychain is not offered",
            "iCloud Keychain needs an Apple Account with two-factor authentication. Open Settings, "
            "tap your name, then Sign-In & Security, and turn on two-factor authentication; then "
            "turn on Passwords and Keychain under iCloud.",
        ),
        Trouble(
            "The QR code does not scan, or opens the wrong app",
            "Scan it with the built-in Camera app. Scanners inside other apps cannot open passkey "
            "codes.",
        ),
        _CONNECT,
        _ALREADY_REGISTERED,
        _TIMED_OUT,
        _NO_PASSKEYS,
        _SYNCED_NOT_ALLOWED,
        _LIMIT_REACHED,
    ),
)

ANDROID = Platform(
    key="android",
    name="Android",
    title="Set up a passkey on Android",
    summary="Your screen lock, with the passkey in Google Password Manager.",
    intro=(
        "On Android, passkeys are saved in Google Password Manager and you confirm with your "
        "screen lock: fingerprint, face, PIN or pattern. Google Password Manager syncs them to "
        "your devices signed in to the same Google Account. If the phone has a work profile, its "
        "personal and work profiles keep separate passkeys: set up the passkey in the profile "
        "where you will use $site_name. Set one up even if you rarely sign in on your phone: with "
        "it, you can sign in on a new computer by scanning a QR code."
    ),
    steps=(
        Steps(
            "On the Android phone or tablet",
            (
                "Make sure the device has a screen lock: open Settings → Security (or Security & "
                "privacy) → Screen lock.",
                "Install any update to Android (Settings → System → System update), to Google "
                "Play services and to the Play Store.",
                "If the device has a work profile, open the browser from the profile you want the "
                "passkey in. Work profile apps are marked with a briefcase.",
                *_set_up_another("On the device", "This device"),
                "Android offers to create a passkey for $rp_id. Choose “Use this device with "
                "screen lock” if it is offered, and confirm with your fingerprint, face, PIN or "
                "pattern.",
                _NICKNAME,
            ),
        ),
        Steps(
            "From a computer, with the phone’s camera",
            (
                _BLUETOOTH,
                _UPDATE_CHROME,
                *_set_up_another("On the computer", "A phone or tablet"),
                _OTHER_DEVICE,
                "On the phone, scan the QR code with the camera app, from the work profile if "
                "that is where you want the passkey. If the camera does not react, use Google "
                "Lens or the Google Camera app.",
                "Confirm with your screen lock to save the passkey.",
                _NICKNAME,
            ),
            note="Use this when the phone itself does not offer “This device”.",
        ),
    ),
    troubleshooting=(
        Trouble(
            "“This device” is not offered, or Android never offers “Use this device with screen "
            "lock”",
            "Set a screen lock, then update Android, Google Play services and the Play Store. If "
            "it still is not offered, set up the passkey from a computer instead, with the second "
            "set of steps above.",
        ),
        Trouble(
            "“No passkeys available. There aren’t any passkeys saved for $rp_id on this device.”",
            "The passkey may be in the phone’s other profile: open $site_name from that profile’s "
            "browser, or scan the QR code with that profile’s camera. If there is no passkey in "
            "either profile, set one up with the steps above.",
        ),
        Trouble(
            "“Devices couldn’t connect” or “Verification timed out. Please try again.”",
            "The phone and the computer could not reach each other over Bluetooth. Keep Bluetooth "
            "on for both and the phone close to the computer, and try again: it often works after "
            "a few attempts. Or set up the passkey on the phone itself.",
        ),
        Trouble(
            "The QR code does not scan, or the phone says it is not recognised",
            "Scan it with the camera app (Pixel Camera, Google Camera) or Google Lens, from the "
            "profile that should keep the passkey. Scanners inside other apps cannot open passkey "
            "codes.",
        ),
        Trouble(
            "On a Samsung phone: “Google could not verify that this account belongs to you”",
            "Make Google the phone’s autofill service in the profile you use: open Settings → "
            "Google, switch to the Work tab if you use a work profile, open Autofill and turn on "
            "“Use Autofill with Google”.",
        ),
        Trouble(
            "“Can’t add work profile - contact your IT admin”",
            "The work profile failed to install. Remove it and add your work account again: in "
            "Settings → Passwords, passkeys & accounts, select “Remove work profile”, then “Add "
            "account”. If your organisation manages the phone, ask your IT team first.",
        ),
        _ALREADY_REGISTERED,
        _TIMED_OUT,
        _SYNCED_NOT_ALLOWED,
        _LIMIT_REACHED,
    ),
)

CHROMEOS = Platform(
    key="chromeos",
    name="ChromeOS (Chromebook)",
    title="Set up a passkey on your Chromebook",
    summary="Your screen lock or a PIN, with the passkey in Chrome.",
    intro=(
        "On a Chromebook, Chrome keeps the passkey: depending on your version of ChromeOS, on "
        "this Chromebook only, or in Google Password Manager, which syncs it to Chrome wherever "
        "you use your Google Account. You confirm with your screen lock or a PIN. A new, reset or "
        "loaner Chromebook has no passkey yet, so the first time you sign in with a passkey on "
        "your phone or with a security key."
    ),
    steps=(
        Steps(
            "Set up the passkey",
            (
                "Update ChromeOS: open Settings → About ChromeOS → Check for updates, and restart "
                "if asked.",
                "If you will sign in with your phone, turn on Bluetooth on the Chromebook and on "
                "the phone.",
                "Open $site_name on the Chromebook. To sign in the first time, choose “Use a "
                "different phone, tablet or security key” (the wording varies), then scan the QR "
                "code with your phone’s camera and confirm on the phone, or insert your security "
                "key, enter its PIN and touch it.",
                "If your phone has a personal and a work profile, scan the code with the camera of "
                "the profile that holds your passkey.",
                "Once signed in, select your name at the top of the page, then “Settings”. Your "
                "passkeys are listed under “Security Methods”.",
                _VERIFY,
                _choose("This device"),
                "Chrome offers to save the passkey. Confirm with your screen lock, or create or "
                "enter your PIN if asked.",
                _NICKNAME,
            ),
        ),
    ),
    troubleshooting=(
        Trouble(
            "You have no passkey on a phone or security key to sign in with",
            "Set one up first on a device where you can sign in, then come back to the Chromebook.",
            (
                Link("Set up a passkey on an iPhone or iPad", guide="ios"),
                Link("Set up a passkey on Android", guide="android"),
                Link("Set up a security key", guide="security-key"),
            ),
        ),
        Trouble(
            "You are using a loaner or shared Chromebook",
            "When you sign out, a loaner Chromebook removes your profile, and with it any passkey "
            "kept only on that Chromebook. Sign in with your phone or security key instead, or "
            "remove the Chromebook’s passkey from Security Methods when you give it back.",
        ),
        _NO_PASSKEYS,
        _CONNECT,
        _ALREADY_REGISTERED,
        _TIMED_OUT,
        _SYNCED_NOT_ALLOWED,
        _LIMIT_REACHED,
        _LOOP,
        _HSTS,
    ),
)

LINUX = Platform(
    key="linux",
    name="Linux",
    title="Set up a passkey on Linux",
    summary="A security key, your phone, or Google Password Manager in Chrome.",
    intro=(
        "Linux has no built-in passkey store like Touch ID or Windows Hello. Keep the passkey on "
        "a security key, where it stays; on your phone, which you then use by scanning a QR code "
        "each time you sign in on the computer; or, in Chrome, in Google Password Manager, which "
        "syncs it to Chrome wherever you use your Google Account and asks for its own PIN."
    ),
    steps=(
        Steps(
            "Set up the passkey",
            (
                "Update your browser: in Chrome, open chrome://settings/help; in Firefox, open "
                "Help → About Firefox.",
                "For a security key, create its PIN first (see the security key guide). For your "
                "phone, turn on Bluetooth on the computer and on the phone.",
                *_set_up_another("On the computer", "A security key", "A phone or tablet"),
                "In Chrome you can also choose “This device” to save the passkey in Google "
                "Password Manager.",
                "Follow the prompts. For a security key, enter its PIN and touch it. For a phone, "
                "scan the QR code with the phone’s camera and confirm on the phone. For Google "
                "Password Manager, enter or create its PIN.",
                _NICKNAME,
            ),
        ),
    ),
    troubleshooting=(
        Trouble(
            "The browser’s window hangs while you add a security key or a phone",
            "Wait a few minutes, then try again. Check the computer’s Bluetooth settings, as some "
            "set-ups slow the connection down. Keep the phone close to the computer, out of its "
            "case if you can, and restart the phone. With an external Bluetooth adapter, try "
            "another one if you have it.",
        ),
        _KEY_UNREACHABLE,
        _KEY_STOPPED_WORKING,
        _CONNECT,
        _ALREADY_REGISTERED,
        _TIMED_OUT,
        _SYNCED_NOT_ALLOWED,
        _LIMIT_REACHED,
        _LOOP,
        _HSTS,
    ),
)

SECURITY_KEY = Platform(
    key="security-key",
    name="Security key",
    title="Set up a security key",
    summary="A YubiKey or another FIDO2 key, protected by a PIN.",
    intro=(
        "A security key, such as a YubiKey, keeps the passkey on the key itself: it is never "
        "copied or synced. You can use it on any computer, and on phones that support it, by "
        "plugging it in or holding it near. You unlock it with a PIN you choose and touch it to "
        "confirm. The key must support FIDO2: the YubiKey 5 Series, the Security Key Series and "
        "the YubiKey Bio Series do, while older keys that support only U2F cannot hold passkeys."
    ),
    steps=(
        Steps(
            "Create a PIN for the key",
            (
                "In Chrome, open Settings → Privacy and security → Security → Manage security "
                "keys.",
                "Select “Create a PIN”, insert the key and touch it when asked.",
                "Enter the new PIN twice. It can be short and numeric like a phone’s PIN, or a "
                "longer phrase with letters and symbols: what matters most is that you remember "
                "it.",
            ),
            note="Skip this if the key already has a PIN: Chrome then offers to change it instead.",
        ),
        Steps(
            "Add the key",
            (
                "Insert the key into the computer, or have it ready to hold near your phone.",
                *_set_up_another("On the computer or phone", "A security key"),
                "If the browser or the system offers to save the passkey somewhere else first, "
                "such as iCloud Keychain on a Mac, cancel that prompt or choose “Use a different "
                "phone, tablet or security key” (“Security key” on Windows) to reach the key.",
                "Enter the key’s PIN when asked and select “Next”.",
                "Touch the key when it blinks.",
                "If the browser asks whether $site_name may see your security key’s make and "
                "model, select “Allow”: your organisation may accept only some kinds of key.",
                _NICKNAME,
            ),
        ),
    ),
    troubleshooting=(
        Trouble(
            _quoted("authenticator_not_allowed"),
            "The key supports only U2F, or it is not a model your organisation accepts. Check "
            "which YubiKey you have, use one that supports FIDO2, and ask your IT team which keys "
            "are allowed.",
            (Link("Check your YubiKey (Yubico)", url="https://www.yubico.com/genuine/"),),
        ),
        Trouble(
            "The key asks for a PIN you never set, or you forgot it",
            "Without a PIN, create one with the first set of steps above. A forgotten PIN cannot "
            "be recovered, and the key locks itself after too many wrong tries: reset it, which "
            "erases every passkey on it, and add it again.",
        ),
        _KEY_STOPPED_WORKING,
        _KEY_UNREACHABLE,
        _ALREADY_REGISTERED,
        _TIMED_OUT,
        _LIMIT_REACHED,
    ),
)

THRESHOLD_VERIFY = Platform(
    key="threshold-verify",
    name="Threshold Verify",
    title="Set up Threshold Verify",
    summary="The device app: approve sign-ins from a laptop by typing a number.",
    intro=(
        "Threshold Verify is the device app: set up on your laptops, it approves your sign-ins "
        "to $site_name. When you select “Send a push to Threshold Verify” on the sign-in page, "
        "the browser shows a number; you type that number in the app and confirm with the "
        "app’s device PIN. Its key stays in the computer’s security chip (TPM) where there is "
        "one. It is listed under Settings → “Security Methods” → “Threshold Verify”."
    ),
    steps=(
        Steps(
            "Set up Threshold Verify when no other device has it",
            (
                _open_settings("On the computer"),
                "Under “Threshold Verify”, select “Set up”, verify it’s you with a passkey, then "
                "select “Show setup code”. A QR code and a setup code are displayed.",
                "In a terminal, run threshold-verify add-account followed by $site_name’s "
                "address, and enter the setup code. Choose a device PIN when asked: every "
                "approval needs it.",
                "Another code will display. Enter the returned code on the Settings page and "
                "select “Add device”.",
            ),
        ),
        Steps(
            "Set up Threshold Verify on one device using another device that already has it",
            (
                "Open Threshold Verify on the device that is already set up. On a computer, run "
                "threshold-verify add-to-another-device and enter its device PIN; on a phone, "
                "select “Add Account to Another Device” and confirm with the phone’s screen lock.",
                "A QR code and a setup code are displayed. Note the setup code.",
                "On the new device, run threshold-verify add-account --setup-code followed by the "
                "setup code, or on a phone scan the QR code. Another code will display.",
                "Enter the returned code on the device with Threshold Verify already set up.",
                "On a new computer, choose a device PIN when asked; on a new phone, select “Got "
                "it”, then “Enable” to enable screen lock confirmation.",
            ),
        ),
        Steps(
            "Sign in with Threshold Verify",
            (
                "On the sign-in page, enter your username, then select “Send a push to "
                "Threshold Verify”.",
                "Keep threshold-verify run open on your device. It shows where the request comes "
                "from: the browser, the system, the IP address and the time.",
                "If it was you, type the number your browser shows and your device PIN. If it "
                "wasn’t, type deny (“I didn’t do this”): pushes pause for twenty minutes and you "
                "get an email.",
            ),
        ),
    ),
    troubleshooting=(
        Trouble(
            "“Failed to scan QR code” or “Unrecognized QR code”",
            "Type the setup code shown under the QR code instead. On a phone, use the native "
            "camera app, or the one in your work profile.",
        ),
        Trouble(
            "No push arrives, or Threshold Verify is not running",
            "Start it with threshold-verify run and keep it open; threshold-verify accounts "
            "lists the accounts it approves for.",
        ),
        Trouble(
            _quoted("setup_code_invalid"),
            "Setup codes work once, for ten minutes, and three wrong returned codes cancel the "
            "set-up. Start again to get a new one.",
        ),
        Trouble(
            _quoted("device_not_recognized"),
            "The device was removed from your account. Remove the account from the app "
            "(threshold-verify remove) and set it up again.",
        ),
        Trouble(
            "“Device PIN locked”",
            "Too many wrong PINs: wait and try again. A forgotten PIN cannot be reset: remove "
            "the account from the app and add it again.",
        ),
        Trouble(
            _quoted("device_clock"),
            "Set the computer’s date and time to automatic.",
        ),
    ),
)

# In the navigation's order.
PLATFORMS: dict[str, Platform] = {
    platform.key: platform
    for platform in (MACOS, WINDOWS, IOS, ANDROID, CHROMEOS, LINUX, SECURITY_KEY, THRESHOLD_VERIFY)
}


# --- Filling in the names ----------------------------------------------------------------------


def localize(platform: Platform) -> Platform:
    """``platform`` with ``$site_name`` and ``$rp_id`` replaced by this deployment's."""
    names = {"site_name": settings.THRESHOLD.rp.name, "rp_id": settings.THRESHOLD.rp.id}

    def fill(text: str) -> str:
        return Template(text).substitute(names)

    return replace(
        platform,
        title=fill(platform.title),
        summary=fill(platform.summary),
        intro=fill(platform.intro),
        steps=tuple(
            replace(steps, items=tuple(fill(item) for item in steps.items), note=fill(steps.note))
            for steps in platform.steps
        ),
        troubleshooting=tuple(
            replace(trouble, symptom=fill(trouble.symptom), fix=fill(trouble.fix))
            for trouble in platform.troubleshooting
        ),
    )
