"""SQLAlchemy 2.0 models: the inbox, dunning cases, the notification outbox, clicks, the ledger, and
the charges our own update pages make.

Every row carries the billing `provider` it belongs to ("stripe", "chargebee", ...): ids are unique
per provider, never across them. Idempotency rests on the unique constraints declared here (event id,
invoice id, one notification per case/episode/step, one ledger entry per key), never on a
read-before-insert. Statuses are the enums of `webhook_app.states`. Times are stored as naive UTC
datetimes, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from webhook_app.states import (
    CASE_OPEN,
    PAGE_CHARGE_LIVE,
    CaseStatus,
    EventStatus,
    NotificationKind,
    NotificationStatus,
    PageChargeStatus,
)


class Base(DeclarativeBase):
    pass


# A BIGINT primary key on PostgreSQL, and SQLite's INTEGER PRIMARY KEY (its rowid) there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Provider = String(20)


class Event(Base):
    """A billing-system event as delivered: the inbox. Stored before we answer 2xx; processed by the worker."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(Provider)
    event_id: Mapped[str] = mapped_column(String(255))  # the provider's own id (or a derived dedupe key)
    type: Mapped[str] = mapped_column(String(100))
    livemode: Mapped[bool] = mapped_column(Boolean)
    api_version: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=EventStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[datetime] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_events_provider_event_id"),
        Index("ix_events_claim", "status", "run_at"),
    )


class DunningCase(Base):
    """One per invoice: opened by a failed payment, closed as recovered / void / uncollectible / canceled."""

    __tablename__ = "dunning_cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(Provider)
    invoice_id: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[str] = mapped_column(String(255))
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(255))
    customer_country: Mapped[str | None] = mapped_column(String(2))
    invoice_number: Mapped[str | None] = mapped_column(String(255))
    hosted_invoice_url: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    amount_due: Mapped[int] = mapped_column(BigInteger, default=0)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    # Why the latest attempt failed (webhook_app.declines): decides the words, the timing, and whether
    # the customer is contacted at all.
    decline_class: Mapped[str | None] = mapped_column(String(30))
    decline_code: Mapped[str | None] = mapped_column(String(100))
    advice_code: Mapped[str | None] = mapped_column(String(100))
    next_payment_attempt: Mapped[datetime | None] = mapped_column(DateTime)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default=CaseStatus.OPEN)
    close_reason: Mapped[str | None] = mapped_column(Text)
    episode: Mapped[int] = mapped_column(Integer, default=1)
    messages_sent: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_failed_at: Mapped[datetime | None] = mapped_column(DateTime)
    first_message_at: Mapped[datetime | None] = mapped_column(DateTime)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Names, emails and the hosted invoice link were erased (PII_RETENTION_DAYS, or customer.deleted):
    # later events must not write them back.
    pii_erased_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("provider", "invoice_id", name="uq_dunning_cases_provider_invoice_id"),
        Index("ix_dunning_cases_customer", "provider", "customer_id"),
        Index("ix_dunning_cases_status", "status", "currency"),
        # finance: lost and open-at-period-end; on PostgreSQL the lost figures are read from the index alone
        Index(
            "ix_dunning_cases_closed",
            "status",
            "closed_at",
            postgresql_include=["currency", "amount_due", "decline_class", "livemode", "provider"],
        ),
        Index("ix_dunning_cases_closed_at", "closed_at", "id"),  # finance: the newest page of lost cases
        Index("ix_dunning_cases_first_failed", "first_failed_at"),  # finance: rates by month of first failure
        # The retention sweep: only cases still holding personal data, so erased history costs nothing.
        Index(
            "ix_dunning_cases_pii_expiry",
            "closed_at",
            postgresql_where=text("pii_erased_at IS NULL"),
            sqlite_where=text("pii_erased_at IS NULL"),
        ),
    )

    @property
    def is_open(self) -> bool:
        return self.status in CASE_OPEN


