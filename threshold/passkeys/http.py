"""A passkey ceremony's HTTP side: the browser's response, and a cookie per ceremony kind.

Every view that finishes a ceremony decodes the browser's response with
``read_credential(request)`` and hands the action the decoded value. Every view
that begins or finishes one reads the browser's tokens (``threshold.passkeys.pending``)
through ``ceremonies(request)``; ``CeremonyCookieMiddleware`` sends back the ones
the view began and removes the ones it used up.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from threshold import clock
from threshold.core import errors
from threshold.passkeys.actions import Unreadable
from threshold.passkeys.pending import Ceremonies, CeremonyKind
from threshold.web.http import read_json


def read_credential(request: HttpRequest) -> object:
    """The browser's ``credential.toJSON()``, decoded; ``Unreadable`` when the body is over the
    cap or not JSON, which the ceremony's action records as its failure."""
    try:
        return read_json(request)
    except (errors.RequestTooLarge, errors.MalformedRequest) as error:
        return Unreadable(error)


# "__Host-" over HTTPS, as the session cookie (settings.COOKIE_PREFIX).
CEREMONY_COOKIE = f"{settings.COOKIE_PREFIX}threshold_ceremony_{{kind}}"
# Where ceremonies() keeps the request's tokens for the middleware.
_ON_REQUEST = "_threshold_ceremonies"


def ceremonies(request: HttpRequest) -> Ceremonies:
    """The ceremony tokens the browser sent; those a view begins go back with the response.

    A ceremony begun for a signed-in person is bound to their session.
    ``CeremonyCookieMiddleware`` writes the cookies.
    """
    found = request.__dict__.get(_ON_REQUEST)
    if not isinstance(found, Ceremonies):
        signed_in = request.user.is_authenticated
        found = Ceremonies(
            received_tokens(request), request.session.session_key if signed_in else None
        )
        request.__dict__[_ON_REQUEST] = found
    return found


def anonymous_ceremonies(request: HttpRequest) -> Ceremonies:
    """``ceremonies(request)`` for a request known to have no session (the lean sign-in path)."""
    found = Ceremonies(received_tokens(request), None)
    request.__dict__[_ON_REQUEST] = found
    return found


def received_tokens(request: HttpRequest) -> dict[str, str]:
    return {
        kind.value: request.COOKIES[name]
        for kind in CeremonyKind
        if (name := CEREMONY_COOKIE.format(kind=kind)) in request.COOKIES
    }


class CeremonyCookieMiddleware:
    """Sends the tokens of the ceremonies a view began, and removes the ones it used up.

    HttpOnly: only the server reads them. SameSite=Strict: the ceremony pages call
    their endpoints from the same site. They expire with the ceremony.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        send_ceremony_cookies(request, response)
        return response


def send_ceremony_cookies(request: HttpRequest, response: HttpResponse) -> None:
    """The cookies of the ceremonies the request began, and the removal of those it used up."""
    found = request.__dict__.get(_ON_REQUEST)
    if not isinstance(found, Ceremonies):
        return
    # A failure of the server's own (the database failed: 503) stored nothing, the used
    # challenge included: the ceremony stays, so that the credential the device just made
    # can be sent again, rather than a second one made on the device.
    if response.status_code < 500:  # noqa: PLR2004
        for kind in found.taken - found.issued.keys():
            response.delete_cookie(CEREMONY_COOKIE.format(kind=kind), samesite="Strict")
    now = clock.now()
    for kind, (token, expires_at) in found.issued.items():
        response.set_cookie(
            CEREMONY_COOKIE.format(kind=kind),
            token,
            max_age=max(1, math.ceil(expires_at - now)),
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Strict",
        )
