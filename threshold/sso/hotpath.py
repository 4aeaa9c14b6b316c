"""The single sign-on flow's statements that the ORM made slow, in plain SQL.

Building an ORM query costs 0.3-0.45 ms of CPU here, running the same statement in SQL 10-50 µs
(../shared/FIELD-NOTES.md, "Speed"). A code flow needs the person's groups twice (the ``groups``
claim of the ID token, then of /userinfo): each time they come with the statement that reads the
person (``_group_names_column``). At /token it reads the code's sign-in and grant with
the person and their groups in one SELECT (``find_code``), uses the grant up with one DELETE
(``use_grant``), or locks a refresh's refresh token and finds it still live with one SELECT
(``lock_live_refresh_token``), and
writes its access and refresh token (``insert``: the INSERT ``Model.save()`` would run, every
field's ``pre_save`` included, without the ORM's query building); at /userinfo it reads the
access token with its person, app and groups in one SELECT (``find_access_token``), and whether
the person is assigned a group-assigned app by comparing those groups with the app's, which each
process keeps (``app_group_names``, read once per ``appcache.MAX_AGE``); and a signed-in
browser's /authorize reads its session with the person in one (``signed_in_session``,
threshold/sso/lean.py), and whether the person is in one of a group-assigned app's groups in
one (``is_member_of_app_groups``). Its two audit rows
(the authorization, the token) use ``threshold.passkeys.hotpath.insert_audit``, which stores
what ``threshold.audit.actions.record`` would.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django.db import connection, router
from django.db.models import Field, Model
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)

from threshold.accounts.models import User
from threshold.groups.models import Group, Membership
from threshold.passkeys.hotpath import instance_from_row, preparer
from threshold.sessions.models import Session
from threshold.sso.models import AppSignIn


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


@lru_cache(maxsize=2)
def _group_names_statement() -> str:
    group, membership = Group._meta, Membership._meta
    return (
        f"SELECT g.{_q(group.get_field('name').column)}"
        f" FROM {_q(group.db_table)} g"
        f" JOIN {_q(membership.db_table)} m"
        f" ON m.{_q(membership.get_field('group').column)} = g.{_q(group.pk.column)}"
        f" WHERE m.{_q(membership.get_field('user').column)} = %s"
        f" ORDER BY g.{_q(group.get_field('name').column)}"
    )


def group_names(user_id: int) -> list[str]:
    """``threshold.groups.access.group_names_of``, in one SELECT built once."""
    with connection.cursor() as cursor:
        cursor.execute(_group_names_statement(), [user_id])
        return [str(row[0]) for row in cursor.fetchall()]


def _group_names_column(person: str) -> str:
    """A column of the person's group names, as a JSON array, for a SELECT whose person is
    ``person`` (an alias of the user table): ``group_names`` inside the statement that reads
    the person, one statement instead of two. PostgreSQL orders them as ``group_names``
    does; SQLite's json_group_array cannot order (before 3.44), so ``names_of_column`` sorts
    them in Python, in the order of SQLite's BINARY collation (code points, as str)."""
    group, membership = Group._meta, Membership._meta
    name = f"g.{_q(group.get_field('name').column)}"
    rows = (
        f" FROM {_q(group.db_table)} g"
        f" JOIN {_q(membership.db_table)} m"
        f" ON m.{_q(membership.get_field('group').column)} = g.{_q(group.pk.column)}"
        f" WHERE m.{_q(membership.get_field('user').column)}"
        f" = {person}.{_q(User._meta.pk.column)}"
    )
    if connection.vendor == "postgresql":
        return f"(SELECT json_agg({name} ORDER BY {name}){rows})"
    return f"(SELECT json_group_array({name}){rows})"


def names_of_column(value: Any) -> list[str]:
    """The group names ``_group_names_column`` read: what ``group_names`` returns."""
    if value is None:  # PostgreSQL's json_agg of no rows
        return []
    names = [str(name) for name in (json.loads(value) if isinstance(value, str) else value)]
    return names if connection.vendor == "postgresql" else sorted(names)


