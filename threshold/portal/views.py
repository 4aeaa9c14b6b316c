"""The admin portal's pages (/admin/): views parse, actions decide.

Every view is guarded by ``guard.portal_view`` (role, then step-up for a change).
Every change calls the same action the ``threshold`` command calls, with the member
of staff as the actor; the action audits it (actor, subject, before → after).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threshold import clock
from threshold.accounts.access import get_user, staff_not_theirs
from threshold.accounts.actions import clean_lock_reason, do_reactivate_user, do_unlock_user
from threshold.accounts.models import Role, User
from threshold.accounts.notices import delivers
from threshold.audit.actions import Action, Origin
from threshold.core import catalog, errors
from threshold.core.policy import SETTINGS, GroupRules, Policy
from threshold.devices.actions import access_own_device
from threshold.enrollment.actions import do_invite, do_issue_recovery, do_revoke_invite
from threshold.fallback.actions import has_fallback, unused_recovery_codes
from threshold.groups.access import list_groups, members_of
from threshold.groups.actions import GroupError, do_add_group, do_remove_group, do_remove_member
from threshold.groups.models import Group
from threshold.passkeys.access import access_own_passkey
from threshold.policy.access import get_policy, policy_for
from threshold.portal import auditlog, authenticators, imports, people, policies, readiness
from threshold.portal.guard import Refused, actor, portal_view
from threshold.portal.roles import Area, can_change, can_read, role_of
from threshold.sessions.access import list_active_sessions
from threshold.sessions.actions import do_end_sessions
from threshold.sso.access import (
    count_members_losing_apps,
    discovery_url,
    issuer,
    list_group_apps,
)
from threshold.sso.actions import (
    AppError,
    AppGone,
    check_has_secret,
    check_settings,
    current_settings,
    do_add_app,
    do_assign_app,
    do_change_app,
    do_remove_app,
    do_rotate_secret,
)
from threshold.sso.models import Application
from threshold.web.bodies import answers_refused_forms_with
from threshold.web.http import audit_origin, see_other, url_to
from threshold.web.qr import qr_data_uri

_MAX_ID = 2**63 - 1


def _id_in(text: str) -> int | None:
    """A row ID a form or query string gives as text, or None: ASCII digits only ("²" is a
    digit to ``str.isdigit``, not to ``int``), within the databases' 64-bit integers."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(_MAX_ID))):
        return None
    value = int(text)
    return value if 0 < value <= _MAX_ID else None


def _person_url(user_id: int, **query: str) -> str:
    return url_to("portal:person", user_id, query=query or None)


def _back_to_person(user_id: int, **_: Any) -> str:
    return url_to("portal:person", user_id)


def _person_to_change(request: HttpRequest, user_id: int) -> User:
    """The person a help desk or administrator change is for (``_why_not_change``)."""
    user = people.access_person(user_id)
    why = _why_not_change(request, user)
    if why:
        raise Refused(why)
    return user


def _why_not_change(request: HttpRequest, user: User) -> str:
    """Why this member of staff may not change ``user`` ("" when they may). Someone with a role
    (a member of staff) is an administrator's to change: a help desk's recovery link or lock
    for an administrator would be a way into, or out of, everything."""
    if staff_not_theirs(role_of(request), actor(request), user):
        return (
            f"{user.display_name} has a role in the admin portal: only an administrator can "
            "change their account or sign-in methods."
        )
    return ""


_NOT_YOURSELF = "You cannot deactivate yourself."
_NOT_LOCK_YOURSELF = "You cannot lock yourself out: another administrator can lock your account."


def _why_not_deactivate(request: HttpRequest, user: User) -> str:
    """Why deactivating ``user`` would be refused, or change nothing ("" when it would not):
    what the question says instead of asking, and why their page offers no Deactivate."""
    if user.pk == actor(request).pk:
        return _NOT_YOURSELF
    if not user.is_active:
        return f"{user.display_name} is deactivated already."
    return _why_not_change(request, user)


def _why_not_lock(request: HttpRequest, user: User) -> str:
    """Why locking ``user`` is refused ("" when it is not): locking ends every session of
    theirs, so locking oneself would end this one, and only `threshold users unlock` would let
    them back in."""
    return _NOT_LOCK_YOURSELF if user.pk == actor(request).pk else ""


# The navigation's entry each page is under (``aria-current="page"``), by the first segment of
# its route after admin/: a person's pages, the invite and import pages are People's.
_SECTIONS = {
    "": "home",
    "people": "people",
    "groups": "groups",
    "apps": "apps",
    "audit": "audit",
    "policy": "policy",
    "authenticators": "authenticators",
    "readiness": "readiness",
}


def _section(request: HttpRequest) -> str:
    match = request.resolver_match
    route = match.route if match is not None else ""
    parts = route.split("/")
    return _SECTIONS.get(parts[1] if len(parts) > 1 else "", "")


def _nav(request: HttpRequest) -> dict[str, Any]:
    """What every portal page's navigation needs: which areas this role may read and change,
    and the entry the page is under (a view's own ``section`` overrides it)."""
    role = role_of(request)
    return {
        "section": _section(request),
        "portal_role": role,
        "reads": {area.value: can_read(role, area) for area in Area},
        "changes": {area.value: can_change(role, area) for area in Area},
    }


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    return render(request, template, {**_nav(request), **context}, status=status)


def _confirm_for_person(
    request: HttpRequest, template: str, user: User, *, refusal: str | None = None, **context: Any
) -> HttpResponse:
    """``_confirm`` for a change to ``user``: Cancel goes back to their page, and the change
    is refused as ``_person_to_change`` would refuse it (or for ``refusal``, when given)."""
    return _confirm(
        request,
        template,
        Area.PEOPLE,
        cancel_url=_person_url(user.pk),
        back_to=user.display_name,
        refusal=_why_not_change(request, user) if refusal is None else refusal,
        section="people",
        person=user,
        **context,
    )


def _confirm(
    request: HttpRequest,
    template: str,
    area: Area,
    *,
    cancel_url: str,
    back_to: str,
    refusal: str = "",
    **context: Any,
) -> HttpResponse:
    """A change asked first: the GET of the page whose form POSTs the change to its own
    address (``portal/confirm.html``). A role that may read ``area`` but not change it reads
    what the change does, without the form; a change that would be refused (``refusal``) is
    not described, the refusal is said instead. Cancel, or "Back to ``back_to``", goes to
    ``cancel_url``."""
    may_change = can_change(role_of(request), area)
    return _render(
        request,
        template,
        {
            "cancel_url": cancel_url,
            "back_to": back_to,
            "refusal": refusal if may_change else "",
            "may_change": may_change and not refusal,
            **context,
        },
    )


