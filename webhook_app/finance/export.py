"""CSV export of ledger rows, streamed: a million rows never sit in memory at once.

PostgreSQL: one read transaction with a server-side cursor (`yield_per`), so the export is one
consistent snapshot and rows travel in batches. SQLite: its writer lock is taken by every transaction
in this app (BEGIN IMMEDIATE, see `db.py`), and a long export must not block webhook intake, so rows are
read in short keyset batches instead, bounded by the highest id at the start: the ledger is append-only,
so that bound makes the batches one consistent snapshot too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select

from webhook_app.db import Database
from webhook_app.finance.period import iso
from webhook_app.finance.queries import Filters, after_key, narrowed, rows_query
from webhook_app.models import LedgerEntry
from webhook_app.money import to_decimal
from webhook_app.providers import DashboardLink

BATCH_SIZE = 2000
CSV_COLUMNS = (
    "recovered_at",
    "kind",
    "currency",
    "amount_minor",
    "amount",
    "invoice_id",
    "customer_id",
    "attribution",
    "first_failed_at",
    "seconds_to_recover",
    "livemode",
    "entry_key",
    "invoice_url",
    "customer_url",
    "provider",
    # Added with the finance review; appended so that existing column positions never move.
    "invoice_number",
    "customer_name",
    "customer_email",
    "settlement_status",
    "settled_currency",
    "settled_amount_minor",
    "settled_amount",
    "settled_fee_minor",
    "settled_fee",
    "settled_net_minor",
    "settled_net",
    "exchange_rate",
    "balance_transaction",
)


def iter_rows(db: Database, f: Filters, batch_size: int = BATCH_SIZE) -> Iterator[Any]:
    """The period's ledger rows, oldest first, fetched `batch_size` at a time."""
    ordered = rows_query(f).order_by(LedgerEntry.recovered_at, LedgerEntry.id)
    if db.dialect == "postgresql":
        with db.session() as s:
            result = s.execute(ordered, execution_options={"yield_per": batch_size})
            for partition in result.partitions():
                yield from partition
        return
    with db.session() as s:
        last_id = s.scalar(select(func.max(LedgerEntry.id)))
    if last_id is None:
        return
    window = f
    query = ordered.where(LedgerEntry.id <= last_id)
    while True:
        with db.session() as s:
            batch = s.execute(query.limit(batch_size)).all()
        yield from batch
        if len(batch) < batch_size:
            return
        last = batch[-1]
        window = narrowed(window, last.recovered_at, before=False)
        query = (
            rows_query(window)
            .order_by(LedgerEntry.recovered_at, LedgerEntry.id)
            .where(
                LedgerEntry.id <= last_id, after_key(LedgerEntry.recovered_at, last.recovered_at, last.id, before=False)
            )
        )


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _settled(amount: int | None, currency: str | None) -> Any:
    return "" if amount is None or currency is None else to_decimal(amount, currency)


def csv_values(row: Any, dashboard: DashboardLink) -> tuple[Any, ...]:
    """One ledger row as CSV fields, in CSV_COLUMNS order (the same values as `row_dict`)."""
    settled = row.settled_currency
    return (
        iso(row.recovered_at),
        row.kind,
        row.currency,
        row.amount,
        to_decimal(row.amount, row.currency),
        row.invoice_id,
        row.customer_id,
        row.attribution or "",
        iso(row.first_failed_at) or "",
        "" if row.seconds_to_recover is None else row.seconds_to_recover,
        "true" if row.livemode else "false",
        row.entry_key,
        dashboard(row.provider, "invoice", row.invoice_id, row.livemode) or "",
        dashboard(row.provider, "customer", row.customer_id, row.livemode) or "",
        row.provider,
        _blank(row.invoice_number),
        _blank(row.customer_name),
        _blank(row.customer_email),
        _blank(row.settlement_status),
        _blank(settled),
        _blank(row.settled_amount),
        _settled(row.settled_amount, settled),
        _blank(row.settled_fee),
        _settled(row.settled_fee, settled),
        _blank(row.settled_net),
        _settled(row.settled_net, settled),
        _blank(row.settled_exchange_rate),
        _blank(row.settlement_id),
    )


def iter_csv(db: Database, f: Filters, dashboard: DashboardLink, batch_size: int = BATCH_SIZE) -> Iterator[str]:
    """CSV text in chunks (a header, then about one chunk per batch of rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    pending = 0
    for row in iter_rows(db, f, batch_size):
        writer.writerow(csv_values(row, dashboard))
        pending += 1
        if pending >= batch_size:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()
