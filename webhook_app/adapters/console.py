"""A messenger that logs what it would send: the default for development (`MESSAGING_PROVIDER=console`)."""

from __future__ import annotations

import logging

from webhook_app.adapters import Message, SendResult

log = logging.getLogger(__name__)


class ConsoleMessenger:
    """Prints the message data (the email address is masked by the log formatter)."""

    name = "console"

    def send(self, message: Message, idempotency_key: str) -> SendResult:
        data = message.data_variables()
        log.info(
            "recovery message (%s) for customer %s: amount %s, link %s",
            message.kind,
            message.customer_id,
            data["amountDue"],
            data["updatePaymentUrl"],
            extra={"provider": self.name},
        )
        return SendResult(provider=self.name, message_id=idempotency_key)

    def send_alert(self, email: str, subject: str, text: str, idempotency_key: str) -> SendResult:
        """Log the team alert (the address is masked by the log formatter)."""
        log.info("team alert to %s: %s\n%s", email, subject, text, extra={"provider": self.name})
        return SendResult(provider=self.name, message_id=idempotency_key)

    def check(self) -> str:
        return "console messages (nothing is emailed)"
