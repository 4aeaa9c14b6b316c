"""The admin portal (/admin/): roles, step-up, CSRF, people, a person's page, the audit log.

Through real URLs with Django's test client (CSRF enforced), real passkeys from the
software authenticator, a real database; only the clock is pinned where a test moves it.
"""

from __future__ import annotations

import csv
import html
import io
import json
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    assert_ok,
    begin_sign_in,
    enroll,
    enrolled_person,
    last_event,
    sign_in,
    token_of,
)
from tests.integration.portal_support import every_portal_path, post, staff
from tests.integration.test_policy_at_sign_in import SOFT_AAGUID, set_policy
from tests.integration.test_security_methods import add_passkey
from tests.integration.test_sso import invited_and_enrolled
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.actions import do_deactivate_user, do_lock_user
from threshold.accounts.models import Role, User
from threshold.audit.actions import Action, Origin, record
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.enrollment.actions import do_invite, do_issue_recovery
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.actions import do_set_up_fallback, has_fallback
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group, Membership
from threshold.passkeys.models import Passkey
from threshold.portal import imports
from threshold.sessions.models import Session
from threshold.sso.validator import email_claims

pytestmark = pytest.mark.django_db


def _state() -> tuple:
    """Everything a change in the portal could touch, to compare before and after."""
    return (
        list(Membership.objects.order_by("pk").values_list("group_id", "user_id")),
        list(Group.objects.order_by("pk").values_list("pk", "name")),
        list(User.objects.order_by("pk").values_list("pk", "role", "is_active", "locked_at")),
        list(Passkey.objects.order_by("pk").values_list("pk", flat=True)),
        list(EnrollmentInvite.objects.order_by("pk").values_list("pk", "revoked_at", "used_at")),
        Session.objects.count(),
        list(
            AuditEvent.objects.exclude(action__in=["sign_in.succeeded", "sign_out"])
            .order_by("pk")
            .values_list("pk", flat=True)
        ),
    )


# --- Roles: who gets in ----------------------------------------------------------------------


def test_every_portal_url_is_404_without_a_role(ada):
    outsider = enrolled_person("bob@example.com", "Bob")
    browser = Browser()
    assert_ok(sign_in(browser, outsider.authenticator))
    before = _state()
    paths = every_portal_path(ada.user.pk, ada.passkey.pk)
    assert len(paths) >= 15
    for path in paths:
        assert browser.get(path).status_code == 404, path
        assert post(browser, path).status_code == 404, path
    assert _state() == before


def test_every_portal_url_sends_a_signed_out_visitor_to_sign_in_and_changes_nothing(ada):
    anonymous = Browser()
    before = _state()
    for path in every_portal_path(ada.user.pk, ada.passkey.pk):
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == f"/sign-in?next={path}", path
        # A form posted after the session ended: back to its page, not to the POST's address.
        posted = post(anonymous, path)
        assert posted.status_code == 303, path
        assert posted["Location"].startswith("/sign-in?next=/admin/"), path
    assert post(anonymous, f"/admin/people/{ada.user.pk}/lock")["Location"] == (
        f"/sign-in?next=/admin/people/{ada.user.pk}"
    )
    # A person who does not exist is asked to sign in all the same: nothing is revealed.
    assert anonymous.get("/admin/people/99999999")["Location"] == (
        "/sign-in?next=/admin/people/99999999"
    )
    assert _state() == before


def test_an_administrator_signing_in_from_the_portal_lands_back_on_its_page(ada):
    admin, _ = staff("root@example.com", Role.ADMINISTRATOR)
    browser = Browser()
    asked = browser.get("/admin/people?q=ada")
    assert asked.status_code == 302
    sign_in_page = asked["Location"]
    assert sign_in_page == "/sign-in?next=/admin/people%3Fq%3Dada"
    assert browser.get(sign_in_page).status_code == 200
    options = begin_sign_in(browser)
    result = browser.post_json(
        "/sign-in/result?next=/admin/people%3Fq%3Dada",
        admin.authenticator.get(options, ORIGIN),
    )
    assert assert_ok(result)["redirect"] == "/admin/people?q=ada"
    page = browser.get("/admin/people?q=ada")
    assert page.status_code == 200
    assert b"ada@example.com" in page.content


def test_a_next_elsewhere_is_not_followed_after_signing_in(ada):
    admin, _ = staff("root@example.com", Role.ADMINISTRATOR)
    for elsewhere in ["https://evil.example/admin/", "//evil.example/admin/", "/\\evil.example"]:
        browser = Browser()
        options = begin_sign_in(browser)
        result = browser.post_json(
            f"/sign-in/result?next={elsewhere}", admin.authenticator.get(options, ORIGIN)
        )
        assert assert_ok(result)["redirect"] == "/", elsewhere


