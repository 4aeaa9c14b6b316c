"""What a new user's walk through every page in Chromium found (December 7).

- A person signed in with no passkey left and no other way to verify was told to sign out and
  sign in again, which they could not: the page now says not to, and to ask for a recovery link.
- At a passkey limit of one, Settings said "1 of 1 passkeys: the limit. Remove one to add
  another", though the only passkey cannot be removed; the add page said "up to 1 passkeys".
- At a passkey limit of one, Settings still said "We recommend creating more passkeys": it
  now recommends the other ways in the policy offers, or says what to do if that one is lost.
- At a passkey limit of one, "Set up another" asked to verify first, then said the limit was
  reached and to remove a passkey, which "You Can't Remove Your Only Sign-in Method" refused,
  offering "Set up another": a loop. The limit is now said at once, with the way out.
- A passkey no metadata names, made on a computer's own authenticator, was listed everywhere
  (on a phone, on a borrowed browser) as "This device's passkey": "Built-in passkey" now,
  stored names included (passkeys 0005).
- The readiness dashboard said "of the 1 active people have a passkey".
- "Verify it's you" before a change in the admin portal said "before you add or remove a
  sign-in method".
- "Send a push to Threshold Verify" said nothing of whom it is for: someone without the app
  waited out its two minutes.
- With push sign-ins turned off, Settings offered "Set up" for Threshold Verify beside "Your
  organisation does not allow signing in with them", after "0 of 5 devices" without a stop.
- A recovery link's page told someone whose every passkey was removed "Your other passkeys
  keep working".
- An invite link opened again after enrolling with it (the email clicked twice) said only to ask
  the administrator for a new link, which Threshold refuses for someone who can sign in.
- With `THRESHOLD_PORT=8765 make run`, the banner's command for a new link, run as printed,
  printed a link to port 8000, where nothing served: it now carries the settings links are
  made of (never DATABASE_URL, which may hold a password: it names it).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pyotp
import pytest
from django.apps import apps as django_apps
from django.urls import reverse

from tests.integration.conftest import (
    Browser,
    FrozenClock,
    Person,
    assert_ok,
    enroll,
    enrolled_person,
    invite,
    sign_in,
    token_of,
)
from tests.integration.portal_support import staff
from tests.support.authenticator import SoftAuthenticator
from tests.support.processes import REPO, migrated, newcomer_environment, threshold_command
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.enrollment.actions import do_issue_recovery
from threshold.fallback.actions import do_set_up_fallback
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy, get_policy


def second_passkey(person: Person) -> None:
    """A copy of the person's passkey under another credential ID: one from another device."""
    Passkey.objects.create(
        **{
            field.attname: getattr(person.passkey, field.attname)
            for field in Passkey._meta.concrete_fields
            if field.attname not in ("id", "credential_id")
        },
        credential_id=b"another device's passkey",
    )


