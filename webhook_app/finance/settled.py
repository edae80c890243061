"""Recovered money as it reached the account: the settled figures of the period's recoveries.

Each recovery's balance transaction (Stripe) is in the account's payout currency, whatever the invoice
currency, so these totals are per payout currency and add up across invoice currencies: the one place
finance may add a JPY invoice to a USD one, because Stripe already converted both. Recoveries whose
figures are not known (still pending, paid outside the provider, or a provider without settlement
reports) are counted apart, never estimated. Refunds are not netted here (see the ledger).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from webhook_app.finance.queries import Filters, LedgerGroup, ledger_groups
from webhook_app.money import format_amount, to_decimal
from webhook_app.states import LedgerKind, SettlementStatus


@dataclass
class PayoutTotal:
    """The period's settled recoveries in one payout currency (minor units)."""

    currency: str
    recoveries: int = 0
    amount: int = 0
    fee: int = 0
    net: int = 0
    invoice_currencies: list[str] = field(default_factory=list)

    def money(self, amount: int) -> str:
        """An amount of the payout currency for humans."""
        return format_amount(amount, self.currency)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON and the report."""
        out: dict[str, Any] = {"payout_currency": self.currency, "recoveries": self.recoveries}
        for name in ("amount", "fee", "net"):
            value = getattr(self, name)
            out[f"settled_{name}_minor"], out[f"settled_{name}"] = value, str(to_decimal(value, self.currency))
        out["invoice_currencies"] = self.invoice_currencies
        return out


UNTRACKED = "untracked"  # recorded before settled figures were tracked (settlement_status NULL)
WITHOUT_LABELS = {
    SettlementStatus.PENDING: "still being looked up",
    SettlementStatus.NONE: "paid outside the provider",
    SettlementStatus.UNAVAILABLE: "without a settlement report",
    UNTRACKED: "recorded before settlement tracking",
}


@dataclass
class SettledSummary:
    """Payout totals, and how many recoveries have no settled figures, by settlement status."""

    totals: list[PayoutTotal]
    without: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON and the report."""
        return {"totals": [t.as_dict() for t in self.totals], "recoveries_without_settlement": dict(self.without)}

    def without_lines(self) -> list[str]:
        """Counts of recoveries without settled figures, for people ("2 still being looked up")."""
        return [f"{n} {WITHOUT_LABELS.get(status, status)}" for status, n in self.without.items()]


def settled_summary(session: Session, f: Filters, groups: list[LedgerGroup] | None = None) -> SettledSummary:
    """The period's recoveries (filters on the invoice currency, mode and provider) by payout currency.

    `groups`: the period's `ledger_groups` when the caller has them already (one ledger scan for all).
    """
    totals: dict[str, PayoutTotal] = {}
    without: dict[str, int] = defaultdict(int)
    for group in ledger_groups(session, f) if groups is None else groups:
        if group.kind != LedgerKind.RECOVERY:
            continue
        if group.settlement_status != SettlementStatus.SETTLED or group.settled_currency is None:
            without[group.settlement_status or UNTRACKED] += group.count
            continue
        total = totals.setdefault(group.settled_currency, PayoutTotal(group.settled_currency))
        total.recoveries += group.count
        total.amount += group.settled_amount
        total.fee += group.settled_fee
        total.net += group.settled_net
        if group.currency not in total.invoice_currencies:
            total.invoice_currencies.append(group.currency)
    for total in totals.values():
        total.invoice_currencies.sort()
    return SettledSummary([totals[c] for c in sorted(totals)], dict(sorted(without.items())))
