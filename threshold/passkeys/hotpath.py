"""The passkey sign-in's SQL, written by hand: the only hand-written SQL of the sign-in path.

A sign-in's result is one transaction of at most four statements
(``tests/integration/test_lean_sign_in.py`` pins the counts, on SQLite and PostgreSQL):

1. ``use_challenge_and_find``: the ceremony's challenge goes into ``UsedChallenge``
   (``INSERT … ON CONFLICT DO NOTHING``: of two requests with one token only one gets
   a row, so a replay is refused) and the same statement returns the passkey named
   by the response with its person, and the organisation policy's document, read in
   the transaction that applies it. SQLite cannot put an INSERT in a WITH clause, so
   there the INSERT's RETURNING clause carries the lookup as one JSON array;
   PostgreSQL runs the INSERT as a data-modifying CTE beside a plain SELECT.
2. ``update_passkey``: the counter, backup state and last use, only if the counter
   still moves forward (under PostgreSQL's READ COMMITTED a concurrent sign-in with
   the same passkey may have moved it since statement 1 read it).
3. ``insert_audit``: the audit rows (one, or the clone flag and the failure together),
   with what ``threshold.audit.actions.record`` would store.
4. ``insert_session``: the signed-in session (``threshold.passkeys.lean``), in the same
   transaction.

A verified sign-in's 2-4 go through ``record_sign_in``: on PostgreSQL they are one
statement (data-modifying CTEs, the INSERTs conditional on the UPDATE), a round trip
instead of three; a sign-in's result is then two statements there.

Rows come back as model instances built the way the ORM builds them
(``Model.from_db`` after the backend's and the fields' converters), so the
ceremony code above this module reads ``Passkey`` and ``User`` as it always did.
Statements run on the driver's own cursor (``_DriverCursor``: no Django cursor wrappers,
its errors still raised as Django's), except where Django's cursor would do more: a test's
query log or execute wrapper, a pending health check, a transaction that must roll back.
Values are always parameters; table and column names come from the models. SQLite 3.35 or
later (RETURNING; Debian 12 has 3.40), PostgreSQL 9.5 or later (ON CONFLICT).

On PostgreSQL the fast path's two statements are prepared (``execute_prepared``): SQL's
``PREPARE`` once per connection, then ``EXECUTE`` with the values (client-side binding, Django's
default), which still goes in one round trip with BEGIN or COMMIT. PostgreSQL then plans each
once, not on every sign-in: half its CPU per sign-in (bench/README.md). Where the prepared
statements do not stay with the connection (a pooler in transaction mode), the process stops
preparing them at the first sign of it (``PreparedStatementsLost``); one whose result changed
type since (a migration run beside the server) is prepared again (``PreparedStatementStale``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from time import monotonic
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
)
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.db.models import Field, ForeignKey, Model
from django.db.models.signals import post_delete, post_save

from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.policy import GroupRules, Policy
from threshold.groups.models import Group, Membership
from threshold.passkeys.models import Passkey, UsedChallenge
from threshold.policy.models import OrganisationPolicy
from threshold.sessions.models import Session
from threshold.sessions.store import SessionStore

POLICY_ROW = 1  # the one OrganisationPolicy row (threshold.policy.access.get_policy)

_logger = logging.getLogger(__name__)


class _DriverCursor:
    """The database driver's own cursor, for this module's statements: without Django's cursor
    wrappers, with the statement converted to the driver's parameter style once per statement
    (SQLite's ``?``), and the driver's errors raised as Django's (``wrap_database_errors``)."""

    __slots__ = ("_convert", "_errors", "cursor", "db")

    def __init__(self, db: Any) -> None:
        self.db = db  # as Django's CursorWrapper
        self._errors = db.wrap_database_errors
        self._convert = db.vendor == "sqlite"
        with self._errors:
            self.cursor = db.connection.cursor()  # the driver's, as CursorWrapper.cursor

    def __enter__(self) -> _DriverCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._errors:
            self.cursor.close()

    def execute(self, sql: str, params: Sequence[Any] | None) -> None:
        if self._convert:
            sql = _qmark(sql)
        with self._errors:
            self.cursor.execute(sql, params)

    def fetchone(self) -> Any:
        with self._errors:
            return self.cursor.fetchone()

    def nextset(self) -> Any:
        with self._errors:
            return self.cursor.nextset()

    def fetchall(self) -> Any:
        with self._errors:
            return self.cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)


