"""The single sign-on flow's statements that the ORM made slow, in plain SQL.

Building an ORM query costs 0.3-0.45 ms of CPU here, running the same statement in SQL 10-50 µs
(../shared/FIELD-NOTES.md, "Speed"). A code flow reads the person's groups twice (the ``groups``
claim of the ID token, then of /userinfo), writes its access and refresh token (``insert``:
the INSERT ``Model.save()`` would run, every field's ``pre_save`` included, without the ORM's
query building) and two audit rows (the authorization, the token); those audit rows use
``threshold.passkeys.hotpath.insert_audit``, which stores what ``threshold.audit.actions.record``
would.
"""

from __future__ import annotations

from functools import lru_cache

from django.db import connection, router
from django.db.models import Model

from threshold.groups.models import Group, Membership


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


def insert(instance: Model) -> None:
    """INSERT a new ``instance`` as ``instance.save()`` would (no model in threshold/sso/ or
    django-oauth-toolkit's token models overrides ``save()``, and no receiver listens for their
    ``post_save``): every field's ``pre_save`` (``auto_now``, DOT's token checksum), its
    database value, the new primary key set on the instance."""
    model = type(instance)
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_statement(model), values)
        instance.pk = cursor.fetchone()[0]
    # As Model.save() leaves a saved instance.
    instance._state.adding = False  # noqa: SLF001
    instance._state.db = router.db_for_write(model)  # noqa: SLF001


@lru_cache(maxsize=8)
def _insert_statement(model: type[Model]) -> str:
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    return (
        f"INSERT INTO {_q(model._meta.db_table)} ({', '.join(_q(f.column) for f in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {_q(model._meta.pk.column)}"
    )
