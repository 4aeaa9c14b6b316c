"""Groups: `threshold groups ...`, one audited action per change, names unique whatever the case."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import last_event
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.cli.main import main
from threshold.groups.access import group_names_of
from threshold.groups.models import Group, Membership

pytestmark = pytest.mark.django_db

# What a command's audit row says of who ran it (Origin.cli).
OPERATOR = Origin.cli().operator()


@pytest.fixture
def ada(db) -> User:
    return User.objects.create_user("ada@example.com", full_name="Ada Lovelace")


def test_add_a_group_and_members(ada, capsys):
    assert main(["groups", "add", "Engineering"]) == 0
    assert last_event("group.added").detail == {"group": "Engineering", **OPERATOR}
    assert main(["groups", "add-member", "engineering", "ADA@example.com"]) == 0
    event = last_event("group.member_added")
    assert (event.subject_id, event.detail) == (ada.pk, {"group": "Engineering", **OPERATOR})
    assert group_names_of(ada) == ["Engineering"]
    capsys.readouterr()
    assert main(["groups", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "Engineering", "members": ["ada@example.com"]}
    ]
    assert main(["groups"]) == 0
    assert "Engineering  1        ada@example.com" in capsys.readouterr().out


def test_adding_twice_changes_nothing(ada, capsys):
    main(["groups", "add", "Engineering"])
    main(["groups", "add-member", "Engineering", "ada@example.com"])
    assert main(["groups", "add-member", "Engineering", "ada@example.com"]) == 0
    assert "is in Engineering already" in capsys.readouterr().out
    assert Membership.objects.count() == 1
    assert main(["groups", "add", "ENGINEERING"]) == 2
    assert "There is a group called 'ENGINEERING' already." in capsys.readouterr().err
    assert Group.objects.count() == 1


@pytest.mark.parametrize("name", ["", "   ", "<b>ops</b>", "a\u202eb", "x" * 101])
def test_bad_names_are_refused_and_nothing_is_stored(name, capsys):
    assert main(["groups", "add", name]) == 2
    assert "That group name can't be used" in capsys.readouterr().err
    assert not Group.objects.exists()


def test_remove_member_and_group(ada, capsys):
    main(["groups", "add", "Engineering"])
    main(["groups", "add-member", "Engineering", "ada@example.com"])
    assert main(["groups", "remove-member", "Engineering", "ada@example.com"]) == 0
    assert last_event("group.member_removed").subject_id == ada.pk
    assert main(["groups", "remove-member", "Engineering", "ada@example.com"]) == 0
    assert "is not in Engineering" in capsys.readouterr().out
    main(["groups", "add-member", "Engineering", "ada@example.com"])
    assert main(["groups", "remove", "Engineering"]) == 0
    assert last_event("group.removed").detail == {
        "group": "Engineering",
        "members": 1,
        **OPERATOR,
    }
    assert User.objects.filter(pk=ada.pk).exists()
    assert not Membership.objects.exists()


def test_unknown_group_or_person(ada, capsys):
    assert main(["groups", "add-member", "Nobody", "ada@example.com"]) == 2
    assert "There is no group called 'Nobody'." in capsys.readouterr().err
    main(["groups", "add", "Engineering"])
    assert main(["groups", "add-member", "Engineering", "grace@example.com"]) == 2
    assert "there is no account" in capsys.readouterr().err