class Notification(Base):
    """The outbox: a message to a customer, due at `run_at`, sent by the worker outside any handler."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(Provider)  # the billing provider of the case
    case_id: Mapped[int] = mapped_column(ForeignKey("dunning_cases.id"), index=True)
    episode: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(40), default=NotificationKind.PAYMENT_FAILED)
    status: Mapped[str] = mapped_column(String(20), default=NotificationStatus.PENDING)
    run_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    last_error: Mapped[str | None] = mapped_column(Text)
    messenger: Mapped[str | None] = mapped_column(String(20))  # loops | intercom | console
    messenger_message_id: Mapped[str | None] = mapped_column(String(255))
    update_link_id: Mapped[str | None] = mapped_column(String(255))  # portal session / hosted page minted
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # The inbox row whose processing scheduled this message (None: the campaign), so `events list` can
    # say when an event's message later failed. No foreign key: inbox rows may be pruned.
    source_event_id: Mapped[int | None] = mapped_column(BigInteger, index=True)

    __table_args__ = (
        UniqueConstraint("case_id", "episode", "step", name="uq_notifications_case_episode_step"),
        Index("ix_notifications_claim", "status", "run_at"),
    )


class TeamAlert(Base):
    """The team's outbox: an alert (Slack, email) sent by the worker like a customer message.

    `key` is unique: one alert per case per kind per channel, ever, and one digest per day, whatever
    the retries, duplicate deliveries and replays. Quiet hours do not apply: they are the customers'.
    """

    __tablename__ = "team_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    channel: Mapped[str] = mapped_column(String(10))  # slack | email: one row each, sent and retried apart
    kind: Mapped[str] = mapped_column(String(30))  # webhook_app.alerts.AlertKind
    provider: Mapped[str | None] = mapped_column(Provider)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("dunning_cases.id"), index=True)
    period: Mapped[str | None] = mapped_column(String(40))  # a digest's day
    status: Mapped[str] = mapped_column(String(20), default=NotificationStatus.PENDING)
    run_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_team_alerts_claim", "status", "run_at"),)


class Click(Base):
    """A customer followed a recovery link and we minted an update-payment page for them."""

    __tablename__ = "link_clicks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(Provider)
    case_id: Mapped[int] = mapped_column(ForeignKey("dunning_cases.id"), index=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))
    update_link_id: Mapped[str | None] = mapped_column(String(255))
    clicked_at: Mapped[datetime] = mapped_column(DateTime)


class LedgerEntry(Base):
    """The recovery ledger, append-only: a recovery, or a correction that offsets one (refund).

    Amounts are never updated. Two sanctioned updates only: the settled figures of a recovery are filled
    in once (`settlement_status` pending -> settled | none | unavailable), and names and emails are
    erased when their retention ends. Written only by `webhook_app.ledger`; `webhook_app.finance` reads it.
    """

    __tablename__ = "recovery_ledger"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(Provider)
    # e.g. "recovery:in_123", "refund:ch_1:4900": one row per real-world fact, whatever the replays.
    entry_key: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))  # webhook_app.states.LedgerKind
    case_id: Mapped[int | None] = mapped_column(ForeignKey("dunning_cases.id"))
    invoice_id: Mapped[str] = mapped_column(String(255), index=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units; negative for corrections
    currency: Mapped[str] = mapped_column(String(3))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    first_failed_at: Mapped[datetime | None] = mapped_column(DateTime)
    recovered_at: Mapped[datetime] = mapped_column(DateTime)
    seconds_to_recover: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    messages_sent: Mapped[int] = mapped_column(Integer, default=0)
    attribution: Mapped[str | None] = mapped_column(String(20))  # webhook_app.states.Attribution
    first_message_at: Mapped[datetime | None] = mapped_column(DateTime)
    first_click_at: Mapped[datetime | None] = mapped_column(DateTime)
    seconds_message_to_click: Mapped[int | None] = mapped_column(Integer)
    seconds_click_to_payment: Mapped[int | None] = mapped_column(Integer)
    # Copied from the case when the row is written, so finance reads names without a join.
    invoice_number: Mapped[str | None] = mapped_column(String(255))
    customer_name: Mapped[str | None] = mapped_column(String(255))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    # What reached the account's balance (Stripe's balance transaction), in the payout currency.
    settlement_status: Mapped[str | None] = mapped_column(String(20))  # webhook_app.states.SettlementStatus
    settlement_id: Mapped[str | None] = mapped_column(String(255))  # e.g. txn_...
    settled_amount: Mapped[int | None] = mapped_column(BigInteger)  # minor units of settled_currency
    settled_fee: Mapped[int | None] = mapped_column(BigInteger)
    settled_net: Mapped[int | None] = mapped_column(BigInteger)
    settled_currency: Mapped[str | None] = mapped_column(String(3))
    settled_exchange_rate: Mapped[str | None] = mapped_column(String(40))  # decimal text, exactly as Stripe gave it
    settlement_checked_at: Mapped[datetime | None] = mapped_column(DateTime)  # last looked up, or recorded
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("provider", "entry_key", name="uq_recovery_ledger_provider_entry_key"),
        Index("ix_recovery_ledger_period", "recovered_at", "currency"),
        Index("ix_recovery_ledger_currency_period", "currency", "recovered_at"),
        Index("ix_recovery_ledger_case", "case_id"),  # erasing a case's names; a case's rows
        Index("ix_recovery_ledger_settlement", "settlement_status"),  # the worker's pending look-ups
        # finance: the exact time-to-recover percentiles, read within one bucket of `recovery_durations_daily`
        Index("ix_recovery_ledger_durations", "kind", "currency", "seconds_to_recover", "recovered_at"),
    )


@event.listens_for(LedgerEntry, "after_insert")
def _roll_up_orm_insert(_mapper: Any, connection: Connection, target: LedgerEntry) -> None:
    # Every ledger row is rolled up in its own transaction, also one added through the ORM; the
    # ledger's own writes (webhook_app.ledger, Core inserts) call webhook_app.rollups directly.
    from webhook_app import rollups

    rollups.roll_up_orm_insert(connection, target)


class LedgerDaily(Base):
    """The ledger summed per UTC day and every dimension finance filters or groups by (a roll-up).

    Written by `webhook_app.ledger` in the transaction that writes or settles each ledger row, by
    adding to the day's row (`INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`), so concurrent
    writers never lose an increment; `webhook-app finance rebuild-rollups` recomputes it from the
    ledger. Text dimensions are '' where the ledger has NULL (a primary key has no NULLs).
    `decline_class` is the case's class when the row was written ('unknown' when none was read, '' for a
    row without a case); a recovered case's class never changes afterwards. Rows may sum to zero
    (a recovery moved from pending to settled): readers skip groups whose `entries` sum to 0.
    """

    __tablename__ = "recovery_ledger_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)  # of recovered_at (UTC)
    provider: Mapped[str] = mapped_column(Provider, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    attribution: Mapped[str] = mapped_column(String(20), primary_key=True)
    decline_class: Mapped[str] = mapped_column(String(30), primary_key=True)
    settlement_status: Mapped[str] = mapped_column(String(20), primary_key=True)
    settled_currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_fee: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_net: Mapped[int] = mapped_column(BigInteger, default=0)


class RecoveryDurationDaily(Base):
    """How many of a day's recoveries took how long (first failure to payment), in coarse buckets.

    A roll-up written with `LedgerDaily` (recovery rows with a `seconds_to_recover` only). Percentiles
    are not additive, so finance finds the bucket holding each wanted rank here and reads the exact
    value from the ledger within that bucket (`ix_recovery_ledger_durations`). Bucket edges:
    `webhook_app.rollups.DURATION_EDGES`.
    """

    __tablename__ = "recovery_durations_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    provider: Mapped[str] = mapped_column(Provider, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    livemode: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    recoveries: Mapped[int] = mapped_column(BigInteger, default=0)


# Partial unique index: one live (started / charging / charged) page charge per case. Spelled as SQL
# once, so the model and the migration describe the same index.
PAGE_CHARGE_LIVE_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(PAGE_CHARGE_LIVE)))


class PageCharge(Base):
    """One submission of the card form on our own update page (Braintree's `/pay/braintree/<token>`).

    Recorded before anything is charged, because the provider's charge is not idempotent: a double
    submit, a reload or a retried request finds its row (unique `form_key`), and a case never has two
    live charges (partial unique index), so the customer is never charged twice.
    """

    __tablename__ = "page_charges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(Provider)
    case_id: Mapped[int] = mapped_column(ForeignKey("dunning_cases.id"))
    form_key: Mapped[str] = mapped_column(String(64))  # the rendered form this submission came from
    status: Mapped[str] = mapped_column(String(20), default=PageChargeStatus.STARTED)
    payment_method_token: Mapped[str | None] = mapped_column(String(255))  # the card saved for the customer
    card_label: Mapped[str | None] = mapped_column(String(100))  # "Visa ending 1111", for the result page
    before_transaction_id: Mapped[str | None] = mapped_column(String(255))  # newest charge before ours
    transaction_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str | None] = mapped_column(String(3))
    message: Mapped[str | None] = mapped_column(Text)  # what the customer was told (a decline)
    detail: Mapped[str | None] = mapped_column(Text)  # for operators: processor response, error class
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("form_key", name="uq_page_charges_form_key"),
        Index("ix_page_charges_case", "case_id", "created_at"),
        Index(
            "uq_page_charges_live_case",
            "case_id",
            unique=True,
            sqlite_where=text(PAGE_CHARGE_LIVE_SQL),
            postgresql_where=text(PAGE_CHARGE_LIVE_SQL),
        ),
    )


class Deployment(Base):
    """This deployment's identity: one row, made once (insert-or-nothing) by the first process that asks.

    Its id goes into every idempotency key sent to an email tool, so two deployments sharing one
    Loops team (staging and production) never collide on a key (Loops refuses a reused key for 24 h).
    """

    __tablename__ = "deployment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # always 1
    deployment_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class RateLimit(Base):
    """The next free request slot of one provider limit, shared by every process (`rate_slots`).

    One row per (provider, credential): every process calling that provider with that key reserves
    its requests here, so two worker processes (or a worker and a campaign) pace together. Times are
    seconds since the epoch on the database server's clock (PostgreSQL) or the machine's (SQLite).
    """

    __tablename__ = "rate_limits"

    limit_key: Mapped[str] = mapped_column(String(100), primary_key=True)  # e.g. loops:<digest of the key>
    next_at: Mapped[float] = mapped_column(Double)  # the earliest start of the next request
    paused_until: Mapped[float] = mapped_column(Double)  # a provider's Retry-After holds everyone until then