def _reads_groups() -> bool:
    return connection.vendor in ("postgresql", "sqlite")


@lru_cache(maxsize=2)
def _assigned_statement() -> str:
    field = get_application_model()._meta.get_field("groups")
    through = field.remote_field.through._meta
    membership = Membership._meta
    return (
        f"SELECT 1 FROM {_q(through.db_table)} a"
        f" JOIN {_q(membership.db_table)} m"
        f" ON m.{_q(membership.get_field('group').column)}"
        f" = a.{_q(field.m2m_reverse_name())}"
        f" WHERE a.{_q(field.m2m_column_name())} = %s"
        f" AND m.{_q(membership.get_field('user').column)} = %s"
        f" LIMIT 1"
    )


def is_member_of_app_groups(application_id: int, user_id: int) -> bool:
    """Is the person a member of one of the app's groups? One SELECT built once: what
    ``application.groups.filter(memberships__user=user).exists()`` asks."""
    with connection.cursor() as cursor:
        cursor.execute(_assigned_statement(), [application_id, user_id])
        return cursor.fetchone() is not None


@lru_cache(maxsize=2)
def _app_group_names_statement() -> str:
    field = get_application_model()._meta.get_field("groups")
    through, group = field.remote_field.through._meta, Group._meta
    return (
        f"SELECT g.{_q(group.get_field('name').column)}"
        f" FROM {_q(group.db_table)} g"
        f" JOIN {_q(through.db_table)} a ON a.{_q(field.m2m_reverse_name())}"
        f" = g.{_q(group.pk.column)}"
        f" WHERE a.{_q(field.m2m_column_name())} = %s"
    )


def app_group_names(application_id: int) -> frozenset[str]:
    """The names of the groups an app is assigned to, in one SELECT built once (``/userinfo``
    compares them with the person's, read with the token; ``appcache`` keeps them)."""
    with connection.cursor() as cursor:
        cursor.execute(_app_group_names_statement(), [application_id])
        return frozenset(str(row[0]) for row in cursor.fetchall())


def insert(instance: Model) -> None:
    """INSERT a new ``instance`` as ``instance.save()`` would (no model in threshold/sso/ or
    django-oauth-toolkit's grant and token models overrides ``save()``, and no receiver listens
    for their ``post_save``): every field's ``pre_save`` (``auto_now``, DOT's token checksum), its
    database value, the new primary key set on the instance."""
    model = type(instance)
    values = [prepare(read(instance)) for read, prepare in _writing(model)]
    with connection.cursor() as cursor:
        cursor.execute(_insert_statement(model), values)
        instance.pk = cursor.fetchone()[0]
    # As Model.save() leaves a saved instance.
    instance._state.adding = False  # noqa: SLF001
    instance._state.db = router.db_for_write(model)  # noqa: SLF001


@lru_cache(maxsize=16)
def _writing(model: type[Model]) -> list[tuple[Callable[[Model], Any], Callable[[Any], Any]]]:
    """Per column of ``model`` but the primary key: how ``save()`` reads its value
    (``pre_save``, or the attribute when the field's ``pre_save`` is Django's plain one)
    and makes it a database value (``get_db_prep_save``, skipped for a value a text, integer
    or boolean column would pass on unchanged)."""
    writing: list[tuple[Callable[[Model], Any], Callable[[Any], Any]]] = []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        read: Callable[[Model], Any]
        if type(field).pre_save is Field.pre_save:
            read = operator.attrgetter(field.attname)
        else:
            read = functools.partial(_pre_save, field)
        writing.append((read, preparer(field)))
    return writing


def _pre_save(field: Field[Any, Any], instance: Model) -> Any:
    return field.pre_save(instance, True)


@lru_cache(maxsize=8)
def _insert_statement(model: type[Model]) -> str:
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    return (
        f"INSERT INTO {_q(model._meta.db_table)} ({', '.join(_q(f.column) for f in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {_q(model._meta.pk.column)}"
    )


