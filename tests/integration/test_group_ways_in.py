"""A group's rules on its members' ways in besides passkeys: ``allow_password_fallback`` and
``allow_device_app_sign_in`` (``core.policy.GROUP_WAYS_IN``). A group turns either off for its
members ("Engineering: passkeys only"), never on; the refusal comes once both of the password's
factors are right (or at the push's finish), in the catalog's words, with the group in the audit
row; Settings, the last-method rule, the admin portal's counts and preview, and the sessions
already signed in follow.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Browser, enrolled_person, last_event
from tests.integration.portal_support import post, staff
from tests.integration.test_policy_enforcement_review import (
    approved_push,
    device_call,
    device_for,
    group_with_rules,
    password_sign_in,
    set_policy,
    set_up_fallback,
)
from tests.integration.test_sso import add_app, authorize
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.fallback.models import TotpDevice
from threshold.groups.actions import do_add_member, do_remove_member
from threshold.groups.models import Group
from threshold.policy.access import get_policy

pytestmark = pytest.mark.django_db


def passkeys_only(**rules: Any) -> Group:
    return group_with_rules("Engineering", allow_password_fallback=False, **rules)


def test_a_group_that_turns_the_password_off_refuses_it_after_both_factors(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    secret = set_up_fallback(ada)
    engineering = passkeys_only()
    do_add_member(engineering, ada.user, Origin.cli())
    step = TotpDevice.objects.get(user=ada.user).last_used_step

    browser = Browser()
    response = password_sign_in(browser, "ada@example.com", secret)

    assert response.status_code == 403, response.status_code
    assert "Password Sign-in Not Available" in response.content.decode()
    assert not browser.is_signed_in()
    event = last_event("sign_in.failed")
    assert (event.reason, event.detail["detail"]) == ("fallback_not_allowed", "group Engineering")
    # The code was not used up by a sign-in that could not happen.
    assert TotpDevice.objects.get(user=ada.user).last_used_step == step

    do_remove_member(engineering, ada.user, Origin.cli())
    assert password_sign_in(Browser(), "ada@example.com", secret).status_code == 303


def test_a_wrong_password_is_answered_alike_for_a_member(db: None) -> None:
    """The group shows only once both factors are right: a wrong password is a wrong password."""
    ada = enrolled_person("ada@example.com", "Ada")
    set_up_fallback(ada)
    do_add_member(passkeys_only(), ada.user, Origin.cli())
    browser = Browser()
    token = browser.csrf_token()
    response = browser.client.post(
        "/sign-in/password",
        {"username": "ada@example.com", "password": "wrong " * 3, "csrfmiddlewaretoken": token},
    )
    assert "Password Sign-in Not Available" not in response.content.decode()
    assert last_event("sign_in.failed").reason == "password_incorrect"


def test_settings_and_the_last_method_rule_follow_the_group(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    set_up_fallback(ada)
    assert count_usable_sign_in_methods(ada.user, get_policy()) == 2
    do_add_member(passkeys_only(), ada.user, Origin.cli())
    assert count_usable_sign_in_methods(ada.user, get_policy()) == 1


def test_a_group_that_turns_the_push_off_sends_no_push_and_refuses_an_approved_one(
    db: None,
) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    device = device_for(ada)
    browser = Browser()
    approved_push(browser, ada, device)  # approved before she joined the group
    engineering = group_with_rules("Engineering", allow_device_app_sign_in=False)
    do_add_member(engineering, ada.user, Origin.cli())

    browser.post_form("/sign-in/push/finish")
    assert not browser.is_signed_in()
    event = last_event("sign_in.failed")
    assert (event.reason, event.detail["detail"]) == ("device_app_not_allowed", "group Engineering")

    # A new push reaches no device of hers (the same answer as for anyone without one).
    other = Browser()
    started = other.post_json("/sign-in/push/start", {"username": "ada@example.com"})
    assert started.status_code == 200, started.content
    assert device_call(other, device, "approvals/pending")["approvals"] == []


def test_a_group_never_turns_a_way_in_on(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    secret = set_up_fallback(ada)
    set_policy(allow_password_fallback=False)
    do_add_member(group_with_rules("Engineering"), ada.user, Origin.cli())  # "true": no change
    browser = Browser()
    password_sign_in(browser, "ada@example.com", secret)
    assert not browser.is_signed_in()


def test_a_password_session_stops_reaching_apps_once_its_group_turns_the_password_off(
    db: None,
) -> None:
    ada = enrolled_person("ada@example.com", "Ada")
    secret = set_up_fallback(ada)
    browser = Browser()
    assert password_sign_in(browser, "ada@example.com", secret).status_code == 303
    app = add_app()
    do_add_member(passkeys_only(), ada.user, Origin.cli())

    auth = authorize(browser, app, prompt="none")

    assert "error=login_required" in auth.location, auth.location


def test_the_portal_sets_the_rule_and_its_preview_names_who_would_be_cut_off(db: None) -> None:
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    engineering = group_with_rules("Engineering")
    # Bob's only way in is his password: the rule would leave him none.
    bob = enrolled_person("bob@example.com", "Bob")
    set_up_fallback(bob)
    bob.user.passkeys.all().delete()
    do_add_member(engineering, bob.user, Origin.cli())
    rules = {
        "block_synced_passkeys": "false",
        "require_trusted_attestation": "false",
        "aaguid_allow_list": "",
        "aaguid_deny_list": "",
        "allow_password_fallback": "false",
        "allow_device_app_sign_in": "true",
    }

    preview = post(browser, f"/admin/groups/{engineering.pk}/rules", rules)
    assert preview.status_code == 200
    assert "bob@example.com" in preview.content.decode()
    assert Group.objects.get(pk=engineering.pk).rules == {}

    saved = post(browser, f"/admin/groups/{engineering.pk}/rules", {**rules, "seen": "0"})
    assert saved.status_code == 303, saved.content.decode()[-3000:]
    assert Group.objects.get(pk=engineering.pk).rules == {"allow_password_fallback": False}
    assert count_usable_sign_in_methods(bob.user, get_policy()) == 0
