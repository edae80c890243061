"""Named exceptions, classified: transient (retry with backoff) or permanent (stop, keep the reason).

Anything else that escapes a handler or a send is a bug: it is reported loudly (log + Sentry) and the
item stops as failed, so an unknown error never retries forever nor disappears (closed by default).
Messages here never carry secrets or customer emails: they are logged and stored.
"""


class RecoveryError(Exception):
    """Base class for the app's own errors."""


class TransientError(RecoveryError):
    """Worth retrying later: a 429, a 5xx, a timeout, a lost database connection."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The provider answered 429. `retry_after` is the wait to use; `stated` says whether the provider
    gave it (a Retry-After header, always honoured) or it is our default for a 429 without one, which a
    limiter pacing evenly may shorten (`TokenBucket.throttle_hold`)."""

    def __init__(self, message: str, retry_after: float, *, stated: bool):
        super().__init__(message, retry_after)
        self.stated = stated


class SettlementNotReady(TransientError):
    """The invoice is paid but what it put in the balance is not known yet (no balance transaction yet)."""


class PermanentError(RecoveryError):
    """Retrying will not help (bad request, missing resource): stop and record why."""


class ResourceMissing(PermanentError):
    """The billing system says an object does not exist (Stripe `resource_missing`, a 404).

    `kind` names what is missing ("customer", "invoice", "subscription", ...), so logs and operators
    see which object it was, never a customer one for a missing invoice.
    """

    kind = "resource"

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        if kind:
            self.kind = kind

    @property
    def name(self) -> str:
        """The error's name as stored and logged: what is missing, e.g. "SubscriptionMissing"."""
        return "".join(part.capitalize() for part in self.kind.replace("-", "_").split("_")) + "Missing"


class CustomerMissing(ResourceMissing):
    """The billing system no longer knows the customer."""

    kind = "customer"


class InvoiceMissing(ResourceMissing):
    """The billing system no longer knows the invoice."""

    kind = "invoice"


class MessengerRejected(PermanentError):
    """The email tool refused the message (401, 400, missing template)."""


class ConfigurationNeeded(RecoveryError):
    """An operator must act (e.g. run `webhook-app portal setup`); the item is held, not dropped."""

    def __init__(self, message: str, hold_seconds: float = 3600):
        super().__init__(message)
        self.hold_seconds = hold_seconds


class ConfigurationMissing(ConfigurationNeeded):
    """A setting names something the provider does not have (e.g. a deleted portal configuration)."""


class BadPayload(PermanentError):
    """A validly signed event whose payload lacks what its handler needs."""


class WebhookRejected(Exception):
    """A webhook delivery we refuse (400, or 401 for bad credentials); the message is safe to show.

    It names what was wrong (a missing header, a stale timestamp, no matching signature) and never
    carries a secret or any part of the payload.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
