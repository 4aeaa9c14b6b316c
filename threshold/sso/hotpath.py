"""The single sign-on flow's statements that the ORM made slow, in plain SQL.

Building an ORM query costs 0.3-0.45 ms of CPU here, running the same statement in SQL 10-50 µs
(../shared/FIELD-NOTES.md, "Speed"). A code flow reads the person's groups twice (the ``groups``
claim of the ID token, then of /userinfo), and writes two audit rows (the authorization, the
token); those writes use ``threshold.passkeys.hotpath.insert_audit``, which stores what
``threshold.audit.actions.record`` would.
"""

from __future__ import annotations

from functools import lru_cache

from django.db import connection

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
