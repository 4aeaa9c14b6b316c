"""Two revocations for one person at once take turns at the person's row.

Everything that ends a person's sessions or revokes their tokens ("Sign out other sessions",
an administrator's "End sessions", "Sign out of this app", a group removal, a lock, a
recovery) takes the person's row first (``accounts.actions.lock_user``; several people's in
the order of their IDs, ``lock_users``), before any session or token of theirs: rows taken
in other orders let two such changes each hold what the other waited for, and PostgreSQL
undid one as a deadlock (docs/architecture.md, accounts). Here one change holds the person's
row, on a real connection, while the other begins on another: on PostgreSQL the other must
be waiting for that row, having written nothing of theirs yet; on both databases both end,
and everything either should revoke is revoked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from tests.integration.conftest import Person, enrolled_person
from tests.integration.test_concurrent_changes import while_one_holds
from tests.integration.test_sso import signed_in
from tests.integration.test_sso_assignment import finance_app, tokens_for
from threshold.accounts import actions as accounts_actions
from threshold.audit.actions import Origin
from threshold.groups.actions import do_remove_member
from threshold.groups.models import Membership
from threshold.sessions import actions as sessions_actions
from threshold.sessions.actions import do_end_sessions, do_sign_out_other_sessions
from threshold.sessions.models import Session
from threshold.sso import actions as sso_actions
from threshold.sso.actions import do_sign_out_of_app

pytestmark = pytest.mark.django_db(transaction=True)

PERSON_TABLE = "accounts_user"
# What a revocation writes: sessions, tokens and codes.
ITS_ROWS = {
    Session._meta.db_table,
    get_refresh_token_model()._meta.db_table,
    get_access_token_model()._meta.db_table,
    "oauth2_provider_grant",
}


def the_waiting_connection() -> dict[str, set[str]] | None:
    """PostgreSQL: the tables the connection waiting for a lock waits on (its tuple lock)
    and has written to (RowExclusiveLock); None on SQLite, whose wait shows nowhere."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, l.locktype, l.mode FROM pg_locks l"
            " JOIN pg_class c ON c.oid = l.relation"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE a.wait_event_type = 'Lock' AND a.datname = current_database()"
        )
        rows = cursor.fetchall()
    return {
        "waits_on": {table for table, kind, _ in rows if kind == "tuple"},
        "wrote": {table for table, kind, mode in rows if mode == "RowExclusiveLock"},
    }


@pytest.fixture
def ada() -> Person:
    return enrolled_person("ada@example.com", "Ada Lovelace")


def revocations(ada: Person) -> dict[str, Callable[[], Any]]:
    """Ada signed in here (kept) and in two other browsers, one of them signed in to Ledger
    (assigned to her group) with tokens: each revocation, ready to run."""
    here = signed_in(ada)
    ledger = finance_app(ada)
    tokens_for(ada, ledger)  # from another browser, with a session of its own
    signed_in(ada)
    group = Membership.objects.get(user=ada.user).group
    origin = Origin.cli()
    return {
        "sign_out_others": lambda: do_sign_out_other_sessions(ada.user, here.session_key, origin),
        "end_sessions": lambda: do_end_sessions(ada.user, origin, actor=ada.user),
        "sign_out_of_app": lambda: do_sign_out_of_app(ada.user, ledger.application, origin),
        "group_removal": lambda: do_remove_member(group, ada.user, origin),
        "lock": lambda: accounts_actions.do_lock_user(ada.user, origin),
    }


# Where each holds the person's row: the step that took it, in its module.
TAKES_THE_ROW = {
    "sign_out_others": (sessions_actions, "lock_user"),
    "end_sessions": (sessions_actions, "lock_user"),
    "sign_out_of_app": (sso_actions, "lock_user"),
    "group_removal": (sso_actions, "lock_users"),
    "lock": (accounts_actions, "lock_user"),
}

PAIRS = [
    ("group_removal", "sign_out_others"),
    ("sign_out_others", "group_removal"),
    ("end_sessions", "sign_out_others"),
    ("sign_out_others", "sign_out_of_app"),
    ("sign_out_of_app", "end_sessions"),
    ("lock", "sign_out_others"),
    ("sign_out_others", "lock"),
]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_a_revocation_waits_for_the_persons_row_before_any_of_their_rows(
    ada, monkeypatch, first, second
):
    changes = revocations(ada)
    module, step = TAKES_THE_ROW[first]

    one, other, waiting = while_one_holds(
        monkeypatch,
        module,
        step,
        changes[first],
        changes[second],
        meanwhile=the_waiting_connection,
    )

    assert not isinstance(one, BaseException), one
    assert not isinstance(other, BaseException), other
    if connection.vendor == "postgresql":
        assert waiting is not None, f"{second} did not wait for {first}"
        assert waiting["waits_on"] == {PERSON_TABLE}, waiting
        assert not waiting["wrote"] & ITS_ROWS, waiting
    # Whatever either revokes is revoked: the other browsers' sessions and Ledger's tokens.
    assert Session.objects.filter(user=ada.user).count() <= 1
    live = get_refresh_token_model().objects.filter(user=ada.user, revoked__isnull=True)
    assert not live.exists()
    assert not get_access_token_model().objects.filter(user=ada.user).exists()