def signed_in(person: Person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def test_someone_with_no_way_to_verify_is_not_told_to_sign_out(ada: Person, clock: FrozenClock):
    browser = signed_in(ada)
    Passkey.objects.filter(user=ada.user).delete()  # an administrator removed her only one
    clock.advance(get_policy().step_up_max_age_seconds + 1)

    page = browser.get("/settings/verify?next=/settings/security-methods/add").content.decode()

    assert 'id="no-passkey"' in page
    assert "Sign out and sign in again" not in page
    assert "Don&rsquo;t sign out" in page
    assert "recovery link" in page


def test_at_a_limit_of_one_settings_does_not_say_to_remove_the_only_passkey(ada: Person):
    do_update_policy(dataclasses.replace(get_policy(), passkey_limit=1), Origin.cli())
    browser = signed_in(ada)

    settings = browser.get("/settings").content.decode()
    add = browser.get("/settings/security-methods/add").content.decode()

    assert "1 of 1 passkey: the limit." in settings
    assert "Remove one to add another" not in settings
    assert "up to 1 passkey." in add


def _readiness(browser: Browser) -> str:
    page = browser.get("/settings").content.decode()
    if 'id="readiness"' not in page:
        return ""
    start = page.index('id="readiness"')
    return " ".join(page[start : page.index("</div>", start)].split())


def test_at_a_limit_of_one_settings_recommends_another_way_in_not_another_passkey(ada: Person):
    browser = signed_in(ada)
    assert "We recommend creating more passkeys" in _readiness(browser)

    do_update_policy(dataclasses.replace(get_policy(), passkey_limit=1), Origin.cli())
    note = _readiness(browser)
    assert "more passkeys" not in note
    assert "You have one passkey, as many as your organisation allows." in note
    assert "set up Threshold Verify on another device or a password and authenticator app" in note

    policy = dataclasses.replace(get_policy(), allow_device_app_sign_in=False)
    do_update_policy(policy, Origin.cli())
    assert "set up a password and authenticator app below." in _readiness(browser)

    do_update_policy(dataclasses.replace(policy, allow_password_fallback=False), Origin.cli())
    note = _readiness(browser)
    assert "Add a backup" not in note
    assert "ask your IT team for a recovery link" in note


def test_at_a_limit_of_one_a_synced_passkey_is_not_told_to_add_another(db):
    person = enrolled_person("sam@example.com", "Sam Reyes", backup_eligible=True)
    # A second way in: Settings' note is about the passkeys all being synced.
    do_set_up_fallback(
        person.user, "correct horse battery staple 42", pyotp.random_base32(), 0, Origin.cli()
    )
    browser = signed_in(person)
    assert "All your passkeys are synced passkeys" in _readiness(browser)

    do_update_policy(dataclasses.replace(get_policy(), passkey_limit=1), Origin.cli())
    assert _readiness(browser) == ""


def test_at_a_limit_of_two_settings_says_to_remove_one(ada: Person):
    do_update_policy(dataclasses.replace(get_policy(), passkey_limit=2), Origin.cli())
    browser = signed_in(ada)
    second_passkey(ada)

    settings = browser.get("/settings").content.decode()

    assert "2 of 2 passkeys: the limit. Remove one to add another." in settings


def test_the_readiness_dashboard_counts_one_person_in_the_singular(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)

    page = browser.get("/admin/readiness").content.decode()

    assert "of the 1 active person has a passkey" in page


def test_an_invite_link_opened_again_after_enrolling_says_to_sign_in_with_the_passkey(db):
    _, token = invite("dana@example.com", "Dana Okafor")
    assert enroll(Browser(), token, SoftAuthenticator()).status_code == 200

    again = Browser().get(f"/enroll/{token}")

    assert again.status_code == 404
    page = again.content.decode()
    assert "If you set up your passkey with it already, sign in with that passkey instead." in page
    assert 'href="/sign-in"' in page


def _output(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> str:
    """What ``argv`` prints, run to its end (a failure fails the test)."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def _bootstrap_banner(env: dict[str, str], cwd: Path = REPO) -> str:
    return _output([*threshold_command(), "bootstrap"], env, cwd)


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_the_banners_command_for_a_new_link_links_to_the_port_served(tmp_path: Path):
    var = tmp_path / "var with a space"
    migrated(var)
    # Relative to where the server was started.
    served = newcomer_environment(
        THRESHOLD_VAR_DIR=var.name, THRESHOLD_PORT="8765", THRESHOLD_SMTP_PASSWORD="hunter2"
    )
    banner = _bootstrap_banner(served, cwd=tmp_path)
    assert "http://localhost:8765/enroll/" in banner
    [command] = [line.strip() for line in banner.splitlines() if line.endswith(" bootstrap")]
    assert "hunter2" not in banner
    # Before it runs: without it, the command would open the repository's own var/.
    assert f"THRESHOLD_VAR_DIR={shlex.quote(str(var))}" in command

    # Pasted into another terminal, without the server's settings.
    again = _output(["sh", "-c", command], newcomer_environment())
    [link] = re.findall(r"http://\S+/enroll/\S+", again)
    assert link.startswith("http://localhost:8765/enroll/")
    # The same database: the first link was replaced.
    assert link not in banner


@pytest.mark.same_on_every_database  # a command on SQLite files of its own
def test_the_banner_names_database_url_but_never_prints_it(tmp_path: Path):
    var = tmp_path / "var"
    migrated(var)
    database = f"sqlite:///{var / 'threshold.sqlite3'}"
    banner = _bootstrap_banner(
        newcomer_environment(THRESHOLD_VAR_DIR=str(var), DATABASE_URL=database)
    )
    assert "with this server's DATABASE_URL in the environment." in banner
    assert database not in banner
    [command] = [line.strip() for line in banner.splitlines() if line.endswith(" bootstrap")]
    assert shlex.split(command)[0] == f"THRESHOLD_VAR_DIR={var}"


def test_a_recovery_page_speaks_of_the_passkeys_that_keep_working_as_they_are(ada: Person):
    def kept() -> str:
        """What the recovery page says of the passkeys the person has, "" if nothing."""
        created = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
        page = Browser().get(f"/enroll/{token_of(created.link)}").content.decode()
        assert "<h1>Recover your account</h1>" in page
        assert "Creating it signs you out everywhere else you are signed in." in page
        found = re.search(r'<li id="recovery-keeps-passkeys">(.*?)</li>', page)
        return found.group(1) if found else ""

    # One passkey, likely the one lost: not "your other passkeys".
    assert kept() == (
        "The passkey you already have keeps working. If you lost the device it is on, remove it "
        "afterwards under Settings, Security Methods."
    )

    # Her passkey's model refused since: it signs her in no more.
    denied = dataclasses.replace(get_policy(), aaguid_deny_list=(str(ada.passkey.aaguid),))
    do_update_policy(denied, Origin.cli())
    assert kept() == ""
    do_update_policy(dataclasses.replace(denied, aaguid_deny_list=()), Origin.cli())

    second_passkey(ada)
    assert kept().startswith("The passkeys you already have keep working.")

    Passkey.objects.filter(user=ada.user).delete()  # an administrator removed them all
    assert kept() == ""


def test_verify_its_you_before_a_portal_change_says_so(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    for_settings = browser.get("/settings/verify?next=/settings").content.decode()
    for_portal = browser.get("/settings/verify?next=/admin/policy").content.decode()

    assert "before you add or remove a sign-in method" in for_settings
    assert "before you add or remove" not in for_portal
    assert "one of your passkeys before you make changes in the admin portal." in for_portal
    assert 'href="/admin/policy" id="verify-back">Back to the admin portal</a>' in for_portal


def test_the_push_button_says_whom_it_is_for(db):
    page = Browser().get("/sign-in").content.decode()
    assert 'aria-describedby="push-hint">Send a push to Threshold Verify</button>' in page
    assert (
        '<p class="hint" id="push-hint">Only if you have set up Threshold Verify on one of your '
        "devices.</p>"
    ) in page

    do_update_policy(
        dataclasses.replace(get_policy(), allow_device_app_sign_in=False), Origin.cli()
    )
    assert "push-hint" not in Browser().get("/sign-in").content.decode()


def test_at_the_limit_set_up_another_says_so_at_once_with_the_way_out(
    ada: Person, clock: FrozenClock
):
    do_update_policy(dataclasses.replace(get_policy(), passkey_limit=1), Origin.cli())
    browser = signed_in(ada)
    clock.advance(get_policy().step_up_max_age_seconds + 1)

    answer = browser.get("/settings/security-methods/add")

    assert answer.status_code == 200  # not "Verify it's you" first
    page = " ".join(answer.content.decode().split())
    assert "Passkey Limit Reached" in page
    assert "Remove an existing passkey" not in page
    assert "To move it to a new device, ask your IT team for a recovery link." in page

    # Below the limit, adding still needs a recent verification.
    do_update_policy(dataclasses.replace(get_policy(), passkey_limit=2), Origin.cli())
    answer = browser.get("/settings/security-methods/add")
    assert answer.status_code == 303
    assert answer["Location"].startswith("/settings/verify")


def test_passkeys_stored_as_this_devices_passkey_are_renamed_built_in_passkey(ada: Person):
    renaming = importlib.import_module("threshold.passkeys.migrations.0005_built_in_passkey_name")
    second_passkey(ada)
    first, second = Passkey.objects.filter(user=ada.user).order_by("pk")
    Passkey.objects.filter(pk=first.pk).update(authenticator_name="This device's passkey")
    Passkey.objects.filter(pk=second.pk).update(authenticator_name="Security key")

    def names() -> list[str]:
        return list(
            Passkey.objects.filter(user=ada.user)
            .order_by("pk")
            .values_list("authenticator_name", flat=True)
        )

    renaming.rename(django_apps, None)
    assert names() == ["Built-in passkey", "Security key"]
    renaming.rename_back(django_apps, None)
    assert names() == ["This device's passkey", "Security key"]


def test_threshold_verify_is_not_offered_for_set_up_where_it_may_not_sign_in(ada: Person):
    browser = signed_in(ada)
    set_up = f'href="{reverse("devices:set-up")}">Set up</a>'

    def group() -> str:
        page = browser.get("/settings").content.decode()
        start = page.index('id="device-app"')
        return " ".join(page[start : page.index("</ul>", start)].split())

    allowed = group()
    assert set_up in allowed
    assert f"0 of {get_policy().device_limit} devices." in allowed
    assert "Select Set up, then follow the steps in the app." in allowed

    do_update_policy(
        dataclasses.replace(get_policy(), allow_device_app_sign_in=False), Origin.cli()
    )
    refused = group()
    assert set_up not in refused
    assert (
        f"0 of {get_policy().device_limit} devices. "
        "Your organisation does not allow signing in with them."
    ) in refused
    assert "Select Set up" not in refused
