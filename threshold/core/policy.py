"""The organisation policy as the core reads it, and the rules for changing it."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from threshold.core import errors
from threshold.core.ceremony import DEFAULT_ALGORITHMS

if TYPE_CHECKING:
    from threshold.core.ceremony import VerifiedRegistration


class PolicyError(ValueError):
    """A policy value is out of range or of the wrong kind."""


@dataclass(frozen=True)
class Policy:
    ceremony_timeout_seconds: int = 60
    user_verification: str = "required"
    passkey_limit: int = 10
    invite_lifetime_hours: int = 168
    # Adding or removing a sign-in method needs a passkey verification (with
    # user verification) at most this long ago.
    step_up_max_age_seconds: int = 300
    # A sign-in or enrollment page left idle this long says "Session Expired".
    flow_idle_timeout_minutes: int = 10
    # Password + authenticator-app code as a fallback for people without a
    # passkey at hand; off means passkeys only.
    allow_password_fallback: bool = True
    # Consecutive wrong passwords or codes for one username before the password
    # path locks (passkeys keep working); delays grow before that.
    password_lockout_threshold: int = 10
    # "I'll do it later" hides the passkey prompt until this many more
    # successful sign-ins or this many days, whichever comes first.
    passkey_prompt_snooze_sign_ins: int = 10
    passkey_prompt_snooze_days: int = 7
    # How long an administrator's account-recovery link works.
    recovery_link_lifetime_minutes: int = 60
    # Registration rules (each refusal has its catalog entry).
    require_trusted_attestation: bool = False
    aaguid_allow_list: tuple[str, ...] = ()  # empty: any authenticator
    aaguid_deny_list: tuple[str, ...] = ()
    block_synced_passkeys: bool = False
    allowed_algorithms: tuple[int, ...] = DEFAULT_ALGORITHMS
    refuse_u2f_authenticators: bool = True

    # Ranges each setting may take; the CLI and (later) the admin portal share them.
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "ceremony_timeout_seconds": (15, 600),
        "passkey_limit": (1, 100),
        "invite_lifetime_hours": (1, 24 * 90),
        "step_up_max_age_seconds": (60, 3600),
        "flow_idle_timeout_minutes": (5, 15),
        "password_lockout_threshold": (3, 100),
        "passkey_prompt_snooze_sign_ins": (1, 100),
        "passkey_prompt_snooze_days": (1, 90),
        "recovery_link_lifetime_minutes": (5, 24 * 60),
    }
    USER_VERIFICATION: ClassVar[tuple[str, ...]] = ("required", "preferred")

    def __post_init__(self) -> None:
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise PolicyError(f"{name} must be a whole number from {low} to {high}")
        if self.user_verification not in self.USER_VERIFICATION:
            raise PolicyError(
                f"user_verification must be one of {', '.join(self.USER_VERIFICATION)}"
            )
        for name in ("aaguid_allow_list", "aaguid_deny_list"):
            object.__setattr__(self, name, tuple(_aaguid(a, name) for a in getattr(self, name)))
        algorithms = tuple(self.allowed_algorithms)
        if not algorithms or any(alg not in DEFAULT_ALGORITHMS for alg in algorithms):
            raise PolicyError(
                "allowed_algorithms must be a non-empty list of "
                + ", ".join(str(a) for a in DEFAULT_ALGORITHMS)
                + " (COSE identifiers)"
            )
        object.__setattr__(self, "allowed_algorithms", algorithms)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def as_json(self) -> dict[str, Any]:
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }

    def with_text_changes(self, changes: dict[str, str]) -> Policy:
        """A copy with ``changes`` (name -> text, as typed on the command line) applied.

        Lists are comma-separated; an empty value empties a list.
        """
        values = dataclasses.asdict(self)
        for name, text in changes.items():
            if name not in values:
                raise PolicyError(f"unknown policy setting {name!r}; settings: {', '.join(values)}")
            current = values[name]
            if isinstance(current, bool):
                values[name] = _boolean(text, name)
            elif isinstance(current, int):
                try:
                    values[name] = int(text)
                except ValueError:
                    raise PolicyError(f"{name} must be a whole number") from None
            elif isinstance(current, tuple):
                items = [item.strip() for item in text.split(",") if item.strip()]
                if name == "allowed_algorithms":
                    try:
                        values[name] = tuple(int(item) for item in items)
                    except ValueError:
                        raise PolicyError(f"{name} must list COSE algorithm numbers") from None
                else:
                    values[name] = tuple(items)
            else:
                values[name] = text
        return Policy(**values)

    def check_registration(self, verified: VerifiedRegistration) -> None:
        """Refuse a verified registration the organisation does not allow.

        The algorithm rule is enforced earlier: only ``allowed_algorithms`` are
        offered, and §7.1 step 19 refuses any other.
        """
        aaguid = str(uuid.UUID(bytes=verified.aaguid))
        if self.refuse_u2f_authenticators and verified.attestation_format == "fido-u2f":
            raise errors.U2fAuthenticatorRefused()
        if aaguid in self.aaguid_deny_list:
            raise errors.AuthenticatorDenied(aaguid)
        # An AAGUID is only a claim unless attestation proves it (a chain to that
        # authenticator's own metadata roots): the allow-list admits those only.
        if self.aaguid_allow_list and not (
            aaguid in self.aaguid_allow_list and verified.aaguid_attested
        ):
            raise errors.AuthenticatorNotAllowed(
                aaguid if verified.aaguid_attested else f"{aaguid} (not attested)"
            )
        if self.require_trusted_attestation and not verified.attestation_trusted:
            raise errors.AttestationUntrusted(verified.untrusted_reason)
        if self.block_synced_passkeys and verified.backup_eligible:
            raise errors.SyncedPasskeyBlocked()


def _aaguid(value: object, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise PolicyError(f"{name}: {value!r} is not an AAGUID") from None


def _boolean(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise PolicyError(f"{name} must be true or false")