@lru_cache(maxsize=64)
def _qmark(sql: str) -> str:
    return str(FORMAT_QMARK_REGEX.sub("?", sql)).replace("%%", "%")


def _cursor() -> Any:
    """A cursor for this module's statements: the driver's own (``_DriverCursor``) on an open
    connection whose health check is done or off, Django's otherwise, and wherever Django's
    would do more (a test's query log, an execute wrapper, a transaction that must roll back)."""
    db: Any = connections[DEFAULT_DB_ALIAS]  # health_check_* are not in django-stubs
    if (
        db.connection is None
        or (db.health_check_enabled and not db.health_check_done)
        or db.queries_logged
        or db.execute_wrappers
        or db.needs_rollback
    ):
        return db.cursor()
    return _DriverCursor(db)


def sends_together(cursor: Any) -> bool:
    """Whether ``cursor`` (``_cursor``'s) sends a query string of several statements as one, in
    one round trip: PostgreSQL's client-side binding (psycopg's ``ClientCursor``, Django's
    default), which uses the simple query protocol; not server-side binding, whose prepared
    statements take one statement each."""
    if cursor.db.vendor != "postgresql":
        return False
    from psycopg import ClientCursor  # noqa: PLC0415 - PostgreSQL's driver, only there

    return isinstance(cursor.cursor, ClientCursor)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


@lru_cache(maxsize=16)
def _fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    return tuple(model._meta.concrete_fields)


@lru_cache(maxsize=64)
def _field(model: type[Model], name: str) -> Field[Any, Any]:
    return next(f for f in _fields(model) if name in (f.name, f.attname))


# Fields whose get_db_prep_save returns a str, int or bool value of that type unchanged.
_TEXT_TYPES = frozenset({"CharField", "TextField"})
_INTEGER_TYPES = frozenset(
    {
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
    }
)
_INTEGER_KEYS = frozenset({"AutoField", "BigAutoField", *_INTEGER_TYPES})


def preparer(field: Field[Any, Any]) -> Callable[[Any], Any]:
    """What the ORM does to a value of ``field`` before writing it (``get_db_prep_save``),
    skipped where it would give the value back unchanged: the one home of this shortcut for
    the hand-written SQL of the sign-in and of single sign-on (threshold/sso/hotpath.py)."""
    prepare = field.get_db_prep_save
    kind = field.get_internal_type()
    if isinstance(field, ForeignKey) and field.target_field.get_internal_type() in _INTEGER_KEYS:
        # A foreign key to an integer primary key: None stays None, an int that int
        # (ForeignKey.get_db_prep_save, then the target's int() and validate_autopk_value,
        # which only MySQL's refuses 0 in).
        return lambda value: (
            value if value is None or type(value) is int else prepare(value, connection)
        )
    if kind == "DateTimeField":
        # An aware datetime goes through DateTimeField.get_prep_value unchanged, then to
        # the backend's adapt_datetimefield_value (a naive one, the field's warning and
        # conversion first).
        return lambda value: (
            connection.ops.adapt_datetimefield_value(value)
            if type(value) is datetime and value.tzinfo is not None
            else prepare(value, connection)
        )
    plain: type | None = (
        bool
        if kind == "BooleanField"
        else str
        if kind in _TEXT_TYPES
        else int
        if kind in _INTEGER_TYPES
        else None
    )
    if plain is None:
        return lambda value: prepare(value, connection)

    def prepared(value: Any) -> Any:
        # Exactly that type (not a subclass: an enum goes through the field).
        return value if value is None or type(value) is plain else prepare(value, connection)

    return prepared


@lru_cache(maxsize=64)
def _prepare(model: type[Model], name: str) -> Callable[[Any], Any]:
    return preparer(_field(model, name))


@lru_cache(maxsize=16)
def _attnames(model: type[Model]) -> list[str]:
    return [f.attname for f in _fields(model)]


Converter = Callable[[Any, Any, Any], Any]
_M = TypeVar("_M", bound=Model)


