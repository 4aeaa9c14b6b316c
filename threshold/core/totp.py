"""Authenticator-app codes (TOTP, RFC 6238) and recovery codes, without Django.

pyotp computes the codes; the rules around them are ours: the step a code
belongs to is returned so that each step is accepted once (RFC 6238 §5.2),
every candidate step is compared in constant time, and one step of clock
drift either way is allowed (§5.2 recommends at most one).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyotp

STEP_SECONDS = 30
DIGITS = 6
ALLOWED_DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# 16 base32 characters: 80 random bits, shown as four groups of four.
RECOVERY_CODE_LENGTH = 16
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def new_secret() -> str:
    """160 random bits in base32 (RFC 4226 §4 recommends 160)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


# Longer than any code with its spaces and dashes: what is longer is not a code.
_TYPED_CODE_MAX_LENGTH = 64


def normalize_code(code: object) -> str:
    """What the person typed, without spaces and dashes, lower case; "" if not text."""
    if not isinstance(code, str) or len(code) > _TYPED_CODE_MAX_LENGTH:
        return ""
    return "".join(code.split()).replace("-", "").lower()


def is_app_code(code: str) -> bool:
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code ``code`` is, within the allowed drift; None if none."""
    if not is_app_code(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now // STEP_SECONDS)
    found = None
    # Every candidate is compared, found or not, so timing says nothing.
    for step in range(current - ALLOWED_DRIFT_STEPS, current + ALLOWED_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, RECOVERY_CODE_LENGTH, 4)))
    return codes


def recovery_code_hash(code: str) -> str:
    """The stored form of a recovery code, from its normalized text (see normalize_code)."""
    return hashlib.sha256(code.encode()).hexdigest()


def is_recovery_code(code: str) -> bool:
    return len(code) == RECOVERY_CODE_LENGTH and all(c in _RECOVERY_ALPHABET for c in code)
