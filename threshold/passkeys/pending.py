"""Ceremony state between ``begin`` and ``finish``, kept by the browser.

``begin`` writes nothing: the challenge and what ``finish`` needs (the state
and its context) go back to the browser in a token signed with the server's
key (django.core.signing), one salt per ceremony kind, so a token cannot be
forged, changed, or used for another kind. ``threshold.passkeys.http`` carries it
in a cookie per kind; a token begun for a signed-in person is also bound to
their session (a hash of its key, which is a bearer secret). The state holds
its own expiry (the policy's ceremony timeout), which dates the token.

``finish`` uses the token up: one ``INSERT ... ON CONFLICT DO NOTHING`` of its
challenge's hash into ``UsedChallenge``, in the ceremony's transaction. The
primary key refuses a second insert, so of two requests racing with one token
only one gets it, and a replayed token is refused; the row stays until the
token has expired (``threshold cleanup`` then removes it). An anonymous flood
of options requests therefore leaves no rows at all.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from django.core import signing
from django.db import connection

from threshold import clock
from threshold.core import ceremony, errors
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.passkeys.models import UsedChallenge
from threshold.web.signers import signer


class CeremonyKind(StrEnum):
    """The kinds of pending ceremony, a token (and a cookie) each. The values are in the
    tokens' salts and the cookies' names: never change one."""

    REGISTRATION = "registration"
    AUTHENTICATION = "authentication"
    # Re-verifying a signed-in person before they change their sign-in methods.
    STEP_UP = "step_up"
    # A sign-in inside a first-party app (threshold/sso/firstparty.py): its token is the
    # ``auth_session`` the app holds, never a cookie, so a browser's ceremony token is no app's
    # and the other way round.
    APP_SIGN_IN = "app_sign_in"


class Purpose(StrEnum):
    """What a registration ceremony is for: in its token's context and its audit rows
    (``purpose``), and, for a link, in ``EnrollmentInvite.purpose``. Stored values."""

    ENROLLMENT = "enrollment"  # a first passkey, from an enrollment link
    RECOVERY = "recovery"  # a passkey from a recovery link, for someone who lost theirs
    ADD = "add"  # "Set up another", signed in
    CONFORMANCE = "conformance"  # the FIDO conformance API


# Used challenges are kept this long past their expiry, for servers whose clocks
# differ a little: a token is refused as expired before its row goes.
CLOCK_SKEW = timedelta(minutes=5)
# ... and ``threshold cleanup`` keeps them this long: a clock stepped back (NTP, a VM restored)
# or a server behind the others by more than the skew would otherwise find a token unexpired
# again once its row was gone, and accept the same response twice (a synced passkey's counter
# stays 0). One row per ceremony finished, for a day.
KEEP_USED = timedelta(days=1)


def _binding(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()


def _signer(kind: str) -> signing.Signer:
    # A salt per kind: a token signed for one kind does not verify for another.
    return signer(f"threshold.passkeys.pending:{kind}")


def _digest(credential_id: bytes) -> str:
    # 128 bits: what an allowCredentials entry is compared by (see authentication_state).
    return b64url_encode(hashlib.sha256(credential_id).digest()[:16])


@dataclass
class Ceremonies:
    """One request's view of the browser's ceremony tokens: the ones it sent, the ones to send.

    ``session_key`` is the signed-in session's key: tokens begun then are bound to it.
    """

    received: Mapping[str, str] = field(default_factory=dict)
    session_key: str | None = None
    # Tokens begun in this request, by kind, and when each expires (unix time).
    issued: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Kinds whose received token this request used up.
    taken: set[str] = field(default_factory=set)

    @property
    def binding(self) -> str:
        return _binding(self.session_key) if self.session_key else ""

    def returned(self) -> Ceremonies:
        """What the browser sends with its next request: for callers without a browser."""
        tokens = {kind: token for kind, token in self.received.items() if kind not in self.taken}
        tokens.update({kind: token for kind, (token, _) in self.issued.items()})
        return Ceremonies(tokens, self.session_key)


def save_pending(
    ceremonies: Ceremonies, kind: CeremonyKind, state: Any, context: dict[str, Any] | None = None
) -> None:
    """Give the browser ``state`` in a token of ``kind``, replacing any earlier one of ``kind``."""
    data = state.to_json()
    if isinstance(state, ceremony.AuthenticationState):
        allow = data.pop("allow_credentials")
        if allow is not None:
            # Up to the passkey limit of IDs up to 1023 bytes would not fit in a cookie:
            # the token keeps their digests.
            data["allow_digests"] = [_digest(b64url_decode(c)) for c in allow]
        handle = data.pop("user_handle")
        if handle is not None:
            # Whoever asks for a username's options may read the token: not its user handle.
            data["user_handle_digest"] = _digest(b64url_decode(handle))
    payload = {"state": data, "context": context or {}, "bound": ceremonies.binding}
    token = _signer(kind).sign_object(payload)
    ceremonies.issued[kind] = (token, float(state.expires_at))


@dataclass(frozen=True)
class TakenCeremony:
    state: dict[str, Any]
    context: dict[str, Any]

    @property
    def challenge_hash(self) -> str:
        """What ``UsedChallenge`` keeps of the challenge: its SHA-256, hex."""
        return hashlib.sha256(str(self.state["challenge"]).encode()).hexdigest()

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(float(self.state["expires_at"]), UTC)

    @property
    def is_discoverable(self) -> bool:
        """An authentication without allowCredentials (no username given)."""
        return "allow_digests" not in self.state

    def authentication_state(
        self, credential_id: bytes, user_handle: bytes
    ) -> ceremony.AuthenticationState:
        """The state to check a response naming ``credential_id`` of ``user_handle`` against.

        The token has digests of the offered credentials and of the account
        identified before the ceremony: the allow-list is ``credential_id`` itself
        when it was offered, else empty (§7.2 step 5 refuses it), and the user
        handle is ``user_handle`` when it is the one identified, else one that is
        nobody's (step 6 refuses it).
        """
        data = dict(self.state)
        digests = data.pop("allow_digests", None)
        if digests is not None:
            offered = any(hmac.compare_digest(_digest(credential_id), d) for d in digests)
            data["allow_credentials"] = [b64url_encode(credential_id)] if offered else []
        handle = data.pop("user_handle_digest", None)
        if handle is not None:
            same = hmac.compare_digest(_digest(user_handle), handle)
            data["user_handle"] = b64url_encode(user_handle if same else b"\0")
        return ceremony.AuthenticationState.from_json(data)


def take_pending(ceremonies: Ceremonies, kind: CeremonyKind) -> TakenCeremony:
    """Use up the browser's ceremony of ``kind``: it can be taken once."""
    taken = open_pending(ceremonies, kind)
    # An expired token is used up too: the core refuses it (ChallengeExpired), as it
    # would after ``threshold cleanup`` removed its row.
    _use(taken.challenge_hash, taken.expires_at)
    return taken


