"""An app's access ends when the person's assignment to it ends (threshold/sso/actions.py
``withdraw_unassigned``, reached from the groups' actions through ``groups.signals``).

Taken out of the app's group, the group removed, or the app assigned to other groups: at the
change itself the person's tokens and codes of that app are revoked and audited, and the app
is told (back-channel logout); their access token then fails at /userinfo and introspection and
their refresh token at /token. Other people's tokens and the person's other apps' are left
alone, and so is a person another of the app's groups still gives it. /token and /userinfo also
refuse a code or a token whose person is not assigned the app (a change made without the
actions), comparing the person's groups, read with the code or the token, with the app's, which
the process keeps. The tokens come
from the real code flow (test_sso.py), the back-channel logouts go to a real HTTP server on
loopback; nothing is mocked but a process's monotonic clock (appcache.MAX_AGE).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from tests.integration.conftest import Person, enrolled_person
from tests.integration.test_concurrent_changes import until_it_waits
from tests.integration.test_lean_sign_in import TRANSACTION_CONTROL
from tests.integration.test_sso import (
    App,
    LogoutReceiver,
    add_app,
    authorize,
    exchange,
    full_flow,
    refresh,
    signed_in,
    verify_logout_token,
)
from tests.integration.test_sso_introspection import introspect
from tests.integration.test_sso_speed import full_stack, shapes
from threshold.accounts.actions import do_lock_user
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.groups.actions import do_add_group, do_add_member, do_remove_group, do_remove_member
from threshold.groups.models import Membership
from threshold.sso import appcache
from threshold.sso.actions import do_assign_app, do_sign_out_of_app
from threshold.sso.validator import Validator

pytestmark = pytest.mark.django_db

REVOKED = "sso.tokens_revoked"


@dataclass
class Tokens:
    access: str
    refresh: str
    sid: str


def tokens_for(person: Person, app: App) -> Tokens:
    body = full_flow(signed_in(person), app)
    return Tokens(body["access_token"], body["refresh_token"], body["claims"]["sid"])


def userinfo(tokens: Tokens) -> Any:
    return Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens.access}")


def assert_refused_everywhere(app: App, api: App, tokens: Tokens) -> None:
    """The access token fails at /userinfo (as a revoked one does) and is inactive at
    /introspect; the refresh token fails at /token; neither is live in the database."""
    refused = userinfo(tokens)
    assert refused.status_code == 401, refused.content
    assert refused.json()["error"] == "invalid_token"
    assert refused["Content-Type"].startswith("application/json")
    assert introspect(api, {"token": tokens.access}).json() == {"active": False}
    assert refresh(app, tokens.refresh).status_code == 400
    assert not get_access_token_model().objects.filter(token_checksum=checksum(tokens.access))
    assert (
        get_refresh_token_model()
        .objects.filter(token_checksum=checksum(tokens.refresh), revoked__isnull=True)
        .count()
        == 0
    )


def assert_still_live(app: App, api: App, tokens: Tokens) -> None:
    assert userinfo(tokens).status_code == 200
    assert introspect(api, {"token": tokens.access}).json()["active"] is True
    assert refresh(app, tokens.refresh).status_code == 200


def checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def people(db) -> tuple[Person, Person]:
    return (
        enrolled_person("ada@example.com", "Ada Lovelace"),
        enrolled_person("grace@example.com", "Grace Hopper"),
    )


@pytest.fixture
def api(db) -> App:
    """A company's API that introspects the apps' access tokens."""
    return add_app(name="API")


def finance_app(*members: Person, **kwargs: Any) -> App:
    """An app assigned to the group Finance, whose members are ``members``."""
    group = do_add_group("Finance", Origin.cli())
    for person in members:
        do_add_member(group, person.user, Origin.cli())
    app = add_app(name="Ledger", **kwargs)
    do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])
    return app


def revocations(person: Person) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=REVOKED, subject=person.user).order_by("id"))


def test_taking_a_person_out_of_the_apps_group_ends_their_access_at_once(people, api):
    ada, grace = people
    ledger = finance_app(ada, grace)
    wiki = add_app(name="Wiki")  # everyone's
    ada_ledger, grace_ledger = tokens_for(ada, ledger), tokens_for(grace, ledger)
    ada_wiki = tokens_for(ada, wiki)
    admin = grace.user

    group = Membership.objects.get(user=ada.user).group
    assert do_remove_member(group, ada.user, Origin.cli(), actor=admin)

    [event] = revocations(ada)
    assert (event.reason, event.actor, event.via) == ("removed_from_group", admin, "cli")
    # The access token and the refresh token of the one sign-in.
    assert event.detail == {
        "app": ledger.client_id,
        "tokens": 2,
        "group": "Finance",
        **Origin.cli().operator(),
    }
    assert_refused_everywhere(ledger, api, ada_ledger)
    # Another person of the group, and the person's other app: untouched.
    assert_still_live(ledger, api, grace_ledger)
    assert_still_live(wiki, api, ada_wiki)
    assert revocations(grace) == []


def test_removing_the_group_ends_every_members_access(people, api):
    ada, grace = people
    ledger = finance_app(ada, grace)
    wiki = add_app(name="Wiki")
    ada_ledger, grace_ledger = tokens_for(ada, ledger), tokens_for(grace, ledger)
    ada_wiki = tokens_for(ada, wiki)

    group = Membership.objects.filter(user=ada.user).get().group
    assert do_remove_group(group, Origin.cli()) == 2

    for person, tokens in ((ada, ada_ledger), (grace, grace_ledger)):
        [event] = revocations(person)
        assert event.reason == "group_removed"
        assert event.detail == {
            "app": ledger.client_id,
            "tokens": 2,
            "group": "Finance",
            **Origin.cli().operator(),
        }
        assert_refused_everywhere(ledger, api, tokens)
    assert_still_live(wiki, api, ada_wiki)


def test_assigning_the_app_to_other_groups_ends_the_access_of_those_outside_them(people, api):
    ada, grace = people
    ledger = finance_app(ada, grace)
    audit = do_add_group("Audit", Origin.cli())
    do_add_member(audit, grace.user, Origin.cli())
    other = add_app(name="Payroll")
    do_assign_app(other.application, Origin.cli(), everyone=False, group_names=["Finance"])
    ada_ledger, grace_ledger = tokens_for(ada, ledger), tokens_for(grace, ledger)
    ada_other = tokens_for(ada, other)

    do_assign_app(ledger.application, Origin.cli(), everyone=False, group_names=["Audit"])

    [event] = revocations(ada)
    assert event.reason == "app_reassigned"
    assert event.detail == {"app": ledger.client_id, "tokens": 2, **Origin.cli().operator()}
    assert_refused_everywhere(ledger, api, ada_ledger)
    # Grace is in Audit; Ada's other app of the same group is not this one.
    assert_still_live(ledger, api, grace_ledger)
    assert_still_live(other, api, ada_other)
    # Back to everyone: nobody loses anything.
    do_assign_app(ledger.application, Origin.cli(), everyone=True)
    assert len(revocations(ada)) == 1
    assert revocations(grace) == []


def test_a_person_still_in_another_of_the_apps_groups_keeps_access(people, api):
    ada, _grace = people
    ledger = finance_app(ada)
    audit = do_add_group("Audit", Origin.cli())
    do_add_member(audit, ada.user, Origin.cli())
    do_assign_app(
        ledger.application, Origin.cli(), everyone=False, group_names=["Finance", "Audit"]
    )
    tokens = tokens_for(ada, ledger)

    finance = Membership.objects.get(user=ada.user, group__name="Finance").group
    assert do_remove_member(finance, ada.user, Origin.cli())
    do_assign_app(ledger.application, Origin.cli(), everyone=False, group_names=["Audit"])

    assert revocations(ada) == []
    assert_still_live(ledger, api, tokens)
    # Once Audit goes too, she is outside every group of the app.
    tokens = tokens_for(ada, ledger)
    do_remove_group(audit, Origin.cli())
    [event] = revocations(ada)
    assert (event.reason, event.detail["group"]) == ("group_removed", "Audit")
    assert_refused_everywhere(ledger, api, tokens)


def test_a_code_issued_before_the_change_cannot_be_exchanged_after_it(people):
    ada, _grace = people
    ledger = finance_app(ada)
    auth = authorize(signed_in(ada), ledger)
    assert "code" in auth.params, auth.location

    group = Membership.objects.get(user=ada.user).group
    do_remove_member(group, ada.user, Origin.cli())

    assert not get_grant_model().objects.exists()
    refused = exchange(ledger, auth.params["code"], auth.verifier)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert not get_access_token_model().objects.exists()


@pytest.mark.parametrize("stack", ["lean", "full"])
def test_a_code_whose_person_is_no_longer_assigned_is_refused_at_exchange(people, stack):
    """A membership ended without the groups' actions (its codes not deleted, as for a code
    issued while the change was being made): /token compares the person's groups, read with
    the code in its one SELECT, with the app's (kept per process), and answers invalid_grant
    with nothing issued; the audit log says why."""
    ada, grace = people
    ledger = finance_app(ada, grace)
    with full_stack() if stack == "full" else contextlib.nullcontext():
        grace_auth = authorize(signed_in(grace), ledger)
        with CaptureQueriesContext(connection) as queries:
            granted = exchange(ledger, grace_auth.params["code"], grace_auth.verifier)
        assert granted.status_code == 200, granted.content
        # The app's group names, read once and kept; no statement of the check's own. The
        # session the code was given in (live_session), then the tokens' transaction: the
        # app's row held (validator.hold_app), the code used up.
        assert shapes(queries)[:5] == [
            "SELECT sso_appsignin",
            "SELECT groups_group",
            "SELECT web_session",
            "SELECT sso_application",
            "DELETE oauth2_provider_grant",
        ]
        auth = authorize(signed_in(ada), ledger)
        assert "code" in auth.params, auth.location
        Membership.objects.filter(user=ada.user).delete()  # no signal: the code stays

        with CaptureQueriesContext(connection) as queries:
            refused = exchange(ledger, auth.params["code"], auth.verifier)
        assert refused.status_code == 400
        assert refused.json() == {"error": "invalid_grant"}
        assert refused["Content-Type"].startswith("application/json")
        assert shapes(queries) == ["SELECT sso_appsignin", "INSERT audit_auditevent"]
    assert not get_access_token_model().objects.filter(user=ada.user).exists()
    assert not get_refresh_token_model().objects.filter(user=ada.user).exists()
    event = AuditEvent.objects.filter(action="sso.token_refused").latest("id")
    assert (event.reason, event.subject) == ("not_assigned", ada.user)
    assert event.detail == {"app": ledger.client_id, "grant_type": "authorization_code"}


@pytest.mark.parametrize("change", ["removed_from_group", "signed_out_of_app", "locked"])
def test_a_refresh_token_revoked_after_the_refresh_read_it_gives_nothing(
    people, monkeypatch, change
):
    """The change commits after the refresh read its refresh token and the assignment
    (validate_refresh_token) and before it writes the new tokens: the change revokes what
    it finds, and the refresh, finding its token revoked when it locks it in its own
    transaction, writes nothing (before, DOT's rotation wrote live tokens: it never asks
    again). The client reads invalid_grant; the audit log, as for a revoked token."""
    ada, _grace = people
    ledger = finance_app(ada)
    tokens = tokens_for(ada, ledger)
    group = Membership.objects.get(user=ada.user).group
    changes = {
        "removed_from_group": lambda: do_remove_member(group, ada.user, Origin.cli()),
        "signed_out_of_app": lambda: do_sign_out_of_app(ada.user, ledger.application, Origin.cli()),
        "locked": lambda: do_lock_user(ada.user, Origin.cli()),
    }
    save = Validator.save_bearer_token

    def change_first(self: Validator, *args: Any, **kwargs: Any) -> Any:
        changes[change]()
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Validator, "save_bearer_token", change_first)
    refused = refresh(ledger, tokens.refresh)
    assert refused.status_code == 400, refused.content
    assert refused.json() == {"error": "invalid_grant"}
    assert_nothing_live(ada)
    event = AuditEvent.objects.filter(action="sso.token_refused").latest("id")
    assert (event.reason, event.subject) == ("refresh_token_revoked", ada.user)
    assert event.detail == {"app": ledger.client_id, "grant_type": "refresh_token"}
    assert not AuditEvent.objects.filter(
        action="sso.token_issued", detail__grant_type="refresh_token"
    )


def test_a_refresh_locks_its_refresh_token_first_in_one_statement(people):
    """The lock, and the question "still live?", are one SELECT, the first of the
    transaction that writes the new tokens after the app's row is held (the lock order of
    sso.validator.lock_apps: an app removed meanwhile is refused): 18 statements for a
    group-assigned app, 19 with the check that the session it came from is still signed in,
    20 with the check that the passkey it signed in with is still allowed (16 before the lock;
    18 when the assignment was read again there, locked, which this replaced; 17 before the
    app's row was held)."""
    ada, _grace = people
    ledger = finance_app(ada)
    tokens = tokens_for(ada, ledger)
    with CaptureQueriesContext(connection) as queries:
        assert refresh(ledger, tokens.refresh).status_code == 200
    assert shapes(queries) == [
        # validate_refresh_token: the token, its person and app, the sign-in, the assignment.
        "SELECT oauth2_provider_refreshtoken",
        "SELECT accounts_user",
        "SELECT sso_application",
        "SELECT sso_appsignin",
        "SELECT sso_application_groups",
        "SELECT web_session",  # its session still signed in (no offline_access)
        "SELECT passkeys_passkey",  # ... and its passkey still allowed (passkey_standing)
        "SELECT groups_group",  # the ID token's groups claim
        # save_bearer_token's transaction: the app's row, the lock, then DOT's rotation.
        "SELECT sso_application",
        "SELECT oauth2_provider_refreshtoken",
        "SELECT oauth2_provider_refreshtoken",
        "SELECT oauth2_provider_accesstoken",
        "SELECT oauth2_provider_refreshtoken",
        "SELECT oauth2_provider_accesstoken",
        "UPDATE oauth2_provider_refreshtoken",
        "DELETE oauth2_provider_accesstoken",
        "UPDATE oauth2_provider_refreshtoken",
        "INSERT oauth2_provider_accesstoken",
        "INSERT oauth2_provider_refreshtoken",
        "INSERT audit_auditevent",
    ]
    statements = [query["sql"] for query in queries.captured_queries]
    opened = next(
        at for at, sql in enumerate(statements) if sql.upper().startswith(TRANSACTION_CONTROL)
    )
    held, lock = statements[opened + 1 : opened + 3]
    assert held.startswith('SELECT 1 FROM "sso_application"'), held
    assert held.endswith(" FOR KEY SHARE") == (connection.vendor == "postgresql")
    assert lock.startswith('SELECT 1 FROM "oauth2_provider_refreshtoken"'), lock
    assert lock.endswith(" FOR UPDATE") == (connection.vendor == "postgresql")


def a_change(change: str, person: Person, app: App) -> Callable[[], Any]:
    """One of the changes that end a person's access to an app, as a function to run later."""
    if change == "locked":
        return lambda: do_lock_user(person.user, Origin.cli())
    group = Membership.objects.get(user=person.user).group
    return lambda: do_remove_member(group, person.user, Origin.cli())


def assert_the_change_is_done(change: str, person: Person) -> None:
    person.user.refresh_from_db()
    if change == "locked":
        assert person.user.locked_at is not None
        assert AuditEvent.objects.filter(action="user.locked", subject=person.user).exists()
    else:
        assert not Membership.objects.filter(user=person.user).exists()


CHANGES = ["removed_from_group", "locked"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", CHANGES)
def test_a_change_made_while_a_refresh_writes_its_tokens_revokes_them(people, change):
    """The refresh has locked its refresh token in its transaction and is about to write the
    new tokens when the change begins: the change waits for that lock (PostgreSQL; SQLite:
    for the refresh's IMMEDIATE transaction), then finds the new tokens and revokes them.
    Without the wait it would commit at once, having found only the old ones, and the
    refresh would then write live tokens. A lock holds the person's row while it waits,
    which the new tokens' foreign keys need too: no deadlock (its row lock leaves their
    key alone), so neither the lock nor the refresh is undone."""
    ada, _grace = people
    ledger = finance_app(ada)
    tokens = tokens_for(ada, ledger)

    answer = while_writing_tokens(
        lambda: refresh(ledger, tokens.refresh), a_change(change, ada, ledger)
    )
    assert answer.status_code == 200, answer.content  # answered before the change
    assert_the_change_is_done(change, ada)
    assert_nothing_live(ada)
    [event] = revocations(ada)
    assert event.detail["tokens"] == 2  # the refresh's new access and refresh tokens


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", CHANGES)
def test_a_change_made_while_a_code_is_exchanged_revokes_what_it_gave(people, change):
    """The exchange has deleted its code (its first statement) and is about to write the
    tokens when the change begins: the change deletes the person's codes of the app first,
    so it waits for that row (PostgreSQL), then finds the new tokens and revokes them. Read
    before the codes, they were missed: the change revoked nothing and the tokens stayed
    live."""
    ada, _grace = people
    ledger = finance_app(ada)
    auth = authorize(signed_in(ada), ledger)

    answer = while_writing_tokens(
        lambda: exchange(ledger, auth.params["code"], auth.verifier), a_change(change, ada, ledger)
    )
    assert answer.status_code == 200, answer.content  # answered before the change
    assert_the_change_is_done(change, ada)
    assert_nothing_live(ada)
    [event] = revocations(ada)
    assert event.detail["tokens"] == 2


def while_writing_tokens(write: Callable[[], Any], change: Callable[[], Any]) -> Any:
    """Real connections, one thread each: ``write`` (a request to /token) runs until it is
    about to INSERT its access token, in its transaction; then ``change`` begins, and
    ``write`` goes on once ``change`` waits for a lock (PostgreSQL), is done (as it is when
    nothing makes it wait), or half a second has passed (SQLite's wait shows nowhere).
    Returns ``write``'s answer."""
    writing, go_on = threading.Event(), threading.Event()
    answers: list[Any] = []

    def pause_before_the_tokens(execute: Any, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT") and "oauth2_provider_accesstoken" in sql:
            writing.set()
            go_on.wait(timeout=30)
        return execute(sql, *args)

    def writing_tokens() -> None:
        try:
            with connection.execute_wrapper(pause_before_the_tokens):
                answers.append(write())
        finally:
            writing.set()
            connections.close_all()

    def changing() -> None:
        try:
            change()
        finally:
            connections.close_all()

    writer = threading.Thread(target=writing_tokens)
    writer.start()
    assert writing.wait(timeout=30)
    changer = threading.Thread(target=changing)
    changer.start()
    until_it_waits(changer)
    go_on.set()
    writer.join(timeout=30)
    changer.join(timeout=30)
    [answer] = answers
    return answer


def assert_nothing_live(person: Person) -> None:
    assert not get_access_token_model().objects.filter(user=person.user).exists()
    assert (
        not get_refresh_token_model()
        .objects.filter(user=person.user, revoked__isnull=True)
        .exists()
    )


def test_the_app_is_told_of_each_session_the_person_signed_in_to_it_from(
    people, receiver, django_capture_on_commit_callbacks
):
    ada, grace = people
    ledger = finance_app(ada, grace, backchannel_logout_uri=receiver.url)
    first, second = tokens_for(ada, ledger), tokens_for(ada, ledger)
    tokens_for(grace, ledger)
    assert first.sid != second.sid

    group = Membership.objects.filter(user=ada.user).get().group
    sessions = ada.user.sessions.count()
    with django_capture_on_commit_callbacks(execute=True):
        do_remove_member(group, ada.user, Origin.cli())

    told = sorted(verify_logout_token(token, ledger)["sid"] for token in receiver.received)
    assert told == sorted([first.sid, second.sid])
    sent = AuditEvent.objects.filter(action="sso.backchannel_logout_sent")
    assert set(sent.values_list("reason", flat=True)) == {"removed_from_group"}
    # Her Threshold sessions go on.
    assert ada.user.sessions.count() == sessions


def test_the_command_line_ends_the_access_and_tells_the_app_before_it_exits(
    people, django_capture_on_commit_callbacks
):
    ada, _grace = people
    server = LogoutReceiver()  # no THRESHOLD_SSO_DELIVER_INLINE: the command decides
    try:
        ledger = finance_app(ada, backchannel_logout_uri=server.url)
        tokens = tokens_for(ada, ledger)
        with django_capture_on_commit_callbacks(execute=True):
            assert main(["groups", "remove-member", "Finance", "ada@example.com"]) == 0
        assert verify_logout_token(server.received[0], ledger)["sid"] == tokens.sid
    finally:
        server.close()
    assert refresh(ledger, tokens.refresh).status_code == 400
    [event] = revocations(ada)
    assert (event.reason, event.via) == ("removed_from_group", "cli")
    sent = AuditEvent.objects.get(action="sso.backchannel_logout_sent")
    assert (sent.reason, sent.via) == ("removed_from_group", "cli")


# --- /userinfo, in defence in depth -------------------------------------------------------------


@pytest.mark.parametrize("stack", ["lean", "full"])
def test_userinfo_refuses_a_person_no_longer_assigned_the_app_in_the_same_select(
    people, api, stack
):
    """A membership ended without the groups' actions (a change they did not make: no token
    was revoked): /userinfo compares the person's groups, read with the token in its one
    SELECT, with the app's, which the process keeps (threshold/sso/appcache.py), and refuses
    the token as a revoked one, with the reason in the audit log."""
    ada, grace = people
    ledger = finance_app(ada, grace)
    ada_tokens, grace_tokens = tokens_for(ada, ledger), tokens_for(grace, ledger)
    with full_stack() if stack == "full" else contextlib.nullcontext():
        with CaptureQueriesContext(connection) as queries:
            assert userinfo(ada_tokens).status_code == 200
        # The app's group names: read at the code's exchange (tokens_for) and kept.
        assert shapes(queries) == ["SELECT oauth2_provider_accesstoken"]

        Membership.objects.filter(user=ada.user).delete()  # no signal: nothing revoked
        with CaptureQueriesContext(connection) as queries:
            refused = userinfo(ada_tokens)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in refused["WWW-Authenticate"]
        assert shapes(queries) == ["SELECT oauth2_provider_accesstoken", "INSERT audit_auditevent"]
        assert userinfo(grace_tokens).status_code == 200
    event = AuditEvent.objects.filter(action="sso.token_refused").latest("id")
    assert (event.reason, event.subject) == ("not_assigned", ada.user)
    assert event.detail == {"app": ledger.client_id, "endpoint": "userinfo"}
    # As introspection and a refresh say.
    assert introspect(api, {"token": ada_tokens.access}).json() == {"active": False}
    assert refresh(ledger, ada_tokens.refresh).status_code == 400


def test_a_revoked_and_an_unassigned_token_read_alike_at_userinfo(people):
    ada, _grace = people
    ledger = finance_app(ada)
    unassigned, revoked = tokens_for(ada, ledger), tokens_for(ada, ledger)
    Membership.objects.filter(user=ada.user).delete()
    get_access_token_model().objects.filter(token_checksum=checksum(revoked.access)).delete()
    first, second = userinfo(unassigned), userinfo(revoked)
    assert (first.status_code, first.json()) == (second.status_code, second.json())
    assert first["WWW-Authenticate"] == second["WWW-Authenticate"]


def test_a_removed_groups_name_given_to_a_new_group_gives_no_access(people):
    """The app's group names a process keeps are forgotten when a group is removed (its
    assignments go by cascade, with no signal of their own): a new group of the same name is
    not the app's."""
    ada, _grace = people
    ledger = finance_app(ada)
    tokens = tokens_for(ada, ledger)
    assert userinfo(tokens).status_code == 200  # the app's group names kept
    finance = Membership.objects.get(user=ada.user).group
    finance.delete()  # not do_remove_group: nothing revoked
    Membership.objects.create(group=do_add_group("Finance", Origin.cli()), user=ada.user)
    assert userinfo(tokens).status_code == 401
    assert AuditEvent.objects.filter(action="sso.token_refused", reason="not_assigned").exists()


def test_an_assignment_another_server_changed_is_seen_within_max_age(people, monkeypatch):
    """Another server's change reaches this process's kept group names by ``appcache.MAX_AGE``
    (no signal here, no stamp), as its kept apps do."""
    ada, _grace = people
    ledger = finance_app(ada)
    tokens = tokens_for(ada, ledger)
    assert userinfo(tokens).status_code == 200
    ledger.application.groups.through.objects.filter(application=ledger.application).delete()
    assert userinfo(tokens).status_code == 200  # kept: within MAX_AGE
    later = time.monotonic() + appcache.MAX_AGE + 1
    monkeypatch.setattr(appcache.time, "monotonic", lambda: later)
    assert userinfo(tokens).status_code == 401
