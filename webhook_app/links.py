"""Recovery links that never go stale: `{PUBLIC_URL}/r/<token>` mints a portal session on click.

Stripe portal sessions expire shortly after creation, so an emailed session URL can be dead when
clicked. Our token is durable instead: signed with SECRET_KEY (itsdangerous), naming one dunning case
(ids only, no personal data), expiring after LINK_MAX_AGE_DAYS. Link previewers and HEAD requests get
a page, never a session, and are not counted as clicks.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, render_template, request
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select

from webhook_app.clock import FrozenClock
from webhook_app.config import Settings
from webhook_app.errors import CustomerMissing, RecoveryError
from webhook_app.models import Click, DunningCase
from webhook_app.observability import report_exception
from webhook_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("links", __name__)

SALT = "webhook-app.recovery-link.v1"
DEV_SECRET = "development-only-secret-do-not-use-in-production"
CLICK_LIMIT, CLICK_WINDOW = 10, timedelta(minutes=10)
# Mail scanners and chat apps fetch links to preview them; a fetch must not look like a customer.
PREVIEW_BOTS = re.compile(
    r"bot\b|crawler|spider|preview|facebookexternalhit|slack|discord|whatsapp|telegram|skype|linkedin|"
    r"embedly|outlook|microsoft office|mimecast|proofpoint|barracuda|google-safety|headlesschrome|"
    r"curl|wget|python-requests",
    re.IGNORECASE,
)


class _ClockSigner(TimestampSigner):
    """itsdangerous' timestamp signer reading our clock, so expiry follows the app's notion of now."""

    def __init__(self, *args, clock=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        if self.clock is None:
            return super().get_timestamp()
        return int(self.clock.now().replace(tzinfo=UTC).timestamp())


def _serializer(settings: Settings, clock=None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        settings.secret_key or DEV_SECRET, salt=SALT, signer=_ClockSigner, signer_kwargs={"clock": clock}
    )


def make_token(settings: Settings, case_id: int, notification_id: int | None = None, clock=None) -> str:
    """A signed token for one case (and the message that carried it)."""
    return _serializer(settings, clock).dumps({"c": case_id, "n": notification_id})


def recovery_url(settings: Settings, case_id: int, notification_id: int, issued_at: datetime) -> str:
    """The durable link to put in a message as `updatePaymentUrl`.

    Signed as of `issued_at` (the notification's creation), so every attempt to send the same
    notification carries the same URL: providers that de-duplicate on content (Intercom) then see a
    retried send as the duplicate it is. Expiry counts from that moment.
    """
    token = make_token(settings, case_id, notification_id, FrozenClock(issued_at))
    return f"{settings.public_url}/r/{token}"


def read_token(settings: Settings, token: str, clock=None) -> dict:
    """The token's claims; raises SignatureExpired or BadSignature."""
    data = _serializer(settings, clock).loads(token, max_age=settings.link_max_age_days * 86400)
    if not isinstance(data, dict) or not isinstance(data.get("c"), int):
        raise BadSignature("malformed token")
    return data


def _page(template: str, status: int, **context) -> Response:
    svc = services()
    html = render_template(
        template, company=svc.settings.company_name, return_url=svc.settings.portal_return_url, **context
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token must not leak to other sites
    return response


@bp.route("/r/<token>", methods=["GET", "HEAD"])
def follow(token: str):
    """Mint a fresh portal session for the token's case and redirect (303) to it."""
    svc = services()
    try:
        data = read_token(svc.settings, token, svc.clock)
    except SignatureExpired:
        return _page("link_expired.html", 410)
    except BadSignature:
        return _page("link_invalid.html", 404)

    with svc.db.session() as s:
        case = s.get(DunningCase, data["c"])
        s.expunge_all()
    if case is None:
        return _page("link_invalid.html", 404)
    if not case.is_open:
        return _page("link_settled.html", 200, case=case)
    if request.method == "HEAD" or PREVIEW_BOTS.search(request.headers.get("User-Agent", "")):
        # A human's click comes as GET from a browser; previews get a page with the link, nothing minted.
        return _page("link_preview.html", 200, url=request.base_url)

    now = svc.clock.now()
    with svc.db.session() as s:
        recent = s.scalar(
            select(func.count(Click.id)).where(Click.case_id == case.id, Click.clicked_at > now - CLICK_WINDOW)
        )
    if recent >= CLICK_LIMIT:
        response = _page("link_busy.html", 429)
        response.headers["Retry-After"] = str(int(CLICK_WINDOW.total_seconds()))
        return response

    if svc.billing is None:
        log.error("recovery link clicked but STRIPE_SECRET_KEY is not set", extra={"case_id": case.id})
        return _unavailable()
    try:
        session = svc.billing.create_portal_session(case.customer_id)
    except CustomerMissing:
        log.error("recovery link for a customer Stripe no longer knows", extra={"case_id": case.id})
        return _page("link_invalid.html", 404)
    except RecoveryError as exc:
        # Not recorded as a click: the customer never reached the portal. They can simply retry.
        log.error("could not mint a portal session for a click: %s", exc, extra={"case_id": case.id})
        report_exception(exc)
        return _unavailable()

    with svc.db.session() as s:
        s.add(Click(case_id=case.id, notification_id=data.get("n"), portal_session_id=session.id, clicked_at=now))
    log.info("recovery link followed", extra={"case_id": case.id})
    response = Response(
        status=303, headers={"Location": session.url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )
    return response


def _unavailable() -> Response:
    response = _page("link_unavailable.html", 503)
    response.headers["Retry-After"] = "60"
    return response
