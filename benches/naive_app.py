"""The naive design, for comparison only: all the work done inline before answering the webhook.

`POST /naive/webhooks/stripe` verifies and stores the event like the real intake, then, before
answering, runs the event's handler and sends the resulting message: re-read the invoice from Stripe,
create a portal session, send through the email tool. The work is the product's own (the worker's
`_process_event` and `_send` on exactly this event's rows); only *when* it happens differs. This is
what the inbox exists to avoid: the answer now waits on three external calls. (Not under /webhooks/:
the app answers every `/webhooks/<name>` in front of Flask, so a Flask route there is never reached.)
    gunicorn --config gunicorn.conf.py benches.naive_app:app
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from flask import Blueprint, jsonify, request
from requests.structures import CaseInsensitiveDict
from sqlalchemy import select, update

from webhook_app import create_app, inbox
from webhook_app.claims import Claim
from webhook_app.errors import WebhookRejected
from webhook_app.models import DunningCase, Event, Notification
from webhook_app.outbox import Batch
from webhook_app.services import services
from webhook_app.worker import Worker

bp = Blueprint("naive", __name__)


def _claim_row(svc, model, row_id: int, busy: str) -> Claim:
    """Claim one specific row (the worker would claim any due row; here it must be this request's)."""
    token = str(uuid.uuid4())
    now = svc.clock.now()
    with svc.db.session() as s:
        attempts = s.execute(
            update(model)
            .where(model.id == row_id)
            .values(
                status=busy, claim_token=token, locked_until=now + timedelta(seconds=120), attempts=model.attempts + 1
            )
            .returning(model.attempts)
        ).scalar_one()
    return Claim(row_id, token, attempts)


@bp.post("/naive/webhooks/stripe")
def receive_inline():
    """Verify, store, handle and send, all before answering."""
    svc = services()
    body = request.get_data(cache=False)
    try:
        event = svc.providers["stripe"].receive(CaseInsensitiveDict(request.headers), body)
    except WebhookRejected as exc:
        return jsonify({"error": "invalid_delivery", "message": str(exc)}), exc.status
    inbox.store(svc.db, "stripe", event, svc.clock.now())
    worker = Worker(svc)
    with svc.db.session() as s:
        event_row_id = s.scalar(select(Event.id).where(Event.provider == "stripe", Event.event_id == event.event_id))
    worker._process_event(_claim_row(svc, Event, event_row_id, "processing"))
    payload = json.loads(event.payload)
    invoice_id = payload["data"]["object"].get("id")
    with svc.db.session() as s:
        due = s.scalars(
            select(Notification.id)
            .join(DunningCase, DunningCase.id == Notification.case_id)
            .where(
                DunningCase.invoice_id == invoice_id,
                Notification.status == "pending",
                Notification.run_at <= svc.clock.now(),
            )
        ).all()
    for notification_id in due:
        worker._send(Batch(claim=_claim_row(svc, Notification, notification_id, "sending")))
    return jsonify({"received": True, "sent": len(due)}), 200


app = create_app()
app.register_blueprint(bp)
