"""Opaque pagination cursors and the sort orders of each finance list.

A cursor is the sort key of the last row seen (keyset pagination), so page 5,000 of a million-row
ledger costs the same index range scan as page 1, and rows appended meanwhile never shift a page.
Clients pass cursors back unchanged and never parse them.

Each list has its own sorts, `name -> (key kind, descending)`: a "date" key or an "amount" key.
Amounts in different currencies cannot be compared, so amount sorts need one currency
(`require_one_currency`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

Sorts = Mapping[str, tuple[str, bool]]

# The ledger: by payment / correction date, or by amount.
SORTS: Sorts = {
    "-date": ("date", True),
    "date": ("date", False),
    "-amount": ("amount", True),
    "amount": ("amount", False),
}
DEFAULT_SORT = "-date"
# At risk now: by first failure (oldest first: the longest at risk), or by amount due.
AT_RISK_SORTS: Sorts = {
    "failed": ("date", False),
    "-failed": ("date", True),
    "-amount": ("amount", True),
    "amount": ("amount", False),
}
AT_RISK_DEFAULT = "failed"
# Lost: by the day the case was closed (newest first), or by amount due.
LOST_SORTS: Sorts = {
    "-closed": ("date", True),
    "closed": ("date", False),
    "-amount": ("amount", True),
    "amount": ("amount", False),
}
LOST_DEFAULT = "-closed"


class CursorError(ValueError):
    """The cursor or sort parameter is not one we issued; the message is safe to show."""


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after (`forward`) or before (not `forward`) the row with this key."""

    sort: str
    key: datetime | int
    row_id: int
    forward: bool = True

    def encode(self) -> str:
        """The opaque string form."""
        key = self.key.isoformat() if isinstance(self.key, datetime) else self.key
        raw = json.dumps(
            {"s": self.sort, "k": key, "i": self.row_id, "f": int(self.forward)}, separators=(",", ":")
        ).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, sorts: Sorts = SORTS) -> Cursor:
        """Parse a cursor from `encode` for a list with these `sorts`; raises CursorError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            sort, key, row_id, forward = data["s"], data["k"], data["i"], data["f"]
            if sort not in sorts or not isinstance(row_id, int) or isinstance(row_id, bool) or forward not in (0, 1):
                raise ValueError
            if sorts[sort][0] == "date":
                key = datetime.fromisoformat(key)
                if key.tzinfo is not None:
                    raise ValueError
            elif not isinstance(key, int) or isinstance(key, bool):
                raise ValueError
        except (ValueError, TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
            raise CursorError("cursor is invalid; start again without it") from None
        return cls(sort=sort, key=key, row_id=row_id, forward=bool(forward))


def check_sort(sort: str | None, sorts: Sorts = SORTS, default: str = DEFAULT_SORT) -> str:
    """The sort parameter, validated against a list's sorts (its default when absent)."""
    sort = sort or default
    if sort not in sorts:
        raise CursorError(f"sort must be one of {', '.join(sorts)}")
    return sort


def by_amount(sort: str, sorts: Sorts = SORTS) -> bool:
    """Whether `sort` orders by amount."""
    return sorts[sort][0] == "amount"


def require_one_currency(sort: str, currency: str | None, sorts: Sorts = SORTS) -> None:
    """Refuse an amount sort across currencies: 100 JPY is not more than 99 USD."""
    if by_amount(sort, sorts) and not currency:
        raise CursorError(
            "sorting by amount needs one currency (amounts in different currencies cannot be compared): "
            "choose a currency first"
        )