def open_pending(ceremonies: Ceremonies, kind: CeremonyKind) -> TakenCeremony:
    """The browser's ceremony of ``kind``, checked (signature, kind, session) but not used up yet.

    The caller uses it up in its transaction, before it trusts anything else:
    ``take_pending`` with its own INSERT, the sign-in with the INSERT that also finds
    the passkey (``threshold.passkeys.hotpath.use_challenge_and_find``).
    """
    token = ceremonies.received.get(kind, "")
    if not token:
        raise errors.ChallengeMissing("no ceremony token")
    ceremonies.taken.add(kind)
    try:
        payload = _signer(kind).unsign_object(token)
        state, context, bound = payload["state"], payload["context"], payload["bound"]
        float(state["expires_at"])
        str(state["challenge"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise errors.ChallengeMissing("a ceremony token that does not verify") from None
    if not hmac.compare_digest(str(bound), ceremonies.binding):
        raise errors.ChallengeMissing("another session's ceremony")
    return TakenCeremony(state=state, context=context)


def _use(challenge_hash: str, expires_at: datetime) -> None:
    """One INSERT, or ChallengeMissing when the challenge was used before."""
    table = connection.ops.quote_name(UsedChallenge._meta.db_table)
    expiry = connection.ops.adapt_datetimefield_value(expires_at)
    with connection.cursor() as cursor:
        cursor.execute(
            # The table name comes from the model; the values are parameters.
            f"INSERT INTO {table} (challenge_hash, expires_at) VALUES (%s, %s)"  # noqa: S608
            " ON CONFLICT DO NOTHING",
            [challenge_hash, expiry],
        )
        if cursor.rowcount != 1:
            raise errors.ChallengeMissing("used before")


def delete_expired() -> int:
    """Forget used challenges whose tokens expired a day ago (``threshold cleanup``, start-up)."""
    cutoff = clock.now_datetime() - KEEP_USED
    deleted, _ = UsedChallenge.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
