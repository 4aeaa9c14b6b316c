"""The organisation policy: every setting declared once, and one evaluation of a passkey.

Each field of ``Policy`` declares its setting with ``_setting(...)``: the type
(the annotation), the default, the allowed range or choices, and one sentence
for the person who changes it. ``SETTINGS`` lists those declarations; the
policy's validation, the stored document (``threshold.policy``), the
``threshold policy`` command, the README's table (a test compares them) and
the admin portal all read them, so a setting is added in one place.

``evaluate(policy, facts)`` decides whether a passkey, registering or
registered, is one the organisation allows, and says which rules refuse it.
Registration and sign-in both ask it: a passkey registered before a rule was
tightened stops signing in once today's policy refuses it.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from threshold.core import errors
from threshold.core.ceremony import DEFAULT_ALGORITHMS
from threshold.core.vocabulary import AttestationFormat, UserVerification

if TYPE_CHECKING:
    from threshold.core.ceremony import VerifiedRegistration

logger = logging.getLogger(__name__)


class PolicyError(ValueError):
    """A policy value is out of range or of the wrong kind."""


# --- What a setting is ---------------------------------------------------------------------------


class Kind(StrEnum):
    """The kinds of value a setting holds, each parsed and checked its own way."""

    WHOLE_NUMBER = "whole number"
    BOOLEAN = "true or false"
    CHOICE = "one of"
    AAGUIDS = "AAGUIDs"
    ALGORITHMS = "COSE algorithms"


@dataclass(frozen=True)
class Setting:
    """One policy setting: what it may be and what it does."""

    name: str
    kind: Kind
    default: Any
    # One sentence for the person who changes it (README, CLI help, admin portal).
    explanation: str
    minimum: int | None = None
    maximum: int | None = None
    # The allowed values of a CHOICE, or the algorithms an ALGORITHMS list may hold.
    choices: tuple[Any, ...] = ()

    def validate(self, value: object) -> Any:
        """``value`` as the policy holds it (tuples, canonical AAGUIDs), or PolicyError."""
        return _VALIDATORS[self.kind](self, value)

    def parse_text(self, text: str) -> Any:
        """``text`` as typed on the command line, validated. Lists are comma-separated."""
        return self.validate(_PARSERS[self.kind](self, text))

    def as_json(self, value: Any) -> Any:
        """``value`` as the stored document and the audit log hold it (tuples become lists)."""
        return list(value) if isinstance(value, tuple) else value

    @property
    def allowed_text(self) -> str:
        """The values it may take, for people: "15–600", "`required` or `preferred`"."""
        if self.kind is Kind.WHOLE_NUMBER:
            return f"{self.minimum}\u2013{self.maximum}"
        if self.kind is Kind.BOOLEAN:
            return "true or false"
        if self.kind is Kind.CHOICE:
            return " or ".join(f"`{choice}`" for choice in self.choices)
        if self.kind is Kind.AAGUIDS:
            return "AAGUIDs, comma-separated"
        return "some of " + ",".join(str(choice) for choice in self.choices)

    @property
    def default_text(self) -> str:
        """The default as people write it: "60", "true", "`required`", "empty"."""
        return self.text(self.default, markdown=True)

    def text(self, value: Any, *, markdown: bool = False) -> str:
        """A value as ``threshold policy show`` prints it (and README, with ``markdown``)."""
        if isinstance(value, bool):
            return str(value).lower() if markdown else str(value)
        if isinstance(value, tuple | list):
            if markdown and not value:
                return "empty"
            return ",".join(str(item) for item in value)
        if markdown and isinstance(value, str):
            return f"`{value}`"
        return str(value)


def _setting(
    kind: Kind,
    default: Any,
    explanation: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    choices: tuple[Any, ...] = (),
) -> Any:
    """A ``Policy`` field that declares its setting (the name is the field's)."""
    declared = Setting("", kind, default, explanation, minimum, maximum, choices)
    return dataclasses.field(default=default, metadata={_SETTING: declared})


_SETTING = "threshold.setting"


# --- The policy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The organisation policy in force: validated on creation, never changed in place."""

    ceremony_timeout_seconds: int = _setting(
        Kind.WHOLE_NUMBER,
        # WebAuthn L3 §15.1's recommendation for a ceremony that verifies the user (a phone
        # reached through a QR code, a security key fetched from a bag and its PIN).
        300,
        "How long a passkey prompt (and its challenge) stays valid.",
        minimum=15,
        maximum=600,
    )
    user_verification: str = _setting(
        Kind.CHOICE,
        UserVerification.REQUIRED.value,
        "`required`: every passkey use needs a fingerprint, face or PIN; `preferred`: a security "
        "key without a PIN is accepted too.",
        choices=(UserVerification.REQUIRED.value, UserVerification.PREFERRED.value),
    )
    passkey_limit: int = _setting(
        Kind.WHOLE_NUMBER, 10, "Passkeys per person.", minimum=1, maximum=100
    )
    invite_lifetime_hours: int = _setting(
        Kind.WHOLE_NUMBER,
        168,
        "How long an enrollment link works.",
        minimum=1,
        maximum=24 * 90,
    )
    step_up_max_age_seconds: int = _setting(
        Kind.WHOLE_NUMBER,
        300,
        "Adding or removing a sign-in method, and any change in the admin portal, needs a passkey "
        "verification this recent; otherwise \u201cVerify it\u2019s you\u201d first.",
        minimum=60,
        maximum=3600,
    )
    flow_idle_timeout_minutes: int = _setting(
        Kind.WHOLE_NUMBER,
        10,
        "A sign-in page (or a half-finished password sign-in) left idle longer says \u201cSession "
        "Expired\u201d.",
        minimum=5,
        maximum=15,
    )
    allow_password_fallback: bool = _setting(
        Kind.BOOLEAN,
        True,
        "People may set up a password and authenticator app as a fallback, and sign in with "
        "them; `false`: passkeys only.",
    )
    password_lockout_threshold: int = _setting(
        Kind.WHOLE_NUMBER,
        10,
        "Consecutive wrong passwords or codes for one username from one network before the "
        "password path locks there for an hour (delays grow from the 4th); past this many wrong "
        "passwords from all networks together, each makes every network wait twice as long (up "
        "to 15 minutes, never a lock), except a browser that signed in as the person before; "
        "passkey sign-in is never locked by this. "
        "Whatever it is, 100 wrong authenticator-app or recovery codes in a row (from any "
        "network) shut the code step until the password and app are set up again, and the "
        "person is emailed.",
        minimum=3,
        maximum=100,
    )
    passkey_prompt_snooze_sign_ins: int = _setting(
        Kind.WHOLE_NUMBER,
        10,
        "After \u201cI\u2019ll do it later\u201d, the \u201cSet up a passkey\u201d prompt returns "
        "after this many sign-ins, or `passkey_prompt_snooze_days`, whichever comes first.",
        minimum=1,
        maximum=100,
    )
    passkey_prompt_snooze_days: int = _setting(
        Kind.WHOLE_NUMBER,
        7,
        "After \u201cI\u2019ll do it later\u201d, the \u201cSet up a passkey\u201d prompt returns "
        "after this many days, or `passkey_prompt_snooze_sign_ins`, whichever comes first.",
        minimum=1,
        maximum=90,
    )
    recovery_link_lifetime_minutes: int = _setting(
        Kind.WHOLE_NUMBER,
        60,
        "How long an administrator's recovery link works.",
        minimum=5,
        maximum=24 * 60,
    )
    # The rules on passkeys, applied at registration and at sign-in (``evaluate``).
    require_trusted_attestation: bool = _setting(
        Kind.BOOLEAN,
        False,
        "Only passkeys whose attestation chains to a trusted root (FIDO metadata, Apple, Google) "
        "may register and sign in; synced passkeys send none, so this leaves security keys and "
        "attested platform authenticators.",
    )
    aaguid_allow_list: tuple[str, ...] = _setting(
        Kind.AAGUIDS,
        (),
        "When set, only these authenticators may register and sign in, and only with trusted "
        "attestation (an unattested AAGUID is just a claim).",
    )
    aaguid_deny_list: tuple[str, ...] = _setting(
        Kind.AAGUIDS,
        (),
        "Authenticators that may never register or sign in.",
    )
    block_synced_passkeys: bool = _setting(
        Kind.BOOLEAN,
        False,
        "Refuse passkeys that can sync to a cloud keychain (backup eligible), at registration "
        "and at sign-in.",
    )
    allowed_algorithms: tuple[int, ...] = _setting(
        Kind.ALGORITHMS,
        DEFAULT_ALGORITHMS,
        "COSE algorithms offered to authenticators (ES256, EdDSA, ES384, ES512, PS256, RS256); a "
        "passkey with another cannot sign in.",
        choices=DEFAULT_ALGORITHMS,
    )
    refuse_u2f_authenticators: bool = _setting(
        Kind.BOOLEAN,
        True,
        "Refuse U2F-only (fido-u2f) security keys, which cannot verify the user, at registration "
        "and at sign-in.",
    )
    # The device app (Threshold Verify).
    allow_device_app_sign_in: bool = _setting(
        Kind.BOOLEAN,
        True,
        "People may sign in with a push to Threshold Verify (the device app): multi-factor, "
        "never phishing-resistant; `false`: devices can still be set up, not used to sign in.",
    )
    require_hardware_device_key: bool = _setting(
        Kind.BOOLEAN,
        False,
        "Only devices whose key Threshold verified is held in a TPM may be set up and sign in; "
        "devices set up before with a software key stop signing in.",
    )
    device_limit: int = _setting(
        Kind.WHOLE_NUMBER, 5, "Threshold Verify devices per person.", minimum=1, maximum=20
    )

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            object.__setattr__(self, setting.name, setting.validate(getattr(self, setting.name)))

    @classmethod
    def field_names(cls) -> list[str]:
        return [setting.name for setting in SETTINGS]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Policy:
        """The policy a stored document holds, validated.

        A setting missing from it takes its default (the document predates the
        setting); one this version does not know is ignored with a warning (a
        newer version wrote it). A value out of range is a PolicyError: the
        policy is never silently loosened.
        """
        unknown = frozenset(document).difference(SETTINGS_BY_NAME)
        if unknown:
            _warn_unknown(unknown)
        return cls(**{name: value for name, value in document.items() if name not in unknown})

    def as_json(self) -> dict[str, Any]:
        """Every setting with its value, as the stored document and the audit log hold it."""
        return {setting.name: setting.as_json(getattr(self, setting.name)) for setting in SETTINGS}

    def with_text_changes(self, changes: dict[str, str]) -> Policy:
        """A copy with ``changes`` (name -> text, as typed on the command line) applied.

        Lists are comma-separated; an empty value empties a list.
        """
        values = {}
        for name, text in changes.items():
            setting = SETTINGS_BY_NAME.get(name)
            if setting is None:
                raise PolicyError(
                    f"unknown policy setting {name!r}; settings: {', '.join(SETTINGS_BY_NAME)}"
                )
            values[name] = setting.parse_text(text)
        return dataclasses.replace(self, **values)

    def check_registration(
        self, verified: VerifiedRegistration, groups: Sequence[GroupRules] = ()
    ) -> None:
        """Refuse a verified registration the policy (and the person's ``groups``' rules) does
        not allow, with the first rule's error."""
        refusal = evaluate(self, PasskeyFacts.of_registration(verified), groups).error()
        if refusal is not None:
            raise refusal


@lru_cache(maxsize=8)
def _warn_unknown(names: frozenset[str]) -> None:
    # Once per process and set of names: the policy is read on every request.
    logger.warning(
        "the stored policy has settings this version does not know, ignored: %s",
        ", ".join(sorted(names)),
    )


SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(field.metadata[_SETTING], name=field.name)
    for field in dataclasses.fields(Policy)
)
SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


