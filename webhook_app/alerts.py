"""Team alerts: the few recovery events a person on the team should hear about, said plainly.

Kinds:
- `large_failure`: a payment at or above the currency's `ALERT_MIN_AMOUNT` threshold failed;
- `do_not_contact`: a decline the customer is deliberately *not* emailed about (fraud signal, withdrawn
  authorization); someone decides what to do;
- `final_notice`: the customer was sent the last notice before the provider stops retrying;
- `recovered`: the money came back;
- `digest`: the day's per-currency totals (`ALERT_DIGEST_HOUR`).

An alert names the customer by name and provider id and the invoice by number and id, with the amount
formatted for its currency. It never carries the customer's email address: there is no field for it,
and a customer *name* that is an email address is masked when rendered (alerts land in chat channels
with a wider audience and longer retention than the dunning case).

`render_text` is the plain one-paragraph form (Slack's notification fallback, an email body);
`render_blocks` is the same content as Slack Block Kit blocks (escaped for Slack's mrkdwn).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from webhook_app.adapters import SendResult
from webhook_app.declines import DESCRIPTIONS, DeclineClass
from webhook_app.money import format_amount
from webhook_app.observability import scrub
from webhook_app.payload import MAX_AMOUNT


class AlertKind(StrEnum):
    """What happened, from the team's point of view."""

    LARGE_FAILURE = "large_failure"
    DO_NOT_CONTACT = "do_not_contact"
    FINAL_NOTICE = "final_notice"
    RECOVERED = "recovered"
    DIGEST = "digest"


@dataclass(frozen=True)
class CurrencyTotal:
    """One currency's line of a digest; amounts in minor units, never summed across currencies."""

    currency: str
    failed_amount: int = 0
    failed_count: int = 0
    recovered_amount: int = 0
    recovered_count: int = 0
    open_amount: int = 0  # still unpaid at the end of the period
    open_count: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", _currency(self.currency))


@dataclass(frozen=True)
class Alert:
    """One alert. Invoice alerts need `amount` and `currency`; a digest needs `totals` (and a `period`)."""

    kind: AlertKind
    provider: str = "stripe"
    customer_id: str | None = None
    customer_name: str | None = None
    invoice_id: str | None = None
    invoice_number: str | None = None
    amount: int | None = None  # minor units
    currency: str | None = None
    decline_class: DeclineClass | None = None
    decline_code: str | None = None
    dashboard_url: str | None = None
    totals: tuple[CurrencyTotal, ...] = field(default=())
    period: str | None = None  # what a digest covers, e.g. "2026-05-18"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AlertKind(self.kind))
        if self.decline_class is not None:
            object.__setattr__(self, "decline_class", DeclineClass(self.decline_class))
        object.__setattr__(self, "totals", tuple(self.totals))
        if self.kind is AlertKind.DIGEST:
            return
        if self.amount is None or self.currency is None:
            raise ValueError(f"a {self.kind.value} alert needs an amount and a currency")
        object.__setattr__(self, "currency", _currency(self.currency))


class Alerter(Protocol):
    """Delivers one team alert (Slack, email, console)."""

    name: str

    def send(self, alert: Alert, idempotency_key: str) -> SendResult: ...

    def check(self) -> str:
        """Verify the configuration without alerting anyone; return a short description or raise."""
        ...


