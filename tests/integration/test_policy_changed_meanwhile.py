"""Two administrators editing the policy (or one group's rules) at once: the second save never
quietly undoes the first.

A form saves every setting it shows. So each form carries the version of what it was made from,
and the save checks it against what is saved, in the transaction that stores the change (the
policy's row held: ``policies._guarded``). A change made meanwhile, between the page and the
save or during the save itself, refuses the second with 409. Nothing is stored. What was typed
is kept, and the page names the settings that are now saved otherwise.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection

from tests.integration.conftest import enrolled_person
from tests.integration.portal_support import post, staff
from tests.integration.test_concurrent_changes import while_one_holds
from tests.integration.test_revocation_order import the_waiting_connection
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.core.policy import GroupRules, Policy
from threshold.groups.actions import do_add_group, do_set_group_rules
from threshold.groups.models import Group
from threshold.policy import actions as policy_actions
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.portal import policies

OTHER_AAGUID = "cb69481e-8ff7-4039-93ec-0a2729a154a8"
MEANWHILE = "Someone else changed the policy"


def version_on(html: str) -> str:
    found = re.findall(r'name="version"[^>]*value="([0-9a-f]+)"', html)
    assert len(found) == 1, found
    return found[0]


def form_of(html: str) -> dict[str, str]:
    """The policy form's fields as the page fills them (the selects' chosen options)."""
    fields = dict(
        re.findall(r'<input id="f-(\w+)" name="\w+" type="text"[^>]*value="([^"]*)"', html)
    )
    for name, options in re.findall(r'<select id="f-(\w+)".*?>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option(?: value="([^"]*)")? selected>([^<]*)<', options)
        assert chosen, name
        fields[name] = chosen.group(1) or chosen.group(2)
    return fields


@pytest.mark.django_db
def test_a_policy_form_saved_over_a_change_made_meanwhile_is_refused_and_kept(clock):
    _, ada = staff("ada@example.com", Role.ADMINISTRATOR)
    page = ada.get("/admin/policy").content.decode()
    form = {**form_of(page), "version": version_on(page)}
    assert form["passkey_limit"] == str(Policy().passkey_limit)
    # Meanwhile, another administrator (here, the command line) turns the fallback off.
    assert main(["policy", "set", "allow_password_fallback=false"]) == 0

    response = post(ada, "/admin/policy", {**form, "passkey_limit": "5"})

    assert response.status_code == 409
    html = response.content.decode().replace("&#x27;", "'")
    assert MEANWHILE in html
    # Nothing saved: the other change stands, this one is not applied.
    saved = get_policy()
    assert not saved.allow_password_fallback
    assert saved.passkey_limit == Policy().passkey_limit
    assert not AuditEvent.objects.filter(action="policy.changed", actor__username="ada@example.com")
    # What Ada typed is kept; the setting saved otherwise is named, with its saved value.
    again = form_of(html)
    assert again["passkey_limit"] == "5"
    assert again["allow_password_fallback"] == "true"
    assert re.search(r"<code>allow_password_fallback</code></a>: false", html)
    assert "<code>passkey_limit</code></a>" in html  # saved as 20, typed 5
    # The page now carries the saved version: saving it again saves the form as it is.
    assert version_on(html) == policies.version_of(saved.as_json())
    assert post(ada, "/admin/policy", {**again, "version": version_on(html)}).status_code == 303
    assert get_policy().passkey_limit == 5


@pytest.mark.django_db
def test_a_policy_form_with_the_saved_version_is_saved(clock):
    _, ada = staff("ada@example.com", Role.ADMINISTRATOR)
    page = ada.get("/admin/policy").content.decode()
    form = {**form_of(page), "version": version_on(page), "passkey_limit": "7"}
    assert post(ada, "/admin/policy", form).status_code == 303
    assert get_policy().passkey_limit == 7
    # An unchanged policy has the same version, whatever order its document was stored in.
    assert policies.version_of({"a": 1, "b": 2}) == policies.version_of({"b": 2, "a": 1})


@pytest.mark.django_db
def test_the_preview_carries_the_version_it_was_made_from(clock):
    """ "Save anyway" on a preview shown before someone else's change is refused too."""
    _, ada = staff("ada@example.com", Role.ADMINISTRATOR)
    page = ada.get("/admin/policy").content.decode()
    enrolled_person("syn@example.com", "Syn", backup_eligible=True, backup_state=True)
    form = {**form_of(page), "version": version_on(page), "block_synced_passkeys": "true"}
    preview = post(ada, "/admin/policy", form)
    assert preview.status_code == 200  # it would refuse Syn's passkey: shown first
    hidden = dict(
        re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', preview.content.decode())
    )
    assert hidden["version"] == version_on(page)
    do_update_policy(Policy(passkey_limit=9), Origin.cli())

    response = post(ada, "/admin/policy", hidden)

    assert response.status_code == 409
    assert MEANWHILE in response.content.decode()
    assert get_policy() == Policy(passkey_limit=9)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", ["policy", "authenticators", "command line"])
