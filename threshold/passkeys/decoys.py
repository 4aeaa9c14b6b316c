"""Decoy allowCredentials for usernames without passkeys (username-first sign-in).

Answering an unknown username with an empty list (or an error) would tell
anyone which accounts exist. A keyed hash of the username (HMAC with the
server's key) picks, the same way on every request and without storing
anything, a credential count, ID lengths, transports and a user handle, so a
username's answer is stable and decoys vary across usernames as real accounts do.

The count must look like a real person's. Decoys that always listed one or two
credentials gave away every account with three or more. What reveals least is
a decoy count drawn from the same distribution as the real counts: then seeing a
count tells nothing about whether the username exists. So the counts follow
the database's own distribution of passkeys per person (active accounts with at
least one), blended with a fixed prior worth ``PRIOR_PEOPLE`` people:

    weight(n) = (people with n passkeys) + PRIOR_PEOPLE * PRIOR(n),  n = 1 .. the limit

- With few people the prior dominates: a handful of accounts would otherwise
  make decoys jump whenever one of them adds a passkey, and a lone unusual
  count (one person with 10) would be shown by decoys at exactly the rate of
  that one person. With many people the real distribution dominates.
- The prior gives every count up to the policy's passkey limit some weight (and
  the real counts beyond it, after a recovery, their own), so no count that a
  real account can have is one decoys never show. The price: a count no real
  account has is shown by a few decoys (PRIOR_PEOPLE / (people + PRIOR_PEOPLE)
  of that count's prior weight), and those usernames are known not to exist.
- It reveals the shape of the distribution (how many people hold how many
  passkeys), which anyone can estimate from decoys anyway; never who.
- It is computed at most once per ``REFRESH_SECONDS`` per process, on
  boundaries shared by all processes (so that they agree), and in whichever
  request comes first: for an existing username as for an unknown one. A
  username's decoy count changes only when the distribution moves past its
  quantile, which a small change rarely does.

Each decoy credential's shape — its ID length and its transports, as the answer
shows them — is drawn the same way, from the shapes of the organisation's
passkeys blended with a prior worth ``PRIOR_PASSKEYS`` passkeys over the shapes
of common authenticators. Decoys drawn from a fixed list of shapes gave away
every account with a passkey outside it: a security key with 64-byte IDs and
"ble", a client that lists "internal" before "hybrid", a passkey stored without
transports (whose descriptor has no ``transports`` at all). A shape is shown by
decoys about as often as the organisation's passkeys have it, so seeing it says
little about whether the username exists.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import connection
from fido2.cose import ES256

from threshold import clock
from threshold.accounts.models import User
from threshold.core import ceremony, errors
from threshold.core.vocabulary import Transport
from threshold.passkeys.models import Passkey

# Passkeys per person in an organisation that has used passkeys for a while, as
# weights for 1, 2, 3, ...: most people have one or two (a laptop and a phone),
# some a security key or two more.
PRIOR = (40.0, 30.0, 13.0, 6.0, 3.5, 2.5, 1.6, 1.2, 1.0, 0.8)
PRIOR_PEOPLE = 20
REFRESH_SECONDS = 3600

# The prior over credential shapes: the ID lengths and transports of common
# authenticators (Chrome and Google Password Manager, iCloud Keychain, Windows
# Hello, security keys), each list's repeats weighing more, worth this many passkeys.
PRIOR_PASSKEYS = 20
ID_LENGTHS = (16, 16, 20, 32, 48, 64)
TRANSPORTS: tuple[tuple[str, ...], ...] = (
    (Transport.INTERNAL,),
    (Transport.HYBRID, Transport.INTERNAL),
    (Transport.INTERNAL,),
    (Transport.NFC, Transport.USB),
    (Transport.USB,),
)


# A credential's shape as an answer shows it: the ID's length in bytes, and its transports
# in their stored order (none: a descriptor without "transports").
Shape = tuple[int, tuple[str, ...]]


@dataclass(frozen=True)
class Decoy:
    credentials: list[ceremony.CredentialDescriptor]
    user_handle: bytes


@dataclass(frozen=True)
class _Distribution:
    counts: tuple[float, ...]  # cumulative weights of 1, 2, ... passkeys per person
    shapes: tuple[Shape, ...]
    shape_weights: tuple[float, ...]  # cumulative, one per shape


@functools.cache
def _key_no_one_holds() -> bytes:
    """A P-256 public key (COSE, as passkeys' keys are stored) whose private key is discarded."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    # RFC 9053 §7.1.1: kty EC2, alg ES256, crv P-256, x, y.
    return ceremony.encode_public_key(
        {1: 2, 3: ES256.ALGORITHM, -1: 1, -2: numbers.x.to_bytes(32), -3: numbers.y.to_bytes(32)}
    )


def verify_as_decoy(
    rp: ceremony.RelyingParty,
    state: ceremony.AuthenticationState,
    response: ceremony.AuthenticationResponse,
    now: float,
) -> None:
    """Do the work a passkey's verification does, for a response naming a credential no one
    has: refused before any verification, a decoy's ID would answer sooner than a real one
    (whose wrong signature is verified first), which tells that the username has passkeys.
    The same checks and an ES256 verification with a key no one holds; always refused."""
    stored = ceremony.StoredCredential(
        credential_id=response.credential_id,
        public_key=_key_no_one_holds(),
        sign_count=0,
        backup_eligible=False,
        user_handle=b"",
    )
    with contextlib.suppress(errors.ThresholdError):
        ceremony.finish_authentication(rp, state, response, stored, now=now)


def decoy_for(username: str, passkey_limit: int) -> Decoy:
    """The stable decoy of ``username`` (normalised) under a policy of ``passkey_limit``."""
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, b"decoy:" + username.encode(), hashlib.sha512).digest()
    distribution = _distribution(passkey_limit)
    count = 1 + bisect_right(distribution.counts, _quantile(digest) * distribution.counts[-1])
    credentials = []
    for index in range(min(count, len(distribution.counts))):
        # An extendable output keyed by the digest: the shape, then the ID.
        stream = hashlib.shake_256(digest + bytes([index]))
        drawn = _quantile(stream.digest(8)) * distribution.shape_weights[-1]
        length, transports = distribution.shapes[
            min(bisect_right(distribution.shape_weights, drawn), len(distribution.shapes) - 1)
        ]
        credential_id = stream.digest(8 + length)[8:]
        credentials.append(ceremony.CredentialDescriptor(credential_id, transports))
    return Decoy(credentials, user_handle=digest[32:64])


