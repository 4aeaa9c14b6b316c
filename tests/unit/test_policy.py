"""The policy's one declaration (threshold.core.policy.SETTINGS), its stored document, and
``evaluate``, the one decision on a passkey that registration and sign-in share.

Registration's refusals keep their own tests (test_registration_policy.py); here the
decision itself: every rule on facts changed one at a time, all the reasons together,
and facts read back from what a stored passkey records.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from tests.unit.vectors import register, vector
from threshold.core import errors
from threshold.core.attestation import anchor_proves_aaguid
from threshold.core.ceremony import DEFAULT_ALGORITHMS
from threshold.core.policy import (
    SETTINGS,
    SETTINGS_BY_NAME,
    GroupRules,
    Kind,
    PasskeyFacts,
    Policy,
    PolicyError,
    Rule,
    evaluate,
)

README = Path(__file__).resolve().parents[2] / "README.md"
AAGUID = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
OTHER = "fbfc3007-154e-4ecc-8c0b-6e020557d7bd"

# A device-bound, attested FIDO2 passkey: every rule of every policy below admits it.
ATTESTED = PasskeyFacts(
    aaguid=AAGUID,
    aaguid_attested=True,
    attestation_trusted=True,
    untrusted_reason="",
    backup_eligible=False,
    attestation_format="packed",
    alg=-7,
)


# --- One declaration ------------------------------------------------------------------------------


def test_every_policy_field_is_declared_once_with_its_explanation() -> None:
    assert [setting.name for setting in SETTINGS] == [f.name for f in dataclasses.fields(Policy)]
    assert len(SETTINGS_BY_NAME) == len(SETTINGS) >= 17
    for setting in SETTINGS:
        assert setting.explanation.endswith("."), setting.name
        assert "\n" not in setting.explanation
        # The default is a value the setting allows, and it is the dataclass's default.
        assert setting.validate(setting.default) == setting.default
        assert getattr(Policy(), setting.name) == setting.default


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind is Kind.WHOLE_NUMBER])
def test_whole_numbers_are_refused_outside_their_declared_range(setting) -> None:
    low, high = setting.minimum, setting.maximum
    assert getattr(Policy(**{setting.name: low}), setting.name) == low
    assert getattr(Policy(**{setting.name: high}), setting.name) == high
    for value in (low - 1, high + 1, True, "10", 10.0):
        with pytest.raises(PolicyError, match=f"{setting.name} must be a whole number from"):
            Policy(**{setting.name: value})


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind is Kind.BOOLEAN])
def test_booleans_must_be_booleans(setting) -> None:
    for value in ("yes", 1, None):
        with pytest.raises(PolicyError, match=f"{setting.name} must be true or false"):
            Policy(**{setting.name: value})


@pytest.mark.parametrize("name", ["aaguid_allow_list", "aaguid_deny_list", "allowed_algorithms"])
def test_a_list_setting_is_not_a_string(name: str) -> None:
    with pytest.raises(PolicyError, match=name):
        Policy(**{name: "-7" if name == "allowed_algorithms" else AAGUID})


def test_allowed_algorithms_refuse_a_boolean_posing_as_a_number() -> None:
    with pytest.raises(PolicyError, match="allowed_algorithms"):
        Policy(allowed_algorithms=(-7, True))


def test_the_declaration_says_what_each_setting_allows() -> None:
    by_name = SETTINGS_BY_NAME
    assert by_name["ceremony_timeout_seconds"].allowed_text == "15\u2013600"
    assert by_name["user_verification"].allowed_text == "`required` or `preferred`"
    assert by_name["block_synced_passkeys"].allowed_text == "true or false"
    assert by_name["allowed_algorithms"].allowed_text == "some of -7,-8,-35,-36,-37,-257"
    assert by_name["aaguid_deny_list"].default_text == "empty"
    assert by_name["allow_password_fallback"].default_text == "true"


# --- The stored document ------------------------------------------------------------------------


def test_a_document_round_trips() -> None:
    policy = Policy(passkey_limit=3, aaguid_deny_list=(AAGUID,), block_synced_passkeys=True)
    assert Policy.from_document(policy.as_json()) == policy
    assert policy.as_json()["aaguid_deny_list"] == [AAGUID]


def test_settings_missing_from_a_document_take_their_defaults() -> None:
    assert Policy.from_document({}) == Policy()
    assert Policy.from_document({"passkey_limit": 4}) == Policy(passkey_limit=4)


def test_settings_a_newer_version_wrote_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="threshold.core.policy"):
        policy = Policy.from_document({"passkey_limit": 4, "device_app_required": True})
    assert policy == Policy(passkey_limit=4)
    assert "device_app_required" in caplog.text


def test_an_invalid_stored_value_is_refused_not_loosened() -> None:
    with pytest.raises(PolicyError, match="is not an AAGUID"):
        Policy.from_document({"aaguid_deny_list": ["not-an-aaguid"]})
    with pytest.raises(PolicyError, match="block_synced_passkeys must be true or false"):
        Policy.from_document({"block_synced_passkeys": "yes"})


# --- The README's table ---------------------------------------------------------------------------


def policy_table() -> str:
    """The README's policy table, as the declaration says it."""
    rows = ["| setting | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        rows.append(
            f"| `{setting.name}` | {setting.default_text} | {setting.allowed_text} "
            f"| {setting.explanation} |"
        )
    return "\n".join(rows)