@lru_cache(maxsize=16)
def _converters(vendor: str, model: type[Model]) -> list[tuple[list[Converter], Any]]:
    """Per column of ``model``: what the ORM's compiler applies to a value read from ``vendor``."""
    table = model._meta.db_table
    result = []
    for field in _fields(model):
        column = field.get_col(table)
        result.append(
            (
                connection.ops.get_db_converters(column) + column.get_db_converters(connection),
                column,
            )
        )
    return result


@lru_cache(maxsize=16)
def _converting(vendor: str, model: type[Model]) -> tuple[tuple[int, list[Converter], Any], ...]:
    """The columns of ``model`` that have converters on ``vendor``, by position."""
    return tuple(
        (index, converters, column)
        for index, (converters, column) in enumerate(_converters(vendor, model))
        if converters
    )


def instance_from_row(model: type[_M], values: Sequence[Any]) -> _M:
    """The instance the ORM would build from ``values``, ``model``'s concrete columns in order."""
    converted = list(values)
    if len(converted) != len(_fields(model)):
        raise ValueError(f"{len(converted)} values for {model.__name__}")
    for index, converters, column in _converting(connection.vendor, model):
        value = converted[index]
        for convert in converters:
            value = convert(value, column, connection)
        converted[index] = value
    return model.from_db(connection.alias, _attnames(model), converted)


@lru_cache(maxsize=8)
def _policy_from_text(document: str) -> Policy:
    return Policy.from_document(json.loads(document))


@lru_cache(maxsize=1)
def _default_policy() -> Policy:
    return Policy()


def policy_from_document(document: str | None) -> Policy:
    """The policy a stored document says (the defaults without a row), parsed once per process
    per document: the document itself is read in every request that applies it."""
    return _default_policy() if document is None else _policy_from_text(document)


@lru_cache(maxsize=2)
def _policy_statement() -> str:
    return (
        f"SELECT {_q('document')} FROM {_q(OrganisationPolicy._meta.db_table)}"
        f" WHERE {_q('id')} = %s"
    )


def read_policy() -> Policy:
    """The policy in force, in one SELECT of one column (what ``get_policy`` reads)."""
    return without_health_check(_read_policy)


def _read_policy() -> Policy:
    with _cursor() as cursor:
        cursor.execute(_policy_statement(), [POLICY_ROW])
        row = cursor.fetchone()
    return policy_from_document(row[0] if row else None)


_R = TypeVar("_R")


def without_health_check(run: Callable[[], _R]) -> _R:
    """``run()`` on the connection as it is, without the ``SELECT 1`` Django's
    ``CONN_HEALTH_CHECKS`` (PostgreSQL) sends first in every request; on a connection
    that turns out dead, ``run()`` once more on a new one.

    For the lean path's database work only, which is safe to run twice: a policy read,
    and the result's transaction, whose first statement uses the challenge up. A
    transaction that failed on a dead connection stored nothing; one whose COMMIT
    reached the server before the connection died used the challenge up, so the
    second run refuses it as a replay: no ceremony signs anyone in twice.
    """
    db: Any = connection  # health_check_* are Django's (5.1+), not in django-stubs
    if db.connection is None or not db.health_check_enabled or db.health_check_done:
        return run()
    db.health_check_done = True  # what Django would check, run() will find out
    checked = db.connection
    try:
        return run()
    except (InterfaceError, OperationalError):
        # A dead connection fails the first statement; the transaction's rollback then
        # fails too, and Django drops the connection (and opens a new one to reset
        # autocommit). Anything else is the statement's own failure.
        if db.connection is checked and db.is_usable():
            raise
        db.close()
    return run()  # on a new connection, which Django counts as healthy


# How long the options request may use a policy this process read before: at most this
# many seconds behind a change made by another process (``threshold policy set``, another
# worker). A change saved in this process applies at once (``forget_policy``).
POLICY_STALENESS_SECONDS = 1.0
_recent_policy: tuple[float, Policy] | None = None