def _quantile(data: bytes) -> float:
    """The first 8 bytes of ``data`` as a fraction in [0, 1)."""
    return int.from_bytes(data[:8], "big") / 2**64


# --- The distribution, cached per process --------------------------------------------------------

_lock = threading.Lock()
_cache: dict[tuple[int, int], _Distribution] = {}


def _distribution(passkey_limit: int) -> _Distribution:
    """The counts' and the shapes' cumulative weights, refreshed once per REFRESH_SECONDS."""
    period = int(clock.now() // REFRESH_SECONDS)
    cache_key = (period, passkey_limit)
    with _lock:
        found = _cache.get(cache_key)
    if found is None:
        # Sorted, so that every process lists the same shapes in the same order.
        shapes = dict(sorted(shape_weights(passkey_shapes()).items()))
        found = _Distribution(
            counts=tuple(accumulate(weights(people_by_passkey_count(), passkey_limit))),
            shapes=tuple(shapes),
            shape_weights=tuple(accumulate(shapes.values())),
        )
        with _lock:
            _cache.clear()
            _cache[cache_key] = found
    return found


def weights(people: dict[int, int], passkey_limit: int) -> list[float]:
    """The decoy weight of each count 1 .. max(limit, the largest real count)."""
    largest = max([passkey_limit, *people])
    return [
        people.get(count, 0) + PRIOR_PEOPLE * _prior(count, passkey_limit)
        for count in range(1, largest + 1)
    ]


def _prior(count: int, passkey_limit: int) -> float:
    if count > passkey_limit:
        return 0.0
    return _prior_share(count) / sum(_prior_share(n) for n in range(1, passkey_limit + 1))


def _prior_share(count: int) -> float:
    # Beyond the table, a tail that keeps falling (a limit of 50 is not 50 likely counts).
    table: Sequence[float] = PRIOR
    return table[count - 1] if count <= len(table) else table[-1] * (len(table) / count) ** 2


def people_by_passkey_count() -> dict[int, int]:
    """How many active people hold 1, 2, ... passkeys (one query)."""
    passkeys = connection.ops.quote_name(Passkey._meta.db_table)
    users = connection.ops.quote_name(User._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            # Table names from the models; the one value is a parameter.
            "SELECT held, COUNT(*) FROM ("  # noqa: S608
            f"SELECT COUNT(*) AS held FROM {passkeys} JOIN {users}"
            f" ON {users}.id = {passkeys}.user_id WHERE {users}.is_active = %s"
            f" GROUP BY {passkeys}.user_id) AS per_person GROUP BY held",
            [True],
        )
        return {int(held): int(people) for held, people in cursor.fetchall()}


def shape_weights(passkeys: dict[Shape, int]) -> dict[Shape, float]:
    """The decoy weight of each shape: the organisation's passkeys of that shape, plus the
    prior's share (every shape of the prior keeps some weight)."""
    found: dict[Shape, float] = {shape: float(count) for shape, count in passkeys.items()}
    combinations = len(ID_LENGTHS) * len(TRANSPORTS)
    for length in ID_LENGTHS:
        for transports in TRANSPORTS:
            shape = (length, tuple(str(t) for t in transports))
            found[shape] = found.get(shape, 0.0) + PRIOR_PASSKEYS / combinations
    return found


def passkey_shapes() -> dict[Shape, int]:
    """How many active people's passkeys have each shape (one query)."""
    passkeys = connection.ops.quote_name(Passkey._meta.db_table)
    users = connection.ops.quote_name(User._meta.db_table)
    credential_id = connection.ops.quote_name(Passkey._meta.get_field("credential_id").column)
    transports = connection.ops.quote_name(Passkey._meta.get_field("transports").column)
    with connection.cursor() as cursor:
        cursor.execute(
            # Names from the models; the one value is a parameter.
            f"SELECT LENGTH({passkeys}.{credential_id}), {passkeys}.{transports}, COUNT(*)"  # noqa: S608
            f" FROM {passkeys} JOIN {users} ON {users}.id = {passkeys}.user_id"
            f" WHERE {users}.is_active = %s"
            f" GROUP BY LENGTH({passkeys}.{credential_id}), {passkeys}.{transports}",
            [True],
        )
        rows = cursor.fetchall()
    shapes: dict[Shape, int] = {}
    for length, stored, count in rows:
        # JSON text on SQLite, decoded jsonb on PostgreSQL; the same list may be spelt twice.
        listed = json.loads(stored) if isinstance(stored, (str, bytes)) else stored
        if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
            continue
        shape = (int(length), tuple(listed))
        shapes[shape] = shapes.get(shape, 0) + int(count)
    return shapes


def forget_distribution() -> None:
    """For tests: the next decoy recomputes the distribution."""
    with _lock:
        _cache.clear()
