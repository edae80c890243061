"""A weekly bar chart of recovered vs lost money, laid out here and drawn as inline SVG by a template.

No JavaScript, no CDN: the page works offline and under the strict Content-Security-Policy. One chart
per currency, because amounts in different currencies cannot share an axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from webhook_app.finance.queries import Week
from webhook_app.money import format_amount

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 84, 12, 14, 30
SERIES = (("recovered", "Recovered"), ("refunded", "Refunded / credited"), ("lost", "Lost"))
MAX_X_LABELS = 9


@dataclass(frozen=True)
class Bar:
    """One rectangle; `css` picks its colour in finance.css."""

    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Label:
    """A positioned axis label."""

    x: float
    y: float
    text: str


@dataclass
class Chart:
    """Everything the SVG template needs; coordinates in the viewBox `0 0 WIDTH HEIGHT`."""

    currency: str
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: float = LEFT
    plot_right: float = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Label] = field(default_factory=list)
    x_labels: list[Label] = field(default_factory=list)
    weeks: int = 0
    empty: bool = True
    totals: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """A sentence for screen readers (`<desc>`)."""
        parts = ", ".join(f"{label.lower()} {self.totals.get(key, '')}" for key, label in SERIES)
        return f"{self.currency.upper()} per week over {self.weeks} weeks: {parts}."


def axis_label(amount: int, currency: str) -> str:
    """A compact tick label: "$2,500" rather than "$2,500.00"."""
    text = format_amount(amount, currency)
    for zeros in (".000", ".00"):
        if text.endswith(zeros):
            return text[: -len(zeros)]
    return text


def nice_step(maximum: int, ticks: int = 4) -> int:
    """A round step (1, 2, 2.5 or 5 times a power of ten, in minor units) covering `maximum` in `ticks`."""
    raw = max(1.0, maximum / ticks)
    magnitude: float = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * magnitude
        if step >= raw:
            return max(1, math.ceil(step))
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def _series_value(week: Week, key: str) -> int:
    if key == "recovered":
        return max(week.recovered, 0)
    if key == "refunded":
        return max(-week.corrections, 0)
    return max(week.lost, 0)


def weekly_chart(currency: str, weeks: list[Week]) -> Chart:
    """Lay out grouped bars (recovered, refunded, lost) per week for one currency."""
    chart = Chart(currency=currency, weeks=len(weeks))
    totals = {key: sum(_series_value(w, key) for w in weeks) for key, _ in SERIES}
    chart.totals = {key: format_amount(value, currency) for key, value in totals.items()}
    peak = max((_series_value(w, key) for w in weeks for key, _ in SERIES), default=0)
    if not weeks:
        return chart
    chart.empty = peak == 0
    step = nice_step(peak)
    top_value = step * max(1, math.ceil(peak / step))
    plot_h = chart.baseline - TOP
    plot_w = chart.plot_right - chart.plot_left
    for i in range(0, top_value // step + 1):
        value = i * step
        chart.y_ticks.append(
            Label(
                chart.plot_left - 6, round(chart.baseline - value / top_value * plot_h, 1), axis_label(value, currency)
            )
        )

    group = plot_w / len(weeks)
    bar_w = group * 0.8 / len(SERIES)
    every = max(1, math.ceil(len(weeks) / MAX_X_LABELS))
    labels = dict(SERIES)
    for i, week in enumerate(weeks):
        x0 = chart.plot_left + i * group + group * 0.1
        for j, (key, _label) in enumerate(SERIES):
            value = _series_value(week, key)
            if value <= 0:
                continue
            height = max(1.0, value / top_value * plot_h)
            chart.bars.append(
                Bar(
                    x=round(x0 + j * bar_w, 2),
                    y=round(chart.baseline - height, 2),
                    width=round(max(bar_w - 0.5, 0.5), 2),
                    height=round(height, 2),
                    css=f"bar-{key}",
                    title=f"Week of {week.start.isoformat()}: {labels[key].lower()} {format_amount(value, currency)}",
                )
            )
        if i % every == 0:
            chart.x_labels.append(
                Label(
                    round(chart.plot_left + i * group + group / 2, 2),
                    chart.baseline + 18,
                    f"{week.start:%b} {week.start.day}",
                )
            )
    return chart
