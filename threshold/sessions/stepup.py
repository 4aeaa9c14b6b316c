"""Step-up: has this session verified the person recently enough to change their sign-in methods?

Adding or removing a method needs a recent verification: a passkey with user
verification (PIN, biometrics) within the policy's ``step_up_max_age_seconds``,
either the sign-in itself (``threshold.sessions.actions.sign_in``) or "Verify
it's you" on /settings/verify. A sign-in with a password and a code is enough to
add a passkey right after it ("Set up a passkey"), never to remove a method; so is
a push approved in Threshold Verify, to sign in or on "Verify it's you"
(``threshold.devices``), and the password and a code given on "Verify it's you"
(``threshold.fallback.views.step_up``): multi-factor, never phishing-resistant
(``core.assurance``).

"Verify it's you" sends the person back where they came from (``return_to``): a page
of Settings or of the admin portal, never elsewhere, and its "Back to" link names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponseRedirect
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from threshold import clock
from threshold.policy.access import policy_for
from threshold.web.http import query_value, see_other, url_to

# The last sign-in in this session whose passkey verified the user (PIN,
# biometrics): step-up checks compare it with the clock.
VERIFIED_AT = "threshold.verified_at"
# A sign-in with a password and a code or with a push approved in Threshold Verify, or
# "Verify it's you" with such a push: enough to add a passkey right after ("Set up a
# passkey"), never to remove a method. (The name is the one sessions have always stored.)
FALLBACK_VERIFIED_AT = "threshold.fallback_verified_at"


def mark_verified(request: HttpRequest, *, phishing_resistant: bool = True) -> None:
    """This session verified the person now: with a passkey, or else (``phishing_resistant``
    false) with a password and code or a push approved in Threshold Verify."""
    request.session[VERIFIED_AT if phishing_resistant else FALLBACK_VERIFIED_AT] = clock.now()


# The pages that a verification without a passkey opens (``allow_fallback``), by URL
# name: adding a passkey, and nothing else.
_OPENED_WITHOUT_A_PASSKEY = frozenset({"selfservice:add"})


def opens_without_a_passkey(target: str) -> bool:
    """Does a verification that is not phishing-resistant (a password and code, a push
    approved in Threshold Verify) let the person through to ``target``? Only "Set up
    another": never removing a method, setting up a device or the admin portal."""
    try:
        match = resolve(urlsplit(target).path)
    except Resolver404:
        return False
    return match.view_name in _OPENED_WITHOUT_A_PASSKEY


def recently_verified(request: HttpRequest, *, allow_fallback: bool = False) -> bool:
    """Did this session verify the person (a passkey with UV) within the step-up window?

    ``allow_fallback`` also accepts a sign-in with a password and a code or a push, or a
    push approved on "Verify it's you": it lets a person without a passkey at hand add
    one ("Set up a passkey"), but it never removes a method.
    """
    window = policy_for(request).step_up_max_age_seconds
    keys = (VERIFIED_AT, FALLBACK_VERIFIED_AT) if allow_fallback else (VERIFIED_AT,)
    for key in keys:
        verified_at = request.session.get(key)
        if isinstance(verified_at, int | float) and 0 <= clock.now() - verified_at <= window:
            return True
    return False


def verify_first(next_path: str) -> HttpResponseRedirect:
    """Send the person to "Verify it's you", and back to ``next_path`` once they have."""
    return see_other(url_to("selfservice:verify", query={"next": next_path}))


@dataclass(frozen=True)
class Return:
    """Where "Verify it's you" goes once the person verified (``target``), and where its
    "Back to ..." link goes without verifying (``back``, named ``back_label``)."""

    target: str
    back: str
    back_label: str
    # A change in the admin portal (not one of the person's own sign-in methods).
    for_portal: bool = False


def return_to(request: HttpRequest) -> Return:
    """``?next=`` when it is a page of Settings or of the admin portal on this site, else
    Settings. The admin portal's pages answer GET without a step-up (only its changes need
    one), so the link goes back to the very page; Settings' pages that need one would only
    send the person here again, so it goes to Settings itself."""
    settings_path = reverse("selfservice:settings")
    # URL names, not imports: the pages sit in apps above this one.
    portal_path = reverse("portal:home")
    target = query_value(request, "next")
    if _is_own_page(target, portal_path):
        return Return(target, target, "the admin portal", for_portal=True)
    if _is_own_page(target, settings_path):
        return Return(target, settings_path, "Settings")
    return Return(settings_path, settings_path, "Settings")


def _is_own_page(target: str, prefix: str) -> bool:
    """``target`` is ``prefix`` or a path under it on this site: no scheme, host, ``//`` or
    backslash (which browsers read as a slash), no control characters."""
    prefix = prefix.rstrip("/")
    return (
        target.startswith(prefix)
        and target[len(prefix) : len(prefix) + 1] in ("", "/", "?", "#")
        and "//" not in target
        and "\\" not in target
        and all(character.isprintable() for character in target)
        and url_has_allowed_host_and_scheme(target, allowed_hosts=None)
    )
