"""Fixtures for the core's unit tests: one relying party, a pinned clock, reusable keys.

Plain Python only. Nothing here imports Django or touches a database, and nothing
is mocked: responses come from ``tests.support.authenticator``, which signs with
real keys, and the core verifies them with fido2 and cryptography.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from threshold.core.ceremony import RelyingParty

RP_ID = "example.com"
ORIGIN = "https://example.com"
# A page on another site that may embed the ceremony in an iframe.
TOP_ORIGIN = "https://portal.example.org"
# The pinned clock: ceremonies are begun and finished at this instant unless a
# test moves it. The core takes ``now`` as an argument, so nothing is patched.
NOW = 1_750_000_000.0
TIMEOUT_SECONDS = 120


@pytest.fixture
def rp() -> RelyingParty:
    """The relying party as configured: one origin, no cross-origin iframes."""
    return RelyingParty(id=RP_ID, name="Example", origins=frozenset({ORIGIN}))


@pytest.fixture
def embeddable_rp() -> RelyingParty:
    """The same relying party configured to run inside an iframe on TOP_ORIGIN."""
    return RelyingParty(
        id=RP_ID,
        name="Example",
        origins=frozenset({ORIGIN}),
        allow_cross_origin=True,
        top_origins=frozenset({TOP_ORIGIN}),
    )


@pytest.fixture(scope="session")
def private_keys() -> dict[int, Any]:
    """One private key per COSE algorithm, made once: RSA key generation is slow."""
    return {
        -7: ec.generate_private_key(ec.SECP256R1()),
        -8: ed25519.Ed25519PrivateKey.generate(),
        -257: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


@pytest.fixture
def memory_ceiling() -> Iterator[None]:
    """Cap the address space for the duration of a test (Linux).

    The fuzz tests feed the parsers arbitrary bytes. A length or integer read
    from garbage must never become an allocation of gigabytes; under this cap
    such an allocation fails at once with MemoryError (which the test reports)
    instead of swapping the machine.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
    except OSError:  # not Linux: run without the cap
        yield
        return
    in_use = pages * resource.getpagesize()
    ceiling = in_use + 1024**3
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
