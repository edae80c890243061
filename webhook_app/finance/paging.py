"""Keyset pagination shared by the finance lists: ordered by (sort key, id), never by OFFSET."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session

from webhook_app.finance.cursor import Cursor, Sorts


@dataclass
class Page:
    """One page of rows with cursors to its neighbours (None at either end)."""

    rows: list[Any]
    next_cursor: str | None
    prev_cursor: str | None


def after(column: Any, id_column: Any, key: Any, row_id: int, *, before: bool) -> Any:
    """Rows strictly after (or before) `(key, row_id)` in `(column, id)` order."""
    if before:
        return or_(column < key, and_(column == key, id_column < row_id))
    return or_(column > key, and_(column == key, id_column > row_id))


def keyset(
    session: Session,
    query: Any,  # a Select of the list's columns, including `id`
    *,
    sorts: Sorts,
    sort: str,
    columns: dict[str, Any],
    id_column: Any,
    key_of: Callable[[Any], Any],
    cursor: Cursor | None,
    limit: int,
) -> Page:
    """A page of `query` in `sort` order after (or before) `cursor`.

    `columns` maps a key kind ("date", "amount") to the column to order by; `key_of(row)` reads that
    key back from a row, for the cursors. Reading backwards is reading the reverse order forwards,
    then flipping the page.
    """
    kind, descending = sorts[sort]
    column = columns[kind]
    forward = cursor is None or cursor.forward
    reverse = descending == forward
    if cursor is not None:
        query = query.where(after(column, id_column, cursor.key, cursor.row_id, before=reverse))
    order = (column.desc(), id_column.desc()) if reverse else (column.asc(), id_column.asc())
    rows = list(session.execute(query.order_by(*order).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    if not rows:
        return Page([], None, None)

    def at(row: Any, fwd: bool) -> str:
        return Cursor(sort, key_of(row), row.id, fwd).encode()

    has_next = more if forward else True
    has_prev = (cursor is not None) if forward else more
    return Page(rows, at(rows[-1], True) if has_next else None, at(rows[0], False) if has_prev else None)
