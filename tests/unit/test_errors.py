"""One error hierarchy (threshold.core.errors) and one map from its categories to what is shown
(threshold.core.catalog.PRESENTATIONS)."""

from __future__ import annotations

import inspect

import pytest

from threshold.core import catalog, errors
from threshold.core.catalog import PRESENTATIONS, Surface, entry_for, status_for
from threshold.core.errors import Category
from threshold.core.policy import Rule

FAMILIES = (
    errors.CeremonyError,
    errors.InputError,
    errors.AccountError,
    errors.EnrollmentError,
    errors.SettingsError,
    errors.FallbackError,
    errors.PolicyError,
    errors.DeviceError,
    errors.AppSignInError,
)
REASONS = sorted(
    (
        cls
        for cls in vars(errors).values()
        if inspect.isclass(cls)
        and issubclass(cls, errors.ThresholdError)
        and cls not in (errors.ThresholdError, *FAMILIES)
    ),
    key=lambda cls: cls.__name__,
)


def test_category_values_are_the_strings_the_catalog_has_always_used() -> None:
    # A rename of a value fails here: they are what the error tables were keyed by.
    assert {category.name: category.value for category in Category} == {
        "FAILED": "failed",
        "SESSION": "session",
        "NOT_VERIFIED": "not_verified",
        "UNSUPPORTED": "unsupported",
        "UNAVAILABLE": "unavailable",
        "BAD_REQUEST": "bad_request",
        "TOO_LARGE": "too_large",
        "ALREADY_REGISTERED": "already_registered",
        "LIMIT_REACHED": "limit_reached",
        "INVITE_UNUSABLE": "invite_unusable",
        "AUTHENTICATOR_REFUSED": "authenticator_refused",
        "SYNCED_BLOCKED": "synced_blocked",
        "STEP_UP": "step_up",
        "NOT_FOUND": "not_found",
        "LAST_METHOD": "last_method",
        "NAME_INVALID": "name_invalid",
        "FALLBACK_OFF": "fallback_off",
        "FALLBACK_INVALID": "fallback_invalid",
        "CODE_INVALID": "code_invalid",
        "THROTTLED": "throttled",
        "LOCKED": "locked",
        "BUSY": "busy",
        "DEVICE_UNAUTHORIZED": "device_unauthorized",
        "DEVICE_CLOCK": "device_clock",
        "SETUP_CODE_INVALID": "setup_code_invalid",
        "RETURNED_CODE_INVALID": "returned_code_invalid",
        "DEVICE_LIMIT": "device_limit",
        "DEVICE_KEY_REFUSED": "device_key_refused",
        "DEVICE_APP_OFF": "device_app_off",
        "PUSH_PENDING": "push_pending",
        "PUSH_REFUSED": "push_refused",
    }


@pytest.mark.parametrize("category", list(Category), ids=str)
def test_every_category_has_one_status_and_an_entry_on_every_surface(category: Category) -> None:
    presentation = PRESENTATIONS[category]
    assert 400 <= presentation.status < 600
    for surface in Surface:
        entry = presentation.entry(surface)
        assert catalog.CATALOG[entry.key] is entry
        assert not entry.is_browser_message


def test_the_map_has_a_row_for_each_category_and_no_other() -> None:
    assert set(PRESENTATIONS) == set(Category)
    assert len(PRESENTATIONS) == len(Category)


def test_a_category_without_its_row_is_refused_when_the_catalog_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = dict(PRESENTATIONS)
    del rows[Category.LOCKED]
    monkeypatch.setattr(catalog, "PRESENTATIONS", rows)
    with pytest.raises(ValueError, match="locked"):
        catalog._check_presentations()


def test_a_row_naming_no_entry_is_refused_when_the_catalog_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = dict(PRESENTATIONS)
    rows[Category.LOCKED] = catalog.Presentation(403, "account_lockd", "x", "y")
    monkeypatch.setattr(catalog, "PRESENTATIONS", rows)
    with pytest.raises(ValueError, match="account_lockd"):
        catalog._check_presentations()


