"""The device PIN: set once, asked before every approval and every "Add Account to Another Device".

Stored as Argon2id (argon2-cffi's defaults, RFC 9106's second recommended option);
never sent anywhere. Throttled: from the third wrong PIN in a row, each one doubles
the wait before the next try (5 s, 10 s, 20 s, ... at most an hour), kept in the state
so that restarting the app does not reset it.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from threshold_verify import clock
from threshold_verify.state import State

MIN_LENGTH = 6
FREE_FAILURES = 2
BASE_WAIT = 5.0
MAX_WAIT = 3600.0

_hasher = PasswordHasher()


class PinError(Exception):
    """The PIN is wrong, too short, or the app asks the person to wait."""


def set_pin(state: State, pin: str) -> None:
    if len(pin) < MIN_LENGTH or not pin.isdigit():
        raise PinError(f"Choose a PIN of at least {MIN_LENGTH} digits.")
    state.pin_hash = _hasher.hash(pin)
    state.pin_failures = 0
    state.pin_not_before = 0.0


def wait_seconds(state: State) -> float:
    return max(0.0, state.pin_not_before - clock.now())


def check_pin(state: State, pin: str) -> None:
    """Raise PinError unless ``pin`` is the device PIN; the caller saves the state either way."""
    if not state.pin_hash:
        raise PinError("No device PIN is set up: add an account first.")
    waiting = wait_seconds(state)
    if waiting > 0:
        raise PinError(f"Device PIN locked: too many wrong PINs. Try again in {waiting:.0f} s.")
    try:
        _hasher.verify(state.pin_hash, pin)
    except VerificationError:
        state.pin_failures += 1
        if state.pin_failures > FREE_FAILURES:
            wait = min(MAX_WAIT, BASE_WAIT * 2 ** (state.pin_failures - FREE_FAILURES - 1))
            state.pin_not_before = clock.now() + wait
        raise PinError("That PIN is not right.") from None
    state.pin_failures = 0
    state.pin_not_before = 0.0
