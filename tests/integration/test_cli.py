"""The ``threshold`` command, driven through ``threshold.cli.main.main``."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import (
    Browser,
    assert_failed,
    assert_ok,
    enroll,
    enrolled_person,
    last_event,
    sign_in,
    token_of,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.core.policy import Policy
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.actions import do_set_up_fallback
from threshold.fallback.models import TotpDevice
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy, get_policy

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://localhost:8000/enroll/[A-Za-z0-9_-]{43}")


def links_in(text: str) -> list[str]:
    return LINK.findall(text)


def test_invite_prints_a_link_that_works(capsys):
    assert main(["invite", "Grace@Example.com", "--name", "Grace Hopper", "--no-email"]) == 0
    out = capsys.readouterr().out
    assert "Created grace@example.com" in out
    [link] = links_in(out)

    browser = Browser()
    page = browser.get(urlsplit(link).path)
    assert page.status_code == 200
    assert "Welcome, Grace Hopper" in page.content.decode()
    assert_ok(enroll(browser, token_of(link), SoftAuthenticator()))
    assert browser.is_signed_in()

    user = User.objects.get(username="grace@example.com")
    assert user.full_name == "Grace Hopper"
    assert user.is_administrator is False
    created = last_event("invite.created")
    assert created.via == "cli"
    assert created.subject == user


def test_invite_again_says_so_and_revokes_the_first_link(capsys):
    main(["invite", "grace@example.com", "--no-email"])
    [first] = links_in(capsys.readouterr().out)
    assert main(["invite", "grace@example.com", "--no-email"]) == 0
    out = capsys.readouterr().out
    assert "Invited existing account grace@example.com" in out
    [second] = links_in(out)
    assert Browser().get(urlsplit(first).path).status_code == 404
    assert Browser().get(urlsplit(second).path).status_code == 200


def test_invite_refuses_something_that_is_not_an_email(capsys):
    assert main(["invite", "not-an-email", "--no-email"]) == 2
    assert "not an email address" in capsys.readouterr().err
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


# Transactional, as the command runs: the email goes when the link's transaction commits,
# before the command says whether it went.
@pytest.mark.django_db(transaction=True)
def test_invite_emails_the_link(capsys, mailoutbox):
    assert main(["invite", "grace@example.com", "--name", "Grace Hopper"]) == 0
    [link] = links_in(capsys.readouterr().out)
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["grace@example.com"]
    assert message.subject == "Set up your passkey for Threshold"
    assert link in message.body
    assert "Hello Grace Hopper" in message.body
    assert Browser().get(urlsplit(link).path).status_code == 200


def test_invite_with_no_email_sends_none(capsys, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        main(["invite", "grace@example.com", "--no-email"])
    assert mailoutbox == []


def test_users_lists_people_and_their_passkeys(ada, capsys):
    main(["invite", "grace@example.com", "--name", "Grace Hopper", "--admin", "--no-email"])
    User.objects.create_user("gone@example.com", full_name="Gone Away")
    User.objects.filter(username="gone@example.com").update(is_active=False)
    main(["users", "lock", "ada@example.com"])
    enrolled_person("bob@example.com", "Bob Passkey")
    carol = User.objects.create_user("carol@example.com", full_name="Carol Fallback")
    TotpDevice.objects.create(user=carol, secret="JBSWY3DPEHPK3PXP", created_at="2026-01-01T00:00Z")
    capsys.readouterr()

    assert main(["users"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["USERNAME", "NAME", "ROLE", "STATUS", "PASSKEYS"]
    assert ["ada@example.com", "Ada", "Lovelace", "member", "locked", "1"] in rows
    # Invited, with no way to sign in yet: not active.
    assert ["grace@example.com", "Grace", "Hopper", "administrator", "invited", "0"] in rows
    assert ["gone@example.com", "Gone", "Away", "member", "deactivated", "0"] in rows
    # Active: a way to sign in, a passkey or another.
    assert ["bob@example.com", "Bob", "Passkey", "member", "active", "1"] in rows
    assert ["carol@example.com", "Carol", "Fallback", "member", "active", "0"] in rows


def test_users_escapes_control_and_direction_characters_in_names(capsys):
    # Written before the name rules applied everywhere (the conformance API let them in).
    User.objects.create_user("evil\u202egpj.exe@example.com", full_name="Mallory\u009b2J\x1b[31m")
    assert main(["users"]) == 0
    out = capsys.readouterr().out
    assert "evil\\u202egpj.exe@example.com" in out
    assert "Mallory\\x9b2J\\x1b[31m" in out
    assert not any(unicodedata.category(c)[0] == "C" for c in out.replace("\n", ""))


def test_policy_shows_and_sets_settings(capsys):
    assert main(["policy"]) == 0
    assert re.search(r"passkey_limit\s+10", capsys.readouterr().out)

    assert main(["policy", "set", "passkey_limit=3", "ceremony_timeout_seconds=90"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"passkey_limit\s+3", out)
    assert re.search(r"ceremony_timeout_seconds\s+90", out)
    policy = get_policy()
    assert policy.passkey_limit == 3
    assert policy.ceremony_timeout_seconds == 90
    event = last_event("policy.changed")
    assert event.via == "cli"
    assert event.detail["changes"]["passkey_limit"] == {"from": 10, "to": 3}


def test_policy_show_prints_every_setting_with_its_value_and_changes_nothing(capsys):
    assert main(["policy", "show"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["SETTING", "VALUE"]
    shown = dict([*row.split(maxsplit=1), ""][:2] for row in rows[1:])
    expected = {
        name: ",".join(map(str, value)) if isinstance(value, list) else str(value)
        for name, value in get_policy().as_json().items()
    }
    assert shown == expected
    assert shown["passkey_limit"] == "10"
    assert shown["allowed_algorithms"].startswith("-7,")
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("passkey_limit=0", "passkey_limit must be a whole number from 1 to 100"),
        ("passkey_limit=101", "passkey_limit must be a whole number from 1 to 100"),
        ("passkey_limit=many", "passkey_limit must be a whole number"),
        (
            "ceremony_timeout_seconds=5",
            "ceremony_timeout_seconds must be a whole number from 15 to 600",
        ),
        ("user_verification=discouraged", "user_verification must be one of required, preferred"),
        ("colour=blue", "unknown policy setting 'colour'"),
        ("passkey_limit", "expected NAME=VALUE"),
    ],
)
def test_policy_set_validates(capsys, assignment, message):
    assert main(["policy", "set", assignment]) == 2
    assert message in capsys.readouterr().err
    assert get_policy().passkey_limit == 10
    assert not AuditEvent.objects.filter(action="policy.changed").exists()


NO_ADMINISTRATOR_LEFT = (
    "This change would leave no administrator able to sign in, so it was not saved. Give an "
    "administrator a way to sign in that the new rules allow first, then save it."
)


def _administrators_with_synced_passkeys(*usernames: str) -> list[User]:
    """Administrators whose one passkey syncs: ``block_synced_passkeys`` cuts them off."""
    users = [
        enrolled_person(username, username.split("@")[0].title()).user for username in usernames
    ]
    User.objects.filter(pk__in=[user.pk for user in users]).update(role="admin")
    Passkey.objects.filter(user__in=users).update(backup_eligible=True)
    return users


def test_policy_check_says_when_a_change_would_leave_no_administrator(capsys):
    _administrators_with_synced_passkeys("root@example.com", "spare@example.com")
    assert main(["policy", "check", "block_synced_passkeys=true"]) == 1
    out = capsys.readouterr().out
    assert (
        "No administrator could sign in: root@example.com, spare@example.com can today. "
        "`threshold policy set` refuses this change without --force."
    ) in out
    # One administrator whose passkey does not sync keeps a way in: not said.
    Passkey.objects.filter(user__username="spare@example.com").update(backup_eligible=False)
    assert main(["policy", "check", "block_synced_passkeys=true"]) == 1
    assert "No administrator could sign in" not in capsys.readouterr().out


def test_policy_check_says_so_for_a_change_that_refuses_no_passkey(capsys):
    """The password and app turned off strands an administrator who signs in only with them:
    no passkey is refused, and check still says what `policy set` would refuse."""
    root = enrolled_person("root@example.com", "Root").user
    User.objects.filter(pk=root.pk).update(role="admin")
    do_update_policy(Policy(allow_password_fallback=True), Origin.cli())
    do_set_up_fallback(root, "correct horse battery staple", "JBSWY3DPEHPK3PXP", 0, Origin.cli())
    Passkey.objects.filter(user=root).delete()
    capsys.readouterr()
    assert main(["policy", "check", "allow_password_fallback=false"]) == 1
    out = capsys.readouterr().out
    assert "The policy allows every registered passkey." in out
    assert "No administrator could sign in: root@example.com can today." in out
    assert main(["policy", "check", "passkey_limit=4"]) == 0


def test_policy_set_refuses_a_change_that_leaves_no_administrator_a_way_in(capsys):
    _administrators_with_synced_passkeys("root@example.com", "spare@example.com")
    enrolled_person("bob@example.com", "Bob")  # not an administrator: he does not count

    assert main(["policy", "set", "passkey_limit=3", "block_synced_passkeys=true"]) == 1
    captured = capsys.readouterr()
    assert NO_ADMINISTRATOR_LEFT in captured.err
    assert (
        "Administrators who could no longer sign in: root@example.com, spare@example.com."
        in captured.err
    )
    assert "--force" in captured.err
    assert captured.out == ""
    assert get_policy() == Policy()
    assert not AuditEvent.objects.filter(action="policy.changed").exists()


def test_policy_set_saves_a_change_that_leaves_one_administrator_a_way_in(capsys):
    [root] = _administrators_with_synced_passkeys("root@example.com")
    enrolled_person("spare@example.com", "Spare")  # device-bound
    User.objects.filter(username="spare@example.com").update(role="admin")
    assert main(["policy", "set", "block_synced_passkeys=true"]) == 0
    assert re.search(r"block_synced_passkeys\s+true", capsys.readouterr().out, re.IGNORECASE)
    assert get_policy().block_synced_passkeys is True
    assert root.pk


def test_policy_set_force_saves_it_anyway_and_says_so(capsys):
    _administrators_with_synced_passkeys("root@example.com")
    assert main(["policy", "set", "block_synced_passkeys=true", "--force"]) == 0
    captured = capsys.readouterr()
    assert "no administrator can sign in now (root@example.com could)" in captured.err
    assert get_policy().block_synced_passkeys is True
    assert last_event("policy.changed").detail["changes"] == {
        "block_synced_passkeys": {"from": False, "to": True}
    }


def test_policy_set_is_the_way_back_in_when_no_administrator_can_sign_in(capsys):
    _administrators_with_synced_passkeys("root@example.com")
    assert main(["policy", "set", "block_synced_passkeys=true", "--force"]) == 0
    capsys.readouterr()
    # Every administrator is cut off already: loosening the policy (or any other change) is
    # not refused, and neither is a change while there is no administrator at all.
    assert main(["policy", "set", "passkey_limit=4"]) == 0
    assert main(["policy", "set", "block_synced_passkeys=false"]) == 0
    assert get_policy().block_synced_passkeys is False
    assert "no administrator" not in capsys.readouterr().err


def test_policy_set_counts_an_administrators_fallback_too(capsys):
    [root] = _administrators_with_synced_passkeys("root@example.com")
    TotpDevice.objects.create(user=root, secret="JBSWY3DPEHPK3PXP", created_at="2026-01-01T00:00Z")
    assert main(["policy", "set", "block_synced_passkeys=true"]) == 0
    both = ["block_synced_passkeys=true", "allow_password_fallback=false"]
    assert main(["policy", "set", *both]) == 1
    assert NO_ADMINISTRATOR_LEFT in capsys.readouterr().err
    assert get_policy().allow_password_fallback is True


def test_bootstrap_creates_the_first_administrator_once(capsys, settings):
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, admin_email="root@example.com")
    assert main(["bootstrap"]) == 0
    out = capsys.readouterr().out
    assert "Administrator: root@example.com" in out
    [first] = links_in(out)
    admin = User.objects.get()
    assert admin.username == "root@example.com"
    assert admin.is_administrator

    # Not yet enrolled: a new link for the same administrator; the first stops working.
    assert main(["bootstrap"]) == 0
    [second] = links_in(capsys.readouterr().out)
    assert second != first
    assert User.objects.count() == 1
    assert Browser().get(urlsplit(first).path).status_code == 404

    browser = Browser()
    assert_ok(enroll(browser, token_of(second), SoftAuthenticator()))
    assert browser.is_signed_in()

    invites = EnrollmentInvite.objects.count()
    assert main(["bootstrap"]) == 0
    out = capsys.readouterr().out
    assert "An administrator is enrolled" in out
    assert "http://localhost:8000/sign-in" in out
    assert links_in(out) == []
    assert EnrollmentInvite.objects.count() == invites
    assert User.objects.count() == 1


def test_bootstrap_frames_the_link_and_names_the_command_by_its_full_path(capsys):
    assert main(["bootstrap"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == lines[-1] == "=" * 72
    [command] = [line.strip() for line in lines if line.strip().endswith(" bootstrap")]
    # After the settings this process was given (the test run's THRESHOLD_VAR_DIR).
    *settings, program, _ = shlex.split(command)
    assert all(re.fullmatch(r"THRESHOLD_[A-Z_]+=.*", setting) for setting in settings)
    path = Path(program)
    # `threshold` alone is not on PATH after `make install`: .venv/bin/threshold is.
    assert path.is_absolute()
    assert path.name == "threshold"
    assert os.access(path, os.X_OK)
    assert path.parent == Path(sys.executable).parent


def test_bootstrap_says_when_the_only_administrator_is_locked(capsys, settings):
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, admin_email="root@example.com")
    main(["bootstrap"])
    assert_ok(
        enroll(Browser(), token_of(links_in(capsys.readouterr().out)[0]), SoftAuthenticator())
    )
    # The only administrator who can sign in: locking them takes --force.
    assert main(["users", "lock", "root@example.com"]) == 1
    assert main(["users", "lock", "root@example.com", "--force"]) == 0
    capsys.readouterr()

    assert main(["bootstrap"]) == 1
    captured = capsys.readouterr()
    assert links_in(captured.out) == []
    assert "root@example.com is locked" in captured.err
    assert User.objects.count() == 1


def test_bootstrap_ignores_members(ada, capsys, settings):
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, admin_email="root@example.com")
    assert main(["bootstrap"]) == 0
    assert "Administrator: root@example.com" in capsys.readouterr().out
    assert User.objects.get(username="root@example.com").is_administrator


def test_audit_lists_events_with_reasons(ada, capsys):
    Browser().post_json("/sign-in/result", {})  # a failure with a reason code
    assert main(["audit", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "sign_in.failed" in out
    assert "challenge_missing" in out
    assert "passkey.registered" in out


# Transactional, as the command runs: the notice goes when the link's transaction commits,
# before the command says whether it went.
@pytest.mark.django_db(transaction=True)
def test_recover_prints_a_link_last_and_emails_only_a_notice(ada, capsys, mailoutbox):
    mailoutbox.clear()
    assert main(["recover", "Ada@Example.com"]) == 0
    out = capsys.readouterr().out
    [link] = links_in(out)
    assert out.rstrip().endswith(link)
    assert "One-time recovery link for ada@example.com" in out
    assert "A notice was emailed to ada@example.com, without the link" in out
    [notice] = mailoutbox
    assert notice.to == ["ada@example.com"]
    assert link not in notice.body
    issued = last_event("recovery.issued")
    assert issued.via == "cli"
    assert issued.subject == ada.user

    browser = Browser()
    page = browser.get(urlsplit(link).path)
    assert "Recover your account" in page.content.decode()
    assert_ok(enroll(browser, token_of(link), SoftAuthenticator()))
    assert browser.is_signed_in()
    assert ada.user.passkeys.count() == 2


# Transactional, as the command runs: the email goes when the link's transaction commits,
# before the command says whether it went.
@pytest.mark.django_db(transaction=True)
def test_recover_with_email_link_emails_it(ada, capsys, mailoutbox):
    mailoutbox.clear()
    assert main(["recover", "ada@example.com", "--email-link"]) == 0
    out = capsys.readouterr().out
    [link] = links_in(out)
    assert "The link was emailed to ada@example.com." in out
    [message] = mailoutbox
    assert link in message.body


def test_recover_refuses_unknown_locked_and_deactivated_accounts(ada, capsys):
    assert main(["recover", "nobody@example.com"]) == 2
    assert "there is no account 'nobody@example.com'" in capsys.readouterr().err

    main(["users", "lock", "ada@example.com"])
    capsys.readouterr()
    assert main(["recover", "ada@example.com"]) == 1
    captured = capsys.readouterr()
    assert links_in(captured.out) == []
    assert "ada@example.com is locked: no link was issued" in captured.err
    assert "threshold users unlock ada@example.com" in captured.err

    User.objects.create_user("gone@example.com")
    User.objects.filter(username="gone@example.com").update(is_active=False)
    assert main(["recover", "gone@example.com"]) == 1
    assert "gone@example.com is deactivated" in capsys.readouterr().err
    assert not AuditEvent.objects.filter(action="recovery.issued").exists()


def test_users_lock_and_unlock(ada, capsys):
    signed_in = Browser()
    assert_ok(sign_in(signed_in, ada.authenticator))

    assert main(["users", "lock", "ADA@example.com", "--reason", "laptop stolen"]) == 0
    assert "Locked ada@example.com" in capsys.readouterr().out
    assert not signed_in.is_signed_in()
    assert_failed(sign_in(Browser(), ada.authenticator), 403, "Account Locked")
    event = last_event("user.locked")
    assert event.via == "cli"
    assert event.detail["lock_reason"] == "laptop stolen"

    assert main(["users", "lock", "ada@example.com"]) == 0
    assert "ada@example.com is locked already (since " in capsys.readouterr().out
    assert main(["users", "unlock", "ada@example.com"]) == 0
    assert "Unlocked ada@example.com" in capsys.readouterr().out
    assert main(["users", "unlock", "ada@example.com"]) == 0
    assert "ada@example.com is not locked." in capsys.readouterr().out
    assert_ok(sign_in(Browser(), ada.authenticator))
    assert AuditEvent.objects.filter(action="user.unlocked").count() == 1


def test_users_lock_refuses_unknown_accounts_and_bad_reasons(ada, capsys):
    assert main(["users", "lock", "nobody@example.com"]) == 2
    assert "there is no account" in capsys.readouterr().err
    assert main(["users", "unlock", "nobody@example.com"]) == 2
    assert main(["users", "lock", "ada@example.com", "--reason", "x" * 201]) == 2
    assert "at most 200" in capsys.readouterr().err
    assert User.objects.get(username="ada@example.com").locked_at is None
    assert not AuditEvent.objects.filter(action="user.locked").exists()


def test_invite_refuses_a_locked_account(ada, capsys):
    main(["users", "lock", "ada@example.com"])
    capsys.readouterr()
    assert main(["invite", "ada@example.com", "--no-email"]) == 1
    captured = capsys.readouterr()
    assert links_in(captured.out) == []
    assert "ada@example.com is locked" in captured.err