def test_a_change_saved_during_the_save_is_not_undone(monkeypatch, capsys, page):
    """The version matched when the request began; another change commits before this one
    takes the policy's row. On PostgreSQL this one waits for that row, then is refused."""
    _, ada = staff("ada@example.com", Role.ADMINISTRATOR)
    do_update_policy(Policy(), Origin.cli())  # the policy's row exists
    shown = ada.get("/admin/policy").content.decode()
    form = {**form_of(shown), "version": version_on(shown), "passkey_limit": "5"}
    ada_saves = {
        "policy": lambda: post(ada, "/admin/policy", form),
        # Denying an authenticator nobody uses: saved without a preview.
        "authenticators": lambda: post(
            ada, "/admin/authenticators", {"change": "deny", "aaguid": OTHER_AAGUID}
        ),
        "command line": lambda: main(["policy", "set", "passkey_limit=5"]),
    }[page]

    first, second, waiting = while_one_holds(
        monkeypatch,
        policy_actions,
        "record",
        lambda: do_update_policy(Policy(allow_password_fallback=False), Origin.cli()),
        ada_saves,
        meanwhile=the_waiting_connection,
    )

    assert not isinstance(first, BaseException), first
    assert not isinstance(second, BaseException), second
    if page == "command line":
        assert second == 1
        assert "someone else changed the policy" in capsys.readouterr().err
    else:
        assert second.status_code == 409, second.content.decode()[:2000]
    assert get_policy() == Policy(allow_password_fallback=False)
    if connection.vendor == "postgresql":
        assert waiting is not None, "the save did not wait for the change"


@pytest.mark.django_db
def test_the_command_line_refuses_to_save_over_a_change_made_meanwhile(clock):
    # What `threshold policy set` does, with a change saved between its read and its save.
    read = get_policy()
    do_update_policy(Policy(passkey_limit=9), Origin.cli())
    with pytest.raises(policies.ChangedMeanwhile):
        policies.save_policy(Policy(allow_password_fallback=False), Origin.cli(), based_on=read)
    assert get_policy() == Policy(passkey_limit=9)


@pytest.mark.django_db
def test_a_groups_rules_saved_over_a_change_made_meanwhile_are_refused_and_kept(clock):
    _, ada = staff("ada@example.com", Role.ADMINISTRATOR)
    group = do_add_group("Engineering", Origin.cli())
    page = ada.get(f"/admin/groups/{group.pk}").content.decode()
    version = version_on(page)
    do_set_group_rules(
        group, GroupRules("Engineering", aaguid_deny_list=(OTHER_AAGUID,)), Origin.cli()
    )
    form = {
        "block_synced_passkeys": "true",
        "require_trusted_attestation": "false",
        "aaguid_allow_list": "",
        "aaguid_deny_list": "",
        "version": version,
    }

    response = post(ada, f"/admin/groups/{group.pk}/rules", form)

    assert response.status_code == 409
    html = response.content.decode().replace("&#x27;", "'").replace("\u2019", "'")
    assert "Someone else changed Engineering's rules" in html
    assert "aaguid_deny_list" in html
    group.refresh_from_db()
    assert group.rules == {"aaguid_deny_list": [OTHER_AAGUID]}
    # Kept as typed; saving again (the page's version now the saved one's) saves it.
    assert re.search(r'<option value="true" selected>true</option>', html)
    assert version_on(html) == policies.version_of(group.rules)
    again = post(ada, f"/admin/groups/{group.pk}/rules", {**form, "version": version_on(html)})
    assert again.status_code == 303, again.content.decode()[:1000]
    assert Group.objects.get(pk=group.pk).rules == {"block_synced_passkeys": True}


@pytest.mark.django_db
@pytest.mark.parametrize("version", ["", "not-hex", "a\x00b", "f" * 10_000, "\u00e9t\u00e9"])
def test_a_version_that_is_none_the_page_gave_is_refused_as_changed_meanwhile(clock, version):
    """Garbled, empty or huge: no 500, nothing saved, the form back as typed (409)."""
    _, ada = staff("ada@example.com", Role.ADMINISTRATOR)
    group = do_add_group("Engineering", Origin.cli())
    page = ada.get("/admin/policy").content.decode()
    before = get_policy()

    policy = post(ada, "/admin/policy", {**form_of(page), "version": version, "passkey_limit": "5"})
    rules = post(
        ada,
        f"/admin/groups/{group.pk}/rules",
        {"block_synced_passkeys": "true", "version": version},
    )

    assert policy.status_code == 409
    assert MEANWHILE in policy.content.decode()
    assert get_policy() == before
    assert rules.status_code == 409
    group.refresh_from_db()
    assert group.rules == {}
