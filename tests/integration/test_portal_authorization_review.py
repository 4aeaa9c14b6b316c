"""An authorization review of the admin portal: what each role may read and change, through
real requests (Django's test client, CSRF enforced, real passkeys, a real database).

The matrix test checks every /admin/ URL, GET and POST, for every role (administrator, help
desk, auditor, none) and two people (someone without a role, an administrator) against the
README's promise, written out here rather than read from ``portal/roles.py``. The last tests
pin the defects the review found, fixed since: a help desk's link outliving its person's new
role, and formula cells in the import's links file.
"""

from __future__ import annotations

import csv
import html
import io

import pytest
from django.db import transaction
from django.urls import resolve

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    Person,
    assert_ok,
    enrolled_person,
    sign_in,
    token_of,
)
from tests.integration.portal_support import every_portal_path, post, staff
from tests.integration.test_sso import add_app
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.devices.models import Device
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.models import TotpDevice
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group, Membership
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy
from threshold.policy.models import OrganisationPolicy
from threshold.sessions.models import Session
from threshold.sso.models import Application

pytestmark = pytest.mark.django_db

FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"


def _state() -> tuple:
    """Every row a portal change could touch (audit rows apart)."""
    return (
        list(Membership.objects.order_by("pk").values_list("group_id", "user_id")),
        list(Group.objects.order_by("pk").values_list("pk", "name", "rules")),
        list(
            User.objects.order_by("pk").values_list(
                "pk", "username", "email", "full_name", "role", "is_active", "locked_at"
            )
        ),
        list(Passkey.objects.order_by("pk").values_list("pk", flat=True)),
        list(TotpDevice.objects.order_by("pk").values_list("pk", flat=True)),
        list(EnrollmentInvite.objects.order_by("pk").values_list("pk", "revoked_at", "used_at")),
        list(Session.objects.order_by("pk").values_list("pk", flat=True)),
        list(
            Application.objects.order_by("pk").values_list(
                "pk", "name", "client_secret", "redirect_uris", "for_everyone"
            )
        ),
        list(OrganisationPolicy.objects.values_list("document", flat=True)),
    )


def _shown_link(response) -> str:
    """The one-time link a recovery or invite page shows once."""
    text = html.unescape(response.content.decode())
    return text.split('readonly value="', 1)[1].split('"', 1)[0]


# --- Defects --------------------------------------------------------------------------------------


def test_a_help_desk_recovery_link_stops_working_once_its_person_gets_a_role(ada):
    """The help desk may not issue a recovery link to a member of staff ("a way into
    everything"), but one it issued to someone without a role keeps working after an
    administrator gives them one: the help desk enrolls its own passkey as the new
    administrator and reaches the admin portal as them."""
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    issued = post(desk, f"/admin/people/{ada.user.pk}/recovery")
    assert issued.status_code == 200
    link = _shown_link(issued)
    # An administrator then makes Ada an administrator, as the portal offers.
    assert post(admin, f"/admin/people/{ada.user.pk}/role", {"role": "admin"}).status_code == 303
    assert User.objects.get(pk=ada.user.pk).role == Role.ADMINISTRATOR

    passkeys = set(Passkey.objects.filter(user=ada.user).values_list("pk", flat=True))
    taken = Browser()
    options = taken.post_json(f"/enroll/{token_of(link)}/options")
    if options.status_code == 200:
        credential = SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)
        taken.post_json(f"/enroll/{token_of(link)}/result", credential)
    # Nothing of the help desk's reaches the administrator's account.
    assert set(Passkey.objects.filter(user=ada.user).values_list("pk", flat=True)) == passkeys
    assert taken.get("/admin/policy").status_code != 200


def test_a_help_desk_invite_link_stops_working_once_its_person_gets_a_role(db, settings, tmp_path):
    """Without email delivery (a default install) the help desk is shown the link of the
    person it invites. An administrator who then gives that person the administrator role
    before they enroll (a new IT lead) hands the help desk the administrator account: the
    link is valid for a week, and its session counts as verified for portal changes."""
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path)
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    invited = post(desk, "/admin/people/invite", {"email": "lead@example.com", "name": "Lead"})
    assert invited.status_code == 200
    link = _shown_link(invited)
    lead = User.objects.get(username="lead@example.com")
    assert post(admin, f"/admin/people/{lead.pk}/role", {"role": "admin"}).status_code == 303

    taken = Browser()
    options = taken.post_json(f"/enroll/{token_of(link)}/options")
    if options.status_code == 200:
        credential = SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)
        taken.post_json(f"/enroll/{token_of(link)}/result", credential)
    limit = get_policy().passkey_limit
    changed = post(taken, "/admin/policy", {"passkey_limit": str(limit + 1)})
    assert get_policy().passkey_limit == limit, changed.get("Location")
    assert not Passkey.objects.filter(user=lead).exists()


