"""The admin portal's odd inputs found by fuzzing: each is a 4xx or an empty answer, never a 500.

A digit to ``str.isdigit`` that ``int`` refuses ("²"), a date Python parses but cannot move to
UTC or PostgreSQL cannot store, and a NUL in a filter, a search, a username or a group's name
(PostgreSQL refuses a NUL in any text parameter; ``nul_refused_as_postgresql_does`` makes
SQLite refuse it too, so these run the same on both).
"""

from __future__ import annotations

import html

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.integration.portal_support import post, staff
from tests.integration.test_sso import add_app
from tests.support.faults import nul_refused_as_postgresql_does
from threshold.accounts.access import get_user
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.cli.main import main
from threshold.enrollment.actions import do_invite
from threshold.enrollment.bulk import check_row
from threshold.enrollment.models import EnrollmentInvite
from threshold.groups.access import get_group
from threshold.groups.actions import do_add_group
from threshold.groups.models import Membership

pytestmark = pytest.mark.django_db

SUPERSCRIPT_TWO = "\u00b2"  # "²".isdigit() is True; int("²") raises
OUT_OF_RANGE = "must be a date between 1900 and 9998"


@pytest.fixture
def admin():
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    return browser


def fetched(response) -> str:
    """The body, a streamed export's included (its failure would come while streaming)."""
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def test_an_audit_page_cursor_that_is_no_ascii_number_is_the_first_page(admin):
    response = admin.get(f"/admin/audit?before={SUPERSCRIPT_TWO}")
    assert response.status_code == 200
    assert "root@example.com" in response.content.decode()  # the newest events, from the top


@pytest.mark.parametrize(
    "path", ["/admin/audit", "/admin/audit/export.csv", "/admin/audit/export.json"]
)
@pytest.mark.parametrize(
    "query",
    [
        "until=9999-12-31",  # the day after is past datetime's last
        "since=0001-01-01T00:00%2B01:00",  # in UTC, before datetime's first
        "since=9999-12-31T23:59-05:00",  # in UTC, after datetime's last
        "since=1066-10-14",  # before any event, and before 1900
    ],
)
def test_audit_dates_out_of_range_are_the_filters_problem(admin, path, query):
    response = admin.get(f"{path}?{query}")
    assert response.status_code == 400
    assert OUT_OF_RANGE in fetched(response)


@pytest.mark.parametrize("path", ["/admin/audit", "/admin/audit/export.csv"])
def test_an_offset_postgresql_refuses_is_moved_to_utc_first(admin, path):
    # +23:59 is a valid offset to Python, not to PostgreSQL (over 15:59): compared in UTC.
    response = admin.get(f"{path}?since=2026-01-01T00:00%2B23:59")
    assert response.status_code == 200
    assert "root@example.com" in fetched(response)


@pytest.mark.parametrize("name", ["person", "actor", "involving", "reason", "app", "ip"])
@pytest.mark.parametrize("path", ["/admin/audit", "/admin/audit/export.csv"])
def test_a_nul_in_an_audit_filter_is_the_filters_problem(admin, name, path):
    with nul_refused_as_postgresql_does():
        response = admin.get(path, **{"QUERY_STRING": f"{name}=a%00b"})
    assert response.status_code == 400
    assert "The filters cannot hold control characters." in fetched(response)


@pytest.mark.parametrize("name", ["q", "after"])
def test_a_nul_in_a_people_search_finds_no_one(admin, name):
    with nul_refused_as_postgresql_does():
        response = admin.get("/admin/people", **{"QUERY_STRING": f"{name}=r%00"})
    assert response.status_code == 200
    assert "root@example.com" not in response.content.decode()


def test_adding_a_member_by_a_username_with_a_nul_is_no_such_person(admin):
    group = do_add_group("Eng", Origin.cli())
    with nul_refused_as_postgresql_does():
        response = post(
            admin, f"/admin/groups/{group.pk}/members", {"email": "root\x00@example.com"}
        )
    assert response.status_code == 400
    assert not Membership.objects.exists()


@pytest.mark.parametrize("group", [SUPERSCRIPT_TWO, "9" * 40, "0", "-1", "x"])
def test_assigning_an_app_to_a_group_id_that_is_none_is_refused(admin, group):
    app = add_app()
    do_add_group("Eng", Origin.cli())
    before = (app.application.for_everyone, list(app.application.groups.all()))
    response = post(admin, f"/admin/apps/{app.application.pk}/assign", {"group": group})
    assert response.status_code == 400
    assert "Choose groups from the list." in response.content.decode()
    app.application.refresh_from_db()
    assert (app.application.for_everyone, list(app.application.groups.all())) == before


def test_a_group_named_with_a_nul_in_an_import_is_a_group_not_found(admin):
    do_add_group("Eng", Origin.cli())
    csv = b"email,name,groups\nfirst@example.com,First,Eng\nsecond@example.com,Second,Eng\x00x\n"
    with nul_refused_as_postgresql_does():
        response = post(
            admin,
            "/admin/people/import",
            {"csv": SimpleUploadedFile("people.csv", csv, "text/csv")},
        )
    assert response.status_code == 200
    # Both invited (each row is its own transaction); the second's group is named as not found.
    assert (
        User.objects.filter(username__in=["first@example.com", "second@example.com"]).count() == 2
    )
    assert Membership.objects.filter(user__username="first@example.com").count() == 1
    assert not Membership.objects.filter(user__username="second@example.com").exists()


# --- What a lookup finds is what an invite would create or reach (found in review) ---------------

ODD = '"boss\x01"@example.com'  # validate_email takes a quoted local part with a control character


def test_a_username_with_a_control_character_is_found_so_the_staff_check_holds(admin):
    """An administrator with such a username (one stored before invites refused them) is still
    found by every check of who someone is: the help desk cannot get an enrollment link for
    them, as it cannot for any administrator."""
    do_invite(ODD, Origin.cli(), full_name="Boss", is_administrator=True, send_email=False)
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    links_before = EnrollmentInvite.objects.filter(user__username=ODD).count()
    response = post(desk, "/admin/people/invite", {"email": ODD, "name": ""})
    assert "/enroll/" not in html.unescape(response.content.decode())
    assert EnrollmentInvite.objects.filter(user__username=ODD).count() == links_before
    assert get_user(ODD) is not None


def test_an_address_with_a_control_character_is_no_address_to_invite(admin, capsys):
    assert check_row(ODD, "") == f"{ODD!r} is not an email address."
    response = post(admin, "/admin/people/invite", {"email": ODD, "name": ""})
    assert response.status_code == 400
    assert main(["invite", ODD, "--no-email"]) == 2
    assert "is not an email address" in capsys.readouterr().err
    assert not User.objects.filter(username=ODD).exists()


@pytest.mark.parametrize("around", ["\r", "\n", "\t", " "])
def test_a_username_or_group_name_with_a_lines_end_is_found(db, around):
    # A `while read` loop over a file with Windows line endings, say.
    User.objects.create_user("ada@example.com")
    do_add_group("Staff", Origin.cli())
    assert get_user(f"ada@example.com{around}") is not None
    assert get_user(f"{around}ada@example.com") is not None
    assert get_group(f"Staff{around}") is not None
