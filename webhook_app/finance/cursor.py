"""Opaque pagination cursors: clients pass them back unchanged and never parse them.

A cursor is the sort key of the last row seen (keyset pagination), so page 5,000 of a million-row
ledger costs the same index range scan as page 1, and rows appended meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

SORTS = {"-date": ("date", True), "date": ("date", False), "-amount": ("amount", True), "amount": ("amount", False)}
DEFAULT_SORT = "-date"


class CursorError(ValueError):
    """The cursor or sort parameter is not one we issued."""


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
    def decode(cls, token: str) -> Cursor:
        """Parse a cursor from `encode`; raises CursorError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            sort, key, row_id, forward = data["s"], data["k"], data["i"], data["f"]
            if sort not in SORTS or not isinstance(row_id, int) or isinstance(row_id, bool) or forward not in (0, 1):
                raise ValueError
            if SORTS[sort][0] == "date":
                key = datetime.fromisoformat(key)
                if key.tzinfo is not None:
                    raise ValueError
            elif not isinstance(key, int) or isinstance(key, bool):
                raise ValueError
        except (ValueError, TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
            raise CursorError("cursor is invalid; start again without it") from None
        return cls(sort=sort, key=key, row_id=row_id, forward=bool(forward))


def check_sort(sort: str | None) -> str:
    """The sort parameter, validated (`-date` newest first by default)."""
    sort = sort or DEFAULT_SORT
    if sort not in SORTS:
        raise CursorError(f"sort must be one of {', '.join(SORTS)}")
    return sort