# --- A code's exchange at /token ----------------------------------------------------------------


def _columns(alias: str, model: type[Model]) -> str:
    return ", ".join(f"{alias}.{_q(f.column)}" for f in model._meta.concrete_fields)


@lru_cache(maxsize=2)
def _code_statement() -> str:
    grant_model = get_grant_model()
    sign_in, user, grant = AppSignIn._meta, User._meta, grant_model._meta

    def column(meta: Any, name: str) -> str:
        return _q(meta.get_field(name).column)

    groups = f", {_group_names_column('u')}" if _reads_groups() else ""
    return (
        f"SELECT {_columns('s', AppSignIn)}, {_columns('u', User)}, {_columns('g', grant_model)}"
        f"{groups}"
        f" FROM {_q(sign_in.db_table)} s"
        f" JOIN {_q(user.db_table)} u ON u.{_q(user.pk.column)} = s.{column(sign_in, 'user')}"
        f" LEFT JOIN {_q(grant.db_table)} g ON g.{column(grant, 'code')} = %s"
        f" AND g.{column(grant, 'application')} = s.{column(sign_in, 'application')}"
        f" AND g.{column(grant, 'user')} = s.{column(sign_in, 'user')}"
        f" WHERE s.{column(sign_in, 'code_hash')} = %s"
    )


def find_code(code: str, code_hash: str) -> tuple[AppSignIn | None, Any, list[str] | None]:
    """The sign-in a code was issued in (its person loaded), the code's grant if it was not
    exchanged yet (same app, same person), and the person's group names (None: not read), in
    one SELECT: what ``AppSignIn`` and DOT's ``Grant`` queries with ``select_related("user")``
    and ``group_names`` would give."""
    with connection.cursor() as cursor:
        cursor.execute(_code_statement(), [code, code_hash])
        row = cursor.fetchone()
    if row is None:
        return None, None, None
    grant_model = get_grant_model()
    first = len(AppSignIn._meta.concrete_fields)
    second = first + len(User._meta.concrete_fields)
    third = second + len(grant_model._meta.concrete_fields)
    sign_in = instance_from_row(AppSignIn, row[:first])
    user = instance_from_row(User, row[first:second])
    sign_in.user = user
    grant = None
    if row[second] is not None:  # the grant's primary key: NULL when there is none
        grant = instance_from_row(grant_model, row[second:third])
        grant.user = user
    return sign_in, grant, (names_of_column(row[third]) if _reads_groups() else None)


@lru_cache(maxsize=2)
def _use_grant_statement() -> str:
    grant = get_grant_model()._meta
    return (
        f"DELETE FROM {_q(grant.db_table)} WHERE {_q(grant.pk.column)} = %s"
        f" RETURNING {_q(grant.pk.column)}"
    )


def use_grant(grant_id: int) -> bool:
    """Delete a code's grant: True for the one exchange that deleted it, False for any other.

    The single-use gate (RFC 6749 §4.1.2). Run first in the transaction that writes the
    tokens: a second exchange of the same code, at the same moment on another connection,
    waits for this row's lock (PostgreSQL) or the database's write lock (SQLite), then finds
    it gone, and writes nothing.
    """
    with connection.cursor() as cursor:
        cursor.execute(_use_grant_statement(), [grant_id])
        return cursor.fetchone() is not None


@lru_cache(maxsize=2)
def _live_refresh_token_statement() -> str:
    token = get_refresh_token_model()._meta
    return (
        f"SELECT 1 FROM {_q(token.db_table)} WHERE {_q(token.pk.column)} = %s"
        f" AND {_q(token.get_field('revoked').column)} IS NULL"
        + (" FOR UPDATE" if connection.features.has_select_for_update else "")
    )