def test_a_help_desk_link_given_a_role_during_its_ceremony_stores_nothing(ada):
    """The role may come between the link's options and its result: the result checks the
    issuer again, with the person's row held."""
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    link = _shown_link(post(desk, f"/admin/people/{ada.user.pk}/recovery"))
    taken = Browser()
    options = taken.post_json(f"/enroll/{token_of(link)}/options")
    assert options.status_code == 200
    assert post(admin, f"/admin/people/{ada.user.pk}/role", {"role": "admin"}).status_code == 303
    credential = SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)
    refused = taken.post_json(f"/enroll/{token_of(link)}/result", credential)
    assert refused.status_code in (400, 404), refused.content[:300]
    assert Passkey.objects.filter(user=ada.user).count() == 1
    assert EnrollmentInvite.objects.get(user=ada.user, purpose="recovery").used_at is None
    assert not taken.is_signed_in()


def test_an_administrators_link_keeps_working_after_its_person_gets_a_role(ada):
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    link = _shown_link(post(admin, f"/admin/people/{ada.user.pk}/recovery"))
    assert post(admin, f"/admin/people/{ada.user.pk}/role", {"role": "helpdesk"}).status_code == 303
    browser = Browser()
    options = browser.post_json(f"/enroll/{token_of(link)}/options")
    assert options.status_code == 200
    credential = SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)
    assert_ok(browser.post_json(f"/enroll/{token_of(link)}/result", credential))
    assert Passkey.objects.filter(user=ada.user).count() == 2


def test_the_links_out_file_neutralises_formula_cells(db, tmp_path, capsys):
    """``=``, ``+`` and ``-`` are valid in an email's local part (``validate_email``), so an
    HR export's row can start a cell of the links file a spreadsheet then opens."""
    source = tmp_path / "people.csv"
    source.write_text("email,name\n=2+5@example.org,X\n-3+4@example.org,Y\n")
    links = tmp_path / "links.csv"
    assert main(["users", "import", str(source), "--no-email", "--links-out", str(links)]) == 0
    cells = [cell for row in csv.reader(io.StringIO(links.read_text())) for cell in row]
    assert len(cells) == 6
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")], cells


# --- What held: the matrix ------------------------------------------------------------------------

# The README's promise (and roles.py's docstring), written out: the areas each role reads and
# changes, and each URL's area by its name.
_EVERY_AREA = {
    "people",
    "roles",
    "audit",
    "readiness",
    "policy",
    "authenticators",
    "groups",
    "apps",
}
_READS = {
    "admin": _EVERY_AREA,
    "desk": {"people", "audit", "readiness", "groups"},
    "auditor": _EVERY_AREA,
    "none": set(),
}
_CHANGES = {"admin": _EVERY_AREA, "desk": {"people"}, "auditor": set(), "none": set()}
# The changes to one person, which the help desk may not make to a member of staff.
_TO_A_PERSON = {
    "remove-passkey",
    "remove-device",
    "reset-fallback",
    "end-sessions",
    "recovery",
    "lock",
    "unlock",
    "deactivate",
    "reactivate",
    "resend-invite",
    "revoke-invite",
}
_AREA = {
    **dict.fromkeys(["home", "people", "invite", "import", "person", *_TO_A_PERSON], "people"),
    "role": "roles",
    **dict.fromkeys(["audit", "audit-csv", "audit-json"], "audit"),
    **dict.fromkeys(["readiness", "readiness-csv"], "readiness"),
    **dict.fromkeys(["policy", "group-rules"], "policy"),
    "authenticators": "authenticators",
    **dict.fromkeys(
        ["groups", "group", "group-add-member", "group-remove-member", "group-remove"], "groups"
    ),
    **dict.fromkeys(
        ["apps", "app", "app-rotate-secret", "app-change", "app-assign", "app-remove"], "apps"
    ),
}
_FORM = {
    "role": "admin",
    "email": "new@example.com",
    "name": "G",
    "reason": "x",
    "redirect_uris": "https://app.example/cb",
    "who": "everyone",
    "change": "deny",
    "aaguid": "00000000-0000-0000-0000-000000000000",
    "passkey_limit": "3",
    "csv_text": "email,name,groups\nz@example.com,Z,G0\n",
    "email_link": "1",
    # Mass assignment: fields no form has.
    "is_active": "0",
    "username": "root@example.com",
    "locked_at": "",
}


