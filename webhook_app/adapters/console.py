"""A messenger that logs what it would send: the default for development (`MESSAGING_PROVIDER=console`).

The recipient is shown masked (`ja***@example.com`): enough for a developer to tell which of their
test customers got the message, never a full address in a log. Production refuses to start with this
messenger (nobody would be emailed).
"""

from __future__ import annotations

import logging

from webhook_app.adapters import Message, SendResult
from webhook_app.observability import mask_email

log = logging.getLogger(__name__)


class ConsoleMessenger:
    """Logs the message: recipient (masked), customer, amount, how many invoices, and the link."""

    name = "console"

    def send(self, message: Message, idempotency_key: str) -> SendResult:
        """Log the message once; the key makes a retried send log the same id."""
        data = message.data_variables()
        invoices = 1 + len(message.other_invoices)
        log.info(
            "recovery message (%s) to %s, customer %s: %s%s, link %s",
            message.template,
            mask_email(message.email),
            message.customer_id,
            data["amountDue"],
            f" and {invoices - 1} more invoice(s)" if invoices > 1 else "",
            data["updatePaymentUrl"],
            extra={"provider": self.name},
        )
        return SendResult(provider=self.name, message_id=idempotency_key)

    def send_alert(self, email: str, subject: str, text: str, idempotency_key: str) -> SendResult:
        """Log the team alert (the address is masked by the log formatter)."""
        log.info("team alert to %s: %s\n%s", email, subject, text, extra={"provider": self.name})
        return SendResult(provider=self.name, message_id=idempotency_key)

    def check(self) -> str:
        """Nothing to verify: say what this messenger does."""
        return "console messages (nothing is emailed)"