def recent_policy() -> Policy:
    """The policy in force, read at most ``POLICY_STALENESS_SECONDS`` ago by this process.

    Only the options request uses it (``threshold.passkeys.lean``), so that it reads
    nothing from the database: for up to a second after another process changes the
    policy, the flow's idle timeout and the ceremony's timeout and user verification it
    applies may be the previous ones. The result's transaction reads the policy in force
    itself (``use_challenge_and_find``), so the rules on passkeys apply from the change on.
    """
    global _recent_policy  # noqa: PLW0603 - one value per process, replaced whole
    now = monotonic()
    cached = _recent_policy
    if cached is not None and 0.0 <= now - cached[0] < POLICY_STALENESS_SECONDS:
        return cached[1]
    policy = read_policy()
    _recent_policy = (now, policy)
    return policy


def forget_policy(**_: Any) -> None:
    """The next ``recent_policy()`` reads the database (a policy saved in this process, a test)."""
    global _recent_policy  # noqa: PLW0603
    _recent_policy = None


post_save.connect(forget_policy, sender=OrganisationPolicy, dispatch_uid="hotpath.forget_policy")
post_delete.connect(
    forget_policy, sender=OrganisationPolicy, dispatch_uid="hotpath.forget_policy.delete"
)


@dataclass(frozen=True)
class Found:
    """What ``use_challenge_and_find`` read: whether the challenge was still unused, the
    passkey (with ``user`` loaded) when it exists, the policy in force, and the rules of the
    passkey's person's groups (``groups.access.rules_of``, read in the same statement)."""

    unused: bool
    passkey: Passkey | None
    policy: Policy
    group_rules: tuple[GroupRules, ...] = ()


def _group_rules_sql(vendor: str) -> str:
    """A subquery, correlated on the passkey ``p``: its person's groups that have rules, as a
    JSON array of [name, rules] (the admin portal's group policies)."""
    groups, memberships = Group._meta.db_table, Membership._meta.db_table
    source = (
        f" FROM {_q(memberships)} m JOIN {_q(groups)} g ON g.{_q('id')} = m.{_q('group_id')}"
        f" WHERE m.{_q('user_id')} = p.{_q('user_id')}"
    )
    if vendor == "postgresql":
        return (
            f"(SELECT coalesce(json_agg(json_build_array(g.{_q('name')}, g.{_q('rules')})),"
            f" '[]'::json){source} AND g.{_q('rules')} <> '{{}}'::jsonb)"
        )
    return (
        f"json((SELECT json_group_array(json_array(g.{_q('name')}, json(g.{_q('rules')})))"
        f"{source} AND g.{_q('rules')} <> '{{}}'))"
    )


def _group_rules(rows: Any) -> tuple[GroupRules, ...]:
    return tuple(GroupRules.from_document(name, rules) for name, rules in rows or ())


def use_challenge_and_find(
    challenge_hash: str, expires_at: datetime, credential_id: bytes | None
) -> Found:
    """Use the challenge up and find the passkey ``credential_id`` names: one statement."""
    expiry = connection.ops.adapt_datetimefield_value(expires_at)
    row = find_row(challenge_hash, expiry, credential_id)
    if row is None:
        return Found(unused=False, passkey=None, policy=_default_policy())
    values, rules, document = row
    passkey = None
    if values is not None:
        if connection.vendor != "postgresql":
            for index, field in enumerate(_fields(Passkey) + _fields(User)):
                if field.get_internal_type() == "BinaryField" and values[index] is not None:
                    values[index] = bytes.fromhex(values[index])
        passkey = _with_user(values, len(_fields(Passkey)))
    return Found(
        unused=True,
        passkey=passkey,
        policy=policy_from_document(document),
        group_rules=_group_rules(rules) if passkey is not None else (),
    )


# The statements prepared on each PostgreSQL connection (the driver's, so a new connection
# starts with none), by name.
_prepared: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()
# Set for good once prepared statements turn out not to stay with a connection.
_prepared_lost = False
# SQLSTATEs of a prepared statement that is not there (invalid_sql_statement_name), or there
# already (duplicate_prepared_statement): another server connection behind a pooler.
_NOT_WHERE_LEFT = frozenset({"26000", "42P05"})


# feature_not_supported: how PostgreSQL refuses a prepared statement whose result's columns
# changed type since it was prepared ("cached plan must not change result type", in the server's
# language), after a migration run beside this process: prepared again next time.
_STALE = "0A000"


class PreparedStatementsLost(Exception):
    """A prepared statement was not where this process left it: the statement failed (its
    transaction must roll back), and this process prepares no more (``execute_prepared``)."""


