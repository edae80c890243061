"""`GET /r/<token>`: the durable recovery link. It mints the provider's update page on click.

Provider pages expire (Stripe portal sessions within minutes, Chargebee hosted pages in days), so an
emailed page URL can be dead when clicked. Our token (`webhook_app.tokens`) is durable instead; the
click asks the case's provider for a fresh page and redirects there (303). Link previewers and HEAD
requests get a page, never a session, and are not counted as clicks.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, render_template, request
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import func, select

from webhook_app.errors import ConfigurationNeeded, RecoveryError, ResourceMissing
from webhook_app.models import Click, DunningCase
from webhook_app.observability import report_exception
from webhook_app.sending import link_target
from webhook_app.services import services
from webhook_app.tokens import read_token

log = logging.getLogger(__name__)
bp = Blueprint("links", __name__)

CLICK_LIMIT, CLICK_WINDOW = 10, timedelta(minutes=10)
# Mail scanners and chat apps fetch links to preview them; a fetch must not look like a customer.
PREVIEW_BOTS = re.compile(
    r"bot\b|crawler|spider|preview|facebookexternalhit|slack|discord|whatsapp|telegram|skype|linkedin|"
    r"embedly|outlook|microsoft office|mimecast|proofpoint|barracuda|google-safety|headlesschrome|"
    r"curl|wget|python-requests",
    re.IGNORECASE,
)


def _page(template: str, status: int, **context: Any) -> Response:
    svc = services()
    html = render_template(
        template, company=svc.settings.links.company_name, return_url=svc.settings.links.return_url, **context
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token must not leak to other sites
    return response


@bp.route("/r/<token>", methods=["GET", "HEAD"])
def follow(token: str) -> Response:
    """Mint a fresh update page for the token's case and redirect (303) to it."""
    svc = services()
    try:
        data = read_token(svc.settings.links, token, svc.clock)
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
    if (recent or 0) >= CLICK_LIMIT:
        response = _page("link_busy.html", 429)
        response.headers["Retry-After"] = str(int(CLICK_WINDOW.total_seconds()))
        return response

    try:
        link = svc.billing(case.provider).update_link(link_target(case, data.get("n")))
    except ResourceMissing as exc:
        log.error("recovery link for a %s %s no longer knows", exc.kind, case.provider, extra={"case_id": case.id})
        return _page("link_invalid.html", 404)
    except (RecoveryError, ConfigurationNeeded) as exc:
        # Not recorded as a click: the customer never reached the update page. They can simply retry.
        log.error("could not mint an update page for a click: %s", exc, extra={"case_id": case.id})
        report_exception(exc)
        return _unavailable()
    if link is None:  # every provider mints a page for a click; None would be a bug in its port
        raise RuntimeError(f"{case.provider} returned no update link for a click")

    with svc.db.session() as s:
        s.add(
            Click(
                provider=case.provider,
                case_id=case.id,
                notification_id=data.get("n"),
                update_link_id=link.reference,
                clicked_at=now,
            )
        )
    log.info("recovery link followed", extra={"case_id": case.id, "provider": case.provider})
    response = Response(
        status=303, headers={"Location": link.url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )
    return response


def _unavailable() -> Response:
    response = _page("link_unavailable.html", 503)
    response.headers["Retry-After"] = "60"
    return response