# --- Home ----------------------------------------------------------------------------------------


@portal_view(Area.PEOPLE)
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return _render(request, "portal/home.html", {})


# --- People --------------------------------------------------------------------------------------


@portal_view(Area.PEOPLE)
@require_GET
def people_list(request: HttpRequest) -> HttpResponse:
    text = request.GET.get("q", "")[: people.SEARCH_MAX_LENGTH]
    status_text = request.GET.get("status", "")
    status = people.Status(status_text) if status_text in set(people.Status) else None
    after = request.GET.get("after", "")[:150]
    page = people.list_people(text, status, after, policy_for(request))
    next_url = (
        url_to(
            "portal:people",
            query={
                key: value
                for key, value in {
                    "q": text,
                    "status": status_text,
                    "after": page.next_after,
                }.items()
                if value
            },
        )
        if page.next_after
        else ""
    )
    return _render(
        request,
        "portal/people.html",
        {
            "page": page,
            "q": text,
            "status": status.value if status else "",
            "statuses": list(people.Status),
            "next_url": next_url,
            "unknown_status": bool(status_text) and status is None,
        },
        status=400 if status_text and status is None else 200,
    )


_DONE = {
    "passkey-removed": "The passkey was removed. If the person has no other way to sign in, "
    "issue a recovery link.",
    "device-removed": "The device was removed: Threshold Verify on it no longer signs them in. "
    "If the person has no other way to sign in, issue a recovery link.",
    "fallback-reset": "The password and authenticator app were reset.",
    "sessions-ended": "Their sessions were ended: each browser is signed out at its next request.",
    "locked": "Locked: no way of signing in works until they are unlocked.",
    "unlocked": "Unlocked: they can sign in with their passkeys again.",
    "deactivated": "Deactivated: no way of signing in works until they are reactivated.",
    "reactivated": "Reactivated.",
    "role": "The role was saved.",
    "invited": "An enrollment link was emailed to them.",
    "invited-again": "A new enrollment link was emailed; earlier links no longer work.",
    "revoked": "The link no longer works.",
    "unchanged": "Nothing changed: it was that way already.",
}