class PreparedStatementStale(PreparedStatementsLost):
    """A prepared statement's result changed type (``_STALE``): the statement failed (its
    transaction must roll back), and it is prepared again when next run."""


@lru_cache(maxsize=16)
def _preparation(label: str, statement: str, count: int) -> tuple[str, str, str]:
    """(name, PREPARE, EXECUTE with ``count`` placeholders) of ``statement``, named by its
    text: a changed statement is another one."""
    name = f"threshold_{label}_{hashlib.sha256(statement.encode()).hexdigest()[:16]}"
    numbered = iter(range(1, count + 1))
    body = re.sub("%s", lambda _: f"${next(numbered)}", statement).replace("%%", "%")
    if next(numbered, None) is not None:
        raise ValueError(f"{label}: {count} values for fewer placeholders")
    return name, f"PREPARE {name} AS {body}", f"EXECUTE {name}({', '.join(['%s'] * count)})"


def prepares(cursor: Any) -> bool:
    """Whether ``execute_prepared`` prepares statements on ``cursor``'s connection: on
    PostgreSQL with client-side binding (``sends_together``), where EXECUTE's values go in its
    text. Server-side binding cannot pass values to EXECUTE, and psycopg prepares its statements
    itself there (``prepare_threshold``)."""
    return not _prepared_lost and sends_together(cursor)


def execute_prepared(
    cursor: Any,
    label: str,
    statement: str,
    parameters: Sequence[Any],
    *,
    before: str = "",
    after: str = "",
) -> None:
    """``before`` + ``statement`` + ``after`` on PostgreSQL's ``cursor``, the statement
    prepared (once per connection, in a round trip of its own) and executed by name, as one
    query string: ``before`` and ``after`` (BEGIN; and ; COMMIT) still go with it. Without
    prepared statements (``prepares``), the statement itself."""
    global _prepared_lost  # noqa: PLW0603 - once for the process, as the pooler is
    if not prepares(cursor):
        cursor.execute(f"{before}{statement}{after}", parameters)
        return
    name, prepare, execute = _preparation(label, statement, len(parameters))
    names = _prepared.setdefault(cursor.db.connection, set())
    try:
        if name not in names:
            stale = f"-{name}"  # prepared before, its plan now stale: dropped first
            cursor.execute(f"DEALLOCATE {name}; {prepare}" if stale in names else prepare, None)
            names.discard(stale)
            names.add(name)
        cursor.execute(f"{before}{execute}{after}", parameters)
    except DatabaseError as error:
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        if sqlstate == _STALE:
            names.discard(name)
            names.add(f"-{name}")
            raise PreparedStatementStale from error
        if sqlstate not in _NOT_WHERE_LEFT:
            raise
        _prepared_lost = True
        _logger.warning(
            "PostgreSQL's prepared statements do not stay with this process's connections"
            " (a connection pooler in transaction mode?): sign-ins go on without them"
        )
        raise PreparedStatementsLost from error


def find_row(
    challenge_hash: str,
    expiry: Any,
    credential_id: bytes | None,
    on: Any = None,
    *,
    begin: bool = False,
) -> tuple[list[Any] | None, Any, Any] | None:
    """The one statement of ``use_challenge_and_find``, run and unpacked as the database sends
    it back: None when the challenge was used before (a replay); else the passkey's then its
    person's column values (``_fields`` order; None for no such passkey; on SQLite a BLOB as
    hex), their groups' rules and the policy's document. ``expiry`` is adapted for the
    database. The fast path converts the values itself, and runs it on its transaction's
    cursor ``on`` (passkeys/fastpath.py); without one, on a cursor of its own. ``begin``: the
    transaction's BEGIN goes with it, in one round trip (PostgreSQL, ``sends_together``)."""
    with nullcontext(on) if on is not None else _cursor() as cursor:
        if cursor.db.vendor == "postgresql":
            parameters = [challenge_hash, expiry, credential_id]
            statement = _postgresql_statement()
            if on is None:
                cursor.execute(statement, parameters)
            else:
                # The fast path's: prepared.
                execute_prepared(
                    cursor, "find", statement, parameters, before="BEGIN; " if begin else ""
                )
                if begin:
                    cursor.nextset()  # the BEGIN's result, then the statement's
            used, document, *values, rules = cursor.fetchone()
            if not used:
                return None
            return (None, None, document) if values[0] is None else (values, rules, document)
        cursor.execute(_sqlite_statement(), [challenge_hash, expiry, credential_id])
        # All rows (one, or none): SQLite finishes the INSERT only once RETURNING is read.
        rows = cursor.fetchall()
    if not rows:
        return None
    found, document = rows[0]
    if found is None:
        return None, None, document
    values = json.loads(found)
    rules = values.pop()
    return values, rules, document


