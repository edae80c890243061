"""Signed recovery-link tokens: `{PUBLIC_URL}/r/<token>` names one dunning case and never goes stale.

Signed with SECRET_KEY (itsdangerous, salted), ids only (no personal data), expiring after
LINK_MAX_AGE_DAYS on the app's clock. The blueprint that serves them is `webhook_app.links`; the
sender and the campaign make them here.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from webhook_app.clock import FrozenClock
from webhook_app.config import LinkSettings

SALT = "webhook-app.recovery-link.v1"
DEV_SECRET = "development-only-secret-do-not-use-in-production"


class _ClockSigner(TimestampSigner):
    """itsdangerous' timestamp signer reading our clock, so expiry follows the app's notion of now."""

    def __init__(self, *args: Any, clock: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        if self.clock is None:
            return super().get_timestamp()
        return int(self.clock.now().replace(tzinfo=UTC).timestamp())


def _serializer(settings: LinkSettings, clock: Any = None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        settings.secret_key or DEV_SECRET, salt=SALT, signer=_ClockSigner, signer_kwargs={"clock": clock}
    )


def make_token(settings: LinkSettings, case_id: int, notification_id: int | None = None, clock: Any = None) -> str:
    """A signed token for one case (and the message that carried it)."""
    return str(_serializer(settings, clock).dumps({"c": case_id, "n": notification_id}))


def recovery_url(settings: LinkSettings, case_id: int, notification_id: int | None, issued_at: datetime) -> str:
    """The durable link to put in a message as `updatePaymentUrl`.

    Signed as of `issued_at` (the notification's creation), so every attempt to send the same
    notification carries the same URL: providers that de-duplicate on content (Intercom) then see a
    retried send as the duplicate it is. Expiry counts from that moment.
    """
    token = make_token(settings, case_id, notification_id, FrozenClock(issued_at))
    return f"{settings.public_url}/r/{token}"


def read_token(settings: LinkSettings, token: str, clock: Any = None) -> dict[str, Any]:
    """The token's claims; raises SignatureExpired or BadSignature."""
    data = _serializer(settings, clock).loads(token, max_age=settings.max_age_days * 86400)
    if not isinstance(data, dict) or not isinstance(data.get("c"), int):
        raise BadSignature("malformed token")
    return data


PAGE_SALT = "webhook-app.update-page.v1"
PAGE_MAX_AGE_SECONDS = 2 * 3600  # an update page opened from a click; a fresh click makes a new one


def page_url(settings: LinkSettings, provider: str, case_id: int, reference: str | None = None) -> str:
    """`{PUBLIC_URL}/pay/<provider>/<token>`: our own update page for one case (Paddle, Braintree).

    Minted at click time by the provider's runtime port; `reference` carries what the page needs from
    that moment (e.g. Paddle's transaction id). Short-lived: the durable link is `/r/<token>`.
    """
    serializer = URLSafeTimedSerializer(settings.secret_key or DEV_SECRET, salt=f"{PAGE_SALT}.{provider}")
    token = serializer.dumps({"c": case_id, "r": reference})
    return f"{settings.public_url or ''}/pay/{provider}/{token}"


def read_page_token(settings: LinkSettings, provider: str, token: str) -> dict[str, Any]:
    """A page token's claims ({"c": case id, "r": reference}); raises SignatureExpired or BadSignature."""
    serializer = URLSafeTimedSerializer(settings.secret_key or DEV_SECRET, salt=f"{PAGE_SALT}.{provider}")
    data = serializer.loads(token, max_age=PAGE_MAX_AGE_SECONDS)
    if not isinstance(data, dict) or not isinstance(data.get("c"), int):
        raise BadSignature("malformed token")
    return data


FORM_SALT = "webhook-app.page-form.v1"


def form_key(settings: LinkSettings, provider: str, case_id: int) -> tuple[str, str]:
    """A signed key for one rendered form of an update page: (the form field's value, the submission id).

    The page URL's token already names the case; this adds a per-render token so a submission must come
    from a form we served for that case recently (no cross-site or replayed form), and its random part
    names the submission, so a double submit or a reload is recognised as the same one.
    """
    submission = secrets.token_hex(16)
    serializer = URLSafeTimedSerializer(settings.secret_key or DEV_SECRET, salt=f"{FORM_SALT}.{provider}")
    return str(serializer.dumps({"c": case_id, "k": submission})), submission


def read_form_key(settings: LinkSettings, provider: str, value: str, case_id: int) -> str | None:
    """The submission id of a form key served for `case_id` within the page's lifetime, else None."""
    serializer = URLSafeTimedSerializer(settings.secret_key or DEV_SECRET, salt=f"{FORM_SALT}.{provider}")
    try:
        data = serializer.loads(value, max_age=PAGE_MAX_AGE_SECONDS)
    except BadSignature:  # SignatureExpired included
        return None
    if not isinstance(data, dict) or data.get("c") != case_id or not isinstance(data.get("k"), str):
        return None
    return str(data["k"])