def test_a_locked_administrator_has_no_portal(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    assert browser.get("/admin/people").status_code == 200
    User.objects.filter(pk=admin.user.pk).update(locked_at="2026-01-01T00:00:00Z")
    assert browser.get("/admin/people").status_code in (302, 404)


def test_an_auditor_reads_everything_and_every_change_is_refused(ada):
    _auditor, browser = staff("audit@example.com", Role.AUDITOR)
    assert browser.get("/admin/").status_code == 200
    assert browser.get("/admin/people").status_code == 200
    page = browser.get(f"/admin/people/{ada.user.pk}")
    assert page.status_code == 200
    assert b"Remove" not in page.content
    assert browser.get("/admin/audit").status_code == 200
    invite = EnrollmentInvite.objects.create(
        user=ada.user, token_hash="x" * 64, expires_at="2100-01-01T00:00:00Z"
    )
    group = do_add_group("Engineering", Origin.cli())
    do_add_member(group, ada.user, Origin.cli())
    before = _state()
    for path in every_portal_path(ada.user.pk, ada.passkey.pk, invite.pk, group.pk):
        response = post(browser, path, {"role": "admin", "email": "new@example.com"})
        assert response.status_code in (403, 404, 405), (path, response.status_code)
        assert response.status_code != 405 or path.endswith(("/admin/", "/people", "/audit"))
    assert browser.get(f"/admin/groups/{group.pk}").status_code == 200
    assert _state() == before


def test_help_desk_cannot_change_roles(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    before = _state()
    response = post(browser, f"/admin/people/{ada.user.pk}/role", {"role": "admin"})
    assert response.status_code == 404  # roles are not the help desk's to read either
    assert _state() == before


def test_the_account_menu_offers_the_portal_to_staff_only(ada):
    _, staff_browser = staff("desk@example.com", Role.HELP_DESK)
    assert b"Admin portal" in staff_browser.get("/settings").content
    member = Browser()
    assert_ok(sign_in(member, ada.authenticator))
    assert b"Admin portal" not in member.get("/settings").content


# --- Step-up and CSRF ------------------------------------------------------------------------


def test_a_change_without_a_fresh_step_up_asks_to_verify_first(ada, clock):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    clock.advance(301)  # the policy's window is 300 s
    before = _state()
    response = post(browser, f"/admin/people/{ada.user.pk}/lock", {"reason": "lost laptop"})
    assert response.status_code == 303
    assert response["Location"] == f"/settings/verify?next=%2Fadmin%2Fpeople%2F{ada.user.pk}"
    assert _state() == before
    assert browser.get(response["Location"]).status_code == 200


def test_verifying_returns_to_the_portal_page(ada):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    back = f"/admin/people/{ada.user.pk}"
    assert browser.get(f"/settings/verify?next={back}").status_code == 200
    options = browser.post_json(f"/settings/verify/options?next={back}")
    credential = desk.authenticator.get(options.json()["publicKey"], ORIGIN)
    result = assert_ok(browser.post_json(f"/settings/verify/result?next={back}", credential))
    assert result["redirect"] == back


def test_verify_its_you_names_the_page_it_goes_back_to(ada):
    """Sent from the admin portal, "Verify it's you" goes back there, to the very page (its
    GET needs no step-up), not to Settings; a target outside Settings and the portal is not
    followed."""
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    back = f"/admin/people/{ada.user.pk}"
    page = browser.get(f"/settings/verify?next={back}").content.decode()
    assert f'<a href="{back}" id="verify-back">Back to the admin portal</a>' in page
    assert "Back to Settings" not in page
    for elsewhere in ("https://evil.example/admin/", "//evil.example/admin/", "/help/errors"):
        query = urlencode({"next": elsewhere})
        page = browser.get(f"/settings/verify?{query}").content.decode()
        assert '<a href="/settings" id="verify-back">Back to Settings</a>' in page, elsewhere
        options = browser.post_json(f"/settings/verify/options?{query}")
        credential = desk.authenticator.get(options.json()["publicKey"], ORIGIN)
        result = browser.post_json(f"/settings/verify/result?{query}", credential)
        assert assert_ok(result)["redirect"] == "/settings", elsewhere


def test_a_password_sign_in_never_counts_as_a_step_up(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    session = browser.client.session
    session.pop("threshold.verified_at")
    session["threshold.fallback_verified_at"] = session["threshold.last_seen"]
    session.save()
    before = _state()
    response = post(browser, f"/admin/people/{ada.user.pk}/sessions/end")
    assert response.status_code == 303
    assert response["Location"].startswith("/settings/verify?")
    assert _state() == before


def test_a_change_without_the_csrf_token_is_refused(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    before = _state()
    response = browser.client.post(f"/admin/people/{ada.user.pk}/lock", {"reason": "x"})
    assert response.status_code == 403
    assert _state() == before


# --- A person -------------------------------------------------------------------------------


def test_the_person_page_shows_every_stored_fact_of_a_passkey(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    assert_ok(sign_in(Browser(REMOTE_ADDR="198.51.100.9"), ada.authenticator))
    Passkey.objects.filter(pk=ada.passkey.pk).update(
        nickname="Work laptop", is_possibly_cloned=True
    )
    page = browser.get(f"/admin/people/{ada.user.pk}").content.decode()
    passkey = ada.passkey
    assert "Work laptop" in page
    assert str(passkey.aaguid) in page
    assert passkey.kind in page
    assert "Device-bound" in page
    assert ("Trusted" if passkey.attestation_trusted else "Not trusted") in page
    assert passkey.attestation_format in page
    assert "203.0.113.7" in page  # created (the enrollment browser)
    assert "198.51.100.9" in page  # last used
    assert "possibly cloned" in page
    assert "Allowed" in page


def test_the_person_page_and_the_list_say_whether_the_email_address_is_verified(
    ada, django_capture_on_commit_callbacks
):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    # Emailed her link and used it: apps are told her address is verified, and so is the desk.
    grace = invited_and_enrolled("grace@example.com", django_capture_on_commit_callbacks)
    verified_at = User.objects.get(pk=grace.user.pk).email_verified_at
    assert verified_at is not None
    # Ada's link was handed over, not emailed: not verified.
    assert User.objects.get(pk=ada.user.pk).email_verified_at is None
    # A username that is no address: apps are given no email at all.
    bob = enrolled_person("bob", "Bob")
    for person, address, said in [
        (grace, "grace@example.com", f"verified {verified_at.day} {verified_at:%b %Y}"),
        (ada, "ada@example.com", "not verified"),
        (bob, "bob", "not an email address: apps are given none"),
    ]:
        page = _words(browser.get(f"/admin/people/{person.user.pk}").content)
        assert f'{address} <span id="email-verified">({said})</span>' in page
        # What the page says is what apps are told.
        claims = email_claims(User.objects.get(pk=person.user.pk))
        assert claims.get("email") == (None if person is bob else address)
        assert claims.get("email_verified", False) is said.startswith("verified")
    User.objects.filter(pk=ada.user.pk).update(email_verified_at="2026-12-04T12:00:00Z")
    page = _words(browser.get(f"/admin/people/{ada.user.pk}").content)
    assert 'ada@example.com <span id="email-verified">(verified 4 Dec 2026)</span>' in page

    # The list marks who is not verified, and who has no address; the rest it leaves alone.
    User.objects.filter(pk=ada.user.pk).update(email_verified_at=None)
    listed = _words(browser.get("/admin/people").content)
    assert '<td>ada@example.com<br><span class="meta">Not verified</span></td>' in listed
    assert '<td>bob<br><span class="meta">Not an email address</span></td>' in listed
    assert "<td>grace@example.com</td>" in listed
    # The marks come with the page's people, in the same query: none per person.
    with CaptureQueriesContext(connection) as three:
        browser.get("/admin/people")
    for n in range(5):
        User.objects.create_user(f"new{n}@example.com", email=f"new{n}@example.com")
    with CaptureQueriesContext(connection) as eight:
        listed = browser.get("/admin/people").content
    assert listed.count(b"Not verified") == 7  # Ada, the desk and the five new
    assert len(eight.captured_queries) == len(three.captured_queries)


def test_an_administrator_cannot_remove_their_own_last_passkey_from_their_page(db):
    """Their own page offers Remove: the last-method rule answers (409, in the catalog's
    words), and its refusal is audited, as in Settings."""
    root, browser = staff("root@example.com", Role.ADMINISTRATOR)
    staff("other@example.com", Role.ADMINISTRATOR)
    passkey = root.user.passkeys.get()
    response = post(browser, f"/admin/people/{root.user.pk}/passkeys/{passkey.pk}/remove")
    assert response.status_code == 409
    assert "You Can\u2019t Remove Your Only Sign-in Method" in html.unescape(
        response.content.decode()
    )
    assert root.user.passkeys.filter(pk=passkey.pk).exists()
    refused = last_event("passkey.removal_refused")
    assert (refused.subject, refused.reason) == (root.user, "last_method")


def test_help_desk_removes_a_lost_passkey_and_the_person_recovers(
    ada, mailoutbox, django_capture_on_commit_callbacks
):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    lost = ada.passkey
    # Her only passkey: the last-method rule protects a person from themselves, not from
    # the help desk removing a lost key.
    response = post(browser, f"/admin/people/{ada.user.pk}/passkeys/{lost.pk}/remove")
    assert response.status_code == 303
    assert not Passkey.objects.filter(pk=lost.pk).exists()
    removed = last_event("passkey.removed")
    assert removed.actor == desk.user
    assert removed.subject == ada.user
    assert removed.detail["before"] == {"passkey": lost.name, "aaguid": str(lost.aaguid)}
    assert removed.detail["after"] is None

    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        page = post(browser, f"/admin/people/{ada.user.pk}/recovery")
    assert page.status_code == 200
    assert page["Cache-Control"].startswith("max-age=0")
    text = page.content.decode()
    link = text.split('readonly value="', 1)[1].split('"', 1)[0]
    assert link.startswith("http://localhost:8000/enroll/")
    assert 'src="data:image/svg+xml' in text  # the QR code
    issued = last_event("recovery.issued")
    assert issued.actor == desk.user
    assert issued.detail["link_emailed"] is False
    # Emailed that a link exists, never the link itself unless asked.
    assert len(mailoutbox) == 1
    assert token_of(link) not in mailoutbox[0].body
    # Shown once: the person page does not show it again.
    assert token_of(link) not in browser.get(f"/admin/people/{ada.user.pk}").content.decode()

    new_key = SoftAuthenticator()
    assert_ok(enroll(Browser(), token_of(link), new_key))
    assert_ok(sign_in(Browser(), new_key))


def test_the_recovery_link_is_emailed_only_when_asked(
    ada, mailoutbox, django_capture_on_commit_callbacks
):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        page = post(browser, f"/admin/people/{ada.user.pk}/recovery", {"email_link": "1"})
    link = page.content.decode().split('readonly value="', 1)[1].split('"', 1)[0]
    assert token_of(link) in mailoutbox[0].body
    assert last_event("recovery.issued").detail["link_emailed"] is True


def test_lock_unlock_deactivate_and_reactivate_are_audited_with_before_and_after(ada):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    base = f"/admin/people/{ada.user.pk}"
    assert post(browser, f"{base}/lock", {"reason": "laptop stolen"}).status_code == 303
    locked = last_event("user.locked")
    assert (locked.actor, locked.subject) == (desk.user, ada.user)
    assert locked.detail["before"] == {"locked": False}
    assert locked.detail["after"] == {"locked": True, "reason": "laptop stolen"}
    assert post(browser, f"{base}/unlock").status_code == 303
    assert last_event("user.unlocked").detail["after"] == {"locked": False}
    assert post(browser, f"{base}/deactivate").status_code == 303
    assert not User.objects.get(pk=ada.user.pk).is_active
    deactivated = last_event("user.deactivated")
    assert deactivated.actor == desk.user
    assert (deactivated.detail["before"], deactivated.detail["after"]) == (
        {"active": True},
        {"active": False},
    )
    assert post(browser, f"{base}/reactivate").status_code == 303
    assert User.objects.get(pk=ada.user.pk).is_active
    assert last_event("user.reactivated").actor == desk.user


def test_ending_sessions_and_resetting_the_fallback(ada):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    assert_ok(sign_in(Browser(), ada.authenticator))
    assert Session.objects.filter(user=ada.user).exists()
    assert post(browser, f"/admin/people/{ada.user.pk}/sessions/end").status_code == 303
    assert not Session.objects.filter(user=ada.user).exists()
    ended = last_event("sessions.ended")
    assert ended.actor == desk.user
    assert ended.detail["after"] == {"sessions": 0}
    # No fallback to reset: a clear message, nothing changes.
    before = _state()
    response = post(browser, f"/admin/people/{ada.user.pk}/fallback/reset")
    assert response.status_code == 409
    assert b"no password and authenticator app" in response.content
    assert _state() == before


def test_bad_input_on_the_person_forms_changes_nothing(ada):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    base = f"/admin/people/{ada.user.pk}"
    before = _state()
    too_long = post(browser, f"{base}/lock", {"reason": "x" * 201})
    assert too_long.status_code == 400
    assert b"Not locked: the reason is 201 characters" in too_long.content
    control = post(browser, f"{base}/lock", {"reason": "a\u202eb"})
    assert control.status_code == 400
    bad_role = post(browser, f"{base}/role", {"role": "superuser"})
    assert bad_role.status_code == 400
    assert b"Choose a role" in bad_role.content
    other = post(browser, f"{base}/passkeys/999999/remove")
    assert other.status_code == 404
    huge = post(browser, f"{base}/passkeys/{2**64}/remove")
    assert huge.status_code == 404
    assert browser.get("/admin/people/99999999").status_code == 404
    assert _state() == before


def test_an_administrator_sets_a_role_and_cannot_drop_their_own(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    assert (
        post(browser, f"/admin/people/{ada.user.pk}/role", {"role": "auditor"}).status_code == 303
    )
    assert User.objects.get(pk=ada.user.pk).role == "auditor"
    changed = last_event("user.role_changed")
    assert (changed.actor, changed.detail["before"], changed.detail["after"]) == (
        admin.user,
        {"role": ""},
        {"role": "auditor"},
    )
    mine = post(browser, f"/admin/people/{admin.user.pk}/role", {"role": ""})
    assert mine.status_code == 409
    assert User.objects.get(pk=admin.user.pk).role == "admin"


# Transactional: an invite's email is sent when its transaction commits, before the
# page says whether it went (as in production).
@pytest.mark.django_db(transaction=True)
def test_invites_are_resent_and_revoked(mailoutbox):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    mailoutbox.clear()  # the member of staff's own enrollment's
    response = post(browser, "/admin/people/invite", {"email": "new@example.com", "name": "New"})
    assert response.status_code == 303
    person = User.objects.get(username="new@example.com")
    assert last_event("invite.created").actor == desk.user
    first = EnrollmentInvite.objects.get(user=person)
    assert post(browser, f"/admin/people/{person.pk}/invite").status_code == 303
    first.refresh_from_db()
    assert first.revoked_at is not None
    second = EnrollmentInvite.objects.get(user=person, revoked_at=None)
    response = post(browser, f"/admin/people/{person.pk}/invites/{second.pk}/revoke")
    assert response.status_code == 303
    second.refresh_from_db()
    assert second.revoked_at is not None
    revoked = last_event("invite.revoked")
    assert (revoked.actor, revoked.subject) == (desk.user, person)
    assert len(mailoutbox) == 2


FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"


def _shown_link(response) -> str:
    text = response.content.decode()
    return html.unescape(text.split('id="invite-link" type="text" readonly value="', 1)[1]).split(
        '"', 1
    )[0]


def test_without_email_delivery_an_invite_shows_its_link_once(db, settings, tmp_path):
    settings.EMAIL_BACKEND = FILE_BACKEND  # a default install's
    settings.EMAIL_FILE_PATH = str(tmp_path)
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    response = post(browser, "/admin/people/invite", {"email": "new@example.com", "name": "New"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    text = html.unescape(response.content.decode())
    assert "Email delivery is not set up on this server, so this link was not emailed" in text
    assert "it is shown only this once" in text
    assert "earlier links no longer work" not in text  # a first link replaces nothing
    link = _shown_link(response)
    assert link.startswith(f"{ORIGIN}/enroll/")
    person = User.objects.get(username="new@example.com")
    # Not shown again: their page lists the link, never the link itself.
    assert token_of(link) not in browser.get(f"/admin/people/{person.pk}").content.decode()

    # A new link replaces the one that still works, and says so.
    again = post(browser, f"/admin/people/{person.pk}/invite")
    assert again.status_code == 200
    assert "earlier links no longer work" in html.unescape(again.content.decode())
    second = _shown_link(again)
    assert second != link
    # The link shown is the one that works: the person enrolls with it.
    assert Browser().post_json(f"/enroll/{token_of(link)}/options").status_code == 400
    assert_ok(enroll(Browser(), token_of(second), SoftAuthenticator()))


def test_an_expired_link_is_not_said_to_be_replaced(db, settings, tmp_path, clock):
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path)
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    post(browser, "/admin/people/invite", {"email": "new@example.com"})
    person = User.objects.get(username="new@example.com")
    EnrollmentInvite.objects.filter(user=person).update(expires_at="2000-01-01T00:00:00Z")
    again = post(browser, "/admin/people/invite", {"email": "NEW@example.com"})
    assert again.status_code == 200
    assert "earlier links no longer work" not in html.unescape(again.content.decode())


# Transactional: an invite's email is sent when its transaction commits, before the
# page says whether it went (as in production).
@pytest.mark.django_db(transaction=True)
def test_with_email_delivered_the_invite_says_replaced_links_only_when_there_were(mailoutbox):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    mailoutbox.clear()  # the member of staff's own enrollment's
    first = post(browser, "/admin/people/invite", {"email": "new@example.com"})
    person = User.objects.get(username="new@example.com")
    assert first["Location"] == f"/admin/people/{person.pk}?done=invited"
    text = html.unescape(browser.get(first["Location"]).content.decode())
    assert "An enrollment link was emailed to them." in text
    assert "earlier links no longer work" not in text
    assert 'id="invite-link"' not in text
    again = post(browser, f"/admin/people/{person.pk}/invite")
    assert again["Location"] == f"/admin/people/{person.pk}?done=invited-again"
    assert "earlier links no longer work" in html.unescape(
        browser.get(again["Location"]).content.decode()
    )
    assert len(mailoutbox) == 2


def test_without_email_delivery_an_import_shows_each_link_once(db, settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    assert (
        b"email delivery is not set up on this server"
        in browser.get("/admin/people/invite").content
    )
    upload = io.BytesIO(b"email,name\ngrace@example.com,Grace\nnot-an-email,x\n")
    upload.name = "people.csv"
    response = post(browser, "/admin/people/import", {"csv": upload})
    assert response.status_code == 200
    text = html.unescape(response.content.decode())
    assert "these links were not emailed" in text
    link = text.split("<code>", 1)[1].split("</code>", 1)[0]
    assert link.startswith(f"{ORIGIN}/enroll/")
    assert_ok(enroll(Browser(), token_of(link), SoftAuthenticator()))


def test_the_help_desk_cannot_invite_a_member_of_staff(db, settings, tmp_path):
    """An administrator (or help desk, or auditor) who has not enrolled is an administrator's
    to invite: a help desk's new link for them, shown when email is not delivered, would
    let the help desk enroll as them."""
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path)
    do_invite("boss@example.com", ORIGIN_CLI, full_name="Boss", is_administrator=True)
    boss = User.objects.get(username="boss@example.com")
    first = EnrollmentInvite.objects.get(user=boss)
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    refusal = "Boss has a role in the admin portal: only an administrator can invite them."
    one = post(desk, "/admin/people/invite", {"email": "BOSS@example.com", "name": ""})
    assert one.status_code == 400
    assert refusal in html.unescape(one.content.decode())
    many = post(desk, "/admin/people/import", {"csv_text": "email\nboss@example.com\n"})
    assert refusal in html.unescape(many.content.decode())
    for response in (one, many):
        assert "/enroll/" not in response.content.decode()
    # Their link is the one they had, still working; nobody else was sent one.
    assert list(EnrollmentInvite.objects.filter(user=boss)) == [first]
    assert EnrollmentInvite.objects.get(pk=first.pk).revoked_at is None
    # An administrator may.
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    assert (
        "/enroll/"
        in post(admin, "/admin/people/invite", {"email": "boss@example.com"}).content.decode()
    )


def test_inviting_refuses_bad_input_and_changes_nothing(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    before = _state()
    for data, words in [
        ({"email": "not-an-email"}, b"is not an email address"),
        ({"email": ""}, b"Enter an email address"),
        ({"email": "x@example.com", "name": "<script>"}, b"The name is not allowed"),
        ({"email": "ada@example.com"}, b"They can already sign in"),
    ]:
        response = post(browser, "/admin/people/invite", data)
        assert response.status_code == 400, data
        assert words in response.content, data
    assert _state() == before


def test_a_csv_upload_invites_each_row_with_its_own_result(ada, mailoutbox):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    content = (
        "email,name,groups\n"
        "grace@example.com,Grace Hopper,\n"
        "not-an-email,Nobody,\n"
        "ada@example.com,Ada,\n"
        "GRACE@example.com,Grace again,\n"
        "alan@example.com,Alan Turing,Engineering\n"
    )
    upload = io.BytesIO(content.encode())
    upload.name = "people.csv"
    response = post(browser, "/admin/people/import", {"csv": upload})
    assert response.status_code == 200
    text = response.content.decode()
    assert "2 of 5 invited" in text
    assert "not an email address" in text
    assert "They can already sign in" in text
    assert "Listed earlier in the file" in text
    # The help desk does not change groups: the column is reported, not applied.
    assert "Groups not applied: your role does not change groups." in text
    assert set(User.objects.values_list("username", flat=True)) >= {
        "grace@example.com",
        "alan@example.com",
    }
    assert User.objects.get(username="grace@example.com").full_name == "Grace Hopper"
    assert not User.objects.filter(username="not-an-email").exists()


def test_the_upload_limit_reads_as_people_write_sizes(db):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    page = browser.get("/admin/people/invite").content.decode()
    assert "UTF-8, up to 60 KB." in page
    assert "60.0" not in page
    upload = io.BytesIO(b"email\n" + b"a@example.com\n" * 4500)  # 61.5 KB: under the form's cap
    upload.name = "people.csv"
    response = post(browser, "/admin/people/import", {"csv": upload})
    assert response.status_code == 400
    assert b"The file is over 60 KB: split it." in response.content


@pytest.mark.parametrize(
    ("size", "words"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KB"),
        (60 * 1024, "60 KB"),
        (60 * 1024 + 512, "60.5 KB"),
        (1536 * 1024, "1.5 MB"),
        (3 * 1024**3, "3 GB"),
    ],
)
def test_sizes_are_written_without_a_trailing_zero(size, words):
    assert imports.size_text(size) == words


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"name,groups\nGrace,\n", b"The first line must name the columns"),
        (b"email,name\n", b"no one to invite"),
        (b"email,name\n\xff\xfe,bad\n", b"not UTF-8"),
    ],
)
def test_a_csv_that_cannot_be_read_invites_nobody(db, content, words):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    before = _state()
    upload = io.BytesIO(content)
    upload.name = "people.csv"
    response = post(browser, "/admin/people/import", {"csv": upload})
    assert response.status_code == 400
    assert words in response.content
    assert b"Nobody was invited" in response.content
    assert _state() == before


# --- People ---------------------------------------------------------------------------------


def _people(count: int) -> None:
    User.objects.bulk_create(
        User(username=f"person{n:04d}@example.com", full_name=f"Person {n}") for n in range(count)
    )


def _next_link(page: str) -> str:
    """The page's "next" link, or "" on the last page."""
    if 'rel="next"' not in page:
        return ""
    return (
        page.split('rel="next"', maxsplit=1)[0]
        .rsplit('<a href="', 1)[1]
        .split('"', 1)[0]
        .replace("&amp;", "&")
    )


def test_people_pages_by_keyset_without_offset(db):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    _people(120)
    seen: list[str] = []
    path = "/admin/people?q=person"
    pages = 0
    while path:
        with CaptureQueriesContext(connection) as queries:
            response = browser.get(path)
        assert response.status_code == 200
        assert not any("OFFSET" in query["sql"].upper() for query in queries.captured_queries)
        text = response.content.decode()
        seen += [
            # The address, without the mark under it ("Not verified").
            line.strip().removeprefix("<td>").split("<", 1)[0]
            for line in text.splitlines()
            if line.strip().startswith("<td>person")
        ]
        pages += 1
        path = _next_link(text)
    assert pages == 3
    assert seen == sorted(f"person{n:04d}@example.com" for n in range(120))


def test_people_search_and_status_filters(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    bob = enrolled_person("bob@example.com", "Bob Builder")
    locked = User.objects.create_user("locked@example.com", full_name="Lou Locked")
    User.objects.filter(pk=locked.pk).update(locked_at="2026-01-01T00:00:00Z")
    gone = User.objects.create_user("gone@example.com", full_name="Gus Gone")
    User.objects.filter(pk=gone.pk).update(is_active=False)
    main(["invite", "invited@example.com", "--no-email"])
    User.objects.create_user("fresh@example.com", full_name="Fred Fresh")

    def listed(query: str) -> set[str]:
        response = browser.get(f"/admin/people?{query}")
        assert response.status_code == 200
        return {
            username
            for username in User.objects.values_list("username", flat=True)
            if f"<td>{username}<" in response.content.decode()
        }

    assert listed("q=builder") == {"bob@example.com"}
    assert listed("q=ADA@EXAMPLE") == {"ada@example.com"}
    assert listed("status=locked") == {"locked@example.com"}
    assert listed("status=deactivated") == {"gone@example.com"}
    # Invited: may sign in, with no way to yet (not enrolled), whether or not an invite is
    # pending, as the readiness dashboard counts them; active: enrolled.
    assert listed("status=invited") == {"invited@example.com", "fresh@example.com"}
    assert listed("status=no-passkey") == {"invited@example.com", "fresh@example.com"}
    assert listed("status=active") == {"ada@example.com", "bob@example.com", "desk@example.com"}
    assert bob.user.pk
    unknown = browser.get("/admin/people?status=nonsense")
    assert unknown.status_code == 400
    assert b"not one of the list" in unknown.content


# --- The audit log ----------------------------------------------------------------------------


def test_the_audit_log_filters_explains_failures_and_pages(ada):
    _, browser = staff("auditor@example.com", Role.AUDITOR)
    # A phishing site's origin: refused, with its reason code.
    response = sign_in(
        Browser(REMOTE_ADDR="198.51.100.20"), ada.authenticator, origin="https://evil.example"
    )
    assert response.status_code == 400
    failure = last_event("sign_in.failed")
    page = browser.get("/admin/audit?outcome=failure").content.decode()
    assert failure.reason in page
    assert "Cause:" in page
    assert "The person is shown" in page
    by_ip = browser.get("/admin/audit?ip=198.51.100.20").content.decode()
    assert by_ip.count("<tr>") == 2  # the header row and the failure
    person = browser.get("/admin/audit?person=ada@example.com&action=invite.created").content
    assert person.decode().count("invite.created") >= 2  # the filter's option and the row
    for n in range(60):
        record(Action.USER_CREATED, Origin.cli(), subject=ada.user, n=n)
    first = browser.get("/admin/audit?action=user.created").content.decode()
    assert 'rel="next"' in first
    assert first.count("<td>user.created</td>") == 50
    second = browser.get(_next_link(first)).content.decode()
    assert second.count("<td>user.created</td>") == 12  # 60, Ada's and the auditor's


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("ip=300.1.1.1", b"is not an IP address"),
        ("since=yesterday", b"must be a date"),
        ("outcome=maybe", b"Outcome must be"),
        ("action=user.exploded", b"is not an action the log records"),
    ],
)
def test_the_audit_log_refuses_bad_filters_clearly(ada, query, words):
    _, browser = staff("auditor@example.com", Role.AUDITOR)
    response = browser.get(f"/admin/audit?{query}")
    assert response.status_code == 400
    assert words in response.content
    assert browser.get(f"/admin/audit/export.csv?{query}").status_code == 400


def test_the_audit_exports_stream_every_matching_row(ada):
    _, browser = staff("auditor@example.com", Role.AUDITOR)
    record(Action.USER_CREATED, Origin.cli(), subject=ada.user, note="=HYPERLINK()")
    expected = AuditEvent.objects.filter(subject=ada.user).count()
    response = browser.get("/admin/audit/export.csv?person=ada@example.com")
    assert response.status_code == 200
    assert response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["at", "action", "outcome"]
    assert len(rows) - 1 == expected
    assert all(not cell.startswith("=") for row in rows for cell in row)
    exported = browser.get("/admin/audit/export.json?person=ada@example.com")
    assert exported.streaming
    events = json.loads(b"".join(exported.streaming_content))
    assert len(events) == expected
    assert {event["subject"] for event in events} == {"ada@example.com"}


# --- The command line -------------------------------------------------------------------------


def test_users_role_gives_and_takes_a_role(ada, capsys):
    assert main(["users", "role", "ada@example.com", "helpdesk"]) == 0
    assert User.objects.get(pk=ada.user.pk).portal_role is Role.HELP_DESK
    event = last_event("user.role_changed")
    assert event.via == "cli"
    assert event.detail == {
        "before": {"role": ""},
        "after": {"role": "helpdesk"},
        **Origin.cli().operator(),
    }
    assert main(["users", "role", "ada@example.com", "none"]) == 0
    assert User.objects.get(pk=ada.user.pk).role == ""
    assert main(["users", "role", "nobody@example.com", "admin"]) == 2
    with pytest.raises(SystemExit):
        main(["users", "role", "ada@example.com", "root"])


def test_users_deactivate_and_reactivate(ada):
    assert main(["users", "deactivate", "ada@example.com"]) == 0
    assert not User.objects.get(pk=ada.user.pk).is_active
    assert main(["users", "reactivate", "ada@example.com"]) == 0
    assert User.objects.get(pk=ada.user.pk).is_active


def test_verifying_first_returns_to_the_search_the_form_was_on(db, clock):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    clock.advance(301)
    response = post(
        browser,
        "/admin/authenticators",
        {"change": "deny", "aaguid": "ee882879-721c-4913-9775-3dfcce97072a"},
        HTTP_REFERER="http://localhost:8000/admin/authenticators?q=yubikey",
    )
    assert response.status_code == 303
    assert response["Location"] == ("/settings/verify?next=%2Fadmin%2Fauthenticators%3Fq%3Dyubikey")


# --- Groups -----------------------------------------------------------------------------------


def test_an_administrator_manages_groups_and_members(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    assert post(browser, "/admin/groups", {"name": "Engineering"}).status_code == 303
    group = Group.objects.get(name="Engineering")
    assert last_event("group.added").actor == admin.user
    response = post(browser, f"/admin/groups/{group.pk}/members", {"email": "ada@example.com"})
    assert response.status_code == 303
    assert Membership.objects.filter(group=group, user=ada.user).exists()
    added = last_event("group.member_added")
    assert (added.actor, added.subject) == (admin.user, ada.user)
    person = browser.get(f"/admin/people/{ada.user.pk}").content.decode()
    assert f'href="/admin/groups/{group.pk}">Engineering</a>' in person
    remove = post(browser, f"/admin/groups/{group.pk}/members/{ada.user.pk}/remove")
    assert remove.status_code == 303
    assert not Membership.objects.filter(group=group).exists()
    # Removing the group is asked first: the page's form posts to its own address.
    asked = browser.get(f"/admin/groups/{group.pk}/remove")
    assert asked.status_code == 200
    assert b'<form method="post">' in asked.content
    assert b"csrfmiddlewaretoken" in asked.content
    assert Group.objects.filter(pk=group.pk).exists()
    assert post(browser, f"/admin/groups/{group.pk}/remove").status_code == 303
    assert not Group.objects.exists()
    assert last_event("group.removed").actor == admin.user


def test_bad_input_on_the_group_forms_changes_nothing(ada):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    group = do_add_group("Engineering", Origin.cli())
    before = _state()
    for path, data, words in [
        ("/admin/groups", {"name": "engineering"}, b"There is a group called"),
        ("/admin/groups", {"name": "<b>"}, b"can&#x27;t be used"),
        (f"/admin/groups/{group.pk}/members", {"email": "nobody@example.com"}, b"no one with"),
    ]:
        response = post(browser, path, data)
        assert response.status_code == 400, path
        assert words in response.content, path
    assert post(browser, "/admin/groups/999999/remove").status_code == 404
    assert browser.get("/admin/groups/999999/remove").status_code == 404
    assert _state() == before


def test_the_help_desk_reads_groups_but_does_not_change_them(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    group = do_add_group("Engineering", Origin.cli())
    assert browser.get(f"/admin/groups/{group.pk}").status_code == 200
    asked = browser.get(f"/admin/groups/{group.pk}/remove")
    assert asked.status_code == 200
    assert b'<form method="post">' not in asked.content
    before = _state()
    response = post(browser, f"/admin/groups/{group.pk}/members", {"email": "ada@example.com"})
    assert response.status_code == 403
    assert post(browser, f"/admin/groups/{group.pk}/remove").status_code == 403
    assert _state() == before


def test_an_administrators_csv_puts_people_in_their_groups(db):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    engineering = do_add_group("Engineering", Origin.cli())
    do_add_group("Sales", Origin.cli())
    upload = io.BytesIO(
        b"email,name,groups\n"
        b"grace@example.com,Grace,Engineering; sales\n"
        b"alan@example.com,Alan,Engineering;Research\n"
    )
    upload.name = "people.csv"
    text = post(browser, "/admin/people/import", {"csv": upload}).content.decode()
    assert "In Engineering, Sales." in text
    assert "No group called &#x27;Research&#x27;: not added." in text
    grace = User.objects.get(username="grace@example.com")
    assert set(grace.memberships.values_list("group__name", flat=True)) == {"Engineering", "Sales"}
    assert set(engineering.memberships.values_list("user__username", flat=True)) == {
        "grace@example.com",
        "alan@example.com",
    }
    assert last_event("group.member_added").actor == admin.user


# --- Every POST -------------------------------------------------------------------------------


def _change_paths(ada) -> list[str]:
    invite = EnrollmentInvite.objects.create(
        user=ada.user, token_hash="y" * 64, expires_at="2100-01-01T00:00:00Z"
    )
    group = do_add_group("Engineering", Origin.cli())
    do_add_member(group, ada.user, Origin.cli())
    return every_portal_path(ada.user.pk, ada.passkey.pk, invite.pk, group.pk)


def test_csrf_holds_on_every_portal_post(ada):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    paths = _change_paths(ada)
    before = _state()
    for path in paths:
        response = browser.client.post(path, {"reason": "x", "name": "G", "role": "auditor"})
        assert response.status_code == 403, path
    assert _state() == before


def test_every_portal_change_asks_for_a_fresh_step_up_first(ada, clock):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    paths = _change_paths(ada)
    clock.advance(301)
    before = _state()
    for path in paths:
        response = post(browser, path, {"reason": "x", "name": "G", "role": "auditor"})
        if response.status_code == 405:  # a page that only reads
            continue
        assert response.status_code == 303, path
        assert response["Location"].startswith("/settings/verify?next="), path
    assert _state() == before


def test_the_help_desk_cannot_change_a_member_of_staff(ada):
    admin, _ = staff("root@example.com", Role.ADMINISTRATOR)
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    before = _state()
    for path in [
        f"/admin/people/{admin.user.pk}/recovery",
        f"/admin/people/{admin.user.pk}/lock",
        f"/admin/people/{admin.user.pk}/deactivate",
        f"/admin/people/{admin.user.pk}/sessions/end",
        f"/admin/people/{admin.user.pk}/passkeys/{admin.passkey.pk}/remove",
    ]:
        response = post(desk, path)
        assert response.status_code == 403, path
        assert b"only an administrator can change" in response.content
    assert _state() == before
    # Someone without a role, they may.
    assert post(desk, f"/admin/people/{ada.user.pk}/lock").status_code == 303


def test_no_recovery_link_for_a_deactivated_person(ada):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    User.objects.filter(pk=ada.user.pk).update(is_active=False)
    before = _state()
    response = post(browser, f"/admin/people/{ada.user.pk}/recovery")
    assert response.status_code == 409
    assert b"No recovery link was issued: the account is deactivated." in response.content
    assert _state() == before


# --- Asked first: removing a passkey, resetting the fallback, deactivating ---------------------


def _words(page: bytes) -> str:
    """A page's text as read: entities decoded, white space collapsed."""
    return " ".join(html.unescape(page.decode()).split())


FORM = b'<form method="post">'
ORIGIN_CLI = Origin.cli()


def test_removing_a_passkey_is_asked_first_and_says_what_they_keep(ada, clock):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    passkey = ada.passkey
    confirm = f"/admin/people/{ada.user.pk}/passkeys/{passkey.pk}/remove"
    person = _words(browser.get(f"/admin/people/{ada.user.pk}").content)
    assert (
        f'<a class="button danger small" href="{confirm}">Remove<span class="visually-hidden">'
        f" {passkey.name}</span>\u2026</a>"
    ) in person
    before = _state()
    asked = browser.get(confirm)
    assert asked.status_code == 200
    page = _words(asked.content)
    assert f"<h1>Remove Ada Lovelace\u2019s passkey \u201c{passkey.name}\u201d?</h1>" in page
    assert f"Ada Lovelace can no longer sign in with \u201c{passkey.name}\u201d (added " in page
    assert "They are emailed that it was removed." in page
    # Her only passkey: nothing is left.
    assert (
        "They will have no way left to sign in: to sign in again, they will need a recovery"
        " link, which you can issue on their page."
    ) in page
    assert 'id="ways-refused"' not in page
    assert FORM in asked.content
    assert f'class="button danger">Remove \u201c{passkey.name}\u201d</button>' in page
    assert f'href="/admin/people/{ada.user.pk}">Cancel</a>' in page
    assert _state() == before  # asking removed nothing, audited nothing

    # Another passkey and the password and authenticator app: both are kept.
    ada_browser = Browser()
    assert_ok(sign_in(ada_browser, ada.authenticator))
    assert_ok(add_passkey(ada_browser, SoftAuthenticator()))
    do_set_up_fallback(ada.user, "correct horse battery staple", "JBSWY3DPEHPK3PXP", 0, ORIGIN_CLI)
    page = _words(browser.get(confirm).content)
    assert (
        "They keep 2 other ways to sign in: 1 other passkey and their password and"
        " authenticator app."
    ) in page
    assert "no way left" not in page
    # A policy that refuses her passkeys' authenticator: only the fallback still counts.
    set_policy(aaguid_deny_list=(SOFT_AAGUID,))
    page = _words(browser.get(confirm).content)
    assert "They keep 1 other way to sign in: their password and authenticator app." in page
    assert (
        "Not counted: 1 other passkey, which the policy does not let them sign in with today."
    ) in page
    set_policy(aaguid_deny_list=(), allow_password_fallback=False)
    page = _words(browser.get(confirm).content)
    assert "They keep 1 other way to sign in: 1 other passkey." in page
    assert "Not counted: their password and authenticator app, which the policy" in page

    # A nickname is named with the authenticator it is on.
    Passkey.objects.filter(pk=passkey.pk).update(nickname="Work laptop")
    page = _words(browser.get(confirm).content)
    assert (
        f"can no longer sign in with \u201cWork laptop\u201d ({passkey.authenticator_name}, added "
    ) in page

    # The form's POST, to the page's own address, removes it.
    assert post(browser, confirm).status_code == 303
    assert not Passkey.objects.filter(pk=passkey.pk).exists()
    assert last_event("passkey.removed").actor == desk.user


def test_a_change_asked_first_returns_to_its_question_after_verifying(ada, clock):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    clock.advance(301)
    before = _state()
    for path in [
        f"/admin/people/{ada.user.pk}/passkeys/{ada.passkey.pk}/remove",
        f"/admin/people/{ada.user.pk}/fallback/reset",
        f"/admin/people/{ada.user.pk}/deactivate",
    ]:
        assert browser.get(path).status_code in (200, 409), path  # asking needs no step-up
        response = post(browser, path)
        assert response.status_code == 303, path
        assert response["Location"] == "/settings/verify?next=" + path.replace("/", "%2F")
    assert _state() == before


def test_passkeys_and_people_that_do_not_exist_are_404_when_asked_too(ada):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    bob = enrolled_person("bob@example.com", "Bob")
    base = f"/admin/people/{ada.user.pk}"
    before = _state()
    for path in [
        f"{base}/passkeys/{bob.passkey.pk}/remove",  # Bob's, not Ada's
        f"{base}/passkeys/999999/remove",
        f"{base}/passkeys/{2**64}/remove",
    ]:
        for response in (browser.get(path), post(browser, path)):
            assert response.status_code == 404, path
            assert "That passkey is not one of this person\u2019s." in _words(response.content)
    for path in [
        f"/admin/people/99999999/passkeys/{ada.passkey.pk}/remove",
        "/admin/people/99999999/fallback/reset",
        "/admin/people/99999999/deactivate",
    ]:
        assert browser.get(path).status_code == 404, path
        assert post(browser, path).status_code == 404, path
    assert _state() == before
    assert Passkey.objects.filter(pk=bob.passkey.pk).exists()


def test_resetting_the_fallback_is_asked_first(
    ada, clock, mailoutbox, django_capture_on_commit_callbacks
):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    confirm = f"/admin/people/{ada.user.pk}/fallback/reset"
    # Nothing to reset: asking is refused as the reset is.
    nothing = browser.get(confirm)
    assert nothing.status_code == 409
    assert b"They have no password and authenticator app." in nothing.content
    assert f'href="{confirm}"'.encode() not in browser.get(f"/admin/people/{ada.user.pk}").content

    do_set_up_fallback(ada.user, "correct horse battery staple", "JBSWY3DPEHPK3PXP", 0, ORIGIN_CLI)
    assert f'href="{confirm}"'.encode() in browser.get(f"/admin/people/{ada.user.pk}").content
    before = _state()
    asked = browser.get(confirm)
    assert asked.status_code == 200
    page = _words(asked.content)
    assert "<h1>Reset Ada Lovelace\u2019s password and authenticator app?</h1>" in page
    assert (
        "Their password, their authenticator app and their 10 unused recovery codes stop"
        " working at once. They are emailed that they were removed."
    ) in page
    assert "They keep 1 other way to sign in: 1 passkey." in page
    assert "They can set up a password and authenticator app again themselves" in page
    assert FORM in asked.content
    assert _state() == before
    assert has_fallback(ada.user)

    # Were it her only way in, she would need a recovery link.
    Passkey.objects.filter(user=ada.user).delete()
    assert "They will have no way left to sign in" in _words(browser.get(confirm).content)

    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert post(browser, confirm).status_code == 303
    assert not has_fallback(ada.user)
    assert last_event("fallback.reset").actor == desk.user
    assert len(mailoutbox) == 1


def test_deactivating_is_asked_first_and_says_what_it_does(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    confirm = f"/admin/people/{ada.user.pk}/deactivate"
    assert f'href="{confirm}"'.encode() in browser.get(f"/admin/people/{ada.user.pk}").content
    before = _state()
    asked = browser.get(confirm)
    assert asked.status_code == 200
    page = _words(asked.content)
    assert "<h1>Deactivate Ada Lovelace?</h1>" in page
    for words in [
        "Ada Lovelace is signed out everywhere at once, and no way of signing in works",
        "Their unused enrollment and recovery links stop working too.",
        "lose their tokens for them at once",
        "apps with back-channel logout are told to sign them out",
        "Their passkeys and history stay. Reactivate, on their page, lets them sign in again",
    ]:
        assert words in page
    assert FORM in asked.content
    assert "Deactivate Ada Lovelace</button>" in page
    assert _state() == before

    # Yourself: said instead of what it would do, and no form.
    mine = browser.get(f"/admin/people/{admin.user.pk}/deactivate")
    assert mine.status_code == 200
    assert (
        '<p class="notice" id="confirm-refused">You cannot deactivate yourself.</p>'
        f' <p><a href="/admin/people/{admin.user.pk}">Back to Root</a></p>'
    ) in _words(mine.content)
    assert FORM not in mine.content
    assert b'id="deactivate-what"' not in mine.content
    assert b"signed out everywhere" not in mine.content
    assert post(browser, f"/admin/people/{admin.user.pk}/deactivate").status_code == 409
    assert User.objects.get(pk=admin.user.pk).is_active

    assert post(browser, confirm).status_code == 303
    assert not User.objects.get(pk=ada.user.pk).is_active
    assert last_event("user.deactivated").actor == admin.user
    # Already deactivated: nothing to ask.
    again = _words(browser.get(confirm).content)
    assert "Ada Lovelace is deactivated already." in again
    assert FORM.decode() not in again
    assert "signed out everywhere" not in again


def test_no_one_locks_themselves_out(ada):
    # Locking ends every session of theirs: only `threshold users unlock` would undo it.
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    own = browser.get(f"/admin/people/{admin.user.pk}")
    assert f'action="/admin/people/{admin.user.pk}/lock"'.encode() not in own.content
    assert f'action="/admin/people/{ada.user.pk}/lock"'.encode() in (
        browser.get(f"/admin/people/{ada.user.pk}").content
    )
    before = _state()
    refused = post(browser, f"/admin/people/{admin.user.pk}/lock", {"reason": "oops"})
    assert refused.status_code == 409
    assert b"You cannot lock yourself out" in refused.content
    assert _state() == before
    assert not User.objects.get(pk=admin.user.pk).is_locked
    assert browser.get(f"/admin/people/{admin.user.pk}").status_code == 200  # still signed in


def test_what_a_role_may_not_change_is_asked_without_a_form(ada):
    admin, _ = staff("root@example.com", Role.ADMINISTRATOR)
    do_set_up_fallback(
        admin.user, "correct horse battery staple", "JBSWY3DPEHPK3PXP", 0, ORIGIN_CLI
    )
    do_set_up_fallback(ada.user, "correct horse battery staple", "JBSWY3DPEHPK3PXP", 0, ORIGIN_CLI)
    _, auditor = staff("audit@example.com", Role.AUDITOR)
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    before = _state()
    for person in (ada, admin):
        base = f"/admin/people/{person.user.pk}"
        for path in [
            f"{base}/passkeys/{person.passkey.pk}/remove",
            f"{base}/fallback/reset",
            f"{base}/deactivate",
        ]:
            # The auditor reads what it would do, and cannot do it.
            read = auditor.get(path)
            assert read.status_code == 200, path
            assert FORM not in read.content, path
            assert b'-what">' in read.content, path
            assert b'id="confirm-refused"' not in read.content, path
            assert f'href="{base}">Back to'.encode() in read.content, path
            assert post(auditor, path).status_code == 403, path
            # The help desk may change Ada, not a member of staff: said before it is tried,
            # instead of what it would do.
            asked = desk.get(path)
            assert asked.status_code == 200, path
            refused = "only an administrator can change their account" in _words(asked.content)
            assert (FORM not in asked.content) is (person is admin) is refused, path
            assert (b'-what">' not in asked.content) is refused, path
    assert post(desk, f"/admin/people/{admin.user.pk}/fallback/reset").status_code == 403
    assert _state() == before
    assert has_fallback(admin.user)


# --- What a person's page offers -------------------------------------------------------------


def _changes_offered(page: str, user_id: int) -> set[str]:
    """The changes a person's page offers for them: its forms' actions and its links to a
    question, each a path under their page."""
    base = f"/admin/people/{user_id}/"
    return {
        part.split('"', 1)[0]
        for attribute in ('action="', 'href="')
        for part in page.split(attribute + base)[1:]
    }


def test_the_help_desk_is_told_why_not_instead_of_a_staff_members_buttons(ada):
    admin, _ = staff("root@example.com", Role.ADMINISTRATOR)
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    for person in (ada, admin):
        # Every change there is: a fallback to reset, a link to revoke.
        do_set_up_fallback(
            person.user, "correct horse battery staple", "JBSWY3DPEHPK3PXP", 0, ORIGIN_CLI
        )
        do_issue_recovery(person.user, ORIGIN_CLI)
    admin_browser = Browser()  # a new password signed the administrator out
    assert_ok(sign_in(admin_browser, admin.authenticator))
    refusal = (
        "Root has a role in the admin portal: only an administrator can change their account"
        " or sign-in methods."
    )
    every_change = {
        f"passkeys/{admin.passkey.pk}/remove",
        "fallback/reset",
        "sessions/end",
        "recovery",
        "lock",
        "deactivate",
        f"invites/{EnrollmentInvite.objects.get(user=admin.user, used_at=None).pk}/revoke",
    }

    # The help desk, on an administrator's page: no button or question, one explanation.
    page = _words(browser.get(f"/admin/people/{admin.user.pk}").content)
    assert _changes_offered(page, admin.user.pk) == set()
    assert f'<p class="notice" id="person-refused">{refusal}</p>' in page
    assert page.count(refusal) == 1
    for words in ["Lock</button>", "Deactivate\u2026", "Issue a recovery link", "End all their"]:
        assert words not in page
    # On Ada's (no role), the help desk has every button and no explanation.
    page = _words(browser.get(f"/admin/people/{ada.user.pk}").content)
    offered = _changes_offered(page, ada.user.pk)
    assert {f"passkeys/{ada.passkey.pk}/remove", "lock", "deactivate", "recovery"} <= offered
    assert len(offered) == len(every_change)
    assert 'id="person-refused"' not in page
    # Locked, or deactivated, she cannot be given a recovery link: said instead of the button.
    for change, words in [
        (do_lock_user, "locked: unlock it first."),
        (do_deactivate_user, "deactivated: reactivate it first."),
    ]:
        change(ada.user, ORIGIN_CLI)
        page = _words(browser.get(f"/admin/people/{ada.user.pk}").content)
        assert "recovery" not in _changes_offered(page, ada.user.pk)
        assert f'<p id="no-recovery">No recovery link while the account is {words}</p>' in page
        assert post(browser, f"/admin/people/{ada.user.pk}/recovery").status_code == 409
    # On their own, all but Deactivate and Lock, which would be refused.
    page = _words(browser.get(f"/admin/people/{desk.user.pk}").content)
    offered = _changes_offered(page, desk.user.pk)
    assert {"recovery", "sessions/end"} <= offered
    assert "deactivate" not in offered
    assert "lock" not in offered
    assert 'id="person-refused"' not in page

    # An administrator, on the administrator's page and on the help desk's, has them all.
    page = _words(admin_browser.get(f"/admin/people/{admin.user.pk}").content)
    assert _changes_offered(page, admin.user.pk) == every_change - {"deactivate", "lock"} | {"role"}
    page = _words(admin_browser.get(f"/admin/people/{desk.user.pk}").content)
    assert {"lock", "deactivate", "recovery", "sessions/end", "role"} <= _changes_offered(
        page, desk.user.pk
    )
    assert 'id="person-refused"' not in page

    # Locked, then deactivated: no Unlock or Reactivate either.
    do_lock_user(admin.user, ORIGIN_CLI, "")
    do_deactivate_user(admin.user, ORIGIN_CLI)
    page = _words(browser.get(f"/admin/people/{admin.user.pk}").content)
    assert _changes_offered(page, admin.user.pk) == set()
    assert "Unlock</button>" not in page
    assert "Reactivate</button>" not in page
    assert refusal in page


def _current_section(page: str) -> list[str]:
    """The portal navigation's entries marked as the page's own (``aria-current="page"``)."""
    nav = page.split('<nav class="portal-nav"', 1)[1].split("</nav>", 1)[0]
    return [
        link.split(">", 1)[1].split("<", 1)[0]
        for link in nav.split("<a ")[1:]
        if 'aria-current="page"' in link.split(">", 1)[0]
    ]


def test_every_portal_page_marks_its_entry_in_the_navigation(ada, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"  # links shown
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    group = do_add_group("Engineering", Origin.cli())
    person = f"/admin/people/{ada.user.pk}"
    for path, entry in [
        ("/admin/", "Admin portal"),
        ("/admin/people", "People"),
        ("/admin/people?status=invited", "People"),
        (person, "People"),
        (f"{person}/passkeys/{ada.passkey.pk}/remove", "People"),
        (f"{person}/deactivate", "People"),
        ("/admin/people/invite", "People"),
        ("/admin/groups", "Groups"),
        (f"/admin/groups/{group.pk}", "Groups"),
        ("/admin/apps", "Apps"),
        ("/admin/audit", "Audit log"),
        ("/admin/policy", "Policy"),
        ("/admin/authenticators", "Authenticators"),
        ("/admin/readiness", "Readiness"),
    ]:
        page = browser.get(path)
        assert page.status_code == 200, path
        assert _current_section(page.content.decode()) == [entry], path
    # Pages that answer a POST: an invite, a recovery link, the policy's preview.
    invited = post(browser, "/admin/people/invite", {"email": "new@example.com"})
    assert _current_section(invited.content.decode()) == ["People"]
    recovery = post(browser, f"{person}/recovery")
    assert _current_section(recovery.content.decode()) == ["People"]
    Passkey.objects.filter(user=ada.user).update(backup_eligible=True)
    preview = post(browser, "/admin/policy", {"block_synced_passkeys": "true"})
    assert _current_section(preview.content.decode()) == ["Policy"]
    deny = post(browser, "/admin/authenticators", {"change": "deny", "aaguid": SOFT_AAGUID})
    assert deny.status_code == 409  # the administrator's own authenticator: refused
    assert _current_section(deny.content.decode()) == ["Authenticators"]