def _render_person(
    request: HttpRequest,
    user: User,
    *,
    error: str = "",
    status: int = 200,
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    policy = policy_for(request)
    detail = people.person_detail(user, policy)
    changes = _nav(request)["changes"]
    refusal = _why_not_change(request, user) if changes[Area.PEOPLE] else ""
    return _render(
        request,
        "portal/person.html",
        {
            "person": user,
            "detail": detail,
            "policy_allows_devices": policy.allow_device_app_sign_in,
            # The role's areas, and what it may change on this person's page: ``person``, the
            # changes _person_to_change lets through (``refusal`` says why not, once, instead);
            # ``deactivate`` and ``lock``, never oneself. The POSTs check again.
            "changes": {
                **changes,
                "person": changes[Area.PEOPLE] and not refusal,
                "deactivate": changes[Area.PEOPLE] and not _why_not_deactivate(request, user),
                "lock": not _why_not_lock(request, user),
            },
            "refusal": refusal,
            "sessions": list_active_sessions(user, None),
            "done": _DONE.get(request.GET.get("done", ""), ""),
            "error": error,
            "roles": [Role.ADMINISTRATOR, Role.HELP_DESK, Role.AUDITOR, Role.NONE],
            **(extra or {}),
        },
        status=status,
    )


@portal_view(Area.PEOPLE)
@require_GET
def person(request: HttpRequest, user_id: int) -> HttpResponse:
    return _render_person(request, people.access_person(user_id))


@portal_view(Area.PEOPLE)
@require_http_methods(["GET", "POST"])
def remove_passkey(request: HttpRequest, user_id: int, passkey_id: int) -> HttpResponse:
    """Asked first: the GET names the passkey and says what the person keeps to sign in with,
    and its form POSTs here to remove it."""
    passkey_id = passkey_id if 0 < passkey_id <= _MAX_ID else 0
    return _remove_method(
        request,
        user_id,
        Removal(
            "passkey",
            lambda user: access_own_passkey(user, passkey_id),
            lambda user, passkey: {"without_passkey": passkey},
            lambda user, origin, staff: policies.remove_passkey(user, passkey_id, origin, staff),
        ),
    )


@portal_view(Area.PEOPLE)
@require_http_methods(["GET", "POST"])
def remove_device(request: HttpRequest, user_id: int, device_id: str) -> HttpResponse:
    """Asked first, as a passkey: a lost or stolen phone's Threshold Verify, which only its
    owner could remove otherwise (Settings, after verifying it's them)."""
    return _remove_method(
        request,
        user_id,
        Removal(
            "device",
            lambda user: access_own_device(user, device_id),
            lambda user, device: {"without_device": device},
            lambda user, origin, staff: policies.remove_device(user, device_id, origin, staff),
        ),
    )


@dataclass(frozen=True)
class Removal:
    """One of a person's ways to sign in, removed from their page: what it is ("passkey",
    "device": its template, its context name, its done message), how it is found (raises
    ``SecurityMethodNotFound`` for one not theirs), what ``ways_left`` leaves out without it,
    and the change."""

    kind: str
    find: Callable[[User], Any]
    without: Callable[[User, Any], dict[str, Any]]
    remove: Callable[[User, Origin, User], object]


def _remove_method(request: HttpRequest, user_id: int, removal: Removal) -> HttpResponse:
    """The GET asks first, naming it and what the person keeps; its form POSTs to remove it."""
    if request.method == "GET":
        user = people.access_person(user_id)
        try:
            method = removal.find(user)
        except errors.SecurityMethodNotFound:
            return _not_theirs(request, user, removal.kind)
        return _confirm_for_person(
            request,
            f"portal/remove_{removal.kind}.html",
            user,
            **{removal.kind: method},
            ways=people.ways_left(user, policy_for(request), **removal.without(user, method)),
        )
    user = _person_to_change(request, user_id)
    try:
        removal.remove(user, audit_origin(request), actor(request))
    except errors.SecurityMethodNotFound:
        return _not_theirs(request, user, removal.kind)
    except errors.LastSignInMethod:
        # One's own last way in, from one's own page (the last-method rule; audited).
        entry = catalog.CATALOG["last_method"]
        return _render_person(request, user, error=f"{entry.title}: {entry.message}", status=409)
    except policies.NoAdministratorLeft as refused:
        return _render_person(request, user, error=str(refused), status=409)
    return see_other(_person_url(user.pk, done=f"{removal.kind}-removed"))


def _not_theirs(request: HttpRequest, user: User, kind: str) -> HttpResponse:
    return _render_person(
        request, user, error=f"That {kind} is not one of this person\u2019s.", status=404
    )


@portal_view(Area.PEOPLE)
@require_http_methods(["GET", "POST"])
def reset_fallback(request: HttpRequest, user_id: int) -> HttpResponse:
    """Asked first: the GET says what stops working and what the person keeps, and its form
    POSTs here to reset it."""
    if request.method == "GET":
        user = people.access_person(user_id)
        app = has_fallback(user)
        if not app and not user.has_usable_password():
            return _no_fallback(request, user)
        return _confirm_for_person(
            request,
            "portal/reset_fallback.html",
            user,
            app=app,
            codes=unused_recovery_codes(user),
            ways=people.ways_left(user, policy_for(request), without_fallback=True),
        )
    user = _person_to_change(request, user_id)
    try:
        policies.reset_fallback(user, audit_origin(request), actor(request))
    except errors.SecurityMethodNotFound:
        return _no_fallback(request, user)
    except policies.NoAdministratorLeft as refused:
        return _render_person(request, user, error=str(refused), status=409)
    return see_other(_person_url(user.pk, done="fallback-reset"))


def _no_fallback(request: HttpRequest, user: User) -> HttpResponse:
    return _render_person(
        request, user, error="They have no password and authenticator app.", status=409
    )


@portal_view(Area.PEOPLE, back=_back_to_person)
@require_POST
def end_sessions(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_to_change(request, user_id)
    do_end_sessions(user, audit_origin(request), actor=actor(request))
    return see_other(_person_url(user.pk, done="sessions-ended"))


@portal_view(Area.PEOPLE, back=_back_to_person)
@require_POST
def issue_recovery(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_to_change(request, user_id)
    email_link = request.POST.get("email_link") == "1"
    try:
        issued = do_issue_recovery(
            user, audit_origin(request), actor=actor(request), email_link=email_link
        )
    except errors.AccountError as error:
        why = "deactivated" if isinstance(error, errors.AccountDisabled) else "locked"
        return _render_person(
            request,
            user,
            error=f"No recovery link was issued: the account is {why}.",
            status=409,
        )
    # Shown once: this response is the only place the link appears (never cached).
    return _render(
        request,
        "portal/recovery.html",
        {
            "person": user,
            "link": issued.link,
            "expires_at": issued.invite.expires_at,
            "qr": qr_data_uri(issued.link),
            # The email with the link, or the notice, that an SMTP server took (on commit).
            "emailed": email_link and bool(issued.notified),
            "email_link": email_link,
            # The notice (or the link) an SMTP server did not take: issued.notified is empty.
            "mail_failed": _email_delivers(user) and not issued.notified,
            "notified": bool(user.email),
        },
    )


@portal_view(Area.PEOPLE, back=_back_to_person)
@require_POST
def lock(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_to_change(request, user_id)
    reason = request.POST.get("reason", "")
    try:
        clean_lock_reason(reason)
    except ValueError as exc:
        return _render_person(request, user, error=f"Not locked: {exc}.", status=400)
    if why := _why_not_lock(request, user):
        return _render_person(request, user, error=why, status=409)
    try:
        changed, _ = policies.lock_person(user, audit_origin(request), reason, actor(request))
    except policies.NoAdministratorLeft as refused:
        return _render_person(request, user, error=str(refused), status=409)
    return see_other(_person_url(user.pk, done="locked" if changed else "unchanged"))


@portal_view(Area.PEOPLE, back=_back_to_person)
@require_POST
def unlock(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_to_change(request, user_id)
    changed = do_unlock_user(user, audit_origin(request), actor=actor(request))
    return see_other(_person_url(user.pk, done="unlocked" if changed else "unchanged"))


@portal_view(Area.PEOPLE)
@require_http_methods(["GET", "POST"])
def deactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    """Asked first: the GET says what deactivating does (``do_deactivate_user``) and how it is
    undone, and its form POSTs here to deactivate them."""
    if request.method == "GET":
        user = people.access_person(user_id)
        return _confirm_for_person(
            request, "portal/deactivate.html", user, refusal=_why_not_deactivate(request, user)
        )
    user = _person_to_change(request, user_id)
    if user.pk == actor(request).pk:
        return _render_person(request, user, error=_NOT_YOURSELF, status=409)
    try:
        changed, _ = policies.deactivate_person(user, audit_origin(request), actor(request))
    except policies.NoAdministratorLeft as refused:
        return _render_person(request, user, error=str(refused), status=409)
    return see_other(_person_url(user.pk, done="deactivated" if changed else "unchanged"))


@portal_view(Area.PEOPLE, back=_back_to_person)
@require_POST
def reactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_to_change(request, user_id)
    changed = do_reactivate_user(user, audit_origin(request), actor=actor(request))
    return see_other(_person_url(user.pk, done="reactivated" if changed else "unchanged"))


@portal_view(Area.ROLES, back=_back_to_person)
@require_POST
def set_role(request: HttpRequest, user_id: int) -> HttpResponse:
    user = people.access_person(user_id)
    wanted = request.POST.get("role", "")
    if wanted not in {role.value for role in Role}:
        return _render_person(
            request,
            user,
            error="Choose a role: administrator, help desk, auditor or none.",
            status=400,
        )
    if user.pk == actor(request).pk and wanted != Role.ADMINISTRATOR:
        return _render_person(
            request,
            user,
            error="You cannot take your own administrator role away; ask another administrator.",
            status=409,
        )
    try:
        changed, _ = policies.set_role(user, Role(wanted), audit_origin(request), actor(request))
    except policies.NoAdministratorLeft as refused:
        return _render_person(request, user, error=str(refused), status=409)
    return see_other(_person_url(user.pk, done="role" if changed else "unchanged"))


# The email backends of a default install (``config._email``: THRESHOLD_EMAIL_BACKEND file,
# the default, or console): an email is written under var/mail or to the log, never delivered.
def _email_delivers(user: User) -> bool:
    """Whether an email to ``user`` leaves this server: delivery is set up and they have an
    address."""
    return delivers() and bool(user.email)


def _invited(request: HttpRequest, user: User, link: str, *, replaced: bool) -> HttpResponse:
    """After an invite: their page says it was emailed, when email is delivered. Otherwise the
    link is shown here, once (this response is never cached), for the member of staff to hand
    over, as ``threshold invite`` prints it. ``replaced``: a link of theirs that still worked
    stopped working."""
    newest = people.newest_link(user)
    # Emailed: the email backend took it (its transaction committed, so it was sent by now).
    if _email_delivers(user) and newest is not None and newest.sent_to:
        return see_other(_person_url(user.pk, done="invited-again" if replaced else "invited"))
    return _render(
        request,
        "portal/invite_link.html",
        {
            "person": user,
            "link": link,
            "expires_at": newest.expires_at if newest else None,
            "qr": qr_data_uri(link),
            "replaced": replaced,
            "delivery_set_up": delivers(),
            "mail_failed": _email_delivers(user),
        },
    )


@portal_view(Area.PEOPLE, back=_back_to_person)
@require_POST
def resend_invite(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_to_change(request, user_id)
    replaced = people.has_working_link(user)
    try:
        created = do_invite(user.username, audit_origin(request), actor=actor(request))
    except errors.AlreadyEnrolled:
        return _render_person(
            request,
            user,
            error="They can already sign in: issue a recovery link if they lost every passkey.",
            status=409,
        )
    except errors.AccountError:
        return _render_person(
            request,
            user,
            error="No link was sent: the account is locked or deactivated.",
            status=409,
        )
    return _invited(request, user, created.link, replaced=replaced)


@portal_view(Area.PEOPLE, back=_back_to_person)
@require_POST
def revoke_invite(request: HttpRequest, user_id: int, invite_id: int) -> HttpResponse:
    user = _person_to_change(request, user_id)
    if not 0 < invite_id <= _MAX_ID or not user.invites.filter(pk=invite_id).exists():
        return _render_person(request, user, error="That link is not one of theirs.", status=404)
    changed = do_revoke_invite(invite_id, audit_origin(request), actor=actor(request))
    return see_other(_person_url(user.pk, done="revoked" if changed else "unchanged"))


# --- Inviting people -----------------------------------------------------------------------------


@portal_view(Area.PEOPLE)
@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest) -> HttpResponse:
    form = {"email": "", "name": ""}
    error = ""
    # The input the refusal is about (the page marks it): the name, when only it is wrong.
    error_field = "email"
    status = 200
    if request.method == "POST":
        form = {
            "email": request.POST.get("email", "").strip(),
            "name": request.POST.get("name", "").strip(),
        }
        # Looked up only once the address is one (a NUL, ... never reaches the database).
        valid = not imports.check_row(form["email"], form["name"])
        replaced = valid and people.has_working_link(get_user(form["email"]))
        row = imports.invite_one(form["email"], form["name"], audit_origin(request), actor(request))
        if row.ok:
            assert row.user is not None  # noqa: S101 - an invited row has its person
            return _invited(request, row.user, row.link, replaced=replaced)
        error, status = row.message, 400
        if not imports.check_row(form["email"], "") and imports.check_row(
            form["email"], form["name"]
        ):
            error_field = "name"
    return _render(
        request,
        "portal/invite.html",
        {
            "form": form,
            "error": error,
            "error_field": error_field,
            "max_size": imports.MAX_CSV_SIZE,
            "email_delivers": delivers(),
        },
        status=status,
    )


def _import_refused(request: HttpRequest, why: str, status: int = 400) -> HttpResponse:
    """The invite page again, saying why the import invited nobody."""
    return _render(
        request,
        "portal/invite.html",
        {
            "form": {"email": "", "name": ""},
            "import_error": why,
            "max_size": imports.MAX_CSV_SIZE,
            "email_delivers": delivers(),
        },
        status=status,
    )


@portal_view(Area.PEOPLE, back=lambda **_: url_to("portal:invite"))
def _import_over_the_form_cap(request: HttpRequest) -> HttpResponse:
    """An import whose form is over the cap of every form (64 KiB, DATA_UPLOAD_MAX_MEMORY_SIZE),
    refused unread (``web.bodies``): the import's own words for a file too large, 413
    (RFC 9110 §15.5.14), to whom the portal would answer the import; the guard answers
    anyone else as it answers them the import itself."""
    # The words imports.read_upload gives a file over its own cap (60 KB).
    return _import_refused(request, f"The file is over {imports.MAX_CSV_SIZE}: split it.", 413)


@answers_refused_forms_with(_import_over_the_form_cap)
@portal_view(Area.PEOPLE, back=lambda **_: url_to("portal:invite"))
@require_POST
def import_people(request: HttpRequest) -> HttpResponse:
    upload = request.FILES.get("csv")
    text = request.POST.get("csv_text", "")
    try:
        content = imports.read_upload(upload, text)
        rows = imports.invite_rows(
            content,
            audit_origin(request),
            actor(request),
            may_change_groups=can_change(role_of(request), Area.GROUPS),
        )
    except imports.ImportRefused as exc:
        return _import_refused(request, str(exc))
    # Not emailed for real (no delivery set up, or the mail server failed): those links are
    # shown here, once, to hand over.
    delivery = delivers()
    unsent = {row.line for row in rows if row.ok and not (delivery and row.emailed)}
    return _render(
        request,
        "portal/import_result.html",
        {
            "rows": rows,
            "invited": sum(1 for row in rows if row.ok),
            "unsent": unsent,
            "mail_failed": delivery and bool(unsent),
        },
    )


# --- The audit log -------------------------------------------------------------------------------


@portal_view(Area.AUDIT)
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    filters = auditlog.parse_filters(request.GET)
    before = _id_in(request.GET.get("before", ""))
    if filters.problems:
        result, rows = None, []
    else:
        result = auditlog.page(filters, before)
        rows = [(event, auditlog.explain(event)) for event in result.rows]
    query = filters.as_query()
    return _render(
        request,
        "portal/audit.html",
        {
            "section": "audit",
            "filters": filters,
            "rows": rows,
            "actions": sorted(action.value for action in Action),
            "outcomes": auditlog.OUTCOMES,
            "next_url": url_to("portal:audit", query={**query, "before": str(result.next_before)})
            if result and result.next_before
            else "",
            "csv_url": url_to("portal:audit-csv", query=query),
            "json_url": url_to("portal:audit-json", query=query),
        },
        status=400 if filters.problems else 200,
    )


@portal_view(Area.AUDIT)
@require_GET
def audit_export(request: HttpRequest, kind: str) -> HttpResponseBase:
    filters = auditlog.parse_filters(request.GET)
    if filters.problems:
        return _render(
            request,
            "portal/audit.html",
            {"section": "audit", "filters": filters, "rows": [], "actions": [], "outcomes": {}},
            status=400,
        )
    stamp = clock.now_datetime().strftime("%Y%m%d-%H%M%S")
    if kind == "csv":
        response = StreamingHttpResponse(
            auditlog.export_csv(filters), content_type="text/csv; charset=utf-8"
        )
    else:
        response = StreamingHttpResponse(
            auditlog.export_json(filters), content_type="application/json"
        )
    response["Content-Disposition"] = f'attachment; filename="threshold-audit-{stamp}.{kind}"'
    return response


# --- Readiness -----------------------------------------------------------------------------------

_KIND_LABELS = {"platform": "Platform", "synced": "Synced", "security_key": "Security key"}


@portal_view(Area.READINESS)
@require_GET
def readiness_page(request: HttpRequest) -> HttpResponse:
    figures = readiness.compute(policy=policy_for(request))
    per_day_totals = [(day[5:], sum(counts.values())) for day, counts in figures.sign_ins_per_day]
    return _render(
        request,
        "portal/readiness.html",
        {
            "section": "readiness",
            "r": figures,
            "share_passkey": readiness.share(figures.with_passkey, figures.people_active),
            "share_two": readiness.share(figures.with_two_or_more_methods, figures.people_active),
            "people_chart": readiness.bar_chart(
                [
                    ("Active people", figures.people_active),
                    ("Invited, not enrolled", figures.people_invited),
                    ("No way to sign in now", figures.people_without_a_way_in),
                    ("With a passkey", figures.with_passkey),
                    ("Two or more methods", figures.with_two_or_more_methods),
                    ("Only the fallback", figures.fallback_only),
                ]
            ),
            "kinds": [
                (_KIND_LABELS[kind], count) for kind, count in figures.passkeys_by_kind.items()
            ],
            "kind_chart": readiness.bar_chart(
                [(_KIND_LABELS[kind], n) for kind, n in figures.passkeys_by_kind.items()]
            ),
            "authenticator_chart": readiness.bar_chart(
                [(name, n) for name, _, n, _ in figures.passkeys_by_authenticator[:10]]
            ),
            "day_chart": readiness.bar_chart(per_day_totals),
            "failure_chart": readiness.bar_chart(list(figures.failures_by_reason_30d.items())[:10]),
            "figures": readiness.FIGURES,
        },
    )


@portal_view(Area.READINESS)
@require_GET
def readiness_csv(request: HttpRequest, figure: str) -> HttpResponse:
    rows = readiness.csv_rows(readiness.compute(policy=policy_for(request)), figure)
    if rows is None:
        raise Http404("no such figure")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="threshold-{figure}.csv"'
    writer = csv.writer(response)
    writer.writerows(rows)
    return response


# --- Policy --------------------------------------------------------------------------------------


def _render_policy(
    request: HttpRequest,
    current: Policy,
    fields: list[policies.Field],
    *,
    done: str = "",
    status: int = 200,
    meanwhile: list[policies.Field] | None = None,
) -> HttpResponse:
    """The policy page: ``fields`` as the form holds them, its version ``current``'s; with
    ``meanwhile``, the notice that someone else's change came first (those settings saved
    otherwise)."""
    return _render(
        request,
        "portal/policy.html",
        {
            "section": "policy",
            "fields": fields,
            "version": policies.version_of(current.as_json()),
            "done": done,
            "has_errors": any(field.error for field in fields),
            "changed_meanwhile": meanwhile is not None,
            "meanwhile": meanwhile or [],
        },
        status=status,
    )


def _policy_changed_meanwhile(
    request: HttpRequest, typed: list[policies.Field], done_at: str
) -> HttpResponse:
    """Someone else saved a change of the policy since the page was shown (its ``version``)
    or while this one was being saved: nothing saved (409). The policy page keeps what was
    typed, says which settings are now saved otherwise, and its form carries the saved
    policy's version, so saving again saves the form as it then is. The authenticators page
    shows the lists as saved now."""
    current = get_policy()
    if done_at == "portal:authenticators":
        return _render_authenticators(
            request, error=_AUTHENTICATORS_CHANGED_MEANWHILE, status=409, current=current
        )
    return _render_policy(
        request,
        current,
        typed,
        status=409,
        meanwhile=policies.differences(policies.fields_of(current), typed),
    )


_AUTHENTICATORS_CHANGED_MEANWHILE = (
    "Someone else changed the policy while you were on this page, so nothing was saved. The "
    "lists below are as saved now: check them, then make your change again."
)


_CONFIRM_CUT_OFF = (
    "Tick the box to confirm that you will not be able to sign in again, or cancel the change."
)


def _render_preview(
    request: HttpRequest,
    preview: policies.Preview,
    *,
    hidden: list[tuple[str, str]],
    form_action: str,
    cancel_url: str,
    changes: str,
    section: str = "",
    refusal: str = "",
    confirm_error: str = "",
    status: int = 200,
) -> HttpResponse:
    return _render(
        request,
        "portal/policy_preview.html",
        {
            **({"section": section} if section else {}),
            "preview": preview,
            "viewer": actor(request),
            "hidden": hidden,
            "form_action": form_action,
            "cancel_url": cancel_url,
            "changes": changes,
            "refusal": refusal,
            "confirm_error": confirm_error,
        },
        status=status,
    )


def _held_back(request: HttpRequest, preview: policies.Preview, **page: Any) -> HttpResponse | None:
    """The page a policy or group rules change gets instead of being saved (None: save it).

    Refused (409, nothing saved) when it would leave no administrator able to sign in. Shown
    first when it refuses passkeys allowed today or leaves an administrator or the person
    making it with no way to sign in, until the person confirms the preview of exactly those
    passkeys (``seen``: the count they were shown); when it cuts off the person making it,
    they also tick that they understand (``cut_off_self``), and "Save anyway" without the
    tick is answered 400.
    """
    if preview.lockout.no_administrator_left:
        return _render_preview(
            request, preview, refusal=policies.NO_ADMINISTRATOR_LEFT, status=409, **page
        )
    if not preview.needed:
        return None
    confirmed = request.POST.get("seen") == str(preview.passkeys)
    if preview.lockout.viewer_cut_off and request.POST.get("cut_off_self") != "1":
        if confirmed:
            return _render_preview(
                request, preview, confirm_error=_CONFIRM_CUT_OFF, status=400, **page
            )
        return _render_preview(request, preview, **page)
    return None if confirmed else _render_preview(request, preview, **page)


def _refused_meanwhile(
    request: HttpRequest,
    preview: policies.Preview,
    refused: policies.NoAdministratorLeft,
    **page: Any,
) -> HttpResponse:
    """A change ``_held_back`` let through that the save refused: checked again against what
    was saved since its preview (another administrator's change), it would leave no
    administrator able to sign in. Answered as ``_held_back`` answers one (409)."""
    return _render_preview(
        request,
        dataclasses.replace(preview, lockout=refused.lockout),
        refusal=policies.NO_ADMINISTRATOR_LEFT,
        status=409,
        **page,
    )


def _policy_preview_page(current: Policy, new: Policy, changes: str = "") -> dict[str, Any]:
    """``_render_preview``'s arguments for a change of the organisation policy: its form posts
    every setting back to the policy page, with the version of the policy it was made from."""
    return {
        "hidden": [
            *((field.name, field.text) for field in policies.fields_of(new)),
            ("version", policies.version_of(current.as_json())),
        ],
        "form_action": url_to("portal:policy"),
        "cancel_url": url_to("portal:policy"),
        "changes": changes
        or ", ".join(
            setting.name
            for setting in SETTINGS
            if getattr(current, setting.name) != getattr(new, setting.name)
        ),
    }


@portal_view(Area.POLICY)
@require_http_methods(["GET", "POST"])
def policy_page(request: HttpRequest) -> HttpResponse:
    current = policy_for(request)
    if request.method == "GET":
        done = {"saved": "The policy was saved.", "unchanged": "Nothing changed."}.get(
            request.GET.get("done", ""), ""
        )
        return _render_policy(request, current, policies.fields_of(current), done=done)
    new, fields = policies.parse(current, request.POST)
    shown = request.POST.get("version")
    if shown is not None and shown != policies.version_of(current.as_json()):
        # A form without one (a script's) changes the settings it names, as they are now.
        return _policy_changed_meanwhile(request, fields, "portal:policy")
    if new is None:
        return _render_policy(request, current, fields, status=400)
    return _save_policy(request, current, new, typed=fields)


def _save_policy(
    request: HttpRequest,
    current: Policy,
    new: Policy,
    *,
    changes: str = "",
    done_at: str = "portal:policy",
    typed: list[policies.Field] | None = None,
) -> HttpResponse:
    """Save ``new``, made from ``current``, unless ``_held_back`` holds it back or the policy
    changed meanwhile; then back to ``done_at`` (the policy page, whose form held ``typed``,
    or the authenticators page for a change of the list named ``changes``)."""
    if new == current:
        return see_other(url_to(done_at, query={"done": "unchanged"}))
    preview = policies.preview(current, new, actor(request))
    page = _policy_preview_page(current, new, changes)
    held = _held_back(request, preview, **page)
    if held is not None:
        return held
    try:
        policies.save_policy(new, audit_origin(request), actor(request), based_on=current)
    except policies.NoAdministratorLeft as refused:
        return _refused_meanwhile(request, preview, refused, **page)
    except policies.ChangedMeanwhile:
        return _policy_changed_meanwhile(request, typed or policies.fields_of(new), done_at)
    return see_other(url_to(done_at, query={"done": "saved"}))


# --- Authenticators ------------------------------------------------------------------------------

_LIST_CHANGES = {
    "deny": ("aaguid_deny_list", True),
    "undeny": ("aaguid_deny_list", False),
    "allow": ("aaguid_allow_list", True),
    "unallow": ("aaguid_allow_list", False),
}


def _render_authenticators(
    request: HttpRequest, *, error: str = "", status: int = 200, current: Policy | None = None
) -> HttpResponse:
    current = current or policy_for(request)
    text = request.GET.get("q", "")[: authenticators.SEARCH_MAX_LENGTH]
    return _render(
        request,
        "portal/authenticators.html",
        {
            "section": "authenticators",
            "registered": authenticators.registered(),
            "q": text,
            "results": authenticators.search(text),
            "denied": [(a, authenticators.name_of(a)) for a in current.aaguid_deny_list],
            "allowed": [(a, authenticators.name_of(a)) for a in current.aaguid_allow_list],
            "deny_list": set(current.aaguid_deny_list),
            "allow_list": set(current.aaguid_allow_list),
            "error": error,
            "done": {"saved": "The policy was saved.", "unchanged": "Nothing changed."}.get(
                request.GET.get("done", ""), ""
            ),
        },
        status=status,
    )


@portal_view(Area.AUTHENTICATORS)
@require_http_methods(["GET", "POST"])
def authenticators_page(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _render_authenticators(request)
    change = _LIST_CHANGES.get(request.POST.get("change", ""))
    aaguid = authenticators.canonical_aaguid(request.POST.get("aaguid", ""))
    if change is None or aaguid is None:
        return _render_authenticators(
            request,
            error="Choose an authenticator and a list to add it to or remove it from.",
            status=400,
        )
    name, adding = change
    current = policy_for(request)
    listed = tuple(getattr(current, name))
    values = (*listed, aaguid) if adding and aaguid not in listed else listed
    if not adding:
        values = tuple(item for item in listed if item != aaguid)
    change_list: dict[str, Any] = {name: values}
    new = dataclasses.replace(current, **change_list)
    return _save_policy(request, current, new, changes=name, done_at="portal:authenticators")


# --- Groups --------------------------------------------------------------------------------------


def _access_group(group_id: int) -> Group:
    group = Group.objects.filter(pk=group_id).first() if 0 < group_id <= _MAX_ID else None
    if group is None:
        raise Http404("no such group")
    return group


@portal_view(Area.GROUPS)
@require_http_methods(["GET", "POST"])
def groups_page(request: HttpRequest) -> HttpResponse:
    error, status, name = "", 200, ""
    if request.method == "POST":
        name = request.POST.get("name", "")
        try:
            group = do_add_group(name, audit_origin(request), actor=actor(request))
        except GroupError as exc:
            error, status = str(exc), 400
        else:
            return see_other(url_to("portal:group", group.pk, query={"done": "added"}))
    return _render(
        request,
        "portal/groups.html",
        {"section": "groups", "groups": list_groups(), "error": error, "name": name},
        status=status,
    )


def _render_group(
    request: HttpRequest,
    group: Group,
    *,
    error: str = "",
    status: int = 200,
    rule_fields: list[policies.Field] | None = None,
) -> HttpResponse:
    done = {
        "added": "The group was added.",
        "member-added": "Added to the group.",
        "member-removed": "Taken out of the group.",
        "rules": "The group\u2019s rules were saved.",
        "unchanged": "Nothing changed.",
    }.get(request.GET.get("done", ""), "")
    apps = list(list_group_apps(group))
    return _render(
        request,
        "portal/group.html",
        {
            "section": "groups",
            "group": group,
            # What leaving the group takes from its members (its removal: group_remove).
            "apps": apps,
            "members": list(members_of(group)[:500]),
            "member_count": group.memberships.count(),
            "done": done,
            "error": error,
            "rule_fields": rule_fields
            or policies.group_fields_of(GroupRules.from_document(group.name, group.rules)),
            "rules_version": policies.version_of(group.rules),
        },
        status=status,
    )


@portal_view(Area.GROUPS)
@require_GET
def group_page(request: HttpRequest, group_id: int) -> HttpResponse:
    return _render_group(request, _access_group(group_id))


@portal_view(Area.GROUPS, back=lambda group_id, **_: url_to("portal:group", group_id))
@require_POST
def group_add_member(request: HttpRequest, group_id: int) -> HttpResponse:
    group = _access_group(group_id)
    username = request.POST.get("email", "")[:150]
    user = get_user(username) if username.strip() else None
    if user is None:
        return _render_group(
            request,
            group,
            error=f"There is no one with the username {username.strip()!r}.",
            status=400,
        )
    try:
        added, _ = policies.add_member(group, user, audit_origin(request), actor(request))
    except policies.NoAdministratorLeft as refused:
        return _render_group(request, group, error=str(refused), status=409)
    except Group.DoesNotExist as removed:
        raise Http404("no such group") from removed
    return see_other(
        url_to("portal:group", group.pk, query={"done": "member-added" if added else "unchanged"})
    )


@portal_view(Area.GROUPS, back=lambda group_id, **_: url_to("portal:group", group_id))
@require_POST
def group_remove_member(request: HttpRequest, group_id: int, user_id: int) -> HttpResponse:
    group = _access_group(group_id)
    user = people.access_person(user_id)
    removed = do_remove_member(group, user, audit_origin(request), actor=actor(request))
    return see_other(
        url_to(
            "portal:group", group.pk, query={"done": "member-removed" if removed else "unchanged"}
        )
    )


@portal_view(Area.GROUPS)
@require_http_methods(["GET", "POST"])
def group_remove(request: HttpRequest, group_id: int) -> HttpResponse:
    """Asked first: the GET says what removing the group does (its members, the apps they
    lose with it), and its form POSTs here to remove it."""
    group = _access_group(group_id)
    if request.method == "POST":
        do_remove_group(group, audit_origin(request), actor=actor(request))
        return see_other(url_to("portal:groups"))
    apps = list(list_group_apps(group))
    return _confirm(
        request,
        "portal/group_remove.html",
        Area.GROUPS,
        cancel_url=url_to("portal:group", group.pk),
        back_to=group.name,
        section="groups",
        group=group,
        apps=apps,
        members_losing_apps=count_members_losing_apps(group) if apps else 0,
        member_count=group.memberships.count(),
    )


def _group_rules_changed_meanwhile(
    request: HttpRequest, group: Group, typed: list[policies.Field]
) -> HttpResponse:
    """Someone else saved ``group``'s rules since its page was shown or while these were being
    saved: nothing saved (409), what was typed kept, the settings saved otherwise named."""
    try:
        group.refresh_from_db(fields=["name", "rules"])
    except Group.DoesNotExist as removed:  # meanwhile, too
        raise Http404("no such group") from removed
    saved = policies.group_fields_of(GroupRules.from_document(group.name, group.rules))
    names = ", ".join(field.name for field in policies.differences(saved, typed))
    return _render_group(
        request,
        group,
        error=(
            f"Someone else changed {group.name}\u2019s rules while you were editing them, so "
            "yours were not saved. Your changes are still in the form"
            + (f"; saved now otherwise: {names}" if names else "")
            + ". Check them, then save again."
        ),
        status=409,
        rule_fields=typed,
    )


@portal_view(Area.POLICY, back=lambda group_id, **_: url_to("portal:group", group_id))
@require_POST
def group_rules(request: HttpRequest, group_id: int) -> HttpResponse:
    group = _access_group(group_id)
    rules, fields = policies.parse_group_rules(group.name, request.POST)
    if rules is None:
        return _render_group(
            request,
            group,
            error="The group\u2019s rules were not saved: fix the settings marked below.",
            status=400,
            rule_fields=fields,
        )
    shown = dict(group.rules)
    version = policies.version_of(shown)
    if request.POST.get("version", version) != version:
        return _group_rules_changed_meanwhile(request, group, fields)
    policy = policy_for(request)
    preview = policies.preview_group(policy, group, rules, actor(request))
    page: dict[str, Any] = {
        "section": "groups",
        "hidden": [
            *((field.name, field.text) for field in fields),
            ("version", version),
        ],
        "form_action": url_to("portal:group-rules", group.pk),
        "cancel_url": url_to("portal:group", group.pk),
        "changes": f"{group.name}: " + ", ".join(sorted(rules.as_json())),
    }
    held = _held_back(request, preview, **page)
    if held is not None:
        return held
    try:
        changed = policies.save_group_rules(
            group, rules, audit_origin(request), actor(request), based_on=shown
        )
    except policies.NoAdministratorLeft as refused:
        return _refused_meanwhile(request, preview, refused, **page)
    except policies.ChangedMeanwhile:
        return _group_rules_changed_meanwhile(request, group, fields)
    except Group.DoesNotExist as removed:
        raise Http404("no such group") from removed
    return see_other(
        url_to("portal:group", group.pk, query={"done": "rules" if changed else "unchanged"})
    )


# --- Apps (single sign-on) -----------------------------------------------------------------------


def _access_app(app_id: int) -> Application:
    application: Application | None = (
        Application.objects.filter(pk=app_id).first() if 0 < app_id <= _MAX_ID else None
    )
    if application is None:
        raise Http404("no such app")
    return application


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


@portal_view(Area.APPS)
@require_http_methods(["GET", "POST"])
def apps_page(request: HttpRequest) -> HttpResponse:
    form: dict[str, Any] = {"name": "", "redirect_uris": "", "post_logout_uris": ""}
    error, error_field, status = "", "", 200
    if request.method == "POST":
        form = {name: request.POST.get(name, "")[:4000] for name in _APP_FIELDS}
        try:
            created = do_add_app(
                form["name"],
                audit_origin(request),
                redirect_uris=_lines(form["redirect_uris"]),
                post_logout_redirect_uris=_lines(form["post_logout_uris"]),
                backchannel_logout_uri=form["backchannel_logout_uri"].strip(),
                initiate_login_uri=form["initiate_login_uri"].strip(),
                public=form["public"] == "1",
                id_token_alg=form["id_token_alg"] or "RS256",
                require_consent=form["require_consent"] == "1",
                first_party=form["first_party"] == "1",
                actor=actor(request),
            )
        except AppError as exc:
            error, error_field, status = str(exc), exc.field, 400
        else:
            # Shown once: the secret is in this response only (only its hash is stored).
            return _render(
                request,
                "portal/app_secret.html",
                {
                    "section": "apps",
                    "application": created.application,
                    "secret": created.client_secret,
                    "added": True,
                },
            )
    return _render(
        request,
        "portal/apps.html",
        {
            "section": "apps",
            "apps": Application.objects.prefetch_related("groups").order_by("name"),
            "form": form,
            "error": error,
            "error_field": error_field,
        },
        status=status,
    )


_APP_FIELDS = (
    "name",
    "redirect_uris",
    "post_logout_uris",
    "backchannel_logout_uri",
    "initiate_login_uri",
    "public",
    "id_token_alg",
    "require_consent",
    "first_party",
)


def _app_form(application: Application) -> dict[str, str]:
    """The settings form's fields, filled with the app's settings as they are."""
    now = current_settings(application)
    return {
        "name": now.name,
        "redirect_uris": "\n".join(now.redirect_uris),
        "post_logout_uris": "\n".join(now.post_logout_redirect_uris),
        "backchannel_logout_uri": now.backchannel_logout_uri,
        "initiate_login_uri": now.initiate_login_uri,
        "id_token_alg": now.id_token_alg,
        "require_consent": "1" if now.require_consent else "",
        "first_party": "1" if now.first_party else "",
    }


def _render_app(
    request: HttpRequest,
    application: Application,
    *,
    error: str = "",
    status: int = 200,
    form: dict[str, str] | None = None,
    form_error: AppError | None = None,
) -> HttpResponse:
    done = {
        "assigned": "Saved: who may use the app.",
        "changed": "Saved: the app\u2019s settings.",
    }.get(request.GET.get("done", ""), "")
    return _render(
        request,
        "portal/app.html",
        {
            "section": "apps",
            "application": application,
            "issuer": issuer(),
            "discovery_url": discovery_url(),
            "assigned": {group.pk for group in application.groups.all()},
            "groups": list_groups(),
            "error": error,
            "done": done,
            "form": form or _app_form(application),
            "form_error": "" if form_error is None else str(form_error),
            "error_field": "" if form_error is None else form_error.field,
        },
        status=status,
    )


@portal_view(Area.APPS)
@require_GET
def app_page(request: HttpRequest, app_id: int) -> HttpResponse:
    return _render_app(request, _access_app(app_id))


@portal_view(Area.APPS)
@require_http_methods(["GET", "POST"])
def app_rotate_secret(request: HttpRequest, app_id: int) -> HttpResponse:
    """Asked first: the GET says that the app cannot sign anyone in until it has the new
    secret, and its form POSTs here for the new secret, shown once."""
    application = _access_app(app_id)
    try:
        if request.method == "GET":
            check_has_secret(application)
            return _confirm(
                request,
                "portal/app_rotate_secret.html",
                Area.APPS,
                cancel_url=url_to("portal:app", application.pk),
                back_to=application.name,
                section="apps",
                application=application,
            )
        secret = do_rotate_secret(application, audit_origin(request), actor=actor(request))
    except AppGone as gone:
        raise Http404("no such app") from gone
    except AppError as exc:
        return _render_app(request, application, error=str(exc), status=409)
    return _render(
        request,
        "portal/app_secret.html",
        {"section": "apps", "application": application, "secret": secret, "added": False},
    )


@portal_view(Area.APPS, back=lambda app_id, **_: url_to("portal:app", app_id))
@require_POST
def app_change(request: HttpRequest, app_id: int) -> HttpResponse:
    """The app's settings form: everything but its kind, client ID and secret."""
    application = _access_app(app_id)
    form = {name: request.POST.get(name, "")[:4000] for name in _APP_FIELDS if name != "public"}
    try:
        settings = check_settings(
            form["name"],
            redirect_uris=_lines(form["redirect_uris"]),
            post_logout_redirect_uris=_lines(form["post_logout_uris"]),
            backchannel_logout_uri=form["backchannel_logout_uri"].strip(),
            initiate_login_uri=form["initiate_login_uri"].strip(),
            id_token_alg=form["id_token_alg"] or "RS256",
            require_consent=form["require_consent"] == "1",
            first_party=form["first_party"] == "1",
            public=application.client_type == Application.CLIENT_PUBLIC,
        )
        do_change_app(application, settings, audit_origin(request), actor=actor(request))
    except AppGone as gone:
        raise Http404("no such app") from gone
    except AppError as exc:
        return _render_app(request, application, status=400, form=form, form_error=exc)
    return see_other(url_to("portal:app", application.pk, query={"done": "changed"}))


@portal_view(Area.APPS, back=lambda app_id, **_: url_to("portal:app", app_id))
@require_POST
def app_assign(request: HttpRequest, app_id: int) -> HttpResponse:
    application = _access_app(app_id)
    everyone = request.POST.get("who") == "everyone"
    wanted = {_id_in(value) for value in request.POST.getlist("group") if value}
    names = list(Group.objects.filter(pk__in=wanted - {None}).values_list("name", flat=True))
    if None in wanted or len(names) != len(wanted):
        return _render_app(request, application, error="Choose groups from the list.", status=400)
    try:
        do_assign_app(
            application,
            audit_origin(request),
            everyone=everyone,
            group_names=[] if everyone else names,
            actor=actor(request),
        )
    except AppGone as gone:
        raise Http404("no such app") from gone
    except AppError as exc:
        return _render_app(
            request,
            application,
            # A group removed meanwhile, or no choice made.
            error="Choose groups from the list."
            if exc.field == "group"
            else "Choose everyone, or one or more groups.",
            status=400,
        )
    return see_other(url_to("portal:app", application.pk, query={"done": "assigned"}))


@portal_view(Area.APPS)
@require_http_methods(["GET", "POST"])
def app_remove(request: HttpRequest, app_id: int) -> HttpResponse:
    """Asked first: the GET says what goes with the app (``do_remove_app``), and its form
    POSTs here to remove it."""
    application = _access_app(app_id)
    if request.method == "POST":
        do_remove_app(application, audit_origin(request), actor=actor(request))
        return see_other(url_to("portal:apps"))
    return _confirm(
        request,
        "portal/app_remove.html",
        Area.APPS,
        cancel_url=url_to("portal:app", application.pk),
        back_to=application.name,
        section="apps",
        application=application,
    )
