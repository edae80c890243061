"""SQL helpers shared by the core: one insert-or-nothing for every idempotent write."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import FromClause, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

# Built once per (dialect, table, conflict columns), values passed as parameters: building the
# statement with `.values(**row)` on every call cost more CPU than the insert itself on the webhook
# path (benches/: about 0.5 ms of a 1.5 ms acknowledgement).
_INSERTS: dict[tuple[str, FromClause, tuple[str, ...]], Any] = {}


def insert_if_absent(
    conn: Connection | Session, table: FromClause, values: dict[str, Any], index_elements: list[str]
) -> bool:
    """INSERT that does nothing on a unique conflict (one statement, so no race with a twin).

    Returns whether a row was inserted. `conn` is a Connection or a Session.
    """
    return conn.execute(_insert_statement(conn, table, index_elements), values).first() is not None


def insert_all_if_absent(
    conn: Connection | Session, table: FromClause, rows: list[dict[str, Any]], index_elements: list[str]
) -> int:
    """`insert_if_absent` for several rows with the same columns, in one statement; returns how many
    were inserted.

    One multi-row INSERT (SQLAlchemy's "insertmanyvalues") rather than one per row: on SQLite each
    statement of a write transaction is a moment the writer may wait for the GIL while it holds the
    database's write turn, and every delivery behind it waits too (docs/performance.md).
    """
    if not rows:
        return 0
    return len(conn.execute(_insert_statement(conn, table, index_elements), rows).all())


def _insert_statement(conn: Connection | Session, table: FromClause, index_elements: list[str]) -> Any:
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    dialect = bind.dialect.name
    key = (dialect, table, tuple(index_elements))
    stmt = _INSERTS.get(key)
    if stmt is None:
        target = cast(Table, table)  # a model's __table__ is a Table; SQLAlchemy types it as FromClause
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = _INSERTS[key] = (
            insert(target).on_conflict_do_nothing(index_elements=index_elements).returning(*target.primary_key.columns)
        )
    return stmt


_ADDS: dict[tuple[str, FromClause, tuple[str, ...], tuple[str, ...]], Any] = {}


def add_to(
    conn: Connection | Session, table: FromClause, values: dict[str, Any], keys: list[str], counters: list[str]
) -> None:
    """Add `counters` to the row `keys` names, creating it if absent: one statement, for roll-ups.

    `INSERT ... ON CONFLICT (keys) DO UPDATE SET n = n + excluded.n`: the database adds under the row's
    lock, so concurrent writers never lose an increment (no read-modify-write in Python).
    """
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    dialect = bind.dialect.name
    key = (dialect, table, tuple(keys), tuple(counters))
    stmt = _ADDS.get(key)
    if stmt is None:
        target = cast(Table, table)
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        base = insert(target)
        stmt = _ADDS[key] = base.on_conflict_do_update(
            index_elements=keys, set_={name: target.c[name] + base.excluded[name] for name in counters}
        )
    conn.execute(stmt, values)
