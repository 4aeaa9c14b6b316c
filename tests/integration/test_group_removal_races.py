"""A group removed while an app is assigned to it or its rules are saved, on SQLite and on
PostgreSQL: whichever holds the group's row first, the other waits for it, and neither is a 500.

The review's own cases (the assignment or the save held first) are in test_race_review.py;
these are the removal held first, and the actions called on a group removed before.
"""

from __future__ import annotations

import pytest

from tests.integration.test_race_review import administrators, after_step, form, one_held, status
from tests.integration.test_sso import add_app
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.policy import GroupRules
from threshold.groups import actions as groups_actions
from threshold.groups.actions import do_add_group, do_set_group_rules
from threshold.groups.models import Group
from threshold.sso.actions import AppError, do_assign_app

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_app_assigned_to_a_group_the_removal_holds_is_refused_in_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The removal holds Finance's row (held just after its audit row) when the assignment
    to Finance begins: the assignment waits for it, then finds no Finance: 400, in the
    form's words, and the app stays as it was (everyone)."""
    assigning, removing = administrators(2)
    app = add_app(name="Ledger")
    finance = do_add_group("Finance", Origin.cli())

    removed, assigned = one_held(
        form(removing, f"/admin/groups/{finance.pk}/remove"),
        form(assigning, f"/admin/apps/{app.application.pk}/assign", who="groups",
             group=str(finance.pk)),
        after_step(monkeypatch, groups_actions, "record"),
    )  # fmt: skip

    assert status(removed) == 303, removed
    assert status(assigned) == 400, assigned
    assert "Choose" in assigned.content.decode()
    assert not Group.objects.exists()
    app.application.refresh_from_db()
    assert app.application.for_everyone
    assert not app.application.groups.exists()
    assert not AuditEvent.objects.filter(action="app.assigned").exists()


def test_a_groups_rules_saved_while_the_removal_holds_it_are_a_404(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The removal holds Finance's row when its rules are saved: the save waits for it, then
    finds no Finance: the portal's 404 for a group removed, nothing saved or audited."""
    saving, removing = administrators(2)
    finance = do_add_group("Finance", Origin.cli())

    removed, saved = one_held(
        form(removing, f"/admin/groups/{finance.pk}/remove"),
        form(saving, f"/admin/groups/{finance.pk}/rules", block_synced_passkeys="true", seen="1"),
        after_step(monkeypatch, groups_actions, "record"),
    )

    assert status(removed) == 303, removed
    assert status(saved) == 404, saved
    assert not Group.objects.exists()
    assert not AuditEvent.objects.filter(action="group.rules_changed").exists()


def test_a_groups_rules_saved_after_it_was_removed_are_group_does_not_exist() -> None:
    """Called with a group read before its removal (the command line, a test): the group's
    DoesNotExist, which the portal answers 404, not a save that matched no row."""
    finance = do_add_group("Finance", Origin.cli())
    Group.objects.filter(pk=finance.pk).delete()
    with pytest.raises(Group.DoesNotExist):
        do_set_group_rules(
            finance, GroupRules(finance.name, block_synced_passkeys=True), Origin.cli()
        )
    assert not AuditEvent.objects.filter(action="group.rules_changed").exists()


def test_the_rules_saved_compare_with_what_is_stored_not_what_was_read() -> None:
    """The group's rules as stored when the save holds its row are the audit row's
    ``before``, and the rules unchanged since are no change, whatever the object held."""
    finance = do_add_group("Finance", Origin.cli())
    stale = Group.objects.get(pk=finance.pk)
    rules = GroupRules(finance.name, block_synced_passkeys=True)
    assert do_set_group_rules(finance, rules, Origin.cli())
    assert not do_set_group_rules(stale, rules, Origin.cli())
    assert AuditEvent.objects.filter(action="group.rules_changed").count() == 1


def test_an_app_assigned_to_a_group_removed_before_is_an_app_error() -> None:
    """Assigned by name (the command line): a group gone is named, on ``field`` "group"."""
    app = add_app(name="Ledger")
    do_add_group("Finance", Origin.cli()).delete()
    with pytest.raises(AppError, match="There is no group called 'Finance'") as refused:
        do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])
    assert refused.value.field == "group"
