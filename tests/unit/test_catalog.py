"""The typed ceremony errors (threshold.core.errors) and the catalog of what a person is told
(threshold.core.catalog)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from threshold.core import errors
from threshold.core.catalog import (
    CATALOG,
    GROUPS,
    NEXT_STEPS,
    CatalogEntry,
    Group,
    entries_by_group,
    entry_for,
)

BROWSER, FALLBACK = Group.BROWSER, Group.FALLBACK

CEREMONIES = ("authentication", "registration")
ALL_CEREMONIES = (*CEREMONIES, "settings")
WEB = Path(__file__).resolve().parents[2] / "threshold" / "web"
# Every title of seed 002's three tables (the help article people already know).
SEED_002_TITLES = {
    "Passkey Unavailable",
    "Passkey Not Found or Canceled",
    "Passkey Request Timed Out",
    "Passkey is not found on this device",
    "We could not verify you",
    "Passkey Set Up Canceled",
    "Passkey already registered for this device",
    "Failed to register the device for passkey",
    "Passkey Limit Reached",
    "Session Expired",
    "Passkeys Not Supported",
    "Verification couldn\u2019t be completed",
    "No compatible device found",
    "Verification failed",
}
# Seed 000's common errors that a web product's people meet, in the browser's own words.
SEED_000_BROWSER_MESSAGES = {
    "There aren\u2019t any passkeys saved for",
    "already registered with the relying party",
    "The operation either timed out or was not allowed",
    "There was a problem saving your passkey",
    "Verification timed out. Please try again.",
    "This site can\u2019t provide a secure connection",
}
ERROR_CLASSES = sorted(
    (
        cls
        for cls in vars(errors).values()
        if inspect.isclass(cls) and issubclass(cls, errors.ThresholdError)
    ),
    key=lambda cls: cls.__name__,
)
# The categories an error may have (``errors.Category``).
PUBLIC_CATEGORIES = {
    "failed",
    "session",
    "not_verified",
    "already_registered",
    "limit_reached",
    "unavailable",
    "unsupported",
    "invite_unusable",
    "authenticator_refused",
    "synced_blocked",
    "bad_request",
    "busy",
    # Changes to one's own sign-in methods (Settings).
    "step_up",
    "not_found",
    "last_method",
    "name_invalid",
    # Fallback sign-in and account state.
    "fallback_off",
    "fallback_invalid",
    "code_invalid",
    "throttled",
    "locked",
    # A request body over the cap: the bad_request entry, with 413.
    "too_large",
    # The device app (Threshold Verify).
    "device_unauthorized",
    "device_clock",
    "setup_code_invalid",
    "returned_code_invalid",
    "device_limit",
    "device_key_refused",
    "device_app_off",
    "push_pending",
    "push_refused",
}
GENERIC = {
    "authentication": "Verification failed",
    "registration": "Failed to register the device for passkey",
}
by_name = pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda cls: cls.__name__)


def test_errors_module_defines_the_expected_number_of_errors() -> None:
    # Guards the walk below: if it finds nothing, the other tests prove nothing.
    assert len(ERROR_CLASSES) >= 30
    assert errors.SignCountRegressed in ERROR_CLASSES


def test_every_error_has_a_unique_code() -> None:
    codes = [cls.code for cls in ERROR_CLASSES]
    duplicates = {code for code in codes if codes.count(code) > 1}
    assert not duplicates


@by_name
def test_error_code_is_snake_case_and_its_own(error_class: type[errors.CeremonyError]) -> None:
    assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", error_class.code)
    # Declared on the class itself, not inherited: a subclass without one would share its parent's.
    assert "code" in vars(error_class)


@by_name
def test_error_public_category_is_a_known_one(error_class: type[errors.CeremonyError]) -> None:
    assert error_class.category in PUBLIC_CATEGORIES


@by_name
def test_error_keeps_its_detail_and_explains_itself_without_one(
    error_class: type[errors.CeremonyError],
) -> None:
    assert error_class("stored 5, received 5").detail == "stored 5, received 5"
    assert str(error_class()) == error_class.__doc__
    assert error_class.__doc__


@by_name
@pytest.mark.parametrize("ceremony", ALL_CEREMONIES)
def test_every_error_has_a_catalog_entry_in_every_ceremony(
    error_class: type[errors.CeremonyError], ceremony: str
) -> None:
    entry = entry_for(error_class(), ceremony)
    assert isinstance(entry, CatalogEntry)
    assert CATALOG[entry.key] is entry
    assert entry.title
    assert entry.message
    assert entry.cause
    assert entry.solution
    assert entry.next_steps
    # Threshold shows its own entries; the browsers' messages are for the help page only.
    assert not entry.is_browser_message


@pytest.mark.parametrize("ceremony", ALL_CEREMONIES)
def test_an_idle_page_reads_session_expired_and_offers_to_start_again(ceremony: str) -> None:
    entry = entry_for(errors.FlowExpired(), ceremony)
    assert entry.title == "Session Expired"
    assert entry.next_steps == ("restart",)


def test_every_seed_002_title_is_shown_by_threshold() -> None:
    titles = {entry.title for entry in CATALOG.values() if not entry.is_browser_message}
    assert titles >= SEED_002_TITLES


@pytest.mark.parametrize("text", sorted(SEED_000_BROWSER_MESSAGES))
def test_seed_000_browser_messages_are_explained(text: str) -> None:
    [entry] = [e for e in CATALOG.values() if text in e.message]
    assert entry.is_browser_message
    assert entry.group == BROWSER


@pytest.mark.parametrize("entry", CATALOG.values(), ids=lambda entry: entry.key)
def test_every_entry_has_a_cause_a_solution_and_known_next_steps(entry: CatalogEntry) -> None:
    assert entry.title.strip()
    assert entry.message.strip()
    assert len(entry.cause) > 20
    assert len(entry.solution) > 20
    assert entry.next_steps
    assert set(entry.next_steps) <= NEXT_STEPS.keys()
    assert len(set(entry.next_steps)) == len(entry.next_steps)
    assert entry.group in GROUPS
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", entry.key)
    # Support staff's words, not another company's.
    for text in (entry.title, entry.message, entry.cause, entry.solution):
        assert not re.search(r"okta|netflix", text, re.IGNORECASE), text


@pytest.mark.parametrize(
    "entry",
    [entry for entry in CATALOG.values() if entry.group != FALLBACK],
    ids=lambda entry: entry.key,
)
def test_only_the_password_next_step_offers_a_password(entry: CatalogEntry) -> None:
    # The page offers it where the policy allows it; the message must read right without it.
    assert not re.search(r"\bpassword\b(?! manager)", entry.message, re.IGNORECASE)


@pytest.mark.parametrize(
    "key",
    [
        "passkey_unavailable",
        "passkey_not_found_or_canceled",
        "passkey_not_on_device",
        "not_verified",
        "verification_failed",
        "not_supported",
        "no_compatible_device",
    ],
)
def test_sign_in_failures_the_seed_answers_with_a_password_offer_one(key: str) -> None:
    assert "password" in CATALOG[key].next_steps


def test_set_up_failures_never_offer_a_password() -> None:
    # Setting up happens after an invite link or a sign-in: a password sign-in is no way on.
    for _heading, entries in entries_by_group():
        for entry in entries:
            if entry.group == "set-up":
                assert "password" not in entry.next_steps, entry.key


def test_the_help_page_sections_hold_every_entry_once() -> None:
    sections = entries_by_group()
    assert [heading for heading, _ in sections] == list(GROUPS.values())
    keys = [entry.key for _, entries in sections for entry in entries]
    assert sorted(keys) == sorted(CATALOG)
    assert all(entries for _, entries in sections)


def test_an_entry_with_an_unknown_next_step_or_group_is_refused() -> None:
    with pytest.raises(ValueError, match="next steps"):
        CatalogEntry("x", "X", "x.", "x.", "x.", ("call_mum",), BROWSER)
    with pytest.raises(ValueError, match="next steps"):
        CatalogEntry("x", "X", "x.", "x.", "x.", (), BROWSER)
    with pytest.raises(ValueError, match="group"):
        CatalogEntry("x", "X", "x.", "x.", "x.", ("retry",), "elsewhere")


def test_every_catalog_key_the_browser_script_names_is_one_it_may_show() -> None:
    script = (WEB / "static" / "threshold" / "webauthn.js").read_text()
    keys = set(re.findall(r"catalog\.([a-z_]+)", script))
    keys |= set(re.findall(r'"([a-z]+(?:_[a-z]+)+)"', script)) - NEXT_STEPS.keys()
    assert {"passkey_not_on_device", "sign_in_timed_out", "no_compatible_device"} <= keys
    for key in keys:
        assert key in CATALOG, key
        assert not CATALOG[key].is_browser_message, key


def test_the_ceremony_notice_words_every_next_step() -> None:
    template = (WEB / "templates" / "web" / "_ceremony_notices.html").read_text()
    assert set(re.findall(r'data-step="([a-z_]+)"', template)) == NEXT_STEPS.keys()


@pytest.mark.parametrize("ceremony", CEREMONIES)
@pytest.mark.parametrize("error_class", [errors.ChallengeMissing, errors.ChallengeExpired])
def test_session_errors_read_session_expired(
    error_class: type[errors.CeremonyError], ceremony: str
) -> None:
    entry = entry_for(error_class(), ceremony)
    assert entry.key == "session_expired"
    assert entry.title == "Session Expired"


@pytest.mark.parametrize("ceremony", CEREMONIES)
def test_generic_failures_share_one_entry_per_ceremony(ceremony: str) -> None:
    generic = [cls for cls in ERROR_CLASSES if cls.category == "failed"]
    # The failures an attacker would most like to tell apart are all among them.
    assert {
        errors.SignatureInvalid,
        errors.SignCountRegressed,
        errors.UserHandleMismatch,
        errors.CredentialUnknown,
        errors.OriginNotAllowed,
        errors.ChallengeMismatch,
        errors.MalformedResponse,
    } <= set(generic)
    entries = {entry_for(cls(), ceremony) for cls in generic}
    assert len(entries) == 1
    assert entries.pop().title == GENERIC[ceremony]


def test_user_not_verified_reads_the_same_in_both_ceremonies() -> None:
    for ceremony in CEREMONIES:
        assert entry_for(errors.UserNotVerified(), ceremony).title == "We could not verify you"


def test_unsupported_algorithm_is_explained_at_registration_only() -> None:
    # At registration the device really is unsupported; at sign-in it cannot be (it registered).
    assert entry_for(errors.AlgorithmNotAllowed(), "registration").title == "Passkeys Not Supported"
    assert (
        entry_for(errors.AlgorithmNotAllowed(), "authentication").title == GENERIC["authentication"]
    )


@pytest.mark.parametrize(
    ("error", "title"),
    [
        (errors.CredentialAlreadyRegistered(), "Passkey already registered for this device"),
        (errors.PasskeyLimitReached(), "Passkey Limit Reached"),
        (errors.InviteUnusable(), "This link can\u2019t be used"),
    ],
)
def test_registration_only_errors_have_their_own_registration_entry(
    error: errors.CeremonyError, title: str
) -> None:
    assert entry_for(error, "registration").title == title


@pytest.mark.parametrize(
    "error", [errors.CredentialAlreadyRegistered(), errors.PasskeyLimitReached()]
)
def test_categories_without_a_sign_in_entry_fall_back_to_the_generic_failure(
    error: errors.CeremonyError,
) -> None:
    assert entry_for(error, "authentication").title == GENERIC["authentication"]


def test_unavailable_reads_passkey_unavailable_in_both_ceremonies() -> None:
    class ServiceDown(errors.CeremonyError):
        """Defined here: no error in errors.py uses the category yet."""

        code = "test_service_down"
        category = errors.Category.UNAVAILABLE

    assert entry_for(ServiceDown(), "authentication").key == "passkey_unavailable"
    assert entry_for(ServiceDown(), "registration").key == "setup_unavailable"


def test_catalog_entry_as_json_carries_code_title_message_and_next_steps_only() -> None:
    # Not the cause or the solution: those are for support staff (and could help an attacker).
    entry = entry_for(errors.SignatureInvalid(), "authentication")
    assert entry.as_json() == {
        "code": "verification_failed",
        "title": "Verification failed",
        "message": entry.message,
        "nextSteps": ["another_device", "password", "contact_support"],
    }


def test_catalog_keys_are_the_entries_own() -> None:
    assert all(key == entry.key for key, entry in CATALOG.items())


@pytest.mark.parametrize(
    ("error_class", "title"),
    [
        (errors.StepUpRequired, "Verify it\u2019s you"),
        (errors.SecurityMethodNotFound, "Security Method Not Found"),
        (errors.LastSignInMethod, "You Can\u2019t Remove Your Only Sign-in Method"),
        (errors.NameInvalid, "Name Not Saved"),
        (errors.MalformedRequest, "Session Expired"),
    ],
)
def test_settings_errors_have_their_own_entries(
    error_class: type[errors.CeremonyError], title: str
) -> None:
    assert entry_for(error_class(), "settings").title == title


def test_a_stale_step_up_while_adding_a_passkey_asks_to_verify() -> None:
    assert entry_for(errors.StepUpRequired(), "registration").key == "verification_required"