def _select_list(
    model: type[Model], alias: str, wrap: Callable[[Field[Any, Any], str], str]
) -> str:
    return ", ".join(wrap(f, f"{alias}.{_q(f.column)}") for f in _fields(model))


@lru_cache(maxsize=2)
def _sqlite_statement() -> str:
    def plain_or_hex(field: Field[Any, Any], column: str) -> str:
        # JSON has no bytes: BLOBs travel as hex.
        return f"hex({column})" if field.get_internal_type() == "BinaryField" else column

    passkeys, users = Passkey._meta.db_table, User._meta.db_table
    # Names from the models, values as parameters.
    return (
        f"INSERT INTO {_q(UsedChallenge._meta.db_table)}"
        f" ({_q('challenge_hash')}, {_q('expires_at')})"
        " VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING"
        f" (SELECT json_array({_select_list(Passkey, 'p', plain_or_hex)},"
        f" {_select_list(User, 'u', plain_or_hex)}, {_group_rules_sql('sqlite')})"
        f" FROM {_q(passkeys)} p JOIN {_q(users)} u ON u.{_q('id')} = p.{_q('user_id')}"
        f" WHERE p.{_q('credential_id')} = %s),"
        f" (SELECT {_q('document')} FROM {_q(OrganisationPolicy._meta.db_table)}"
        f" WHERE {_q('id')} = {POLICY_ROW})"
    )


@lru_cache(maxsize=2)
def _postgresql_statement() -> str:
    def plain(field: Field[Any, Any], column: str) -> str:
        return column

    passkeys, users = Passkey._meta.db_table, User._meta.db_table
    return (
        f"WITH used AS (INSERT INTO {_q(UsedChallenge._meta.db_table)}"
        f" ({_q('challenge_hash')}, {_q('expires_at')}) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING RETURNING 1)"
        " SELECT (SELECT count(*) FROM used),"
        f" (SELECT {_q('document')} FROM {_q(OrganisationPolicy._meta.db_table)}"
        f" WHERE {_q('id')} = {POLICY_ROW}),"
        f" {_select_list(Passkey, 'p', plain)}, {_select_list(User, 'u', plain)},"
        f" {_group_rules_sql('postgresql')}"
        f" FROM (SELECT 1) one LEFT JOIN ({_q(passkeys)} p JOIN {_q(users)} u"
        f" ON u.{_q('id')} = p.{_q('user_id')}) ON p.{_q('credential_id')} = %s"
    )


def _with_user(values: Sequence[Any], split: int) -> Passkey:
    passkey = instance_from_row(Passkey, values[:split])
    passkey.user = instance_from_row(User, values[split:])
    return passkey


@dataclass(frozen=True)
class Standing:
    """What ``passkey_standing`` read: the passkey, its person's groups' rules and the policy
    in force, all ``core.policy.evaluate`` needs."""

    passkey: Passkey
    group_rules: tuple[GroupRules, ...]
    policy: Policy