def lock_live_refresh_token(refresh_token_id: int) -> bool:
    """Is a refresh's refresh token still live? Locked until the transaction ends.

    A refresh reads its token before the transaction that writes the new ones (DOT's
    ``validate_refresh_token``), and DOT's rotation locks it there but never asks again
    whether it was revoked: a revocation committed in between (an app no longer assigned, a
    lock, a recovery, a sign-out, another refresh of the same token) left the new tokens
    live. Run first in that transaction, as ``use_grant`` is for a code: a revocation that
    came first is seen (PostgreSQL's locking read waits for it; SQLite's write transactions
    run one at a time), and one that comes after waits for this lock
    (``validator.revoke_tokens`` takes it first), then finds the new tokens and revokes them.
    """
    with connection.cursor() as cursor:
        cursor.execute(_live_refresh_token_statement(), [refresh_token_id])
        return cursor.fetchone() is not None


# --- An access token at /userinfo ---------------------------------------------------------------


@lru_cache(maxsize=2)
def _access_token_statement() -> str:
    token_model, application_model = get_access_token_model(), get_application_model()
    token, user, application = token_model._meta, User._meta, application_model._meta
    groups = f", {_group_names_column('u')}" if _reads_groups() else ""
    return (
        f"SELECT {_columns('t', token_model)}, {_columns('u', User)},"
        f" {_columns('a', application_model)}{groups}"
        f" FROM {_q(token.db_table)} t"
        f" LEFT JOIN {_q(user.db_table)} u"
        f" ON u.{_q(user.pk.column)} = t.{_q(token.get_field('user').column)}"
        f" LEFT JOIN {_q(application.db_table)} a"
        f" ON a.{_q(application.pk.column)} = t.{_q(token.get_field('application').column)}"
        f" WHERE t.{_q(token.get_field('token_checksum').column)} = %s"
    )


def find_access_token(token_checksum: str) -> tuple[Any, list[str] | None]:
    """The access token with this checksum, its person and app loaded, and the person's group
    names (None: not read, or no person), in one SELECT: what DOT's ``_load_access_token``
    (``select_related("application", "user")``) and ``group_names`` give."""
    with connection.cursor() as cursor:
        cursor.execute(_access_token_statement(), [token_checksum])
        row = cursor.fetchone()
    if row is None:
        return None, None
    token_model, application_model = get_access_token_model(), get_application_model()
    first = len(token_model._meta.concrete_fields)
    second = first + len(User._meta.concrete_fields)
    third = second + len(application_model._meta.concrete_fields)
    access_token = instance_from_row(token_model, row[:first])
    # A NULL primary key: no such row (DOT's tokens may have no person or no app).
    access_token.user = (
        instance_from_row(User, row[first:second]) if row[first] is not None else None
    )
    access_token.application = (
        instance_from_row(application_model, row[second:third]) if row[second] is not None else None
    )
    groups = None
    if access_token.user is not None and _reads_groups():
        groups = names_of_column(row[third])
    return access_token, groups


# --- A signed-in browser at /authorize ----------------------------------------------------------


@lru_cache(maxsize=2)
def _session_statement() -> str:
    session, user = Session._meta, User._meta
    return (
        f"SELECT s.{_q(session.get_field('session_data').column)}, {_columns('u', User)}"
        f" FROM {_q(session.db_table)} s"
        f" JOIN {_q(user.db_table)} u"
        f" ON u.{_q(user.pk.column)} = s.{_q(session.get_field('user').column)}"
        f" WHERE s.{_q(session.pk.column)} = %s"
        f" AND s.{_q(session.get_field('expire_date').column)} > %s"
    )


def signed_in_session(session_key: str) -> tuple[str, User] | None:
    """A signed-in session's data (still encoded) and its person, in one SELECT: the rows the
    session store (``expire_date__gt=timezone.now()``, Django's clock) and the
    authentication backend would read, or None for a session with no person or none at all."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_session_statement(), [session_key, now])
        row = cursor.fetchone()
    if row is None:
        return None
    return str(row[0]), instance_from_row(User, row[1:])
