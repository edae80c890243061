"""`/healthz` (the process is up) and `/readyz` (the database is reachable and migrated)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from webhook_app import migrate
from webhook_app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: answers as long as the process serves requests."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """Readiness: 200 when the database answers and every migration is applied, else 503."""
    svc = services()
    body: dict[str, Any] = {"database": "ok", "problems": list(svc.settings.problems)}
    try:
        pending = migrate.pending_revisions(svc.db)
    except SQLAlchemyError as exc:
        log.warning("readiness: database unreachable (%s)", exc.__class__.__name__)
        return jsonify({**body, "status": "unavailable", "database": "unreachable"}), 503
    if pending:
        return jsonify(
            {
                **body,
                "status": "unavailable",
                "database": "not migrated",
                "pending_migrations": pending,
                "fix": "run `webhook-app db upgrade`",
            }
        ), 503
    return jsonify({**body, "status": "ready"})
