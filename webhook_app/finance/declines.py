"""Recovery by why the payment failed: per currency and decline class, what came back and what was lost.

A recovery counts in the period it was paid (ledger `recovery` rows dated in the period, gross); a loss
in the period its case closed as void, uncollectible or canceled (at its amount due), as on the rest
of the dashboard. The class is the case's (`webhook_app.declines`), `unknown` when none was read. The
rate is recoveries ÷ (recoveries + losses); amounts in different currencies are never added together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webhook_app.declines import DeclineClass
from webhook_app.finance.queries import Filters, LostGroup, ledger_where, lost_groups, rollup_where, whole_days
from webhook_app.models import DunningCase, LedgerDaily, LedgerEntry
from webhook_app.money import to_decimal
from webhook_app.states import LedgerKind


@dataclass
class DeclineRow:
    """One decline class of one currency (amounts in minor units)."""

    currency: str
    decline_class: str
    recoveries: int = 0
    recovered: int = 0
    lost_cases: int = 0
    lost: int = 0

    @property
    def rate(self) -> float | None:
        finished = self.recoveries + self.lost_cases
        return self.recoveries / finished if finished else None

    @property
    def amount_rate(self) -> float | None:
        finished = self.recovered + self.lost
        return self.recovered / finished if finished > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON: minor units plus decimal strings, rates as fractions."""
        return {
            "decline_class": self.decline_class,
            "recoveries": self.recoveries,
            "recovered_minor": self.recovered,
            "recovered": str(to_decimal(self.recovered, self.currency)),
            "lost_cases": self.lost_cases,
            "lost_minor": self.lost,
            "lost": str(to_decimal(self.lost, self.currency)),
            "recovery_rate": None if self.rate is None else round(self.rate, 4),
            "amount_recovery_rate": None if self.amount_rate is None else round(self.amount_rate, 4),
        }


ORDER = {decline_class.value: n for n, decline_class in enumerate(DeclineClass)}


def by_decline_class(session: Session, f: Filters, lost: list[LostGroup] | None = None) -> dict[str, list[DeclineRow]]:
    """Per currency, one row per decline class with any recovery or loss in the period (table order).

    `lost`: the period's `lost_groups` when the caller has them already.
    """
    rows: dict[tuple[str, str], DeclineRow] = {}

    def row(currency: str, decline_class: str | None) -> DeclineRow:
        name = decline_class or DeclineClass.UNKNOWN.value
        return rows.setdefault((currency, name), DeclineRow(currency, name))

    recovered: Any
    if whole_days(f.period):
        # The roll-ups keep the case's class with each row ('' for a row without a case, as the join drops).
        entries = func.sum(LedgerDaily.entries)
        recovered = session.execute(
            select(LedgerDaily.decline_class, LedgerDaily.currency, entries, func.sum(LedgerDaily.amount))
            .where(LedgerDaily.kind == LedgerKind.RECOVERY, LedgerDaily.decline_class != "", *rollup_where(f))
            .group_by(LedgerDaily.decline_class, LedgerDaily.currency)
            .having(entries != 0)
        )
    else:
        recovered = session.execute(
            select(DunningCase.decline_class, LedgerEntry.currency, func.count(), func.sum(LedgerEntry.amount))
            .join(DunningCase, DunningCase.id == LedgerEntry.case_id)
            .where(LedgerEntry.kind == LedgerKind.RECOVERY, *ledger_where(f))
            .group_by(DunningCase.decline_class, LedgerEntry.currency)
        )
    for decline_class, currency, count, amount in recovered:
        r = row(currency, decline_class)
        r.recoveries += int(count)
        r.recovered += int(amount or 0)
    for group in lost_groups(session, f) if lost is None else lost:
        r = row(group.currency, group.decline_class)
        r.lost_cases += group.count
        r.lost += group.amount
    by_currency: dict[str, list[DeclineRow]] = defaultdict(list)
    for (currency, _), r in sorted(rows.items(), key=lambda item: (item[0][0], ORDER.get(item[0][1], 99))):
        by_currency[currency].append(r)
    return dict(by_currency)
