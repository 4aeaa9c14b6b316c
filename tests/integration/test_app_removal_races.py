"""An app removed while people use it, on SQLite and on PostgreSQL: never a 500.

The lock order (``threshold.sso.validator.lock_apps``): an app's row before any row that names
it. Its removal takes the row FOR UPDATE first; a code's exchange, a refresh, a revocation, a
back-channel logout and a group's removal take it FOR KEY SHARE first (a code /authorize
writes meets it at COMMIT, its key's check). Whichever comes second waits for the other: a
removal deletes what was written before it, and what comes after it finds no app. The
review's own case (a refresh landing after the removal read what goes) is in
test_race_review.py; these are the other writers, and the orders in which each holds first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from tests.integration.conftest import enrolled_person
from tests.integration.test_first_party_apps import (  # android_app: its fixture, used here
    APP_ORIGIN,
    android_app,  # noqa: F401
    challenge,
    company_app,
    finish,
)
from tests.integration.test_race_review import (
    administrators,
    after_step,
    at_first_delete,
    form,
    one_held,
    signed_in_tab,
    status,
)
from tests.integration.test_sso import (
    LogoutReceiver,
    add_app,
    authorize,
    exchange,
    full_flow,
    refresh,
    signed_in,
)
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group
from threshold.sso import actions as sso_actions
from threshold.sso import validator
from threshold.sso.actions import do_assign_app, do_remove_app
from threshold.sso.models import Application, AppSignIn, LogoutDelivery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    server = LogoutReceiver()
    yield server
    server.close()


def nothing_of(application: Application) -> None:
    """The app is gone, and nothing that named it stayed behind."""
    assert not Application.objects.filter(pk=application.pk).exists()
    for model in (get_grant_model(), get_access_token_model(), get_refresh_token_model()):
        assert not model.objects.filter(application_id=application.pk).exists(), model
    assert not AppSignIn.objects.filter(application_id=application.pk).exists()
    assert not LogoutDelivery.objects.filter(application_id=application.pk).exists()


def test_a_code_exchanged_while_its_app_is_removed_is_refused_as_invalid_client() -> None:
    """The exchange lands after the removal read what goes: it waits for the removal (the
    app's row), then finds no app. Not a replayed code (its grant went with the app)."""
    [admin] = administrators(1)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    app = add_app()
    auth = authorize(signed_in(ada), app)
    assert auth.response.status_code == 302, auth.response.content[:300]

    removal, exchanged = one_held(
        form(admin, f"/admin/apps/{app.application.pk}/remove"),
        lambda: exchange(app, auth.params["code"], auth.verifier),
        at_first_delete,
    )

    assert status(removal) == 303, removal
    assert status(exchanged) == 401, exchanged
    assert exchanged.json()["error"] == "invalid_client"
    nothing_of(app.application)
    refused = AuditEvent.objects.filter(action="sso.token_refused")
    assert list(refused.values_list("reason", flat=True)) == ["app_removed"]


def test_a_refresh_that_holds_the_app_first_has_its_tokens_removed_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other order: the refresh holds the app's row when the removal begins. The removal
    waits for it to commit, then removes the new tokens with the app."""
    [admin] = administrators(1)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    app = add_app()
    refresh_token = full_flow(signed_in(ada), app)["refresh_token"]

    refreshed, removal = one_held(
        lambda: refresh(app, refresh_token),
        form(admin, f"/admin/apps/{app.application.pk}/remove"),
        after_step(monkeypatch, validator, "hold_app"),
    )

    assert status(refreshed) == 200, refreshed
    assert status(removal) == 303, removal
    nothing_of(app.application)


def test_an_authorization_while_its_app_is_removed_is_a_page_not_a_500() -> None:
    """/authorize writes its code holding nothing of the app: the code's key to the app,
    checked at COMMIT, waits for the removal and then fails, which the view answers as the
    app's link no longer working (what it answers for an app it no longer finds)."""
    [admin] = administrators(1)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    app = add_app()
    browser = signed_in_tab(ada)

    removal, authorized = one_held(
        form(admin, f"/admin/apps/{app.application.pk}/remove"),
        lambda: authorize(browser, app).response,
        at_first_delete,
    )

    assert status(removal) == 303, removal
    assert status(authorized) == 400, authorized
    assert not authorized.has_header("Location")
    nothing_of(app.application)


@pytest.mark.usefixtures("android_app")
def test_a_first_party_sign_in_while_its_app_is_removed_is_invalid_client() -> None:
    """A first-party app's /authorize-challenge writes its code as /authorize does, holding
    nothing of the app: its COMMIT, waiting for the removal, then fails on the code's key,
    which it answers as for an app removed (401 invalid_client), the sign-in undone."""
    [admin] = administrators(1)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    app = company_app().application
    asked = challenge(app.client_id)
    credential = ada.authenticator.get(asked.options, APP_ORIGIN)

    removal, finished = one_held(
        form(admin, f"/admin/apps/{app.pk}/remove"),
        lambda: finish(app.client_id, asked.auth_session, credential),
        at_first_delete,
    )

    assert status(removal) == 303, removal
    assert status(finished) == 401, finished
    assert finished.json()["error"] == "invalid_client"
    nothing_of(app)


@pytest.mark.parametrize("first", ["removal", "sign-out"])
def test_signing_out_of_an_app_while_it_is_removed_is_not_a_500(
    monkeypatch: pytest.MonkeyPatch, settings: Any, receiver: LogoutReceiver, first: str
) -> None:
    """Ada's "Sign out of this app" revokes its tokens and queues a back-channel logout to it
    while an administrator removes it. Removal first: the sign-out waits, then has nothing
    left to revoke or tell. Sign-out first (held with the tokens revoked, the logout still
    to queue): the removal waits, then deletes the logout queued too."""
    settings.THRESHOLD_SSO_DELIVER_INLINE = True
    [admin] = administrators(1)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    app = add_app(backchannel_logout_uri=receiver.url)
    settings_tab = signed_in_tab(ada)
    full_flow(settings_tab, app)
    remove = form(admin, f"/admin/apps/{app.application.pk}/remove")
    sign_out = form(settings_tab, f"/settings/apps/{app.application.pk}/sign-out")

    if first == "removal":
        removal, signed_out = one_held(remove, sign_out, at_first_delete)
    else:
        signed_out, removal = one_held(
            sign_out, remove, after_step(monkeypatch, sso_actions, "revoke_tokens")
        )

    assert status(removal) == 303, removal
    assert status(signed_out) == 303, signed_out
    nothing_of(app.application)


def test_a_group_and_the_app_assigned_to_it_removed_at_once_is_not_a_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Removing Finance takes Ledger from its members: their tokens are revoked after the
    assignment went. Held there, with the assignment deleted, while Ledger is removed: the
    group's removal holds Ledger's row from before it deletes the assignment (a pre_delete
    of the group), so the app's removal waits for it, rather than each waiting for the other."""
    removing_group, removing_app = administrators(2)
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    app = add_app(name="Ledger")
    finance = do_add_group("Finance", Origin.cli())
    do_add_member(finance, ada.user, Origin.cli())
    do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["Finance"])
    full_flow(signed_in(ada), app)

    group_removed, app_removed = one_held(
        form(removing_group, f"/admin/groups/{finance.pk}/remove"),
        form(removing_app, f"/admin/apps/{app.application.pk}/remove"),
        after_step(monkeypatch, sso_actions, "list_unassigned_holders"),
    )

    assert status(group_removed) == 303, group_removed
    assert status(app_removed) == 303, app_removed
    assert not Group.objects.exists()
    nothing_of(app.application)


def test_removing_an_app_removed_meanwhile_changes_nothing() -> None:
    """Two administrators remove the same app, each having read it: the second finds nothing
    left to remove (its row is gone when it asks for it): no second audit row, no error."""
    app = add_app()
    read_by_the_second = Application.objects.get(pk=app.application.pk)
    do_remove_app(app.application, Origin.cli())
    do_remove_app(read_by_the_second, Origin.cli())
    assert not Application.objects.exists()
    assert AuditEvent.objects.filter(action="app.removed").count() == 1
