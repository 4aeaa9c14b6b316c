from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class SsoConfig(AppConfig):
    name = "threshold.sso"
    label = "sso"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, pre_delete

        from threshold.accounts.models import User
        from threshold.accounts.signals import access_withdrawn
        from threshold.sessions.models import Session

        post_delete.connect(session_ended, sender=Session, dispatch_uid="sso-session-ended")
        pre_delete.connect(person_removed, sender=User, dispatch_uid="sso-person-removed")
        access_withdrawn.connect(withdraw_tokens, dispatch_uid="sso-access-withdrawn")

        from threshold.groups.signals import members_left

        members_left.connect(withdraw_group_access, dispatch_uid="sso-members-left")

        # Each process's kept apps (appcache.py) are forgotten when an app changes.
        from django.db.models.signals import m2m_changed, post_save

        from threshold.groups.models import Group
        from threshold.sso import appcache
        from threshold.sso.models import Application

        for signal in (post_save, post_delete):
            signal.connect(appcache.changed, sender=Application, dispatch_uid="sso-app-changed")
        # A removed group's assignments go by cascade, without m2m_changed.
        post_delete.connect(appcache.changed, sender=Group, dispatch_uid="sso-group-removed")
        # Its apps' rows are held first (the lock order: sso.validator.lock_apps).
        from threshold.sso.actions import hold_apps_of_group

        pre_delete.connect(hold_apps_of_group, sender=Group, dispatch_uid="sso-group-removing")
        m2m_changed.connect(
            appcache.changed, sender=Application.groups.through, dispatch_uid="sso-app-groups"
        )


def session_ended(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A Threshold session ended: the apps signed in to from it get a back-channel logout,
    and lose the tokens it gave them without ``offline_access`` (``end_session_tokens``)."""
    from threshold.accounts.signals import WITHDRAWING
    from threshold.sessions.store import KEY_CYCLING, SID
    from threshold.sso.actions import end_session_tokens
    from threshold.sso.logout import enqueue

    if KEY_CYCLING.get() or instance.user_id is None:
        return
    sid = instance.get_decoded().get(SID)
    if not isinstance(sid, str):
        return
    from threshold.accounts.models import User

    # Gone when the session went with its person (``person_removed`` told their apps).
    user = User.objects.filter(pk=instance.user_id).first()
    if user is None:
        return
    enqueue(user, sid, reason="session_ended")
    if not WITHDRAWING.get():  # else access_withdrawn revokes them, with its reason
        end_session_tokens(user, sid)


def person_removed(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A person is removed: their apps hear that each of their sessions ended, before the
    sign-ins that name those apps go with them (their tokens go by cascade)."""
    from threshold.sso.logout import enqueue
    from threshold.sso.models import AppSignIn

    for sid in AppSignIn.objects.filter(user=instance).values_list("sid", flat=True).distinct():
        enqueue(instance, sid, reason="removed")


def withdraw_tokens(
    sender: Any,
    *,
    user: Any,
    origin: Any,
    reason: str,
    keep_session_key: str | None,
    actor: Any = None,
    **kwargs: Any,
) -> None:
    """A lock, a recovery or "Sign out other sessions": revoke the tokens they concern."""
    from threshold.sessions.models import Session
    from threshold.sessions.store import SID
    from threshold.sso.actions import revoke_all_tokens
    from threshold.sso.logout import name_the_reason
    from threshold.sso.models import AppSignIn

    name_the_reason(user, reason)
    if keep_session_key is None:
        revoke_all_tokens(user, origin, reason, actor=actor)
        return
    kept = Session.objects.filter(session_key=keep_session_key).first()
    kept_sid = kept.get_decoded().get(SID) if kept is not None else None
    sids = list(
        AppSignIn.objects.filter(user=user)
        .exclude(sid=kept_sid or "")
        .values_list("sid", flat=True)
        .distinct()
    )
    if sids:
        revoke_all_tokens(user, origin, reason, actor=actor, sids=sids)


def withdraw_group_access(
    sender: Any,
    *,
    user_ids: list[int],
    group: str,
    origin: Any,
    actor: Any,
    reason: str,
    **kwargs: Any,
) -> None:
    """People left a group (taken out, or the group removed): the apps it gave them, and
    no other group of theirs does, are theirs no more (``actions.withdraw_unassigned``)."""
    from threshold.sso.actions import withdraw_unassigned

    withdraw_unassigned(origin, reason, user_ids=user_ids, actor=actor, group=group)