def passkey_standing(passkey_id: int, user_id: int) -> Standing | None:
    """The person's passkey ``passkey_id``, the rules of their groups and the policy in force,
    in one SELECT: whether the passkey that signed a session in still signs in
    (``/authorize``); None when it is not theirs or no longer exists."""
    with _cursor() as cursor:
        cursor.execute(_standing_statement(connection.vendor), [passkey_id, user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    document, *values, rules = row
    if isinstance(rules, str):  # SQLite's JSON is text
        rules = json.loads(rules)
    return Standing(
        instance_from_row(Passkey, values), _group_rules(rules), policy_from_document(document)
    )


@lru_cache(maxsize=2)
def _standing_statement(vendor: str) -> str:
    def plain(field: Field[Any, Any], column: str) -> str:
        return column

    return (
        f"SELECT (SELECT {_q('document')} FROM {_q(OrganisationPolicy._meta.db_table)}"
        f" WHERE {_q('id')} = {POLICY_ROW}),"
        f" {_select_list(Passkey, 'p', plain)}, {_group_rules_sql(vendor)}"
        f" FROM {_q(Passkey._meta.db_table)} p"
        f" WHERE p.{_q('id')} = %s AND p.{_q('user_id')} = %s"
    )


def update_passkey(
    passkey: Passkey,
    *,
    sign_count: int,
    backup_state: bool,
    last_used_at: datetime | None = None,
    last_used_user_agent: str = "",
) -> bool:
    """Move the counter on (and the last use, with ``last_used_at``), only if it still moves
    forward (the counter rule of ``threshold.core.ceremony``); False when it no longer does."""
    changes: list[tuple[str, Any]] = [("sign_count", sign_count), ("backup_state", backup_state)]
    if last_used_at is not None:
        changes += [("last_used_at", last_used_at), ("last_used_user_agent", last_used_user_agent)]
    names = tuple(name for name, _ in changes)
    values = [_prepare(Passkey, name)(value) for name, value in changes]
    with _cursor() as cursor:
        cursor.execute(_update_statement(names), [*values, passkey.pk, sign_count, sign_count])
        return bool(cursor.rowcount == 1)


@lru_cache(maxsize=4)
def _update_statement(names: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{_q(_field(Passkey, name).column)} = %s" for name in names)
    count = _q("sign_count")
    return (
        f"UPDATE {_q(Passkey._meta.db_table)} SET {assignments} WHERE {_q('id')} = %s"
        f" AND ({count} < %s OR ({count} = 0 AND %s = 0))"
    )


def record_sign_in(
    passkey: Passkey,
    *,
    sign_count: int,
    backup_state: bool,
    last_used_at: datetime,
    last_used_user_agent: str,
    audit: AuditRow,
    session: Session | None,
) -> bool:
    """A verified sign-in's writes: move the passkey's counter on (``update_passkey``) and,
    only if it still moved forward, write the audit row and the session. False, with
    nothing written, when another sign-in moved the counter first.

    SQLite: three statements (no round trips to save). PostgreSQL: one statement, whose
    data-modifying CTEs run the INSERTs only when the UPDATE changed a row.
    """
    if connection.vendor != "postgresql":
        if not update_passkey(
            passkey,
            sign_count=sign_count,
            backup_state=backup_state,
            last_used_at=last_used_at,
            last_used_user_agent=last_used_user_agent,
        ):
            return False
        insert_audit([audit])
        if session is not None:
            _insert_new_session(session)
        return True
    changes = {
        "sign_count": sign_count,
        "backup_state": backup_state,
        "last_used_at": last_used_at,
        "last_used_user_agent": last_used_user_agent,
    }
    audit_values = audit.values()
    parameters = [_prepare(Passkey, name)(value) for name, value in changes.items()]
    parameters += [passkey.pk, sign_count, sign_count]
    parameters += [_prepare(AuditEvent, name)(value) for name, value in audit_values.items()]
    if session is not None:
        parameters += _session_values(session)
    with _cursor() as cursor:
        cursor.execute(
            _record_statement(tuple(changes), tuple(audit_values), session is not None),
            parameters,
        )
        moved, saved = cursor.fetchone()
    if not moved:
        return False
    if session is not None and not saved:
        _insert_new_session(session)  # its key was taken: under a fresh one
    return True


# What the record statement with ``commit`` fails with when it wrote nothing (division by zero).
RECORD_REFUSED = "22012"


@lru_cache(maxsize=4)
def _record_statement(
    changes: tuple[str, ...], audit_names: tuple[str, ...], with_session: bool, refuse: bool = False
) -> str:
    """PostgreSQL's one statement of ``record_sign_in``: the UPDATE, and the INSERTs only if it
    changed a row; (moved, saved) back. With ``refuse`` (and the session), for the
    transaction's COMMIT to go with it, in one round trip (``sends_together``): the statement
    then fails, SQLSTATE ``RECORD_REFUSED``, when the counter did not move or the session's key
    was taken, so that the COMMIT after it does not run and the transaction can be rolled back
    whole."""

    def insert(model: type[Model], names: Sequence[str]) -> str:
        columns = ", ".join(_q(_field(model, name).column) for name in names)
        return (
            f"INSERT INTO {_q(model._meta.db_table)} ({columns})"
            f" SELECT {', '.join(['%s'] * len(names))} WHERE EXISTS (SELECT 1 FROM moved)"
        )

    session = (
        f", saved AS ({insert(Session, _attnames(Session))} ON CONFLICT DO NOTHING RETURNING 1)"
        if with_session
        else ""
    )
    writes = (
        f"WITH moved AS ({_update_statement(changes)} RETURNING 1),"
        f" audit AS ({insert(AuditEvent, audit_names)}){session}"
    )
    if refuse and with_session:
        # 1 / 0 when either wrote nothing: a division by a count, evaluated as the statement
        # runs (a constant one would fail when it is planned).
        return f"{writes} SELECT 1 / ((SELECT count(*) FROM moved) * (SELECT count(*) FROM saved))"
    return (
        f"{writes} SELECT (SELECT count(*) FROM moved),"
        f" {'(SELECT count(*) FROM saved)' if with_session else '0'}"
    )


def flag_possibly_cloned(passkey: Passkey) -> None:
    # A refusal's statement, rare: not worth a cached string.
    with _cursor() as cursor:
        cursor.execute(
            f"UPDATE {_q(Passkey._meta.db_table)} SET {_q('is_possibly_cloned')} = %s"
            f" WHERE {_q('id')} = %s",
            [True, passkey.pk],
        )


@dataclass(frozen=True)
class AuditRow:
    """One ``AuditEvent``, as ``threshold.audit.actions.record`` would write it."""

    at: datetime
    action: str
    origin: Origin
    actor: User | None = None
    subject: User | None = None
    reason: str = ""
    detail: dict[str, Any] | None = None

    def values(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": str(self.action),
            "reason": self.reason,
            "actor_id": self.actor.pk if self.actor is not None else None,
            "subject_id": self.subject.pk if self.subject is not None else None,
            "subject_label": self.subject.username if self.subject is not None else "",
            "ip": self.origin.ip,
            "user_agent": self.origin.user_agent[:512],
            "via": str(self.origin.via),
            "detail": self.detail or {},
        }


def insert_audit(rows: Iterable[AuditRow]) -> None:
    """The rows in one INSERT."""
    prepared = [row.values() for row in rows]
    names = tuple(prepared[0])
    prepare = [_prepare(AuditEvent, name) for name in names]
    with _cursor() as cursor:
        cursor.execute(
            _audit_statement(names, len(prepared)),
            [
                column(values[name])
                for values in prepared
                for name, column in zip(names, prepare, strict=True)
            ],
        )


@lru_cache(maxsize=4)
def _audit_statement(names: tuple[str, ...], rows: int) -> str:
    columns = ", ".join(_q(_field(AuditEvent, name).column) for name in names)
    placeholders = "(" + ", ".join(["%s"] * len(names)) + ")"
    return (
        f"INSERT INTO {_q(AuditEvent._meta.db_table)} ({columns})"
        f" VALUES {', '.join([placeholders] * rows)}"
    )


def insert_session(session: Session) -> bool:
    """INSERT ``session`` (every column, as ``SessionStore.create_model_instance`` fills them);
    False when its key is taken, which the caller answers with a fresh key."""
    with _cursor() as cursor:
        cursor.execute(_session_statement(), _session_values(session))
        return bool(cursor.rowcount == 1)


def _session_values(session: Session) -> list[Any]:
    return [
        _prepare(Session, field.attname)(field.pre_save(session, True))
        for field in _fields(Session)
    ]


def _insert_new_session(session: Session) -> None:
    """INSERT ``session``; while its key is taken (never seen in practice), under a fresh one."""
    while not insert_session(session):
        session.session_key = SessionStore()._get_new_session_key()  # noqa: SLF001


@lru_cache(maxsize=2)
def _session_statement() -> str:
    fields = _fields(Session)
    return (
        f"INSERT INTO {_q(Session._meta.db_table)} ({', '.join(_q(f.column) for f in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT DO NOTHING"
    )