@pytest.mark.parametrize("error_class", REASONS, ids=lambda cls: cls.__name__)
def test_every_error_is_in_exactly_one_family(error_class: type[errors.ThresholdError]) -> None:
    assert sum(issubclass(error_class, family) for family in FAMILIES) == 1


def test_codes_are_unique_across_the_whole_hierarchy() -> None:
    classes = [errors.ThresholdError, *FAMILIES, *REASONS]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    assert len(REASONS) >= 50


@pytest.mark.parametrize(
    ("family", "members"),
    [
        (
            errors.InputError,
            {
                errors.MalformedRequest,
                errors.RequestTooLarge,
                errors.NameInvalid,
                errors.TooManyRequests,
                errors.DeviceRequestMalformed,
            },
        ),
        (errors.AccountError, {errors.AccountDisabled, errors.AccountLocked}),
        (errors.EnrollmentError, {errors.InviteUnusable, errors.AlreadyEnrolled}),
        (
            errors.SettingsError,
            {
                errors.StepUpRequired,
                errors.SecurityMethodNotFound,
                errors.LastSignInMethod,
                errors.PasskeyLimitReached,
            },
        ),
        (
            errors.FallbackError,
            {
                errors.FallbackNotAllowed,
                errors.PasswordIncorrect,
                errors.SecondFactorIncorrect,
                errors.SecondFactorReused,
                errors.TooManyAttempts,
            },
        ),
    ],
    ids=lambda value: value.__name__ if inspect.isclass(value) else "",
)
def test_the_families_per_concern(
    family: type[errors.ThresholdError], members: set[type[errors.ThresholdError]]
) -> None:
    assert {cls for cls in REASONS if issubclass(cls, family)} == members
    # Not WebAuthn checks: a wrong password is not a failed ceremony.
    assert not any(issubclass(cls, errors.CeremonyError) for cls in members)


def test_the_policy_rules_refuse_with_policy_errors_of_unchanged_names_and_codes() -> None:
    assert {rule.error.__name__: rule.error.code for rule in Rule} == {
        "U2fAuthenticatorRefused": "authenticator_u2f_only",
        "AuthenticatorDenied": "authenticator_denied",
        "AuthenticatorNotAllowed": "authenticator_not_allowed",
        "AttestationUntrusted": "attestation_untrusted",
        "SyncedPasskeyBlocked": "synced_passkey_blocked",
        "AlgorithmNoLongerAllowed": "algorithm_no_longer_allowed",
    }
    assert all(issubclass(rule.error, errors.PolicyError) for rule in Rule)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        # The statuses the two maps (web/http.py, fallback/views.py) and the views held.
        (errors.RequestTooLarge(), 413),
        (errors.TooManyAttempts(), 429),
        (errors.StepUpRequired(), 403),
        (errors.AccountLocked(), 403),
        (errors.FallbackNotAllowed(), 403),
        (errors.SecurityMethodNotFound(), 404),
        (errors.LastSignInMethod(), 409),
        (errors.MalformedRequest(), 400),
        (errors.NameInvalid(), 400),
        (errors.SignatureInvalid(), 400),
        (errors.AccountDisabled(), 400),
        (errors.InviteUnusable(), 400),
        (errors.PasswordIncorrect(), 400),
        (errors.SecondFactorReused(), 400),
        (errors.ChallengeMissing(), 400),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_status_comes_from_the_category(error: errors.ThresholdError, status: int) -> None:
    assert status_for(error) == status


def test_surfaces_are_named_by_value_too() -> None:
    # Callers may name a surface by its string, as they did before it was an enum.
    error = errors.SignatureInvalid()
    for surface in Surface:
        assert entry_for(error, surface.value) is entry_for(error, surface)
    with pytest.raises(ValueError, match="is not a valid Surface"):
        entry_for(error, "sign-in")


def test_fallback_off_reads_the_same_in_settings_as_at_sign_in() -> None:
    # Settings' "Set up" page for the fallback shows it while the policy turns it off.
    for surface in (Surface.AUTHENTICATION, Surface.SETTINGS):
        assert entry_for(errors.FallbackNotAllowed(), surface).key == "fallback_not_allowed"