def _currency(value: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError(f"{value!r} is not a three-letter ISO 4217 currency code")
    return value.lower()


# -- thresholds (ALERT_MIN_AMOUNT) -------------------------------------------------------------------

_ENTRY = re.compile(r"\s*([^=\s]*)\s*=\s*(\S*)\s*")


def parse_min_amounts(raw: str | None, name: str = "ALERT_MIN_AMOUNT") -> dict[str, int]:
    """`"usd=50000,eur=45000"` -> `{"usd": 50000, "eur": 45000}`: per-currency thresholds in minor units.

    Empty or unset means no large-failure alerts. Every problem is named in one ValueError (which
    config collects): an entry that is not `currency=amount`, a code that is not three letters, an
    amount that is not a whole number of minor units ("500.00", "50,000", "-1"), a currency twice.
    """
    thresholds: dict[str, int] = {}
    problems: list[str] = []
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        match = _ENTRY.fullmatch(item)
        if match is None or not match.group(1) or not match.group(2):
            problems.append(f"{name} entry {item.strip()!r} must look like currency=amount, e.g. usd=50000")
            continue
        code, amount = match.group(1), match.group(2)
        if not re.fullmatch(r"[A-Za-z]{3}", code):
            problems.append(f"{name}: {code!r} is not a three-letter ISO 4217 currency code")
            continue
        currency = code.lower()
        if not re.fullmatch(r"[0-9]+", amount) or int(amount) > MAX_AMOUNT:
            example = format_amount(50000, currency)
            problems.append(
                f"{name}: the amount for {currency} must be a whole number of minor units, "
                f"e.g. {currency}=50000 for {example}; got {amount!r}"
            )
            continue
        if currency in thresholds:
            problems.append(f"{name} names {currency} twice")
            continue
        thresholds[currency] = int(amount)
    if problems:
        raise ValueError("; ".join(problems))
    return thresholds


def at_or_above(amount: int, currency: str, thresholds: Mapping[str, int]) -> bool:
    """Whether `amount` (minor units) reaches the threshold for `currency`.

    A currency without a threshold never counts as large: amounts in different currencies are not
    comparable without an exchange rate, and guessing one would alert on the wrong failures.
    """
    threshold = thresholds.get(currency.lower())
    return threshold is not None and amount >= threshold


def failure_alert_kinds(
    decline_class: DeclineClass | None, amount: int, currency: str, thresholds: Mapping[str, int]
) -> tuple[AlertKind, ...]:
    """The alerts a failed payment calls for: do-not-contact declines, and large amounts."""
    kinds: list[AlertKind] = []
    if decline_class is DeclineClass.DO_NOT_CONTACT:
        kinds.append(AlertKind.DO_NOT_CONTACT)
    if at_or_above(amount, currency, thresholds):
        kinds.append(AlertKind.LARGE_FAILURE)
    return tuple(kinds)


def alert_key(alert: Alert, episode: int | None = None) -> str:
    """The outbox key that makes an alert happen once: per kind and invoice (and episode), per digest period.

    Chat webhooks have no idempotency keys, so this unique key is the only thing that prevents a second
    alert when a failure event is delivered, or a payment retried, more than once.
    """
    if alert.kind is AlertKind.DIGEST:
        return f"alert:digest:{alert.period or ''}"
    suffix = f":{episode}" if episode is not None else ""
    return f"alert:{alert.kind.value}:{alert.provider}:{alert.invoice_id or alert.customer_id or ''}{suffix}"


# -- rendering ----------------------------------------------------------------------------------------

TITLES = {
    AlertKind.LARGE_FAILURE: "Large payment failed",
    AlertKind.DO_NOT_CONTACT: "Payment failed: customer not emailed",
    AlertKind.FINAL_NOTICE: "Final notice sent",
    AlertKind.RECOVERED: "Payment recovered",
    AlertKind.DIGEST: "Recovery digest",
}
_NAME_MAX = 100
_DIGEST_CURRENCIES_MAX = 40  # Slack allows 50 blocks a message


def _provider(alert: Alert) -> str:
    return alert.provider[:1].upper() + alert.provider[1:] if alert.provider else "the provider"


def _clean(value: str | None, limit: int = _NAME_MAX) -> str | None:
    """Display text: emails and secrets masked, control characters and line breaks flattened."""
    if not value:
        return None
    value = "".join(" " if not ch.isprintable() else ch for ch in scrub(value))
    value = " ".join(value.split())
    return value[:limit] if value else None


def _amount(alert: Alert) -> str:
    assert alert.amount is not None and alert.currency is not None  # checked in Alert.__post_init__
    return format_amount(alert.amount, alert.currency)


def _customer(alert: Alert) -> str:
    name, customer_id = _clean(alert.customer_name), _clean(alert.customer_id)
    if name and customer_id:
        return f"{name} ({customer_id})"
    return name or customer_id or "an unknown customer"


def _invoice(alert: Alert) -> str:
    number, invoice_id = _clean(alert.invoice_number), _clean(alert.invoice_id)
    if number and invoice_id:
        return f"{number} ({invoice_id})"
    return number or invoice_id or "an unknown invoice"


def _decline(alert: Alert) -> str | None:
    code = _clean(alert.decline_code, 64)
    if alert.decline_class is None:
        return code
    description = DESCRIPTIONS[alert.decline_class]
    return f"{description} ({code})" if code else description


def _dashboard(alert: Alert) -> str | None:
    url = alert.dashboard_url
    if not url or not re.fullmatch(r"https?://[^\s<>|]{1,2000}", url):
        return None  # never a link Slack would mis-parse or that points anywhere odd
    return url


def _summary(alert: Alert) -> str:
    """The one sentence saying what happened (no title, no links)."""
    kind = alert.kind
    if kind is AlertKind.DIGEST:
        lines = [_digest_line(total) for total in alert.totals] or ["no failed or recovered payments"]
        return "; ".join(lines) + "."
    amount, customer, invoice = _amount(alert), _customer(alert), _invoice(alert)
    decline = _decline(alert)
    if kind is AlertKind.LARGE_FAILURE:
        reason = f" Reason: {decline}." if decline else ""
        return f"{amount} from {customer} failed on invoice {invoice}.{reason}"
    if kind is AlertKind.DO_NOT_CONTACT:
        return (
            f"{amount} from {customer} failed on invoice {invoice}: {decline or 'declined'}. "
            "No recovery email was sent; decide whether and how to follow up."
        )
    if kind is AlertKind.FINAL_NOTICE:
        return f"{customer} was sent the final notice for {amount} on invoice {invoice}."
    return f"{amount} from {customer} came back on invoice {invoice}."


def _digest_line(total: CurrencyTotal) -> str:
    c = total.currency
    return (
        f"{c.upper()}: {format_amount(total.failed_amount, c)} failed ({total.failed_count}), "
        f"{format_amount(total.recovered_amount, c)} recovered ({total.recovered_count}), "
        f"{format_amount(total.open_amount, c)} still open ({total.open_count})"
    )


def _title(alert: Alert) -> str:
    title = TITLES[alert.kind]
    if alert.kind is AlertKind.DIGEST and alert.period:
        title += f" {_clean(alert.period, 40)}"
    return title


def render_text(alert: Alert) -> str:
    """The alert as one plain paragraph: title, what happened, the provider, the dashboard link."""
    parts = [f"{_title(alert)} ({_provider(alert)}): {_summary(alert)}"]
    url = _dashboard(alert)
    if url:
        parts.append(url)
    return " ".join(parts)


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup (links, mentions such as <!channel>).

    https://api.slack.com/reference/surfaces/formatting#escaping
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _field(label: str, value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{slack_escape(value)}"}


def render_blocks(alert: Alert) -> list[dict[str, Any]]:
    """The alert as Slack Block Kit blocks: a header, the summary, the facts as fields, the dashboard link."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _title(alert)[:150], "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(_summary(alert))[:3000]}},
    ]
    if alert.kind is AlertKind.DIGEST:
        blocks.extend(_digest_blocks(alert.totals))
    else:
        fields = [
            _field("Amount", _amount(alert)),
            _field("Customer", _customer(alert)),
            _field("Invoice", _invoice(alert)),
        ]
        decline = _decline(alert)
        if decline:
            fields.append(_field("Decline", decline))
        fields.append(_field("Provider", _provider(alert)))
        blocks.append({"type": "section", "fields": fields})
    url = _dashboard(alert)
    if url:
        # A mrkdwn link, not a button: buttons in an incoming webhook's message expect an interactive app.
        link = f"<{url}|Open in the {slack_escape(_provider(alert))} dashboard>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    return blocks


def _digest_blocks(totals: Iterable[CurrencyTotal]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    totals = list(totals)
    for total in totals[:_DIGEST_CURRENCIES_MAX]:
        c = total.currency
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{c.upper()}*"},
                "fields": [
                    _field("Failed", f"{format_amount(total.failed_amount, c)} ({total.failed_count})"),
                    _field("Recovered", f"{format_amount(total.recovered_amount, c)} ({total.recovered_count})"),
                    _field("Still open", f"{format_amount(total.open_amount, c)} ({total.open_count})"),
                ],
            }
        )
    if len(totals) > _DIGEST_CURRENCIES_MAX:
        more = len(totals) - _DIGEST_CURRENCIES_MAX
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {more} more currencies"}]})
    return blocks