# --- Checking and parsing values, by kind ---------------------------------------------------------


def _whole_number(setting: Setting, value: object) -> int:
    low, high = setting.minimum or 0, setting.maximum or 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{setting.name} must be a whole number from {low} to {high}")
    return value


def _boolean(setting: Setting, value: object) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{setting.name} must be true or false")
    return value


def _choice(setting: Setting, value: object) -> str:
    if value not in setting.choices:
        raise PolicyError(f"{setting.name} must be one of {', '.join(setting.choices)}")
    assert isinstance(value, str)  # noqa: S101 - the choices are strings
    return value


def _aaguids(setting: Setting, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise PolicyError(f"{setting.name} must be a list of AAGUIDs")
    return tuple(_aaguid(item, setting.name) for item in value)


def _aaguid(value: object, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise PolicyError(f"{name}: {value!r} is not an AAGUID") from None


def _algorithms(setting: Setting, value: object) -> tuple[int, ...]:
    algorithms = () if isinstance(value, str) or not isinstance(value, Iterable) else tuple(value)
    if not algorithms or any(
        isinstance(alg, bool) or alg not in setting.choices for alg in algorithms
    ):
        raise PolicyError(
            f"{setting.name} must be a non-empty list of "
            + ", ".join(str(a) for a in setting.choices)
            + " (COSE identifiers)"
        )
    return algorithms


_VALIDATORS: dict[Kind, Callable[[Setting, object], Any]] = {
    Kind.WHOLE_NUMBER: _whole_number,
    Kind.BOOLEAN: _boolean,
    Kind.CHOICE: _choice,
    Kind.AAGUIDS: _aaguids,
    Kind.ALGORITHMS: _algorithms,
}


def _parse_whole_number(setting: Setting, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PolicyError(f"{setting.name} must be a whole number") from None


def _parse_boolean(setting: Setting, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise PolicyError(f"{setting.name} must be true or false")


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_algorithms(setting: Setting, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in _items(text))
    except ValueError:
        raise PolicyError(f"{setting.name} must list COSE algorithm numbers") from None


_PARSERS: dict[Kind, Callable[[Setting, str], object]] = {
    Kind.WHOLE_NUMBER: _parse_whole_number,
    Kind.BOOLEAN: _parse_boolean,
    Kind.CHOICE: lambda setting, text: text,
    Kind.AAGUIDS: lambda setting, text: tuple(_items(text)),
    Kind.ALGORITHMS: _parse_algorithms,
}


# --- Evaluating a passkey ------------------------------------------------------------------------


class Rule(StrEnum):
    """The policy's rules on passkeys, in the order ``evaluate`` checks them.

    Each value is the code of the error that refuses by it, which the audit log
    records as the reason, at registration and at sign-in alike.
    """

    U2F_ONLY = errors.U2fAuthenticatorRefused.code
    AAGUID_DENIED = errors.AuthenticatorDenied.code
    AAGUID_NOT_ALLOWED = errors.AuthenticatorNotAllowed.code
    ATTESTATION_UNTRUSTED = errors.AttestationUntrusted.code
    SYNCED = errors.SyncedPasskeyBlocked.code
    ALGORITHM = errors.AlgorithmNoLongerAllowed.code

    @property
    def error(self) -> type[errors.PolicyError]:
        """The error of a refusal by this rule (its catalog entry and audit reason)."""
        return _RULES[self][0]

    @property
    def setting(self) -> str:
        """The setting that makes the rule, to relax or tighten it."""
        return _RULES[self][1]


_RULES: dict[Rule, tuple[type[errors.PolicyError], str]] = {
    Rule.U2F_ONLY: (errors.U2fAuthenticatorRefused, "refuse_u2f_authenticators"),
    Rule.AAGUID_DENIED: (errors.AuthenticatorDenied, "aaguid_deny_list"),
    Rule.AAGUID_NOT_ALLOWED: (errors.AuthenticatorNotAllowed, "aaguid_allow_list"),
    Rule.ATTESTATION_UNTRUSTED: (errors.AttestationUntrusted, "require_trusted_attestation"),
    Rule.SYNCED: (errors.SyncedPasskeyBlocked, "block_synced_passkeys"),
    Rule.ALGORITHM: (errors.AlgorithmNoLongerAllowed, "allowed_algorithms"),
}


@dataclass(frozen=True)
class PasskeyFacts:
    """What the policy looks at in a passkey: a verified registration or a stored passkey."""

    aaguid: str  # canonical form, as the policy's lists hold it
    # The attestation chain proves the AAGUID (not only "an Apple device").
    aaguid_attested: bool
    attestation_trusted: bool
    untrusted_reason: str  # why not, for support staff; "" when trusted
    backup_eligible: bool
    attestation_format: str
    alg: int

    @classmethod
    def of_registration(cls, verified: VerifiedRegistration) -> PasskeyFacts:
        return cls(
            aaguid=str(uuid.UUID(bytes=verified.aaguid)),
            aaguid_attested=verified.aaguid_attested,
            attestation_trusted=verified.attestation_trusted,
            untrusted_reason=verified.untrusted_reason,
            backup_eligible=verified.backup_eligible,
            attestation_format=verified.attestation_format,
            alg=verified.alg,
        )


@dataclass(frozen=True)
class Decision:
    """Whether the policy allows a passkey, and every rule that refuses it: the organisation's
    (``reasons``) and those of the person's groups (``by_group``: the rule and the group)."""

    facts: PasskeyFacts
    reasons: tuple[Rule, ...]
    by_group: tuple[tuple[Rule, str], ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.reasons and not self.by_group

    @property
    def refused_by(self) -> list[str]:
        """The settings that refuse it, a group's named: "block_synced_passkeys (Engineering)"."""
        return [rule.setting for rule in self.reasons] + [
            f"{rule.setting} ({group})" for rule, group in self.by_group
        ]

    def error(self) -> errors.PolicyError | None:
        """The first refusing rule's error, with the detail support staff read (naming the
        group when it is a group's rule); None if allowed."""
        if self.reasons:
            rule, group = self.reasons[0], ""
        elif self.by_group:
            rule, group = self.by_group[0]
        else:
            return None
        facts = self.facts
        details = {
            Rule.AAGUID_DENIED: facts.aaguid,
            Rule.AAGUID_NOT_ALLOWED: (
                facts.aaguid if facts.aaguid_attested else f"{facts.aaguid} (not attested)"
            ),
            Rule.ATTESTATION_UNTRUSTED: facts.untrusted_reason,
            Rule.ALGORITHM: f"alg {facts.alg} is not allowed",
        }
        detail = details.get(rule, "")
        if group:
            detail = f"group {group}: {detail}" if detail else f"group {group}"
        return rule.error(detail)


def evaluate(policy: Policy, facts: PasskeyFacts, groups: Sequence[GroupRules] = ()) -> Decision:
    """Which of the policy's rules, and of the rules of the person's ``groups``, refuse the
    passkey ``facts`` describe.

    The same rules at registration and at sign-in. At registration the
    algorithm rule refuses only a policy changed during the ceremony: only
    ``allowed_algorithms`` are offered, and §7.1 step 20 refuses any other.
    A group's rules only add to the organisation's: the strictest applies.
    """
    by_group = tuple(
        (rule, rules.group) for rules in groups for rule in _group_refusals(rules, facts)
    )
    reasons = []
    if policy.refuse_u2f_authenticators and facts.attestation_format == AttestationFormat.FIDO_U2F:
        reasons.append(Rule.U2F_ONLY)
    if facts.aaguid in policy.aaguid_deny_list:
        reasons.append(Rule.AAGUID_DENIED)
    # An AAGUID is only a claim unless attestation proves it (a chain to that
    # authenticator's own metadata roots): the allow-list admits those only.
    if policy.aaguid_allow_list and not (
        facts.aaguid in policy.aaguid_allow_list and facts.aaguid_attested
    ):
        reasons.append(Rule.AAGUID_NOT_ALLOWED)
    if policy.require_trusted_attestation and not facts.attestation_trusted:
        reasons.append(Rule.ATTESTATION_UNTRUSTED)
    if policy.block_synced_passkeys and facts.backup_eligible:
        reasons.append(Rule.SYNCED)
    if facts.alg not in policy.allowed_algorithms:
        reasons.append(Rule.ALGORITHM)
    return Decision(facts, tuple(reasons), by_group)


# --- A group's rules --------------------------------------------------------------------------

# The settings a group may make stricter for its members, declared once (``SETTINGS``).
GROUP_SETTINGS = (
    "block_synced_passkeys",
    "require_trusted_attestation",
    "aaguid_allow_list",
    "aaguid_deny_list",
    "allow_password_fallback",
    "allow_device_app_sign_in",
)
# The ways in besides passkeys that a group may turn off for its members (never on).
GROUP_WAYS_IN = ("allow_password_fallback", "allow_device_app_sign_in")


@dataclass(frozen=True)
class GroupRules:
    """A group's rules on its members' ways in ("Engineering: security keys only, no synced
    passkeys, no password"): on their passkeys, and whether the password fallback and
    Threshold Verify's push may sign them in. They add to the organisation's and never relax
    them (a group's ``True`` leaves the organisation's setting as it is); a person in several
    groups meets every group's."""

    group: str
    block_synced_passkeys: bool = False
    require_trusted_attestation: bool = False
    aaguid_allow_list: tuple[str, ...] = ()
    aaguid_deny_list: tuple[str, ...] = ()
    allow_password_fallback: bool = True
    allow_device_app_sign_in: bool = True

    def __post_init__(self) -> None:
        for name in GROUP_SETTINGS:
            object.__setattr__(self, name, SETTINGS_BY_NAME[name].validate(getattr(self, name)))

    @classmethod
    def from_document(cls, group: str, document: Mapping[str, Any]) -> GroupRules:
        """A group's stored rules, validated; a setting it does not hold takes its default."""
        return cls(group, **{name: document[name] for name in GROUP_SETTINGS if name in document})

    def as_json(self) -> dict[str, Any]:
        """The rules that are set, as stored (an empty document: none)."""
        defaults = GroupRules(self.group)
        return {
            name: SETTINGS_BY_NAME[name].as_json(getattr(self, name))
            for name in GROUP_SETTINGS
            if getattr(self, name) != getattr(defaults, name)
        }


def turned_off_by(policy: Policy, groups: Sequence[GroupRules], way_in: str) -> str | None:
    """Who turns the way in ``way_in`` (one of ``GROUP_WAYS_IN``) off for a person in
    ``groups``, as a refusal's detail says it (``Decision.error``'s words): "" for the
    organisation's own setting, "group NAME" for a group's; None when it is allowed."""
    if way_in not in GROUP_WAYS_IN:
        raise ValueError(f"{way_in} is not a way in a group may turn off")
    if not getattr(policy, way_in):
        return ""
    for rules in groups:
        if not getattr(rules, way_in):
            return f"group {rules.group}"
    return None


def _group_refusals(rules: GroupRules, facts: PasskeyFacts) -> list[Rule]:
    """The rules of a group that refuse the passkey, as ``evaluate`` checks the policy's."""
    refused = []
    if facts.aaguid in rules.aaguid_deny_list:
        refused.append(Rule.AAGUID_DENIED)
    if rules.aaguid_allow_list and not (
        facts.aaguid in rules.aaguid_allow_list and facts.aaguid_attested
    ):
        refused.append(Rule.AAGUID_NOT_ALLOWED)
    if rules.require_trusted_attestation and not facts.attestation_trusted:
        refused.append(Rule.ATTESTATION_UNTRUSTED)
    if rules.block_synced_passkeys and facts.backup_eligible:
        refused.append(Rule.SYNCED)
    return refused
