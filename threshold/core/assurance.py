"""How strongly a sign-in proved who the person is, in the vocabularies applications read.

``amr`` values are RFC 8176's Authentication Method Reference Values; ``acr`` values are
the OpenID Extended Authentication Profile's ACR values (``phr``: phishing-resistant,
``phrh``: phishing-resistant and hardware-protected). The session keeps both from the
moment of sign-in (``threshold.sessions.store.SIGN_IN_AMR`` / ``SIGN_IN_ACR``), so what
an application is told is what happened, not what the person has since set up.

The mapping:

============================  =========================  =======
signed in with                ``amr``                    ``acr``
============================  =========================  =======
passkey, device-bound and     pop hwk (+ mfa if the      phrh
attestation trusted           authenticator verified
                              the person)
any other passkey             pop swk (+ mfa)            phr
password + authenticator app  pwd otp mfa                (none)
password + recovery code      pwd mfa                    (none)
Threshold Verify push         pop hwk/swk mfa            (none)
============================  =========================  =======

A recovery code is a second proof but not an RFC 4226/6238 one-time password, so it
gets ``mfa`` without ``otp``. The password fallback never gets a ``phr*`` value, and
neither does a push approved in Threshold Verify (the device app): its key proves the
device (``hwk`` once its TPM proved it holds it) and its PIN the person, but the person
may approve a sign-in that a look-alike page relays.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Amr(StrEnum):
    """RFC 8176 §2 values Threshold can assert."""

    POP = "pop"  # proof of possession of a key
    HWK = "hwk"  # ... a hardware-secured key
    SWK = "swk"  # ... a software-secured key
    MFA = "mfa"  # more than one factor
    PWD = "pwd"  # noqa: S105 - the value that says a password was used, not a password
    OTP = "otp"  # a one-time password (RFC 6238: the authenticator app)


class Acr(StrEnum):
    """OpenID Extended Authentication Profile ACR values, weakest first."""

    PHR = "phr"
    PHRH = "phrh"


# What each acr value is satisfied by: a phrh sign-in satisfies a request for phr.
SATISFIES: dict[Acr, frozenset[Acr]] = {
    Acr.PHR: frozenset({Acr.PHR, Acr.PHRH}),
    Acr.PHRH: frozenset({Acr.PHRH}),
}


@dataclass(frozen=True)
class Assurance:
    """A sign-in's ``amr`` (in a stable order) and ``acr`` (``None``: no phishing resistance)."""

    amr: tuple[Amr, ...]
    acr: Acr | None

    def satisfies(self, requested: Acr) -> bool:
        return self.acr is not None and self.acr in SATISFIES[requested]


def for_passkey(*, hardware_bound: bool, user_verified: bool) -> Assurance:
    """A passkey sign-in. ``hardware_bound``: the passkey cannot leave its authenticator
    (not backup-eligible) and its attestation chained to a trusted root."""
    amr = [Amr.POP, Amr.HWK if hardware_bound else Amr.SWK]
    if user_verified:
        amr.append(Amr.MFA)
    return Assurance(tuple(amr), Acr.PHRH if hardware_bound else Acr.PHR)


PASSWORD_AND_APP = Assurance((Amr.PWD, Amr.OTP, Amr.MFA), None)
PASSWORD_AND_RECOVERY_CODE = Assurance((Amr.PWD, Amr.MFA), None)


def for_device_app(*, hardware_bound: bool) -> Assurance:
    """A push approved in Threshold Verify with the typed number and the app's PIN.
    ``hardware_bound``: the device's key was proven to be in its TPM."""
    return Assurance((Amr.POP, Amr.HWK if hardware_bound else Amr.SWK, Amr.MFA), None)
