"""Administrators' changes at the same moment, on real threads: no 500, nothing half-stored.

Found by a concurrency fuzz on PostgreSQL: two invites of one new address (or one CSV imported
twice) both created the person, and the loser hit the username's unique index; a member added
while the group was being removed failed the membership's key to it at COMMIT; an app changed,
given a new secret or reassigned while it was being removed was no longer there to save. Each
client answers as the server does (``raise_request_exception = False``): Django's test client
otherwise reports one thread's exception in every client with a request in flight.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections

import threshold.portal.views as portal_views
from tests.integration.conftest import enrolled_person
from tests.integration.portal_support import post, staff
from tests.integration.test_concurrent_changes import all_at_once
from tests.integration.test_sso import REDIRECT_URI, add_app
from threshold.accounts.models import Role, User
from threshold.enrollment.models import EnrollmentInvite
from threshold.groups.models import Group

pytestmark = pytest.mark.django_db(transaction=True)
ROUNDS = 3
GRACE = "grace@example.com"


def admins(n):
    out = []
    for i in range(n):
        _, browser = staff(f"admin{i}@example.com", Role.ADMINISTRATOR)
        browser.client.raise_request_exception = False
        browser.csrf_token()  # fetched now, not in the race
        out.append(browser)
    return out


def statuses_at_once(calls):
    """The statuses the server sent ``calls``, all released at once (``all_at_once``)."""
    return [answer.status_code for answer in all_at_once(calls)]


def first_pauses_at(monkeypatch, module, name, first, second):
    """``first`` runs until it calls ``module.name``; it waits there while ``second`` runs to
    its end, then goes on. Both status codes."""
    reached, go_on = threading.Event(), threading.Event()
    step = getattr(module, name)

    def hooked(*args, **kwargs):
        if not reached.is_set():
            reached.set()
            go_on.wait(30)
        return step(*args, **kwargs)

    monkeypatch.setattr(module, name, hooked)
    results = [None, None]

    def run(i, call):
        try:
            results[i] = call()
        finally:
            reached.set()
            connections.close_all()

    holder = threading.Thread(target=run, args=(0, first))
    holder.start()
    reached.wait(30)
    other = threading.Thread(target=run, args=(1, second))
    other.start()
    other.join(30)
    go_on.set()
    holder.join(60)
    return [r.status_code for r in results]


def test_two_invites_of_one_new_address_at_once():
    browsers = admins(4)
    statuses = []
    for k in range(ROUNDS):
        email = f"new{k}@example.com"
        statuses += statuses_at_once(
            [lambda b=b, e=email: post(b, "/admin/people/invite", {"email": e}) for b in browsers]
        )
        assert User.objects.filter(username=email).count() == 1
        # One working link: each invite's link stops the one before.
        assert (
            EnrollmentInvite.objects.filter(
                user__username=email, used_at=None, revoked_at=None
            ).count()
            == 1
        )
    assert 500 not in statuses, statuses


def test_one_csv_imported_twice_at_once():
    browsers = admins(2)
    statuses = []
    for k in range(ROUNDS):
        csv = "email,name\n" + "".join(f"p{k}_{j}@example.com,P {j}\n" for j in range(5))
        statuses += statuses_at_once(
            [lambda b=b, c=csv: post(b, "/admin/people/import", {"csv_text": c}) for b in browsers]
        )
    assert 500 not in statuses, statuses


def test_a_member_added_while_the_group_is_removed():
    browsers = admins(4)
    enrolled_person("grace@example.com", "Grace Hopper")
    statuses = []
    for k in range(ROUNDS):
        group = Group.objects.create(name=f"G{k}")
        calls = [
            lambda b=b, g=group.pk: post(b, f"/admin/groups/{g}/members", {"email": GRACE})
            for b in browsers[:-1]
        ]
        calls.append(lambda g=group.pk: post(browsers[-1], f"/admin/groups/{g}/remove"))
        statuses += statuses_at_once(calls)
        assert not Group.objects.filter(name=f"G{k}").exists()
    assert 500 not in statuses, statuses
    assert set(statuses) <= {303, 404}, statuses


APP_FORM = {
    "name": "Wiki renamed",
    "redirect_uris": REDIRECT_URI,
    "post_logout_uris": "",
    "backchannel_logout_uri": "",
    "initiate_login_uri": "",
    "id_token_alg": "RS256",
    "require_consent": "",
}


@pytest.mark.parametrize(
    ("path", "data", "module", "step"),
    [
        ("change", APP_FORM, portal_views, "do_change_app"),
        ("secret", {}, portal_views, "do_rotate_secret"),
        ("assign", {"who": "everyone"}, portal_views, "do_assign_app"),
    ],
)
def test_an_app_changed_while_it_is_removed(monkeypatch, path, data, module, step):
    """The change has read the app (``_access_app``) when the removal commits."""
    first, second = admins(2)
    pk = add_app(name="Wiki").application.pk
    statuses = first_pauses_at(
        monkeypatch,
        module,
        step,
        lambda: post(first, f"/admin/apps/{pk}/{path}", data),
        lambda: post(second, f"/admin/apps/{pk}/remove"),
    )
    assert statuses == [404, 303], statuses
