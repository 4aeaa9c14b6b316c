"""``enrolled_person`` writes a recorded enrollment again only where it would write the same.

conftest's ``enrolled_person`` enrolls for real the first time, into an empty database, and
then writes the recorded rows again (tests/support/recorded.py). These tests hold it to
that: the rows are the real enrollment's, each date moved by as much as the clock; the
person signs in with the passkey each time; and a database that is not empty, a clock
moved away from the wall's, or other settings get a real enrollment.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import connection
from django.db.models import DateTimeField
from django.test.utils import override_settings

from tests.integration.conftest import Browser, assert_ok, enrolled_person, sign_in
from tests.support import recorded
from threshold.accounts.models import User

# A person no other test enrolls: the first enrollment here is the one recorded.
USERNAME = "recorded@example.com"


def _emptied(tables: tuple[recorded.Table, ...]) -> None:
    with connection.cursor() as cursor:
        for table in reversed(tables):
            name = connection.ops.quote_name(table.model._meta.db_table)
            cursor.execute(f"DELETE FROM {name}")  # noqa: S608 - a model's own table
    assert recorded.is_empty()


def _without_dates(tables: tuple[recorded.Table, ...]) -> list[Any]:
    """The rows without their dates: those a replay moves, and the ``auto_now`` ones it
    dates now, as saving does."""
    return [
        (
            table.model,
            [
                {
                    name: value
                    for name, value in row.items()
                    if not isinstance(table.model._meta.get_field(name), DateTimeField)
                }
                for row in table.rows
            ],
        )
        for table in tables
    ]


def _moments(tables: tuple[recorded.Table, ...]) -> list[datetime.datetime]:
    return [
        row[name]
        for table in tables
        for row in table.rows
        for name in sorted(table.moments)
        if row[name] is not None
    ]


def test_a_replay_writes_the_real_enrollments_rows_with_their_dates_moved(db, clock) -> None:
    assert recorded.is_empty()
    real = enrolled_person(USERNAME, "Rec Orded")
    first = recorded.capture()
    assert {table.model for table in first} >= {User}
    _emptied(first)

    clock.advance(30)  # within the minute of the wall's clock a replay needs
    replayed = enrolled_person(USERNAME, "Rec Orded")
    again = recorded.capture()

    # The same keys: a real enrollment would have taken new ones.
    assert replayed.user.pk == real.user.pk
    assert replayed.invite.pk == real.invite.pk
    assert _without_dates(again) == _without_dates(first)
    moved = {b - a for a, b in zip(_moments(first), _moments(again), strict=True)}
    assert moved == {datetime.timedelta(seconds=30)}


def test_the_replayed_person_signs_in_with_a_fresh_copy_of_the_passkey_each_time(db) -> None:
    person = enrolled_person(USERNAME, "Rec Orded")
    assert_ok(sign_in(Browser(), person.authenticator))
    assert_ok(sign_in(Browser(), person.authenticator))
    tables = recorded.capture()
    _emptied(tables)

    for _ in range(2):
        again = enrolled_person(USERNAME, "Rec Orded")
        assert again.user.pk == person.user.pk
        assert again.authenticator is not person.authenticator
        assert again.authenticator.credentials[0].sign_count == 0
        assert_ok(sign_in(Browser(), again.authenticator))
        _emptied(recorded.capture())


def test_a_database_that_is_not_empty_gets_a_real_enrollment(db) -> None:
    first = enrolled_person(USERNAME, "Rec Orded")
    _emptied(recorded.capture())
    enrolled_person("someone.else@example.com", "Some One")

    second = enrolled_person(USERNAME, "Rec Orded")

    assert second.user.pk != first.user.pk
    assert_ok(sign_in(Browser(), second.authenticator))


def test_a_clock_moved_from_the_walls_gets_a_real_enrollment(db, clock) -> None:
    first = enrolled_person(USERNAME, "Rec Orded")
    _emptied(recorded.capture())
    clock.advance(2 * 3600)

    second = enrolled_person(USERNAME, "Rec Orded")

    assert second.user.pk != first.user.pk


def test_other_settings_get_a_real_enrollment_and_the_same_settings_again_a_replay(db) -> None:
    first = enrolled_person(USERNAME, "Rec Orded")
    _emptied(recorded.capture())
    with override_settings(THRESHOLD_SSO_DELIVER_INLINE=True):
        other = enrolled_person(USERNAME, "Rec Orded")
        _emptied(recorded.capture())
    again = enrolled_person(USERNAME, "Rec Orded")

    assert other.user.pk != first.user.pk
    assert again.user.pk == first.user.pk
