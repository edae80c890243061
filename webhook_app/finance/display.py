"""Small formatters shared by the dashboard and the terminal report (money: `invoices.format_amount`)."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """Seconds for humans: "2d 4h", "3h 5m", "12m", "under a minute", or an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else "under a minute"


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal ("62.7%"), or an em dash when undefined."""
    return "—" if value is None else f"{value * 100:.1f}%"