def _audit_after(pk: int | None) -> list[tuple[str, int | None, int | None]]:
    rows = AuditEvent.objects.filter(pk__gt=pk or 0).exclude(action="sign_in.succeeded")
    return list(rows.order_by("pk").values_list("action", "actor_id", "subject_id"))


def _check_get(role: str, browser: Browser, path: str) -> list[tuple]:
    """GET changes nothing: 404 where the role may not read the area, else the page (405 for
    a URL that only takes POST, 409 for a reset with nothing to reset)."""
    before = _state()
    got = browser.get(path).status_code
    reads = _AREA[resolve(path).url_name] in _READS[role]
    problems: list[tuple] = [(role, path, "GET changed something")] if _state() != before else []
    if (got != 404) if not reads else (got not in (200, 405, 409)):
        problems.append((role, path, "GET", got))
    return problems


def _check_post(role: str, member: Person, browser: Browser, target: Person, path: str):
    """The POST, rolled back afterwards: refused with nothing changed, or else audited with
    the member of staff as actor and the person as subject."""
    name = resolve(path).url_name
    area = _AREA[name]
    before = _state()
    savepoint = transaction.savepoint()
    last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    status = post(browser, path, _FORM).status_code
    changed = _state() != before
    audited = _audit_after(last)
    made = User.objects.filter(username__in=["new@example.com", "z@example.com"])
    extra_fields_applied = made.exclude(role="", is_active=True).exists()
    transaction.savepoint_rollback(savepoint)

    staff_target = role == "desk" and name in _TO_A_PERSON and target.user.role != ""
    if area not in _READS[role]:
        return [(role, path, "POST", status, changed)] if status != 404 or changed else []
    if area not in _CHANGES[role] or staff_target:
        return [(role, path, "POST", status, changed)] if status != 403 or changed else []
    problems: list[tuple] = []
    if status in (403, 404):
        problems.append((role, path, "POST refused", status))
    if extra_fields_applied:
        problems.append((role, path, "an extra field reached an account"))
    if changed and (not audited or any(actor != member.user.pk for _, actor, _ in audited)):
        problems.append((role, path, "not audited with its actor", audited))
    about_target = f"/people/{target.user.pk}" in path or f"/members/{target.user.pk}/" in path
    if changed and about_target and all(subject != target.user.pk for *_, subject in audited):
        problems.append((role, path, "audited without its subject", audited))
    return problems


def test_every_role_on_every_portal_url_as_the_readme_promises(ada):
    """Role x URL x method x target (someone without a role, an administrator): GET never
    changes anything; a refusal (404 where the role may not read, 403 where it may read but
    not change, 403 for the help desk's change to a member of staff) changes nothing; an
    allowed change is audited with the member of staff as actor and the person as subject,
    and the fields no form has (role, is_active, username) reach no account."""
    admin, admin_browser = staff("root@example.com", Role.ADMINISTRATOR)
    desk, desk_browser = staff("desk@example.com", Role.HELP_DESK)
    auditor, auditor_browser = staff("audit@example.com", Role.AUDITOR)
    outsider = enrolled_person("bob@example.com", "Bob")
    outsider_browser = Browser()
    assert_ok(sign_in(outsider_browser, outsider.authenticator))
    group = do_add_group("G0", Origin.cli())
    app = add_app()
    invites, devices = {}, {}
    for target in (ada, admin):
        do_add_member(group, target.user, Origin.cli())
        invites[target.user.pk] = EnrollmentInvite.objects.create(
            user=target.user, token_hash=f"{target.user.pk:064d}", expires_at="2100-01-01T00:00Z"
        )
        devices[target.user.pk] = Device.objects.create(
            user=target.user,
            public_id=f"{target.user.pk:022d}",
            public_key={},
            key_thumbprint=f"{target.user.pk:064d}",
            name="Phone",
            is_active=True,
        ).public_id
    roles: list[tuple[str, Person, Browser]] = [
        ("admin", admin, admin_browser),
        ("desk", desk, desk_browser),
        ("auditor", auditor, auditor_browser),
        ("none", outsider, outsider_browser),
    ]
    problems = []
    for role, member, browser in roles:
        for target in (ada, admin):
            paths = every_portal_path(
                target.user.pk,
                target.passkey.pk,
                invites[target.user.pk].pk,
                group.pk,
                devices[target.user.pk],
            )
            for each in paths:
                path = each.replace("/admin/apps/1", f"/admin/apps/{app.application.pk}")
                problems += _check_get(role, browser, path)
                problems += _check_post(role, member, browser, target, path)
    assert problems == []


