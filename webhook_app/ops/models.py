"""The campaign's memory: one row per customer it has messaged (or is messaging right now).

This is what makes `webhook-app campaign` resumable: a rerun, or a run after a crash midway, skips
customers messaged within the cooldown, and a send that was in flight when the process died is
retried with the *same* idempotency key, so the email tool answers "already sent" instead of
emailing the customer twice. Claims are single conditional UPDATEs on the unique customer row, so
two campaign processes never message one customer twice either.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from webhook_app.models import Base, BigId


class CampaignContact(Base):
    """A customer the campaign has reached for: when, with which invoices, and how it ended."""

    __tablename__ = "campaign_contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    # idle (claimed, then nothing to send) | sending (claimed, lease below) | sent | failed
    status: Mapped[str] = mapped_column(String(20), default="idle")
    # Completed sends; the next message's idempotency key uses sends + 1, so a retried send reuses it.
    sends: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When the pending (n = sends + 1) message was first attempted; cleared once it is sent. A retry
    # after a crash rebuilds the very same message from it (same link, same created_at), so email
    # tools that de-duplicate on content (Intercom) recognise the retry too.
    attempt_started_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    invoice_ids: Mapped[str | None] = mapped_column(Text)  # comma-separated, as last messaged
    provider: Mapped[str | None] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_campaign_contacts_last_sent_at", "last_sent_at"),)