def test_the_readme_policy_table_is_the_declaration() -> None:
    text = README.read_text()
    section = text[text.index("### Organisation policy") :]
    found = re.search(r"^\| setting \| default \|.*?(?=\n\n)", section, re.S | re.M)
    assert found is not None
    expected = policy_table()
    assert found.group(0) == expected, f"Replace the README's table with:\n\n{expected}\n"


# --- evaluate: one rule at a time ---------------------------------------------------------------


def test_a_passkey_every_rule_admits_is_allowed() -> None:
    strict = Policy(
        require_trusted_attestation=True,
        aaguid_allow_list=(AAGUID,),
        aaguid_deny_list=(OTHER,),
        block_synced_passkeys=True,
        allowed_algorithms=(-7,),
    )
    decision = evaluate(strict, ATTESTED)
    assert decision.allowed
    assert decision.reasons == ()
    assert decision.error() is None


@pytest.mark.parametrize(
    ("policy", "facts", "rule"),
    [
        (Policy(), dataclasses.replace(ATTESTED, attestation_format="fido-u2f"), Rule.U2F_ONLY),
        (Policy(aaguid_deny_list=(AAGUID,)), ATTESTED, Rule.AAGUID_DENIED),
        (Policy(aaguid_allow_list=(OTHER,)), ATTESTED, Rule.AAGUID_NOT_ALLOWED),
        (
            Policy(aaguid_allow_list=(AAGUID,)),
            dataclasses.replace(ATTESTED, aaguid_attested=False),
            Rule.AAGUID_NOT_ALLOWED,
        ),
        (
            Policy(require_trusted_attestation=True),
            dataclasses.replace(ATTESTED, attestation_trusted=False, untrusted_reason="none"),
            Rule.ATTESTATION_UNTRUSTED,
        ),
        (
            Policy(block_synced_passkeys=True),
            dataclasses.replace(ATTESTED, backup_eligible=True),
            Rule.SYNCED,
        ),
        (Policy(allowed_algorithms=(-8, -257)), ATTESTED, Rule.ALGORITHM),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_each_rule_refuses_with_its_own_error(policy, facts, rule) -> None:
    decision = evaluate(policy, facts)
    assert not decision.allowed
    assert decision.reasons == (rule,)
    error = decision.error()
    assert isinstance(error, rule.error)
    # The audit log's reason is the rule's name.
    assert error.code == rule
    assert rule.setting in SETTINGS_BY_NAME
    # The same facts pass under the most lenient policy.
    assert evaluate(Policy(refuse_u2f_authenticators=False), facts).allowed


def test_every_refusing_rule_is_a_reason_the_first_one_the_error() -> None:
    facts = PasskeyFacts(
        aaguid=AAGUID,
        aaguid_attested=False,
        attestation_trusted=False,
        untrusted_reason="no attestation",
        backup_eligible=True,
        attestation_format="none",
        alg=-8,
    )
    policy = Policy(
        aaguid_deny_list=(AAGUID,),
        aaguid_allow_list=(AAGUID,),
        require_trusted_attestation=True,
        block_synced_passkeys=True,
        allowed_algorithms=(-7,),
    )
    decision = evaluate(policy, facts)
    assert decision.reasons == (
        Rule.AAGUID_DENIED,
        Rule.AAGUID_NOT_ALLOWED,
        Rule.ATTESTATION_UNTRUSTED,
        Rule.SYNCED,
        Rule.ALGORITHM,
    )
    assert isinstance(decision.error(), errors.AuthenticatorDenied)


def test_the_errors_tell_support_staff_what_refused() -> None:
    unattested = dataclasses.replace(ATTESTED, aaguid_attested=False)
    not_listed = evaluate(Policy(aaguid_allow_list=(OTHER,)), unattested).error()
    assert not_listed is not None
    assert not_listed.detail == f"{AAGUID} (not attested)"
    algorithm = evaluate(Policy(allowed_algorithms=(-8,)), ATTESTED).error()
    assert algorithm is not None
    assert algorithm.detail == "alg -7 is not allowed"


def test_registration_refuses_with_the_decisions_first_error() -> None:
    verified = register(vector("none-es256/registration"))  # BE set, no attestation
    facts = PasskeyFacts.of_registration(verified)
    assert (facts.backup_eligible, facts.attestation_trusted) == (True, False)
    policy = Policy(block_synced_passkeys=True, require_trusted_attestation=True)
    assert evaluate(policy, facts).reasons == (Rule.ATTESTATION_UNTRUSTED, Rule.SYNCED)
    with pytest.raises(errors.AttestationUntrusted):
        policy.check_registration(verified)


# --- Facts a stored passkey keeps -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "fmt", "proves"),
    [
        ("FIDO MDS: YubiKey 5 Series with NFC", "packed", True),
        ("configured trust anchor", "tpm", True),
        ("Apple WebAuthn Root CA", "apple", False),
        ("Google hardware attestation root", "android-key", False),
        ("", "none", False),
        # The U2F signature does not cover the AAGUID (§8.6), whatever the chain reaches.
        ("FIDO MDS: Security Key by Yubico", "fido-u2f", False),
        ("configured trust anchor", "fido-u2f", False),
    ],
)
def test_the_stored_anchor_says_whether_it_proved_the_aaguid(
    anchor: str, fmt: str, proves: bool
) -> None:
    assert anchor_proves_aaguid(anchor, fmt) is proves


def test_a_registration_and_its_stored_anchor_agree_on_the_aaguid() -> None:
    # Chained to the specification's test CA, which the tests configure as an anchor.
    verified = register(vector("packed-es256/registration"))
    assert verified.attestation_trusted
    assert verified.trust_anchor
    assert anchor_proves_aaguid(verified.trust_anchor, "packed") is verified.aaguid_attested is True


def test_every_default_algorithm_is_allowed_by_default() -> None:
    for alg in DEFAULT_ALGORITHMS:
        assert evaluate(Policy(), dataclasses.replace(ATTESTED, alg=alg)).allowed


# --- A group's rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "facts", "rule"),
    [
        (GroupRules("Eng", aaguid_deny_list=(AAGUID,)), ATTESTED, Rule.AAGUID_DENIED),
        (GroupRules("Eng", aaguid_allow_list=(OTHER,)), ATTESTED, Rule.AAGUID_NOT_ALLOWED),
        (
            GroupRules("Eng", require_trusted_attestation=True),
            dataclasses.replace(ATTESTED, attestation_trusted=False),
            Rule.ATTESTATION_UNTRUSTED,
        ),
        (
            GroupRules("Eng", block_synced_passkeys=True),
            dataclasses.replace(ATTESTED, backup_eligible=True),
            Rule.SYNCED,
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_groups_rule_refuses_and_its_error_names_the_group(rules, facts, rule) -> None:
    decision = evaluate(Policy(), facts, [rules])
    assert not decision.allowed
    assert decision.reasons == ()
    assert decision.by_group == ((rule, "Eng"),)
    assert decision.refused_by == [f"{rule.setting} (Eng)"]
    error = decision.error()
    assert isinstance(error, rule.error)
    assert error.detail.startswith("group Eng")
    # Without the group (someone who is not a member), the same passkey is allowed.
    assert evaluate(Policy(), facts).allowed


def test_the_organisations_reason_comes_first_and_every_group_adds() -> None:
    synced = dataclasses.replace(ATTESTED, backup_eligible=True)
    decision = evaluate(
        Policy(block_synced_passkeys=True),
        synced,
        [GroupRules("A", block_synced_passkeys=True), GroupRules("B", aaguid_deny_list=(AAGUID,))],
    )
    assert decision.reasons == (Rule.SYNCED,)
    assert decision.by_group == ((Rule.SYNCED, "A"), (Rule.AAGUID_DENIED, "B"))
    assert decision.error().detail == ""  # the organisation's own rule, no group named


def test_a_groups_rules_never_relax_the_organisations() -> None:
    # An empty group (every rule off) changes nothing the organisation refuses.
    decision = evaluate(Policy(aaguid_deny_list=(AAGUID,)), ATTESTED, [GroupRules("Open")])
    assert decision.reasons == (Rule.AAGUID_DENIED,)


def test_group_rules_are_validated_by_the_settings_declarations() -> None:
    with pytest.raises(PolicyError, match="is not an AAGUID"):
        GroupRules("Eng", aaguid_deny_list=("nonsense",))
    with pytest.raises(PolicyError, match="true or false"):
        GroupRules.from_document("Eng", {"block_synced_passkeys": "yes"})
    rules = GroupRules.from_document("Eng", {"aaguid_deny_list": [AAGUID.upper()], "other": 1})
    assert rules.aaguid_deny_list == (AAGUID,)
    assert rules.as_json() == {"aaguid_deny_list": [AAGUID]}
    assert GroupRules("Eng").as_json() == {}