def test_ids_of_someone_else_in_a_persons_urls_are_not_theirs(ada):
    """A passkey or link of an administrator's, under the URL of a person the help desk may
    change, is 404 and stays."""
    admin, _ = staff("root@example.com", Role.ADMINISTRATOR)
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    link = EnrollmentInvite.objects.create(
        user=admin.user, token_hash="a" * 64, expires_at="2100-01-01T00:00Z"
    )
    before = _state()
    remove = f"/admin/people/{ada.user.pk}/passkeys/{admin.passkey.pk}/remove"
    assert desk.get(remove).status_code == 404
    assert post(desk, remove).status_code == 404
    assert post(desk, f"/admin/people/{ada.user.pk}/invites/{link.pk}/revoke").status_code == 404
    assert _state() == before


def test_an_import_neither_sets_a_role_nor_creates_a_group(db):
    """Columns the import does not know (role, is_active) are ignored; a group it names that
    does not exist is not created; the help desk's rows join no group at all."""
    do_add_group("Admins", Origin.cli())
    content = "email,name,groups,role,is_active\nz@example.com,Z,Admins;Nope,admin,0\n"
    for username, role in (
        ("root@example.com", Role.ADMINISTRATOR),
        ("desk@example.com", Role.HELP_DESK),
    ):
        _, browser = staff(username, role)
        savepoint = transaction.savepoint()
        assert post(browser, "/admin/people/import", {"csv_text": content}).status_code == 200
        person = User.objects.get(username="z@example.com")
        assert (person.role, person.is_active) == ("", True)
        assert not Group.objects.filter(name="Nope").exists()
        joined = list(Membership.objects.filter(user=person).values_list("group__name", flat=True))
        assert joined == (["Admins"] if role is Role.ADMINISTRATOR else [])
        transaction.savepoint_rollback(savepoint)


def test_the_audit_csv_neutralises_formulas_from_usernames_and_user_agents(db):
    _, admin = staff("root@example.com", Role.ADMINISTRATOR)
    response = post(
        admin, "/admin/people/invite", {"email": "=2+5@example.com"}, HTTP_USER_AGENT="@SUM(1+1)"
    )
    assert response.status_code in (200, 303)  # the link shown, or said to be emailed
    export = b"".join(admin.get("/admin/audit/export.csv").streaming_content).decode()
    cells = [cell for row in csv.reader(io.StringIO(export)) for cell in row]
    assert "'=2+5@example.com" in cells
    assert "'@SUM(1+1)" in cells
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]


def test_a_step_up_needs_the_members_own_passkey_with_user_verification(ada, clock):
    desk, browser = staff("desk@example.com", Role.HELP_DESK)
    clock.advance(301)
    back = f"/admin/people/{ada.user.pk}"
    for key, extra in (
        (desk.authenticator, {"user_verified": False}),
        (ada.authenticator, {"credential": ada.authenticator.credentials[0]}),
    ):
        options = browser.post_json(f"/settings/verify/options?next={back}")
        credential = key.get(options.json()["publicKey"], ORIGIN, **extra)
        answer = browser.post_json(f"/settings/verify/result?next={back}", credential)
        assert answer.status_code == 400
    response = post(browser, f"/admin/people/{ada.user.pk}/lock", {"reason": "x"})
    assert response["Location"].startswith("/settings/verify?")
    assert User.objects.get(pk=ada.user.pk).locked_at is None
    # And a sign-in without user verification is no sign-in at all.
    assert sign_in(Browser(), desk.authenticator, user_verified=False).status_code == 400
