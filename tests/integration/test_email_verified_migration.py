"""enrollment 0003: people who already used a link keep the ``email_verified`` every ID token
gave them (verified at their first use); the others are unverified until a link emailed to
them is used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.test_role_migration import migrate, restore_schema  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("enrollment", "0002_invite_purpose"), ("accounts", "0004_people_search")]
AFTER = [("enrollment", "0003_email_verified")]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.usefixtures("restore_schema")
def test_people_who_used_a_link_keep_email_verified():
    apps = migrate(BEFORE)
    OldUser = apps.get_model("accounts", "User")
    Invite = apps.get_model("enrollment", "EnrollmentInvite")
    ada = OldUser.objects.create(
        username="ada@example.com", email="ada@example.com", user_handle=b"a" * 32
    )
    grace = OldUser.objects.create(
        username="grace@example.com", email="grace@example.com", user_handle=b"g" * 32
    )
    OldUser.objects.create(username="bob", email="", user_handle=b"b" * 32)
    for user, used_at, token in (
        (ada, T0 + timedelta(days=3), "1"),
        (ada, T0, "2"),
        (grace, None, "3"),
    ):
        Invite.objects.create(
            user=user,
            token_hash=token * 64,
            expires_at=T0 + timedelta(days=7),
            used_at=used_at,
        )

    apps = migrate(AFTER)
    User = apps.get_model("accounts", "User")
    assert dict(User.objects.values_list("username", "email_verified_at")) == {
        "ada@example.com": T0,  # her first use
        "grace@example.com": None,  # her link is unused
        "bob": None,
    }
    assert set(
        apps.get_model("enrollment", "EnrollmentInvite").objects.values_list("sent_to", flat=True)
    ) == {""}
